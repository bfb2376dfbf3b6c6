//go:build linux

package ws

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// parkedEcho serves a connection the way chatd's sessions do: it parks
// the connection between messages, so that no goroutine of it exists
// while it is idle, and echoes each message from the goroutine Park
// resumes. resumes counts the resumptions; done gets the error that ended
// the connection.
type parkedEcho struct {
	c       *Conn
	resumes chan struct{}
	done    chan error
}

func startParkedEcho(c *Conn) *parkedEcho {
	e := &parkedEcho{c: c, resumes: make(chan struct{}, 100), done: make(chan error, 1)}
	e.loop()
	return e
}

// loop is the resume function, and the first call.
func (e *parkedEcho) loop() {
	for {
		if e.c.Park(e.resumed) {
			return
		}
		typ, msg, err := e.c.ReadMessage(nil)
		if err != nil {
			e.done <- err
			return
		}
		if err := e.c.WriteMessage(typ, msg); err != nil {
			e.done <- err
			return
		}
	}
}

func (e *parkedEcho) resumed() {
	e.resumes <- struct{}{}
	e.loop()
}

// parkedServer starts a server whose handler parks each connection and
// returns at once (unlike startServer's, which closes the connection when
// its serve function returns); the test gets the parked echo of each.
func parkedServer(t *testing.T, opts *AcceptOptions) (addr string, echoes chan *parkedEcho) {
	t.Helper()
	echoes = make(chan *parkedEcho, 8)
	var mu sync.Mutex
	var conns []*Conn
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, opts)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		echoes <- startParkedEcho(c)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.CloseNow()
		}
	})
	return srv.Listener.Addr().String(), echoes
}

func nextEcho(t *testing.T, echoes chan *parkedEcho) *parkedEcho {
	t.Helper()
	select {
	case e := <-echoes:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// goroutineOf returns the stack of a goroutine running fn, if any.
func goroutineOf(fn string) string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) && !strings.Contains(g, "goroutineOf") {
			return g
		}
	}
	return ""
}

func endedWith(t *testing.T, e *parkedEcho) error {
	t.Helper()
	select {
	case err := <-e.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the parked connection was never resumed with its end")
		return nil
	}
}

// TestParkIdleHasNoGoroutine: a parked connection has no goroutine; a ping
// is answered while it stays parked, without resuming the reader; a
// message resumes it, on a new goroutine, which reads it; the peer's close
// resumes it with the close.
func TestParkIdleHasNoGoroutine(t *testing.T) {
	t.Parallel()
	addr, echoes := parkedServer(t, echoOpts())
	rc := dialRaw(t, addr, "")
	e := nextEcho(t, echoes)

	if g := goroutineOf("(*parkedEcho)"); g != "" {
		t.Fatalf("an idle parked connection has a goroutine:\n%s", g)
	}
	rc.send(fPing("hi"))
	if ev, err := rc.next(5 * time.Second); err != nil || ev.kind != "pong" || string(ev.data) != "hi" {
		t.Fatalf("got %v, %v; want pong hi", ev, err)
	}
	rc.send(fText("one"), fText("two")) // both at once: one resumption
	for _, want := range []string{"one", "two"} {
		if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != want {
			t.Fatalf("got %v, %v; want %q", ev, err, want)
		}
	}
	rc.send(fPing("again"))
	if ev, err := rc.next(5 * time.Second); err != nil || ev.kind != "pong" {
		t.Fatalf("got %v, %v; want a pong", ev, err)
	}
	if n := len(e.resumes); n != 1 {
		t.Errorf("resumed %d times for one burst of messages and two pings, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for goroutineOf("(*parkedEcho)") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the connection has a goroutine after its messages:\n%s", goroutineOf("(*parkedEcho)"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A message in pieces: the resumed reader waits for the rest.
	rc.send(frag(opTxt, false, []byte("hel")))
	time.Sleep(50 * time.Millisecond)
	rc.send(frag(opCont, true, []byte("lo")))
	if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != "hello" {
		t.Fatalf("got %v, %v; want hello", ev, err)
	}
	// A frame whose payload comes after its header: the message has
	// started, so the reader reads on rather than parking again (which
	// would resume it at once, over and over).
	before := len(e.resumes)
	frame := fText("payload later").encode()
	rc.write(frame[:6]) // header and masking key
	time.Sleep(100 * time.Millisecond)
	rc.write(frame[6:])
	if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != "payload later" {
		t.Fatalf("got %v, %v; want the split frame", ev, err)
	}
	if n := len(e.resumes) - before; n != 1 {
		t.Errorf("resumed %d times for one message, want 1", n)
	}
	rc.send(fClose(1000, "bye"))
	if code := CloseStatus(endedWith(t, e)); code != StatusNormalClosure {
		t.Fatalf("ended with %v, want 1000", code)
	}
}

// TestParkClosedWhileParked: closing a parked connection from elsewhere
// (a drain, a failed write) resumes its reader, which sees the end.
func TestParkClosedWhileParked(t *testing.T) {
	t.Parallel()
	addr, echoes := parkedServer(t, echoOpts())
	dialRaw(t, addr, "")
	e := nextEcho(t, echoes)
	e.c.CloseNow()
	if err := endedWith(t, e); err == nil {
		t.Fatal("resumed without an error")
	}
	// Parking a closed connection does not park it.
	if e.c.Park(func() { t.Error("resumed a connection that was not parked") }) {
		t.Fatal("a closed connection was parked")
	}
}

// TestParkClosedUnderneath: a parked connection whose net.Conn is closed
// behind its Conn's back (as a test that simulates a crash does) is still
// resumed, within the parker's sweep interval, and sees the error.
func TestParkClosedUnderneath(t *testing.T) {
	t.Parallel()
	addr, echoes := parkedServer(t, echoOpts())
	dialRaw(t, addr, "")
	e := nextEcho(t, echoes)
	e.c.nc.Close()
	if err := endedWith(t, e); err == nil {
		t.Fatal("resumed without an error")
	}
}

// TestParkKeepalive: keepalive works on parked connections: a peer that
// answers pings stays, one that answers nothing is closed after the pong
// timeout, and its parked reader learns it.
func TestParkKeepalive(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.PingInterval = 100 * time.Millisecond
	opts.PongTimeout = 300 * time.Millisecond
	addr, echoes := parkedServer(t, opts)

	live := dialTest(t, "ws://"+addr+"/", nil) // its reader answers pings
	liveEcho := nextEcho(t, echoes)
	go func() {
		for {
			if _, _, err := live.ReadMessage(nil); err != nil {
				return
			}
		}
	}()
	mute := dialRaw(t, addr, "")
	muteEcho := nextEcho(t, echoes)
	_ = mute

	if err := endedWith(t, muteEcho); !errors.Is(err, ErrPongTimeout) {
		t.Fatalf("mute peer: ended with %v, want the pong timeout", err)
	}
	select {
	case err := <-liveEcho.done:
		t.Fatalf("live peer dropped: %v", err)
	case <-time.After(time.Second):
	}
	if err := live.WriteMessage(Text, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	live.Close(StatusNormalClosure, "")
	if code := CloseStatus(endedWith(t, liveEcho)); code != StatusNormalClosure {
		t.Fatalf("live peer ended with %v, want 1000", code)
	}
}

// TestParkNotPossible: a connection with a message buffered, or one that
// is not TCP, is not parked: Park answers false and the caller reads as
// usual.
func TestParkNotPossible(t *testing.T) {
	t.Parallel()
	done := make(chan bool, 1)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		if _, _, err := c.ReadMessage(nil); err != nil {
			return err
		}
		done <- c.Park(func() {})
		for {
			if _, _, err := c.ReadMessage(nil); err != nil {
				return err
			}
		}
	})
	rc := dialRaw(t, ts.addr, "")
	rc.send(fText("first"), fText("second")) // one write: the second is buffered
	select {
	case parked := <-done:
		if parked {
			t.Fatal("parked with a message buffered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not report")
	}
	rc.send(fClose(1000, ""))
	ts.serveErr(t)

	// A connection over a pipe has no socket to watch.
	local, peer := net.Pipe()
	defer peer.Close()
	c := newConn(local, true, nil, (&Options{}).withDefaults(), "", nil)
	defer c.CloseNow()
	if c.Park(func() { t.Error("resumed a pipe connection") }) {
		t.Fatal("a pipe connection was parked")
	}
}
