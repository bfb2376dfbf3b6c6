package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// clientFrame is a frame as the client sent it, unmasked, with its key.
type clientFrame struct {
	fin, rsv1 bool
	op        byte
	masked    bool
	key       uint32
	payload   []byte
}

// rawPeer is the server end of a connection whose handshake a test answered
// by hand, for looking at a client's frames on the wire.
type rawPeer struct {
	nc net.Conn
	br *bufio.Reader
}

// rawServer accepts connections, answers their handshake with the extra
// response lines, and hands them to the test.
func rawServer(t *testing.T, extra string) (url string, peers <-chan *rawPeer) {
	t.Helper()
	ch := make(chan *rawPeer, 4)
	addr := listenRaw(t, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(nc, answer101(r, extra))
		p := &rawPeer{nc: nc, br: br}
		ch <- p
		<-t.Context().Done() // listenRaw closes nc at the end of the test
	})
	return "ws://" + addr + "/", ch
}

func nextPeer(t *testing.T, peers <-chan *rawPeer) *rawPeer {
	t.Helper()
	select {
	case p := <-peers:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

// readFrame reads one client frame and unmasks it.
func (p *rawPeer) readFrame(t *testing.T) clientFrame {
	t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [14]byte
	if _, err := io.ReadFull(p.br, h[:2]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := headerLen(h[1])
	if _, err := io.ReadFull(p.br, h[2:n]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	hd, err := parseHeader(h[:n])
	if err != nil {
		t.Fatal(err)
	}
	f := clientFrame{fin: hd.fin, rsv1: hd.rsv1, op: byte(hd.op), masked: hd.masked, key: hd.key, payload: make([]byte, hd.length)}
	if _, err := io.ReadFull(p.br, f.payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	if hd.masked {
		maskBytes(hd.key, f.payload)
	}
	return f
}

// TestClientMasksEveryFrameWithAFreshKey (RFC 6455 §5.3, §10.3): every
// client frame is masked, keys differ from frame to frame and connection to
// connection, and the payload unmasks to what was sent.
func TestClientMasksEveryFrameWithAFreshKey(t *testing.T) {
	t.Parallel()
	url, peers := rawServer(t, "")
	seen := map[uint32]bool{}
	for range 3 {
		c := dialTest(t, url, &DialOptions{Options: Options{FragmentSize: 100}})
		p := nextPeer(t, peers)
		go func() {
			for i := range 20 {
				c.WriteMessage(Binary, bytes.Repeat([]byte{byte(i)}, 250)) // 3 frames each
			}
			c.Ping([]byte("p"))
		}()
		for i := range 20 {
			for j := range 3 {
				f := p.readFrame(t)
				if !f.masked {
					t.Fatal("client frame not masked")
				}
				if seen[f.key] {
					t.Fatalf("masking key %08x used twice", f.key)
				}
				seen[f.key] = true
				if len(f.payload) != min(100, 250-100*j) || f.payload[0] != byte(i) || f.payload[len(f.payload)-1] != byte(i) {
					t.Fatalf("message %d frame %d unmasks to %d bytes starting %d", i, j, len(f.payload), f.payload[0])
				}
			}
		}
		if f := p.readFrame(t); !f.masked || f.op != byte(opPing) || string(f.payload) != "p" || seen[f.key] {
			t.Fatalf("ping frame %+v", f)
		}
	}
}

// TestFragmentSize: messages longer than FragmentSize go out as a text or
// binary frame and continuations, FIN on the last, RSV1 only on the first
// of a compressed message; shorter ones in one frame.
func TestFragmentSize(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			t.Parallel()
			ext := ""
			if compress {
				ext = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
			}
			url, peers := rawServer(t, ext)
			c := dialTest(t, url, &DialOptions{Compression: compress, Options: Options{FragmentSize: 64}})
			p := nextPeer(t, peers)
			msg := randomBytes(7, 1000) // incompressible: the compressed form is longer than 64 too
			for _, m := range [][]byte{msg, msg[:64], msg[:10]} {
				go c.WriteMessage(Binary, m)
				var payload []byte
				var frames []clientFrame
				for {
					f := p.readFrame(t)
					frames = append(frames, f)
					payload = append(payload, f.payload...)
					if f.fin {
						break
					}
				}
				for i, f := range frames {
					wantOp := byte(opContinuation)
					if i == 0 {
						wantOp = byte(opBinary)
					}
					if f.op != wantOp || len(f.payload) > 64 || f.rsv1 != (compress && i == 0 && len(m) >= defaultCompressionThreshold) {
						t.Fatalf("%d-byte message, frame %d of %d: op %d, %d bytes, rsv1 %v", len(m), i, len(frames), f.op, len(f.payload), f.rsv1)
					}
				}
				if frames[0].rsv1 {
					out, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(payload), strings.NewReader(deflateTail))))
					if err != nil {
						t.Fatal(err)
					}
					payload = out
				}
				if !bytes.Equal(payload, m) {
					t.Fatalf("%d-byte message reassembles to %d bytes", len(m), len(payload))
				}
				if want := (len(payload) + 63) / 64; !frames[0].rsv1 && len(frames) != max(want, 1) {
					t.Fatalf("%d-byte message in %d frames", len(m), len(frames))
				}
			}
		})
	}
	// The server side too, through an echo with both ends fragmenting.
	opts := echoOpts()
	opts.FragmentSize = 1000
	ts := startServer(t, opts, nil)
	c := dialTest(t, ts.wsURL(), &DialOptions{Options: Options{FragmentSize: 777}})
	msg := pattern(100000)
	if err := c.WriteMessage(Text, msg); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(nil); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("fragmented echo: %d bytes, %v", len(got), err)
	}
}

// TestConcurrentWriters: many goroutines write messages, prepared messages
// and pings on one connection at once (run with -race); every message
// arrives whole, and each writer's messages in order.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprint("compress=", compress), func(t *testing.T) {
			t.Parallel()
			opts := echoOpts()
			opts.Compression = compress
			ts := startServer(t, opts, nil)
			c := dialTest(t, ts.wsURL(), &DialOptions{Compression: compress, Options: Options{FragmentSize: 3000}})
			const writers, each = 8, 40
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						body := fmt.Sprintf("%d %d %s", w, i, pattern(i*211%7000))
						var err error
						switch i % 3 {
						case 0:
							err = c.WriteMessage(Text, []byte(body))
						case 1:
							err = c.WritePrepared(NewPreparedMessage(Text, []byte(body)))
						case 2:
							if err = c.Ping([]byte("ping")); err == nil {
								err = c.WriteMessage(Text, []byte(body))
							}
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			next := make([]int, writers)
			for range writers * each {
				typ, p, err := c.ReadMessage(nil)
				if err != nil {
					t.Fatal(err)
				}
				var w, i int
				if _, err := fmt.Sscanf(string(p), "%d %d", &w, &i); err != nil || typ != Text {
					t.Fatalf("garbled message %q", abbrev(p))
				}
				if want := fmt.Sprintf("%d %d %s", w, i, pattern(i*211%7000)); string(p) != want {
					t.Fatalf("message %d of writer %d garbled", i, w)
				}
				if next[w] != i {
					t.Fatalf("writer %d: message %d, want %d", w, i, next[w])
				}
				next[w]++
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

// inPlace is a message made with NewPreparedMessageInPlace.
func inPlace(typ MessageType, data []byte) *PreparedMessage {
	buf := append(make([]byte, PreparedHeadroom, PreparedHeadroom+len(data)), data...)
	return NewPreparedMessageInPlace(typ, buf)
}

// TestPreparedMessage: one prepared message written to plain and
// compressed server connections, to connections with a small window, and
// from a client; each peer sees the message, compressed where it should be.
func TestPreparedMessage(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	ready := make(chan *Conn, 8)
	ts := startServer(t, opts, func(c *Conn) error {
		ready <- c
		_, _, err := c.ReadMessage(nil) // until the client closes
		return err
	})
	big := pattern(20000)
	pms := []*PreparedMessage{
		NewPreparedMessage(Text, big),
		NewPreparedMessage(Binary, []byte("small")),
		NewPreparedMessage(Text, nil),
		// Framed in place: the lengths that take each header size.
		inPlace(Binary, pattern(125)),
		inPlace(Text, pattern(126)),
		inPlace(Binary, pattern(70000)),
		inPlace(Text, nil),
	}
	cases := []struct {
		name    string
		offer   string
		rsv1Big bool // the big message arrives compressed
	}{
		{"plain", "", false},
		{"deflate", "Sec-WebSocket-Extensions: permessage-deflate\r\n", true},
		{"deflate-window-15", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15\r\n", true},
		// The shared frame was compressed with a 32 KiB window: for a
		// smaller one, a message longer than the window goes plain.
		{"deflate-window-9", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n", false},
	}
	for _, cs := range cases {
		rc := dialRaw(t, ts.addr, cs.offer)
		sc := <-ready
		if err := sc.WritePrepared(pms...); err != nil {
			t.Fatal(err)
		}
		f, err := rc.readFrame(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if (f.rsv&4 != 0) != cs.rsv1Big {
			t.Fatalf("%s: big message rsv1 %v", cs.name, f.rsv&4 != 0)
		}
		payload := f.payload
		if cs.rsv1Big {
			payload, err = rc.pmd.decompress(payload)
			if err != nil {
				t.Fatalf("%s: %v", cs.name, err)
			}
		}
		if f.op != opTxt || !f.fin || !bytes.Equal(payload, big) {
			t.Fatalf("%s: big message: op %d, %d bytes", cs.name, f.op, len(payload))
		}
		rc.expect(evMsg(opBin, []byte("small")), evMsg(opTxt, []byte{}))
		for _, pm := range pms[3:] {
			f, err := rc.readFrame(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			payload := f.payload
			if f.rsv&4 != 0 {
				if payload, err = rc.pmd.decompress(payload); err != nil {
					t.Fatalf("%s: %v", cs.name, err)
				}
			}
			if f.op != byte(pm.typ) || !f.fin || !bytes.Equal(payload, pm.Data()) {
				t.Fatalf("%s: in-place message of %d bytes: op %d, %d bytes", cs.name, len(pm.Data()), f.op, len(payload))
			}
		}
		rc.closeHandshake()
	}
	// The frames are shared: built once.
	first := pms[0].deflatedFrame()
	if &first[0] != &pms[0].deflatedFrame()[0] {
		t.Fatal("the compressed frame was built twice")
	}

	// From a client (masked copies), plain and compressed.
	for _, compress := range []bool{false, true} {
		es := startServer(t, echoOpts(), nil)
		c := dialTest(t, es.wsURL(), &DialOptions{Compression: compress})
		if err := c.WritePrepared(pms...); err != nil {
			t.Fatal(err)
		}
		for _, pm := range pms {
			typ, got, err := c.ReadMessage(nil)
			if err != nil || typ != pm.Type() || !bytes.Equal(got, pm.Data()) {
				t.Fatalf("client compress=%v: echo of prepared %d bytes: %d bytes, %v", compress, len(pm.Data()), len(got), err)
			}
		}
	}
}

// TestPreparedConcurrent: one prepared message written by many goroutines
// to many connections at once (-race).
func TestPreparedConcurrent(t *testing.T) {
	t.Parallel()
	const conns = 8
	ready := make(chan *Conn, conns)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		ready <- c
		_, _, err := c.ReadMessage(nil)
		return err
	})
	clients := make([]*Conn, conns)
	servers := make([]*Conn, conns)
	for i := range conns {
		clients[i] = dialTest(t, ts.wsURL(), &DialOptions{Compression: i%2 == 0})
		servers[i] = <-ready
	}
	pm := NewPreparedMessage(Text, pattern(5000))
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.WritePrepared(pm) }()
	}
	wg.Wait()
	for i, c := range clients {
		if _, got, err := c.ReadMessage(nil); err != nil || !bytes.Equal(got, pm.Data()) {
			t.Fatalf("client %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestWriteTimeout: a peer that stops reading makes writes fail with a
// timeout once the socket buffers are full, instead of blocking forever;
// the error is sticky and the connection closed.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.WriteTimeout = 200 * time.Millisecond
	res := make(chan error, 1)
	ts := startServer(t, opts, func(c *Conn) error {
		msg := make([]byte, 256<<10)
		for {
			if err := c.WriteMessage(Binary, msg); err != nil {
				res <- err
				return err
			}
		}
	})
	dialRaw(t, ts.addr, "") // and never reads
	select {
	case err := <-res:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write failed with %v, want a deadline error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("write did not time out")
	}
	c := ts.conn(t)
	if err := c.WriteMessage(Text, []byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("next write: %v, want the same error", err)
	}
	select {
	case <-c.closed():
	case <-time.After(10 * time.Second):
		t.Fatal("transport not closed after the failed write")
	}
}

// TestKeepalive: a peer that answers nothing is detected and dropped; a
// live one is pinged and kept.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.PingInterval, opts.PongTimeout = 30*time.Millisecond, 300*time.Millisecond
	ts := startServer(t, opts, nil)

	t.Run("dead-peer", func(t *testing.T) {
		dialRaw(t, ts.addr, "") // silent: reads nothing, answers nothing
		err := ts.serveErr(t)
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != StatusAbnormalClosure || !errors.Is(err, ErrPongTimeout) {
			t.Fatalf("server ended with %v, want 1006 wrapping ErrPongTimeout", err)
		}
	})
	t.Run("live-peer", func(t *testing.T) {
		// A generous pong timeout: the test answers from a loaded machine.
		opts := echoOpts()
		opts.PingInterval, opts.PongTimeout = 30*time.Millisecond, 5*time.Second
		ts := startServer(t, opts, nil)
		rc := dialRaw(t, ts.addr, "")
		pings := 0
		for pings < 5 {
			f, err := rc.readFrame(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if f.op != opPng {
				t.Fatalf("unexpected frame op %d", f.op)
			}
			pings++
			rc.send(fPong(string(f.payload)))
		}
		rc.send(fText("still here"))
		for {
			ev, err := rc.next(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ev.kind == "message" {
				if string(ev.data) != "still here" {
					t.Fatalf("got %v", ev)
				}
				break
			}
		}
		rc.closeHandshake()
	})
	t.Run("client-side", func(t *testing.T) {
		// Our client pinging a server that has stopped: it hangs up.
		addr := handshakeServer(t, func(nc net.Conn, r *http.Request) {
			io.WriteString(nc, answer101(r, ""))
			<-t.Context().Done() // never reads or writes again
		})
		c := dialTest(t, "ws://"+addr+"/", &DialOptions{Options: Options{PingInterval: 30 * time.Millisecond, PongTimeout: 200 * time.Millisecond}})
		within(t, 10*time.Second, "ReadMessage", func() {
			_, _, err := c.ReadMessage(nil)
			if !errors.Is(err, ErrPongTimeout) || CloseStatus(err) != StatusAbnormalClosure {
				t.Errorf("client ended with %v", err)
			}
		})
	})
}

// TestCloseHandshake: either side starts the close (§7.1.2), the other
// echoes it, both see a *CloseError with the code and who started it.
func TestCloseHandshake(t *testing.T) {
	t.Parallel()
	t.Run("client-starts", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, echoOpts(), nil)
		c := dialTest(t, ts.wsURL(), nil)
		within(t, 10*time.Second, "Close", func() {
			if err := c.Close(4000, "bye"); err != nil {
				t.Error(err)
			}
		})
		var ce *CloseError
		if err := ts.serveErr(t); !errors.As(err, &ce) || ce.Code != 4000 || ce.Reason != "bye" || !ce.Remote || ce.Err != nil {
			t.Fatalf("server saw %v, want the peer's clean close 4000", err)
		}
		_, _, err := c.ReadMessage(nil)
		if !errors.As(err, &ce) || ce.Code != 4000 || ce.Remote || ce.Err != nil {
			t.Fatalf("client reads %v, want its own clean close 4000", err)
		}
		if err := c.WriteMessage(Text, []byte("x")); !errors.Is(err, ErrClosed) && err == nil {
			t.Fatalf("write after close: %v", err)
		}
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("server-starts-while-client-reads", func(t *testing.T) {
		t.Parallel()
		closed := make(chan error, 1)
		ts := startServer(t, echoOpts(), func(c *Conn) error {
			err := c.Close(StatusGoingAway, "restart")
			closed <- err
			_, _, rerr := c.ReadMessage(nil)
			return rerr
		})
		c := dialTest(t, ts.wsURL(), nil)
		_, _, err := c.ReadMessage(nil)
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != StatusGoingAway || ce.Reason != "restart" || !ce.Remote {
			t.Fatalf("client reads %v", err)
		}
		if err := <-closed; err != nil {
			t.Fatalf("server Close: %v", err)
		}
		if err := ts.serveErr(t); !errors.As(err, &ce) || ce.Code != StatusGoingAway || ce.Remote || ce.Err != nil {
			t.Fatalf("server reads %v, want its own clean close", err)
		}
	})
	t.Run("both-at-once", func(t *testing.T) {
		t.Parallel()
		start := make(chan struct{})
		ts := startServer(t, echoOpts(), func(c *Conn) error {
			<-start
			return c.Close(4001, "server")
		})
		c := dialTest(t, ts.wsURL(), nil)
		close(start)
		within(t, 10*time.Second, "Close", func() {
			if err := c.Close(4002, "client"); err != nil {
				t.Error(err)
			}
		})
		if err := ts.serveErr(t); err != nil {
			t.Fatalf("server Close: %v", err)
		}
	})
	t.Run("no-status", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, echoOpts(), nil)
		c := dialTest(t, ts.wsURL(), nil)
		if err := c.Close(0, "ignored"); err != nil {
			t.Fatal(err)
		}
		if err := ts.serveErr(t); CloseStatus(err) != StatusNoStatusReceived {
			t.Fatalf("server saw %v, want 1005", err)
		}
	})
	t.Run("peer-vanishes", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, echoOpts(), nil)
		rc := dialRaw(t, ts.addr, "")
		rc.nc.Close()
		var ce *CloseError
		if err := ts.serveErr(t); !errors.As(err, &ce) || ce.Code != StatusAbnormalClosure || ce.Err == nil {
			t.Fatalf("server saw %v, want 1006 with the cause", err)
		}
	})
}

// TestCloseTimeout: a peer that never answers the close frame, or never
// reads it at all, costs at most CloseTimeout.
func TestCloseTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	t.Run("no-answer", func(t *testing.T) {
		t.Parallel()
		url, peers := rawServer(t, "")
		c := dialTest(t, url, &DialOptions{Options: Options{CloseTimeout: timeout}})
		p := nextPeer(t, peers)
		go io.Copy(io.Discard, p.nc) // reads, answers nothing
		within(t, 10*time.Second, "Close", func() {
			if err := c.Close(StatusNormalClosure, ""); err != nil {
				t.Error(err)
			}
		})
		_, _, err := c.ReadMessage(nil)
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != StatusNormalClosure || ce.Remote || ce.Err == nil {
			t.Fatalf("reads %v, want the local close with the timeout as cause", err)
		}
	})
	t.Run("blocked-writer", func(t *testing.T) {
		t.Parallel()
		// The peer reads nothing: a big write blocks, and Close must not
		// wait for it longer than CloseTimeout.
		url, peers := rawServer(t, "")
		c := dialTest(t, url, &DialOptions{Options: Options{CloseTimeout: timeout}})
		nextPeer(t, peers)
		writeDone := make(chan error, 1)
		go func() {
			big := make([]byte, 64<<20)
			writeDone <- c.WriteMessage(Binary, big)
		}()
		time.Sleep(50 * time.Millisecond) // let the write fill the buffers (not needed for correctness)
		within(t, 10*time.Second, "Close", func() { c.Close(StatusNormalClosure, "") })
		select {
		case err := <-writeDone:
			if err == nil {
				t.Fatal("the 64 MiB write to a peer that reads nothing succeeded")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the blocked write was not ended by Close")
		}
		_, _, err := c.ReadMessage(nil)
		if CloseStatus(err) == 0 {
			t.Fatalf("reads %v", err)
		}
	})
}

// TestCloseCodes: what Close may send (§7.4.1): codes that are only
// reported locally are refused, and the connection is closed anyway.
func TestCloseCodes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	for _, code := range []StatusCode{StatusAbnormalClosure, StatusTLSHandshake, 999, 1004, 1016, 2999, 5000} {
		c := dialTest(t, ts.wsURL(), nil)
		if err := c.Close(code, ""); err == nil {
			t.Errorf("Close(%d) succeeded", code)
		}
		if err := ts.serveErr(t); CloseStatus(err) != StatusAbnormalClosure {
			t.Errorf("Close(%d): server saw %v, want 1006 (no close frame)", code, err)
		}
	}
	long := strings.Repeat("é", 100) // 200 bytes: cut to 123 at a rune boundary
	for _, code := range []StatusCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999} {
		c := dialTest(t, ts.wsURL(), nil)
		if err := c.Close(code, long); err != nil {
			t.Errorf("Close(%d): %v", code, err)
		}
		var ce *CloseError
		if err := ts.serveErr(t); !errors.As(err, &ce) || ce.Code != code || len(ce.Reason) != 122 || !ce.Remote {
			t.Errorf("Close(%d): server saw %v", code, err)
		}
	}
	if s := CloseStatus(errors.New("x")); s != 0 {
		t.Errorf("CloseStatus of a plain error: %d", s)
	}
	if s := CloseStatus(fmt.Errorf("wrapped: %w", &CloseError{Code: 4001})); s != 4001 {
		t.Errorf("CloseStatus of a wrapped CloseError: %d", s)
	}
	if got := StatusCode(1001).String(); got != "1001 (going away)" {
		t.Errorf("String: %q", got)
	}
}

// TestReadErrorsAreCloseErrors: every way reading ends is a *CloseError
// with a code, also for the peer's protocol errors, and stays the same.
func TestReadErrorsAreCloseErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	cases := []struct {
		name  string
		bytes []byte
		code  StatusCode
	}{
		{"reserved opcode", encodeAll(rawFrame{fin: true, op: 3}), StatusProtocolError},
		{"bad utf8", encodeAll(fText("\xff")), StatusInvalidPayload},
		{"peer close 4444", encodeAll(fClose(4444, "x")), 4444},
		{"empty close", encodeAll(fClose(0, "")), StatusNoStatusReceived},
	}
	for _, tc := range cases {
		rc := dialRaw(t, ts.addr, "")
		rc.write(tc.bytes)
		rc.nc.Close() // the server need not linger for us
		err := ts.serveErr(t)
		if CloseStatus(err) != tc.code {
			t.Errorf("%s: %v, want code %d", tc.name, err, tc.code)
		}
	}
}

// TestIdleConnHoldsNoBuffer: between messages a connection holds neither a
// read nor a write buffer, on either side, compressed or not.
func TestIdleConnHoldsNoBuffer(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		ts := startServer(t, echoOpts(), nil)
		c := dialTest(t, ts.wsURL(), &DialOptions{Compression: compress})
		sc := ts.conn(t)
		for _, n := range []int{10, 5000, 100000} {
			if err := c.WriteMessage(Text, pattern(n)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.ReadMessage(nil); err != nil {
				t.Fatal(err)
			}
			// The client's reader returned: its state is ours to look at.
			if c.r.buf != nil || c.r.dict != nil {
				t.Fatalf("compress=%v, after %d bytes: client holds a %d-byte read buffer", compress, n, cap(c.r.buf))
			}
		}
		// The server's echo loop is parked in ReadMessage; its buffer was
		// released before it wrote the echo we read (happens-before via
		// the socket is invisible to the race detector, so look through
		// the read lock).
		c.Close(StatusNormalClosure, "")
		ts.serveErr(t)
		sc.readMu.Lock()
		buf := sc.r.buf
		sc.readMu.Unlock()
		if buf != nil {
			t.Fatalf("server holds a read buffer after the close")
		}
		sc.writeMu.Lock()
		vec := sc.w.vec
		sc.writeMu.Unlock()
		for _, b := range vec {
			if b != nil {
				t.Fatal("server writer keeps a reference to a written frame")
			}
		}
	}
	// A server parked in ReadMessage: ask it, from its own goroutine, what
	// it held the moment before it blocked.
	held := make(chan int, 4)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		for {
			held <- cap(c.r.buf) // readMu is free: this goroutine is the reader
			if _, _, err := c.ReadMessage(nil); err != nil {
				return err
			}
		}
	})
	c := dialTest(t, ts.wsURL(), nil)
	for range 3 {
		if n := <-held; n != 0 {
			t.Fatalf("idle server connection holds a %d-byte read buffer", n)
		}
		c.WriteMessage(Binary, make([]byte, 3000))
	}
}

// TestReadLimitChange: SetReadLimit applies to the next frame.
func TestReadLimitChange(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		c.SetReadLimit(100)
		if _, _, err := c.ReadMessage(nil); err != nil {
			return err
		}
		_, _, err := c.ReadMessage(nil)
		return err
	})
	rc := dialRaw(t, ts.addr, "")
	rc.send(fBin(make([]byte, 100)), fBin(make([]byte, 101)))
	rc.expectClose(1009)
	if err := ts.serveErr(t); !errors.Is(err, ErrReadLimit) || CloseStatus(err) != StatusMessageTooBig {
		t.Fatalf("server: %v", err)
	}
}

// TestPingPayload: Ping refuses payloads control frames cannot carry, and a
// peer's pong with the payload comes back.
func TestPingPayload(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	c := dialTest(t, ts.wsURL(), nil)
	if err := c.Ping(make([]byte, 126)); err == nil {
		t.Fatal("126-byte ping accepted")
	}
	if err := c.Ping(make([]byte, 125)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(MessageType(opPing), nil); err == nil {
		t.Fatal("WriteMessage with a control opcode accepted")
	}
}

// TestUTF8Validator compares the incremental validator, fed in every
// split, with utf8.Valid.
func TestUTF8Validator(t *testing.T) {
	t.Parallel()
	inputs := []string{
		"", "a", "κόσμε", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
		"\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xed\x9f\xbf", "\xed\xa0\x80", "\xef\xbf\xbf",
		"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xc2", "\xe1\x80", "\xf1\x80\x80", "\x80", "\xbf",
		"\xfe", "\xff", "a\xf4\x90", "héllo wörld 🙂 𝄞", strings.Repeat("ab🙂", 6),
	}
	for _, in := range inputs {
		want := validUTF8(in)
		for cut1 := 0; cut1 <= len(in); cut1++ {
			for cut2 := cut1; cut2 <= len(in); cut2++ {
				var v utf8Validator
				ok := v.write([]byte(in[:cut1])) && v.write([]byte(in[cut1:cut2])) && v.write([]byte(in[cut2:])) && v.complete()
				if ok != want {
					t.Fatalf("%q split at %d,%d: %v, want %v", in, cut1, cut2, ok, want)
				}
			}
		}
	}
}

func validUTF8(s string) bool { return utf8.ValidString(s) }
