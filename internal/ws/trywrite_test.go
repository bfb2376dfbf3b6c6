package ws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// parkedIn waits until the goroutine whose stack contains marker is
// parked with want in its stack, and reports whether it got there within
// wait; every stack it saw last is returned for the failure message.
func parkedIn(marker, want string, wait time.Duration) (bool, string) {
	deadline := time.Now().Add(wait)
	var last string
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, marker) && strings.Contains(g, "[IO wait") {
				last = g
				if strings.Contains(g, want) {
					return true, g
				}
			}
		}
		if time.Now().After(deadline) {
			return false, last
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleAfterControlFrameHoldsNoBuffer: a reader that handled a ping
// (or any control frame) and waits for the next frame waits without a
// read buffer, in readFresh, not in a read into the buffer it had. Every
// idle connection is pinged by keepalive, so this is what an idle
// connection costs most of its life.
func TestIdleAfterControlFrameHoldsNoBuffer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), func(c *Conn) error { return idleReaderAfterPing(c) })
	rc := dialRaw(t, ts.addr, "")
	rc.send(fPing("are you there"))
	ev, err := rc.next(5 * time.Second)
	if err != nil || ev.kind != "pong" {
		t.Fatalf("got %v, %v; want the pong", ev, err)
	}
	if ok, stack := parkedIn("idleReaderAfterPing", "readFresh", 10*time.Second); !ok {
		t.Fatalf("the reader waits holding its buffer:\n%s", stack)
	}
	rc.send(fText("bye"))
	if ev, err := rc.next(5 * time.Second); err != nil || ev.kind != "message" {
		t.Fatalf("got %v, %v; want the echo", ev, err)
	}
	rc.send(fClose(1000, ""))
	ts.serveErr(t)
}

// idleReaderAfterPing is a named serve function, so that the test finds
// its goroutine's stack.
func idleReaderAfterPing(c *Conn) error { return echoServe(c) }

// TestWaitMessage: WaitMessage returns once a data message starts, after
// handling the control frames before it; ReadMessage then reads that
// message; at the end both report the same close.
func TestWaitMessage(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		for {
			if err := c.WaitMessage(); err != nil {
				_, _, rerr := c.ReadMessage(nil)
				if rerr != err {
					got <- "ReadMessage after WaitMessage failed: " + rerr.Error()
				}
				return err
			}
			if err := c.WaitMessage(); err != nil { // twice is harmless
				return err
			}
			_, msg, err := c.ReadMessage(make([]byte, 0, 8))
			if err != nil {
				return err
			}
			got <- string(msg)
		}
	})
	rc := dialRaw(t, ts.addr, "")
	rc.send(fPing("a"), frag(opTxt, false, []byte("hel")), fPing("b"), frag(opCont, true, []byte("lo")))
	for _, want := range []string{"pong", "pong"} {
		if ev, err := rc.next(5 * time.Second); err != nil || ev.kind != want {
			t.Fatalf("got %v, %v; want %s", ev, err, want)
		}
	}
	if m := <-got; m != "hello" {
		t.Fatalf("read %q, want hello", m)
	}
	rc.send(fText("second"))
	if m := <-got; m != "second" {
		t.Fatalf("read %q, want second", m)
	}
	rc.send(fClose(1000, "done"))
	if code := CloseStatus(ts.serveErr(t)); code != StatusNormalClosure {
		t.Fatalf("server ended with %v, want 1000", code)
	}
	select {
	case m := <-got:
		t.Fatal(m)
	default:
	}
}

// tryServer starts a server whose connection the test drives itself; the
// handler holds it until the test ends.
func tryServer(t *testing.T, opts *AcceptOptions) (*Conn, *rawConn) {
	t.Helper()
	done := make(chan struct{})
	ts := startServer(t, opts, func(c *Conn) error {
		<-done
		return nil
	})
	t.Cleanup(func() { close(done) })
	rc := dialRaw(t, ts.addr, "")
	return ts.conn(t), rc
}

// TestTryWritePrepared: on a server TCP connection a batch goes out at
// once, in order, with no write waiting; with a peer that stopped reading
// the socket takes part, the rest stays pending (and nothing more is
// taken) until Flush writes it, every frame whole and in order.
func TestTryWritePrepared(t *testing.T) {
	t.Parallel()
	sc, rc := tryServer(t, echoOpts())

	small := []*PreparedMessage{NewPreparedMessage(Text, []byte("one")), NewPreparedMessage(Text, []byte("two"))}
	for _, batch := range [][]*PreparedMessage{small[:1], small, nil} {
		taken, complete, err := sc.TryWritePrepared(batch...)
		if !taken || !complete || err != nil {
			t.Fatalf("batch of %d to a reading peer: taken %v complete %v err %v", len(batch), taken, complete, err)
		}
	}
	for _, want := range []string{"one", "one", "two"} {
		if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != want {
			t.Fatalf("got %v, %v; want %q", ev, err, want)
		}
	}

	// Nobody reads now: fill the socket with numbered messages of three
	// sizes (a large single frame, a small batch, a large batch).
	var sent [][]byte
	msg := func(i, size int) *PreparedMessage {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		copy(p, []byte(strings.Repeat("0", 8)))
		p[0] = byte(i)
		sent = append(sent, p)
		return NewPreparedMessage(Binary, p)
	}
	pending := false
	for i := 0; !pending && i < 100000; i++ {
		var batch []*PreparedMessage
		switch i % 3 {
		case 0:
			batch = []*PreparedMessage{msg(i, 100<<10)}
		case 1:
			batch = []*PreparedMessage{msg(i, 1000), msg(i, 2000)}
		default:
			batch = []*PreparedMessage{msg(i, 20<<10), msg(i, 30<<10)}
		}
		taken, complete, err := sc.TryWritePrepared(batch...)
		if err != nil || !taken {
			t.Fatalf("write %d: taken %v err %v, before anything was pending", i, taken, err)
		}
		pending = !complete
	}
	if !pending {
		t.Fatal("the socket never filled up")
	}
	if taken, _, err := sc.TryWritePrepared(NewPreparedMessage(Text, []byte("late"))); taken || err != nil {
		t.Fatalf("with bytes pending: taken %v err %v, want not taken", taken, err)
	}
	// The peer reads again; Flush completes the pending frames.
	type result struct {
		frames [][]byte
		err    error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		for len(r.frames) < len(sent) {
			f, err := rc.readFrame(10 * time.Second)
			if err != nil {
				r.err = err
				break
			}
			r.frames = append(r.frames, f.payload)
		}
		res <- r
	}()
	if err := sc.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("after %d of %d frames: %v", len(r.frames), len(sent), r.err)
	}
	for i := range sent {
		if !bytes.Equal(r.frames[i], sent[i]) {
			t.Fatalf("frame %d differs (%d bytes, want %d)", i, len(r.frames[i]), len(sent[i]))
		}
	}
	if err := sc.Flush(); err != nil {
		t.Fatalf("Flush with nothing pending: %v", err)
	}
	sc.writeMu.Lock()
	held := sc.w.pendBuf != nil || sc.w.pend != nil
	sc.writeMu.Unlock()
	if held {
		t.Fatal("the connection keeps what it used while pending")
	}
}

// TestTryWritePreparedNeverWaits: TryWritePrepared does not wait for a
// write in progress, and a client connection (which masks every frame)
// takes nothing; both answer not taken.
func TestTryWritePreparedNeverWaits(t *testing.T) {
	t.Parallel()
	sc, rc := tryServer(t, echoOpts())
	pm := NewPreparedMessage(Text, []byte("x"))
	sc.writeMu.Lock() // a write in progress
	taken, _, err := sc.TryWritePrepared(pm)
	sc.writeMu.Unlock()
	if taken || err != nil {
		t.Fatalf("during another write: taken %v err %v", taken, err)
	}
	if err := sc.WritePrepared(pm); err != nil {
		t.Fatal(err)
	}
	if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != "x" {
		t.Fatalf("got %v, %v", ev, err)
	}

	ts := startServer(t, echoOpts(), nil)
	c := dialTest(t, ts.wsURL(), nil)
	if taken, _, err := c.TryWritePrepared(pm); taken || err != nil {
		t.Fatalf("client connection: taken %v err %v", taken, err)
	}
	c.Close(StatusNormalClosure, "")

	// After the connection failed, the error is returned.
	sc.CloseNow()
	if _, _, err := sc.TryWritePrepared(pm); err == nil {
		t.Fatal("no error on a closed connection")
	}
}

// TestWaitedWriteLeavesNoDeadline: a write that had to wait sets the
// write deadline for its wait only; a write long after it, which does not
// wait, is not failed by that deadline.
func TestWaitedWriteLeavesNoDeadline(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.WriteTimeout = 2 * time.Second
	sc, rc := tryServer(t, opts)
	// Fill the socket, then drain it while a write waits.
	big := make([]byte, 256<<10)
	for {
		taken, complete, err := sc.TryWritePrepared(NewPreparedMessage(Binary, big))
		if err != nil || !taken {
			t.Fatalf("taken %v err %v", taken, err)
		}
		if !complete {
			break
		}
	}
	go io.Copy(io.Discard, rc.br)
	if err := sc.WriteMessage(Binary, big); err != nil {
		t.Fatalf("waiting write: %v", err)
	}
	time.Sleep(opts.WriteTimeout + 500*time.Millisecond)
	if err := sc.WriteMessage(Text, []byte("later")); err != nil {
		t.Fatalf("a write after the deadline would have passed: %v", err)
	}
	if taken, complete, err := sc.TryWritePrepared(NewPreparedMessage(Text, []byte("later"))); !taken || !complete || err != nil {
		t.Fatalf("TryWritePrepared after the deadline would have passed: taken %v complete %v err %v", taken, complete, err)
	}
	var ne net.Error
	if err := sc.WriteMessage(Text, nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatal(err)
	}
}

// TestPeerCloseNeedsNoLinger: after the peer's close frame, with nothing
// left unread, the server answers and closes the TCP connection at once
// (first, as RFC 6455 §7.1.1 asks), instead of lingering for the peer's
// FIN; the peer gets the echo and then the end of the stream. With bytes
// after the close frame (a protocol violation), it still lingers, so that
// the echo is not destroyed by a reset.
func TestPeerCloseNeedsNoLinger(t *testing.T) {
	t.Parallel()
	for _, junk := range []bool{false, true} {
		ts := startServer(t, echoOpts(), nil)
		rc := dialRaw(t, ts.addr, "")
		frames := encodeAll(fClose(1000, "bye"))
		if junk {
			frames = append(frames, encodeAll(fText("after the close"))...)
		}
		rc.write(frames)
		ev, err := rc.next(5 * time.Second)
		if err != nil || ev.kind != "close" {
			t.Fatalf("junk=%v: got %v, %v; want the close echo", junk, ev, err)
		}
		if !junk {
			// The peer keeps its side open: only a server that does
			// not linger (a second) is done by now.
			within(t, 900*time.Millisecond, "the server's end of the connection", func() { ts.serveErr(t) })
		} else {
			ts.serveErr(t)
		}
		rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := rc.br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("junk=%v: after the echo: %d bytes, %v; want EOF", junk, n, err)
		}
	}
}
