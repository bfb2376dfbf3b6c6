package compare

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// connCount is how many connections the broadcast and idle benchmarks
// open: 10,000 unless CHATD_COMPARE_CONNS says otherwise.
func connCount() int {
	if n, err := strconv.Atoi(os.Getenv("CHATD_COMPARE_CONNS")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// serve runs h on a fresh loopback port (a new port per server, so that
// connections of earlier runs, even in TIME_WAIT, never collide).
func serve(tb testing.TB, h http.Handler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	tb.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

var echoSizes = []struct {
	name string
	n    int
}{{"16B", 16}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

// BenchmarkEcho: one client sends a message and reads the echo, one round
// trip per op, for each library's server.
func BenchmarkEcho(b *testing.B) {
	for _, s := range echoSizes {
		for _, lib := range libraries {
			b.Run(s.name+"/"+lib.name(), func(b *testing.B) {
				c, err := dialClient(serve(b, lib.echo()), 128<<10)
				if err != nil {
					b.Fatal(err)
				}
				defer c.nc.Close()
				frame := maskedFrame(1, bytes.Repeat([]byte("x"), s.n))
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.nc.Write(frame); err != nil {
						b.Fatal(err)
					}
					op, p, err := c.readFrame()
					if err != nil || op != 1 || len(p) != s.n {
						b.Fatalf("echo: op %d, %d bytes, %v", op, len(p), err)
					}
				}
			})
		}
	}
}

// echoText is a message of n bytes of chat-like text (compressible, as
// chat messages are).
func echoText(n int) []byte {
	const words = `{"type":"message","room":"lobby","text":"the quick brown fox jumps over the lazy dog"} `
	return bytes.Repeat([]byte(words), n/len(words)+1)[:n]
}

// BenchmarkEchoDeflate: the echo with permessage-deflate negotiated (no
// context takeover), as every browser offers it: the client sends each
// message compressed (encoded once), the server inflates it and
// compresses the echo.
func BenchmarkEchoDeflate(b *testing.B) {
	for _, s := range echoSizes {
		for _, lib := range libraries {
			d, ok := lib.(deflater)
			if !ok {
				continue
			}
			b.Run(s.name+"/"+lib.name(), func(b *testing.B) {
				c, err := dialClientExt(serve(b, d.echoDeflate()), 128<<10, deflateOffer)
				if err != nil {
					b.Fatal(err)
				}
				defer c.nc.Close()
				frame := compressedFrame(1, echoText(s.n))
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.nc.Write(frame); err != nil {
						b.Fatal(err)
					}
					if op, _, _, err := c.readMessage(); err != nil || op != 1 {
						b.Fatalf("echo: op %d, %v", op, err)
					}
				}
			})
		}
	}
}

// broadcastMessage is a chat message as chatd sends it.
var broadcastMessage = []byte(`{"type":"message","room":"lobby","id":"1732960000000-42","from":"alice","name":"Alice","text":"The quick brown fox jumps over the lazy dog, and everybody in the room gets to read about it.","ts":1732960000000}`)

// held is a server of one library holding n connections from a child
// process.
type held struct {
	lib   library
	n     int
	conns []any
	h     *holder
	cl    *clients
	srv   *http.Server
	sent  int64 // messages broadcast so far, to all connections together
}

// hold starts lib's hold server and a child process with n client
// connections to it, and waits until the server holds them all. The
// server listens on a fresh port (so that connections of earlier runs,
// even in TIME_WAIT, never collide with these).
func hold(lib library, n int) (*held, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := newHolder(n)
	srv := &http.Server{Handler: lib.hold(h), ReadHeaderTimeout: time.Minute}
	go srv.Serve(ln)
	cl, err := startClients(ln.Addr().String(), n)
	if err != nil {
		srv.Close()
		return nil, err
	}
	hs := &held{lib: lib, n: n, h: h, cl: cl, srv: srv}
	deadline := time.After(2 * time.Minute)
	for range n {
		select {
		case <-h.added:
		case <-deadline:
			hs.close()
			return nil, fmt.Errorf("%s: only %d of %d connections held", lib.name(), len(h.list()), n)
		}
	}
	hs.conns = h.list()
	return hs, nil
}

// broadcast prepares msg and writes it to every held connection: with the
// library's own broadcast where it has one (broadcaster), else one write
// per connection.
func (hs *held) broadcast(msg []byte) error {
	pm := hs.lib.prepare(msg)
	if bl, ok := hs.lib.(broadcaster); ok {
		if err := bl.broadcast(hs.conns, pm); err != nil {
			return err
		}
		hs.sent += int64(hs.n)
		return nil
	}
	for _, c := range hs.conns {
		if err := hs.lib.write(c, pm); err != nil {
			return err
		}
	}
	hs.sent += int64(hs.n)
	return nil
}

// delivered waits until the clients received every message broadcast.
func (hs *held) delivered() error { return hs.cl.wait(hs.sent) }

// close ends the child (its connections reset) and the server. The
// server's connection goroutines end on the resets.
func (hs *held) close() {
	hs.cl.stop()
	hs.srv.Close()
	ended := make(chan struct{})
	go func() { hs.h.active.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(time.Minute):
		panic(hs.lib.name() + ": server connections still open a minute after the clients left")
	}
}

// BenchmarkBroadcast: one op is one message, prepared once and written to
// every one of the connections: the server's cost of a broadcast. The
// clients read only between ops, with the timer stopped, checking every
// copy byte for byte; while the server writes, nothing in their process
// wakes up (see runChild), so their work does not blur the server's. The
// connections are set up once for all the rounds of a library's
// benchmark.
func BenchmarkBroadcast(b *testing.B) {
	n := connCount()
	for _, lib := range libraries {
		var hs *held
		b.Run(fmt.Sprintf("%d/%s", n, lib.name()), func(b *testing.B) {
			if hs == nil {
				var err error
				if hs, err = hold(lib, n); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(broadcastMessage)) * int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := hs.broadcast(broadcastMessage); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := hs.delivered(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
		})
		if hs != nil {
			hs.close()
		}
	}
}

// BenchmarkIdleConn: heap and stack per idle server connection, with n
// connections open, each parked in its library's read call.
func BenchmarkIdleConn(b *testing.B) {
	n := connCount()
	for _, lib := range libraries {
		b.Run(fmt.Sprintf("%d/%s", n, lib.name()), func(b *testing.B) {
			per, err := idleMemory(lib, n)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
			}
			b.ReportMetric(per, "bytes/conn")
		})
	}
}

// idleMemory returns heap (live, after GC) plus stack bytes per held
// connection.
func idleMemory(lib library, n int) (float64, error) {
	before := heapAndStack()
	hs, err := hold(lib, n)
	if err != nil {
		return 0, err
	}
	defer hs.close()
	// Let every connection's goroutine reach its read and park.
	time.Sleep(200 * time.Millisecond)
	after := heapAndStack()
	return float64(after-before) / float64(n), nil
}

func heapAndStack() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

// TestHarness runs the machinery of the benchmarks small and quickly (as
// part of go test ./...), so that it cannot rot: every library's echo at
// every size, a few broadcasts to a child process's connections, and the
// idle measurement.
func TestHarness(t *testing.T) {
	const n = 50
	for _, lib := range libraries {
		t.Run(lib.name(), func(t *testing.T) {
			c, err := dialClient(serve(t, lib.echo()), 128<<10)
			if err != nil {
				t.Fatal(err)
			}
			defer c.nc.Close()
			for _, s := range echoSizes {
				msg := bytes.Repeat([]byte{'a' + byte(s.n%26)}, s.n)
				if _, err := c.nc.Write(maskedFrame(1, msg)); err != nil {
					t.Fatal(err)
				}
				op, p, err := c.readFrame()
				if err != nil || op != 1 || !bytes.Equal(p, msg) {
					t.Fatalf("echo of %d bytes: op %d, %d bytes, %v", s.n, op, len(p), err)
				}
			}

			if d, ok := lib.(deflater); ok {
				c, err := dialClientExt(serve(t, d.echoDeflate()), 128<<10, deflateOffer)
				if err != nil {
					t.Fatal(err)
				}
				defer c.nc.Close()
				for _, s := range echoSizes {
					msg := echoText(s.n)
					if _, err := c.nc.Write(compressedFrame(1, msg)); err != nil {
						t.Fatal(err)
					}
					op, p, compressed, err := c.readMessage()
					if err == nil && compressed {
						p, err = inflate(p)
					}
					if err != nil || op != 1 || !bytes.Equal(p, msg) {
						t.Fatalf("compressed echo of %d bytes: op %d, %d bytes, %v", s.n, op, len(p), err)
					}
				}
			}

			hs, err := hold(lib, n)
			if err != nil {
				t.Fatal(err)
			}
			defer hs.close()
			for range 3 {
				if err := hs.broadcast(broadcastMessage); err != nil {
					t.Fatal(err)
				}
			}
			if err := hs.delivered(); err != nil {
				t.Fatal(err)
			}
			hs.cl.stop()
			// The server's ends see the resets and let go.
			for _, c := range hs.conns {
				deadline := time.Now().Add(30 * time.Second)
				for lib.write(c, lib.prepare(broadcastMessage)) == nil {
					if time.Now().After(deadline) {
						t.Fatal("writes still succeed 30 s after the clients left")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	for _, lib := range libraries {
		per, err := idleMemory(lib, n)
		if err != nil {
			t.Fatal(err)
		}
		if per > 1<<20 { // with few connections, noise makes small figures meaningless
			t.Errorf("%s: idle memory per connection: %.0f bytes", lib.name(), per)
		}
		t.Logf("%s: %.0f bytes per idle connection (%d connections)", lib.name(), per, n)
	}
}
