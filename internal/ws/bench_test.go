package ws

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Microbenchmarks of the hot paths over real loopback TCP. Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/ws
//
// allocs/op counts every allocation in the process, the peer's included;
// on the paths measured here it must be 0.

var benchSizes = []struct {
	name string
	n    int
}{{"16B", 16}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

var benchModes = []struct {
	name     string
	compress bool
}{{"plain", false}, {"deflate", true}}

// benchServerConn returns a server Conn whose peer is a raw client: with
// compression when compress (the client offers permessage-deflate), and a
// drain goroutine swallowing everything the server writes when drain.
func benchServerConn(b *testing.B, compress, drain bool) (*Conn, *rawConn) {
	b.Helper()
	ready := make(chan *Conn, 1)
	ts := startServer(b, echoOpts(), func(c *Conn) error {
		ready <- c
		<-c.closed()
		return nil
	})
	offer := ""
	if compress {
		offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	}
	rc := dialRaw(b, ts.addr, offer)
	c := <-ready
	if drain {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, rc.nc) }()
		b.Cleanup(func() { c.CloseNow(); rc.nc.Close(); wg.Wait() })
	} else {
		b.Cleanup(func() { c.CloseNow() })
	}
	return c, rc
}

func BenchmarkWriteMessage(b *testing.B) {
	for _, m := range benchModes {
		for _, s := range benchSizes {
			b.Run(m.name+"/"+s.name, func(b *testing.B) {
				c, _ := benchServerConn(b, m.compress, true)
				msg := pattern(s.n)
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.WriteMessage(Text, msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkWritePrepared(b *testing.B) {
	for _, m := range benchModes {
		for _, s := range benchSizes {
			b.Run(m.name+"/"+s.name, func(b *testing.B) {
				c, _ := benchServerConn(b, m.compress, true)
				pm := NewPreparedMessage(Text, pattern(s.n))
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.WritePrepared(pm); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWritePreparedBatch: a batch of queued messages in one call, as
// a session's writer sends what piled up; small ones are coalesced into
// one write, large ones go out with writev.
func BenchmarkWritePreparedBatch(b *testing.B) {
	for _, s := range []struct {
		name string
		n    int
	}{{"8x200B", 200}, {"8x8KiB", 8 << 10}} {
		b.Run(s.name, func(b *testing.B) {
			c, _ := benchServerConn(b, false, true)
			pms := make([]*PreparedMessage, 8)
			for i := range pms {
				pms[i] = NewPreparedMessage(Text, pattern(s.n))
			}
			b.SetBytes(int64(8 * s.n))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.WritePrepared(pms...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadMessage: the server reads frames a client streams to it
// (masked; compressed in the deflate mode), as fast as it can.
func BenchmarkReadMessage(b *testing.B) {
	for _, m := range benchModes {
		for _, s := range benchSizes {
			b.Run(m.name+"/"+s.name, func(b *testing.B) {
				c, rc := benchServerConn(b, m.compress, false)
				msg := pattern(s.n)
				var frame rawFrame
				if m.compress {
					frame = rc.compressedFrames(opTxt, msg, 1<<30)[0]
				} else {
					frame = rawFrame{fin: true, op: opTxt, payload: msg}
				}
				// A batch of at least 64 KiB of frames, written over and
				// over until the reader is done.
				one := frame.encode()
				var batch []byte
				for len(batch) < 64<<10 {
					batch = append(batch, one...)
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, err := rc.nc.Write(batch); err != nil {
							return
						}
					}
				}()
				b.Cleanup(func() { rc.nc.Close(); wg.Wait() })
				buf := make([]byte, 0, s.n+512)
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					_, p, err := c.ReadMessage(buf[:0])
					if err != nil {
						b.Fatal(err)
					}
					if len(p) != s.n {
						b.Fatalf("read %d bytes", len(p))
					}
				}
			})
		}
	}
}

// BenchmarkEcho: our client sends a message to our echo server and reads
// the echo, one round trip per op over loopback.
func BenchmarkEcho(b *testing.B) {
	for _, m := range benchModes {
		for _, s := range benchSizes {
			b.Run(m.name+"/"+s.name, func(b *testing.B) {
				ts := startServer(b, echoOpts(), nil)
				c := dialTest(b, ts.wsURL(), &DialOptions{Compression: m.compress})
				msg := pattern(s.n)
				buf := make([]byte, 0, s.n+512)
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.WriteMessage(Text, msg); err != nil {
						b.Fatal(err)
					}
					_, p, err := c.ReadMessage(buf[:0])
					if err != nil || len(p) != s.n {
						b.Fatalf("echo: %d bytes, %v", len(p), err)
					}
				}
				c.Close(StatusNormalClosure, "")
			})
		}
	}
}

// BenchmarkClientWrite: the client side, which masks every frame.
func BenchmarkClientWrite(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			addr := listenRaw(b, func(nc net.Conn) {
				buf := make([]byte, 4096)
				n, _ := nc.Read(buf)
				key := ""
				for _, line := range splitLines(string(buf[:n])) {
					if len(line) > 19 && line[:19] == "Sec-WebSocket-Key: " {
						key = line[19:]
					}
				}
				fmt.Fprintf(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", AcceptKey(key))
				io.Copy(io.Discard, nc)
			})
			c := dialTest(b, "ws://"+addr+"/", nil)
			msg := pattern(s.n)
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.WriteMessage(Binary, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		line := s[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		out = append(out, line)
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// BenchmarkDialResponse: Dial's reading and checking of the server's 101,
// as chatd sends it (its welcome message in the same write, left in the
// reader for the connection), without and with permessage-deflate.
func BenchmarkDialResponse(b *testing.B) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	welcome := rawFrame{fin: true, op: opTxt, unmasked: true, payload: []byte(`{"type":"welcome","user":"u42","name":"user 42","node":"node-1","conn":"c-000123","heartbeat":30}`)}.encode()
	u, _ := url.Parse("ws://127.0.0.1:18090/ws")
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: " + AcceptKey(key) + "\r\nSec-WebSocket-Protocol: chat\r\n"
			if m.compress {
				head += "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
			}
			resp := append([]byte(head+"\r\n"), welcome...)
			opts := &DialOptions{Subprotocols: []string{"chat"}, Compression: m.compress}
			r := bytes.NewReader(nil)
			br := bufio.NewReaderSize(nil, 1024)
			b.SetBytes(int64(len(resp)))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(resp)
				br.Reset(r)
				sp, dp, err := readHandshakeResponse(br, u, key, opts)
				if err != nil || sp != "chat" || (dp != nil) != m.compress {
					b.Fatalf("subprotocol %q, deflate %v, %v", sp, dp != nil, err)
				}
				if br.Buffered() != len(welcome) {
					b.Fatalf("%d bytes left after the head, want the welcome's %d", br.Buffered(), len(welcome))
				}
			}
		})
	}
}
