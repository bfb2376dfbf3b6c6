package ws

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// upgradeRequest is a valid upgrade request (the RFC's sample key).
func upgradeRequest() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/chat", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key", rfcKey)
	r.Header.Set("Sec-WebSocket-Version", "13")
	return r
}

// TestAcceptHandshakeTable: every rule of RFC 6455 §4.2.1 that Accept
// checks, with the status each failure is answered with (0: accepted).
func TestAcceptHandshakeTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		edit   func(r *http.Request)
		status int
	}{
		{"valid", func(r *http.Request) {}, 0},
		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, 405},
		{"HEAD", func(r *http.Request) { r.Method = http.MethodHead }, 405},
		{"HTTP/1.0", func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0 }, 400},
		{"no Connection", func(r *http.Request) { r.Header.Del("Connection") }, 400},
		{"Connection keep-alive", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 400},
		{"Connection list", func(r *http.Request) { r.Header.Set("Connection", "keep-alive, Upgrade") }, 0},
		{"Connection lower case", func(r *http.Request) { r.Header.Set("Connection", "upgrade") }, 0},
		{"Connection over two lines", func(r *http.Request) {
			r.Header["Connection"] = []string{"keep-alive", "UPGRADE"}
		}, 0},
		{"Connection upgraded (not the token)", func(r *http.Request) { r.Header.Set("Connection", "upgraded") }, 400},
		{"no Upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 400},
		{"Upgrade h2c", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 400},
		{"Upgrade mixed case", func(r *http.Request) { r.Header.Set("Upgrade", "WebSocket") }, 0},
		{"Upgrade list", func(r *http.Request) { r.Header.Set("Upgrade", "foo/2, websocket") }, 0},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, 426},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"version 14", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "14") }, 426},
		{"two versions", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Version", "8") }, 426},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"empty key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "") }, 400},
		{"key of 15 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA") }, 400},
		{"key of 17 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA=") }, 400},
		{"key not base64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "not base64 at all!!!!!!!") }, 400},
		{"key with non-zero padding bits", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR==") }, 400},
		{"key base64url", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "____________________AA==") }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", rfcKey) }, 400},
		{"origin of another host", func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }, 403},
		{"origin null", func(r *http.Request) { r.Header.Set("Origin", "null") }, 403},
		{"origin same host", func(r *http.Request) { r.Header.Set("Origin", "https://EXAMPLE.com") }, 0},
	}
	for _, tc := range tests {
		r := upgradeRequest()
		tc.edit(r)
		w := httptest.NewRecorder()
		// httptest.ResponseRecorder cannot be hijacked: an accepted
		// request fails after the checks, with a plain error.
		_, err := Accept(w, r, nil)
		var herr *HandshakeError
		isHandshake := errors.As(err, &herr)
		if tc.status == 0 {
			if isHandshake {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			if CheckRequest(r) != nil && r.Header.Get("Origin") == "" {
				t.Errorf("%s: CheckRequest refuses", tc.name)
			}
			continue
		}
		if !isHandshake || herr.Status != tc.status || w.Code != tc.status {
			t.Errorf("%s: err %v, answered %d; want %d", tc.name, err, w.Code, tc.status)
			continue
		}
		if herr.Message == "" || !strings.Contains(w.Body.String(), herr.Message) {
			t.Errorf("%s: body %q does not say why (%q)", tc.name, w.Body.String(), herr.Message)
		}
		if tc.status == 426 && w.Header().Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("%s: 426 without Sec-WebSocket-Version: 13", tc.name)
		}
		if tc.status == 405 && w.Header().Get("Allow") != http.MethodGet {
			t.Errorf("%s: 405 without Allow: GET", tc.name)
		}
		// CheckRequest agrees, except on the origin it does not check.
		if ch := CheckRequest(r); tc.status == 403 {
			if ch != nil {
				t.Errorf("%s: CheckRequest checks the origin: %v", tc.name, ch)
			}
		} else if ch == nil || ch.Status != tc.status {
			t.Errorf("%s: CheckRequest = %v, want %d", tc.name, ch, tc.status)
		}
	}
}

// TestAcceptOriginHook: CheckOrigin replaces the same-origin default, and
// Reject writes the refusal.
func TestAcceptOriginHook(t *testing.T) {
	t.Parallel()
	var asked string
	opts := &AcceptOptions{
		CheckOrigin: func(r *http.Request) bool { asked = r.Header.Get("Origin"); return asked == "https://good.example" },
		Reject: func(w http.ResponseWriter, r *http.Request, err *HandshakeError) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(err.Status)
			io.WriteString(w, `{"error":"forbidden"}`)
		},
	}
	r := upgradeRequest()
	r.Header.Set("Origin", "https://bad.example")
	w := httptest.NewRecorder()
	if _, err := Accept(w, r, opts); err == nil || w.Code != 403 || w.Body.String() != `{"error":"forbidden"}` {
		t.Fatalf("bad origin: err %v, %d %q", err, w.Code, w.Body.String())
	}
	if asked != "https://bad.example" {
		t.Fatalf("hook saw origin %q", asked)
	}
	r.Header.Set("Origin", "https://good.example")
	var herr *HandshakeError
	if _, err := Accept(httptest.NewRecorder(), r, opts); errors.As(err, &herr) {
		t.Fatalf("good origin refused: %v", err)
	}
}

// TestSelectSubprotocol: the server's preference among what the client
// offered; never one that was not offered.
func TestSelectSubprotocol(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		offered []string
		opts    AcceptOptions
		want    string
	}{
		{"nothing offered", nil, AcceptOptions{Subprotocols: []string{"chat"}}, ""},
		{"offered, server speaks none", []string{"chat"}, AcceptOptions{}, ""},
		{"match", []string{"chat"}, AcceptOptions{Subprotocols: []string{"chat"}}, "chat"},
		{"server preference wins", []string{"a", "b"}, AcceptOptions{Subprotocols: []string{"b", "a"}}, "b"},
		{"no match", []string{"x"}, AcceptOptions{Subprotocols: []string{"chat"}}, ""},
		{"case-sensitive", []string{"Chat"}, AcceptOptions{Subprotocols: []string{"chat"}}, ""},
		{"hook chooses an offer", []string{"access_token.abc", "chat"}, AcceptOptions{SelectSubprotocol: func(o []string) string { return o[1] }}, "chat"},
		{"hook answer not offered", []string{"chat"}, AcceptOptions{SelectSubprotocol: func([]string) string { return "other" }}, ""},
		{"hook declines", []string{"chat"}, AcceptOptions{SelectSubprotocol: func([]string) string { return "" }}, ""},
	}
	for _, tc := range tests {
		if got := selectSubprotocol(tc.offered, &tc.opts); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestAcceptResponse reads the 101 answer on the wire: accept key,
// subprotocol, extension, extra headers (without header injection).
func TestAcceptResponse(t *testing.T) {
	t.Parallel()
	opts := &AcceptOptions{
		Subprotocols: []string{"chat"},
		Compression:  true,
		ResponseHeader: http.Header{
			"Set-Cookie":               {"a=b"},
			"X-Evil":                   {"x\r\nInjected: yes"},
			"Bad Name":                 {"v"},
			"X-Multi-Line":             {"1", "2"},
			"Sec-WebSocket-Protocol":   {"forged"},
			"sec-websocket-extensions": {"x-forged"},
			"Connection":               {"close"},
		},
	}
	ts := startServer(t, opts, nil)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, handshakeRequest(ts.addr, "Sec-WebSocket-Protocol: x, chat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"status", resp.Status, "101 Switching Protocols"},
		{"Upgrade", resp.Header.Get("Upgrade"), "websocket"},
		{"Connection", resp.Header.Get("Connection"), "Upgrade"},
		{"Sec-WebSocket-Accept", resp.Header.Get("Sec-WebSocket-Accept"), rfcAccept},
		{"Sec-WebSocket-Protocol", resp.Header.Get("Sec-WebSocket-Protocol"), "chat"},
		{"Sec-WebSocket-Extensions", resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"Set-Cookie", resp.Header.Get("Set-Cookie"), "a=b"},
		{"X-Evil", resp.Header.Get("X-Evil"), "xInjected: yes"},
		{"Injected", resp.Header.Get("Injected"), ""},
		{"X-Multi-Line", strings.Join(resp.Header.Values("X-Multi-Line"), ","), "1,2"},
		{"one Sec-WebSocket-Protocol", strings.Join(resp.Header.Values("Sec-WebSocket-Protocol"), ","), "chat"},
		{"one Sec-WebSocket-Extensions", fmt.Sprint(len(resp.Header.Values("Sec-WebSocket-Extensions"))), "1"},
		{"one Connection", strings.Join(resp.Header.Values("Connection"), ","), "Upgrade"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	c := ts.conn(t)
	if c.Subprotocol() != "chat" || !c.Compressed() {
		t.Errorf("server conn: subprotocol %q, compressed %v", c.Subprotocol(), c.Compressed())
	}
}

// TestAcceptAKey is the example of RFC 6455 §1.3.
func TestAcceptKey(t *testing.T) {
	if got := AcceptKey(rfcKey); got != rfcAccept {
		t.Fatalf("AcceptKey(%q) = %q, want %q", rfcKey, got, rfcAccept)
	}
}

// TestAcceptHijackUnsupported: a ResponseWriter that cannot be hijacked
// (HTTP/2, a wrapper that hides it) is a clear error, not a panic.
func TestAcceptHijackUnsupported(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	_, err := Accept(w, upgradeRequest(), nil)
	if err == nil || !strings.Contains(err.Error(), "hijack") || w.Code != http.StatusInternalServerError {
		t.Fatalf("err %v, status %d", err, w.Code)
	}
}

// writeCounter is a net.Conn that counts the server's writes.
type writeCounter struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// countingListener wraps every accepted connection in a writeCounter.
type countingListener struct {
	net.Listener
	conns chan *writeCounter
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &writeCounter{Conn: nc}
	select {
	case l.conns <- wc:
	default:
	}
	return wc, nil
}

// greetingServer accepts with AcceptGreeting, the connection wrapped in a
// writeCounter when count is set (net/http hijacks the listener's
// net.Conn, so the wrapper sees every write of the handshake), and echoes.
func greetingServer(t *testing.T, opts *AcceptOptions, greeting []byte, count bool) (addr string, wcs chan *writeCounter) {
	t.Helper()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptGreeting(w, r, opts, greeting)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_ = echoServe(c)
	}))
	wcs = make(chan *writeCounter, 8)
	if count {
		ts.Listener = &countingListener{Listener: ts.Listener, conns: wcs}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String(), wcs
}

// TestAcceptGreeting: the greeting is the first message, with or without
// permessage-deflate (uncompressed either way), and goes out in the same
// write as the 101 response; the connection goes on as usual after it.
func TestAcceptGreeting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		compression bool
		greeting    []byte
	}{
		{"plain", false, []byte(`{"type":"welcome","user":"u1"}`)},
		{"deflate negotiated", true, []byte(`{"type":"welcome","user":"u1"}`)},
		{"large, deflate negotiated", true, pattern(3000)}, // over the compression threshold
		{"16-bit length", false, pattern(300)},
		{"64-bit length", false, pattern(70000)}, // beyond the pooled buffer
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := &AcceptOptions{Compression: tc.compression, Subprotocols: []string{"chat"}}
			addr, wcs := greetingServer(t, opts, tc.greeting, true)
			c := dialTest(t, "ws://"+addr+"/", &DialOptions{Compression: tc.compression, Subprotocols: []string{"chat"}})
			if c.Compressed() != tc.compression {
				t.Fatalf("compressed %v, want %v", c.Compressed(), tc.compression)
			}
			typ, msg, err := c.ReadMessage(nil)
			if err != nil || typ != Text || !bytes.Equal(msg, tc.greeting) {
				t.Fatalf("first message: %v %d bytes, %v; want the greeting (%d bytes)", typ, len(msg), err, len(tc.greeting))
			}
			// The connection works on as usual.
			if err := c.WriteMessage(Text, []byte("after")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.ReadMessage(nil); err != nil || string(msg) != "after" {
				t.Fatalf("echo: %q, %v", msg, err)
			}

			var wc *writeCounter
			select {
			case wc = <-wcs:
			case <-time.After(10 * time.Second):
				t.Fatal("no connection accepted")
			}
			wc.mu.Lock()
			first := wc.writes[0]
			wc.mu.Unlock()
			head, frame, ok := bytes.Cut(first, []byte("\r\n\r\n"))
			if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
				t.Fatalf("first write is not the 101 response: %q", abbrev(first))
			}
			// One unmasked text frame, FIN set, RSV1 clear, holding the
			// greeting: the whole rest of the write.
			want := appendHeader(nil, true, false, opText, len(tc.greeting), false, 0)
			want = append(want, tc.greeting...)
			if !bytes.Equal(frame, want) {
				t.Fatalf("after the 101 in its write: %q, want the greeting's frame %q", abbrev(frame), abbrev(want))
			}
		})
	}
}

// TestAcceptGreetingOneRead: on a real TCP connection, the client's first
// read gets the 101 response and the whole greeting together, as they
// were written together; the greeting comes before anything the server
// sends later (the echo of a frame the client sent right behind its
// request).
func TestAcceptGreetingOneRead(t *testing.T) {
	t.Parallel()
	greeting := []byte(`{"type":"welcome","user":"u1","conn":"n1-1"}`)
	addr, _ := greetingServer(t, &AcceptOptions{}, greeting, false)
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, handshakeRequest(addr, "")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := nc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	head, frame, ok := bytes.Cut(buf[:n], []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
		t.Fatalf("first read: %q", abbrev(buf[:n]))
	}
	want := append(appendHeader(nil, true, false, opText, len(greeting), false, 0), greeting...)
	if !bytes.Equal(frame, want) {
		t.Fatalf("first read after the 101: %q, want the greeting's frame %q", abbrev(frame), abbrev(want))
	}
	// A frame sent now is echoed after the greeting.
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	rc.send(fText("hi"))
	rc.expect(evText("hi"))
}

// TestAcceptGreetingRefused: a refused handshake sends no greeting, only
// the error.
func TestAcceptGreetingRefused(t *testing.T) {
	t.Parallel()
	r := upgradeRequest()
	r.Header.Set("Sec-WebSocket-Version", "8")
	w := httptest.NewRecorder()
	_, err := AcceptGreeting(w, r, nil, []byte(`{"type":"welcome"}`))
	var herr *HandshakeError
	if !errors.As(err, &herr) || w.Code != http.StatusUpgradeRequired || strings.Contains(w.Body.String(), "welcome") {
		t.Fatalf("err %v, %d %q", err, w.Code, w.Body.String())
	}
}

// TestHandshakeChecksAllocate: checking a valid request and computing its
// Sec-WebSocket-Accept allocate nothing (header lookups by canonical key,
// the key decoded and hashed on the stack); they run for every
// connection, twice for a server that checks before it accepts
// (CheckRequest, then Accept).
func TestHandshakeChecksAllocate(t *testing.T) {
	r := upgradeRequest()
	r.Header.Set("Sec-WebSocket-Protocol", "access_token.x, chat")
	opts := &AcceptOptions{Subprotocols: []string{"other", "chat"}, CheckOrigin: func(*http.Request) bool { return true }}
	if n := testing.AllocsPerRun(100, func() {
		if sp, _, _, herr := checkUpgrade(r, opts); herr != nil || sp != "chat" {
			t.Fatal(sp, herr)
		}
	}); n != 0 {
		t.Errorf("checkUpgrade: %v allocations", n)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = appendAcceptKey(buf[:0], rfcKey) }); n != 0 {
		t.Errorf("appendAcceptKey: %v allocations", n)
	}
	if string(buf) != rfcAccept {
		t.Errorf("appendAcceptKey = %q, want %q", buf, rfcAccept)
	}
}
