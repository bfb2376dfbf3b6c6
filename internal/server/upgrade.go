package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// upgradeListener sits between the TCP listener and net/http (plain HTTP
// only; TLS goes to net/http directly). It reads the head of each new
// connection's first request itself: a WebSocket upgrade to /ws is served
// at once, by the same handler as through the router, but without
// net/http, which allocates per connection its state, 4 KiB read and write
// buffers and, on Hijack, a third buffer, all of it dropped by an upgrade:
// about 12 KB of garbage and a good part of the CPU of every connection a
// client opens. Anything else (as soon as the first bytes cannot begin
// such an upgrade), and an upgrade whose head does not fit the buffer, is
// handed to net/http with the bytes already read, as if it had accepted
// the connection itself; replayConn turns the text/plain errors net/http
// writes for requests it cannot parse into chatd's JSON errors.
type upgradeListener struct {
	net.Listener
	srv   *Server
	conns chan net.Conn // connections for net/http

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error // why the accept loop ended
}

// sniffTimeout bounds the wait for the head of a connection's first
// request, as http.Server.ReadHeaderTimeout does.
const sniffTimeout = 10 * time.Second

// newUpgradeListener starts the accept loop, which Serve waits for
// (handlers) like for the goroutines it starts.
func (s *Server) newUpgradeListener(ln net.Listener) *upgradeListener {
	deferAccept(ln, sniffTimeout)
	l := &upgradeListener{Listener: ln, srv: s, conns: make(chan net.Conn), done: make(chan struct{})}
	s.handlers.Add(1)
	go l.acceptLoop()
	return l
}

// Accept implements net.Listener for net/http.
func (l *upgradeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener: it stops the accept loop.
func (l *upgradeListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.Listener.Close()
		l.stop(nil)
	})
	return err
}

// stop records why the accept loop ended (the first reason only) and
// closes done. Close and the accept loop, whose Accept fails once the
// listener is closed, may call it at the same time: the check and the
// close of done are one step under errMu, or both would close it.
func (l *upgradeListener) stop(err error) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if l.err == nil {
		l.err = err
	}
	select {
	case <-l.done:
	default:
		close(l.done)
	}
}

// acceptLoop accepts connections and has each sniffed by a goroutine of
// its own, until the listener is closed.
func (l *upgradeListener) acceptLoop() {
	defer l.srv.handlers.Done()
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors, say: wait a little, as
				// net/http does, rather than spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					return
				}
			}
			l.stop(err)
			return
		}
		delay = 0
		l.srv.handlers.Add(1)
		go l.sniff(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// sniffReaders are the pooled readers the heads are read with: only a
// connection being sniffed holds one.
var sniffReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// sniff reads the head of c's first request and serves it if it is an
// upgrade; otherwise it hands c to net/http. A session that the upgrade
// started reads on, on this goroutine (see upgradeResponse.then).
func (l *upgradeListener) sniff(c net.Conn) {
	_ = growStack()
	then := l.serveHead(c)
	l.srv.handlers.Done()
	if then != nil {
		then()
	}
}

// serveHead is sniff's work until the request is served; it returns what
// the handler left to run after it (upgradeResponse.then), if anything.
func (l *upgradeListener) serveHead(c net.Conn) (then func()) {
	br := sniffReaders.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		sniffReaders.Put(br)
	}()
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	head, err := peekHead(br)
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, errNotUpgrade) {
		_ = c.Close() // gone, or silent for too long: nothing to answer
		return
	}
	if err != nil || !isUpgradeHead(head) {
		_ = c.SetReadDeadline(time.Time{})
		rest, _ := br.Peek(br.Buffered())
		pc := &replayConn{Conn: c, pending: bytes.Clone(rest)}
		select {
		case l.conns <- pc:
		case <-l.done:
			_ = c.Close()
		}
		return
	}
	// The usual head is parsed here (parseUpgradeHead), any other by
	// net/http.
	req, hasHost, ok := parseUpgradeHead(head)
	if ok {
		_, err = br.Discard(len(head))
	} else {
		// Looked at before ReadRequest reads on from the buffer head
		// lies in.
		hasHost = hasHostHeader(head)
		req, err = http.ReadRequest(br)
	}
	_ = c.SetReadDeadline(time.Time{})
	msg := "malformed HTTP request"
	if err == nil {
		msg, err = checkHost(hasHost, req.Host)
	}
	if err != nil {
		w := newUpgradeResponse(c, br)
		writeError(w, http.StatusBadRequest, "bad_request", msg)
		w.finish()
		return
	}
	req.RemoteAddr = c.RemoteAddr().String()
	w := newUpgradeResponse(c, br)
	l.srv.upgradeHandler.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
		return nil
	}
	return w.then
}

// errNotUpgrade is peekHead's answer for bytes that cannot begin a head
// the fast path serves.
var errNotUpgrade = errors.New("not an upgrade head")

// peekHead returns the request head (up to the blank line) in br's
// buffer without consuming it; bufio.ErrBufferFull when it does not fit,
// errNotUpgrade as soon as the bytes read cannot be the start of a head
// that isUpgradeHead accepts. Without that early answer, a request that
// never sends CRLF CRLF (lines ended by a bare LF, which net/http
// accepts, or bytes that are not HTTP at all) would wait out
// sniffTimeout and be closed unanswered instead of reaching net/http.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		if _, err := br.Peek(n); err != nil {
			return nil, err
		}
		buf, _ := br.Peek(br.Buffered())
		if !mayBeUpgradeHead(buf) {
			return nil, errNotUpgrade
		}
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], nil
		}
		if br.Buffered() == br.Size() {
			return nil, bufio.ErrBufferFull
		}
	}
}

// mayBeUpgradeHead reports whether buf, the first bytes of a
// connection, can still turn out to be a head that isUpgradeHead
// accepts: it begins like "GET /ws" and every LF in it ends a CRLF.
func mayBeUpgradeHead(buf []byte) bool {
	const prefix = "GET /ws"
	if k := min(len(buf), len(prefix)); string(buf[:k]) != prefix[:k] {
		return false
	}
	for i := bytes.IndexByte(buf, '\n'); i >= 0; {
		if i == 0 || buf[i-1] != '\r' {
			return false
		}
		j := bytes.IndexByte(buf[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return true
}

// checkHost refuses what net/http refuses of a request's Host header
// before any handler runs (net/http/server.go, readRequest), which
// http.ReadRequest leaves to the server: an HTTP/1.1 request without
// Host, or a Host with bytes no host or port has. hasHost tells whether
// the head has a Host line (ReadRequest takes the header out of the
// request, and an empty Host, which net/http lets through, is not none);
// host is the request's Host. It returns the message of the 400 with the
// error.
func checkHost(hasHost bool, host string) (string, error) {
	if !hasHost {
		return "missing required Host header", errors.New("no Host header")
	}
	for i := 0; i < len(host); i++ {
		if !validHostByte(host[i]) {
			return "malformed Host header", fmt.Errorf("malformed Host header %q", host)
		}
	}
	return "", nil
}

// hasHostHeader reports whether head has a Host line.
func hasHostHeader(head []byte) bool {
	_, lines, _ := bytes.Cut(head, []byte("\r\n"))
	for len(lines) > 0 {
		var line []byte
		line, lines, _ = bytes.Cut(lines, []byte("\r\n"))
		if name, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Host")) {
			return true
		}
	}
	return false
}

// validHostByte reports whether b may appear in a Host header: the bytes
// of RFC 3986's host (reg-name, IP literals with zones) and port, the
// set golang.org/x/net/http/httpguts.ValidHostHeader allows.
func validHostByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0
}

// isUpgradeHead reports whether head is a GET of /ws asking for a
// WebSocket upgrade: the requests the fast path serves. Everything the
// handshake checks is checked later, on the parsed request.
func isUpgradeHead(head []byte) bool {
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok || !bytes.HasPrefix(line, []byte("GET /ws")) || !bytes.HasSuffix(line, []byte(" HTTP/1.1")) {
		return false
	}
	if c := line[len("GET /ws")]; c != ' ' && c != '?' {
		return false
	}
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(h, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Upgrade")) {
			return bytes.EqualFold(bytes.TrimSpace(value), []byte("websocket"))
		}
	}
	return false
}

// replayConn is a connection handed to net/http after its first bytes
// were read: they are read again first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Write passes p on, except for net/http's own answer to a request it
// could not parse (see jsonCannedError), which it rewrites into chatd's
// JSON error. Such an answer is one Write of its own, made between
// requests (the previous response is flushed by then), so only a Write
// that is exactly one needs a look; the first byte rules out nearly every
// other one, WebSocket frames of a hijacked connection included.
func (c *replayConn) Write(p []byte) (int, error) {
	if len(p) <= len(cannedPrefix) || p[0] != 'H' || p[len(cannedPrefix)] != '4' && p[len(cannedPrefix)] != '5' {
		return c.Conn.Write(p)
	}
	out, ok := jsonCannedError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// cannedPrefix and cannedHeaders frame the responses net/http writes
// itself, on the raw connection, when it cannot read a request
// (net/http/server.go, conn.serve: "errorHeaders"):
//
//	HTTP/1.1 400 Bad Request<cannedHeaders>400 Bad Request
//	HTTP/1.1 400 Bad Request: <reason><cannedHeaders>400 Bad Request: <reason>
//	HTTP/1.1 431 Request Header Fields Too Large<cannedHeaders>431 Request Header Fields Too Large
//	HTTP/1.1 501 Not Implemented<cannedHeaders>Unsupported transfer encoding
//	HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version<cannedHeaders>505 ...
const (
	cannedPrefix  = "HTTP/1.1 "
	cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
)

// cannedCodes are the error codes of the statuses net/http answers by
// itself, in the vocabulary of chatd's other HTTP errors.
var cannedCodes = map[int]string{
	http.StatusBadRequest:                  "bad_request",
	http.StatusRequestHeaderFieldsTooLarge: "too_large",
	http.StatusNotImplemented:              "not_implemented",
	http.StatusHTTPVersionNotSupported:     "http_version_not_supported",
}

// cannedMessages are the messages for the canned responses that give no
// reason of their own.
var cannedMessages = map[int]string{
	http.StatusBadRequest:                  "malformed HTTP request",
	http.StatusRequestHeaderFieldsTooLarge: "request headers too large",
	http.StatusNotImplemented:              "unsupported transfer encoding",
	http.StatusHTTPVersionNotSupported:     "unsupported HTTP version",
}

// jsonCannedError returns, when p is exactly one of net/http's canned
// error responses (cannedHeaders), the same status as chatd's JSON error
// of PROTOCOL.md §1, {"error":"<code>","message":"<reason>"}, with
// Content-Length and Connection: close; otherwise ok is false and p is
// to be written as it is. The match is strict (status line, headers and
// body as net/http formats them, nothing before or after), so that no
// other response is ever altered.
func jsonCannedError(p []byte) (out []byte, ok bool) {
	if len(p) < len(cannedPrefix)+4 || string(p[:len(cannedPrefix)]) != cannedPrefix {
		return nil, false
	}
	// The status line ends at the first CR, and the canned headers
	// follow it at once.
	status := p[len(cannedPrefix):]
	i := bytes.IndexByte(status, '\r')
	if i < 0 || !bytes.HasPrefix(status[i:], []byte(cannedHeaders)) {
		return nil, false
	}
	status, body := status[:i], status[i+len(cannedHeaders):]
	if len(status) < 4 || status[3] != ' ' {
		return nil, false
	}
	code := 0
	for _, d := range status[:3] {
		if d < '0' || d > '9' {
			return nil, false
		}
		code = 10*code + int(d-'0')
	}
	if code < 400 || code > 599 {
		return nil, false
	}
	text := http.StatusText(code)
	rest, found := bytes.CutPrefix(status[4:], []byte(text))
	if text == "" || !found {
		return nil, false
	}
	// Either the plain status, or the status with ": <reason>" (a
	// net/http statusError), whose body repeats the status line; the
	// 501 alone has a body of its own.
	msg := cannedMessages[code]
	if len(rest) > 0 {
		reason, found := bytes.CutPrefix(rest, []byte(": "))
		if !found || len(reason) == 0 || bytes.IndexByte(reason, '\n') >= 0 {
			return nil, false
		}
		msg = string(reason)
	}
	if !bytes.Equal(body, status) && !(code == http.StatusNotImplemented && len(rest) == 0 && string(body) == "Unsupported transfer encoding") {
		return nil, false
	}
	if msg == "" {
		msg = strings.ToLower(text)
	}
	errCode, known := cannedCodes[code]
	if !known {
		// A status a later net/http may add: still JSON, with the code
		// of its class.
		errCode = "bad_request"
		if code >= 500 {
			errCode = "internal"
		}
	}
	return rawJSONError(code, errCode, msg), true
}

// rawJSONError is a whole HTTP/1.1 error response, chatd's JSON error body
// with Connection: close, for writing straight to a connection where no
// http.ResponseWriter exists.
func rawJSONError(code int, errCode, msg string) []byte {
	js := errorBody(errCode, msg)
	var b bytes.Buffer
	b.Grow(160 + len(js))
	b.WriteString(cannedPrefix + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	b.WriteString("Content-Type: application/json\r\nCache-Control: no-store\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(js)) + "\r\nConnection: close\r\n\r\n")
	b.Write(js)
	return b.Bytes()
}

// CloseWrite lets net/http close gracefully, as with a plain TCP
// connection.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// upgradeResponse is the http.ResponseWriter of a sniffed upgrade: it
// hijacks to the connection itself, or collects an error response that
// finish writes, with Connection: close.
type upgradeResponse struct {
	c        net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
	rw       bufio.ReadWriter // Hijack's, in place
	then     func()           // set by the handler: run by sniff once it let go of the request
}

func newUpgradeResponse(c net.Conn, br *bufio.Reader) *upgradeResponse {
	return &upgradeResponse{c: c, br: br}
}

// Header returns the response's header, made on first use: an upgrade
// that succeeds never needs one.
func (w *upgradeResponse) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

func (w *upgradeResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *upgradeResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Hijack implements http.Hijacker. The reader holds what the client sent
// behind its request (ws.Accept takes it); the writer is not used by
// ws.Accept, which answers on the connection.
func (w *upgradeResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	w.rw = bufio.ReadWriter{Reader: w.br, Writer: bufio.NewWriterSize(w.c, 64)}
	return w.c, &w.rw, nil
}

// finish writes the collected response and closes the connection: first
// its sending side, then, once the client has read the answer and closed
// too (or after a second), the rest, so that no unread request byte makes
// the kernel reset the connection before the client read the answer.
func (w *upgradeResponse) finish() {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(w.body.Len()))
	h.Set("Connection", "close")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body.Bytes())
	_ = w.c.SetWriteDeadline(time.Now().Add(sniffTimeout))
	_, err := w.c.Write(b.Bytes())
	if cw, ok := w.c.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		_ = w.c.SetReadDeadline(time.Now().Add(time.Second))
		var scratch [512]byte
		for {
			if _, err := w.c.Read(scratch[:]); err != nil {
				break
			}
		}
	}
	_ = w.c.Close()
}

// sniffStack is the stack a sniffing goroutine needs to serve an upgrade
// and then its session's first commands (the handler, the token's
// verification, a join through the hub and the broker).
const sniffStack = 16 << 10

// growStack grows the calling goroutine's stack to sniffStack in one
// step. A goroutine starts on a small stack and doubles it whenever a call
// needs more, each time copying it and adjusting every frame on it; a new
// connection's goroutine did that three times or so while it served the
// upgrade and the first commands, which cost about 7 % of chatd's CPU in a
// churn run. Grown here, at the goroutine's start, the copy is of a stack
// that holds nothing yet.
//
//go:noinline
func growStack() byte {
	var frame [sniffStack - 2048]byte // the rest is for what it calls
	i := stackIndex % len(frame)
	frame[i] = 1
	return frame[len(frame)-1-i]
}

// stackIndex is always 0: a variable, so that growStack's frame cannot be
// optimised away.
var stackIndex int
