package ws

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// TestMain fails the run when a test left goroutines behind: a handler
// still reading, a keepalive timer still armed, a lingering close that
// never ended.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitGoroutines(5 * time.Second); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked %d goroutines:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines waits until no goroutine of interest is left, and returns
// the stacks of those still there when wait ran out.
func waitGoroutines(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		leaked := interestingGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// interestingGoroutines returns the stacks of goroutines that run this
// package's code or network code (servers, connections, TLS).
func interestingGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "interestingGoroutines") {
			continue
		}
		if strings.Contains(g, "chatd/internal/ws.") || strings.Contains(g, "net/http.") ||
			strings.Contains(g, "net.(*") || strings.Contains(g, "crypto/tls.") {
			out = append(out, g)
		}
	}
	return out
}

// echoServe is the loop of cmd/wsecho: every message goes back with its
// type, the read buffer reused. It returns the error that ended it.
func echoServe(c *Conn) error {
	var buf []byte
	for {
		typ, msg, err := c.ReadMessage(buf[:0])
		if err != nil {
			return err
		}
		if err := c.WriteMessage(typ, msg); err != nil {
			return err
		}
		if cap(msg) <= 1<<20 {
			buf = msg
		} else {
			buf = nil
		}
	}
}

// testServer is an httptest server running a WebSocket handler; accepted
// connections and their final read errors are reported on channels.
type testServer struct {
	*httptest.Server
	addr  string
	conns chan *Conn // every accepted connection, when the test wants them
	errs  chan error // the error that ended each echo loop
	wg    sync.WaitGroup
}

// startServer starts a server whose handler accepts with opts and runs
// serve (echo when nil) on the connection.
func startServer(t testing.TB, opts *AcceptOptions, serve func(*Conn) error) *testServer {
	t.Helper()
	ts := &testServer{conns: make(chan *Conn, 64), errs: make(chan error, 64)}
	if serve == nil {
		serve = echoServe
	}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, opts)
		if err != nil {
			return
		}
		ts.wg.Add(1)
		defer ts.wg.Done()
		select {
		case ts.conns <- c:
		default:
		}
		err = serve(c)
		c.CloseNow()
		select {
		case ts.errs <- err:
		default:
		}
	}))
	ts.addr = ts.Listener.Addr().String()
	t.Cleanup(ts.Close)
	return ts
}

func (ts *testServer) wsURL() string { return "ws://" + ts.addr + "/" }

// conn returns the next accepted server connection.
func (ts *testServer) conn(t testing.TB) *Conn {
	t.Helper()
	select {
	case c := <-ts.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// serveErr returns the error that ended the next handler.
func (ts *testServer) serveErr(t testing.TB) error {
	t.Helper()
	select {
	case err := <-ts.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not end")
		return nil
	}
}

// echoOpts are the options of cmd/wsecho.
func echoOpts() *AcceptOptions {
	return &AcceptOptions{
		Options:     Options{ReadLimit: 64 << 20},
		Compression: true,
		CheckOrigin: func(*http.Request) bool { return true },
	}
}

// dialTest dials url and closes the connection at the end of the test.
func dialTest(t testing.TB, url string, opts *DialOptions) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// listenRaw starts a TCP listener whose connections are handled by serve,
// for playing a misbehaving server by hand.
func listenRaw(t testing.TB, serve func(nc net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range open {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// within fails the test when f does not return within d.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

// pattern returns n bytes of a repeating, compressible but not trivial
// pattern (valid UTF-8).
func pattern(n int) []byte {
	const src = "The quick brown fox jumps over the lazy dog; κόσμε 0123456789\n"
	b := make([]byte, 0, n+len(src))
	for len(b) < n {
		b = append(b, src...)
	}
	b = b[:n]
	// Do not end inside a multi-byte rune.
	i := len(b) - 1
	for i > 0 && !utf8.RuneStart(b[i]) {
		i--
	}
	if i >= 0 && !utf8.Valid(b[i:]) {
		for j := i; j < len(b); j++ {
			b[j] = '.'
		}
	}
	return b
}

func containsCode(codes []StatusCode, c StatusCode) bool { return slices.Contains(codes, c) }
