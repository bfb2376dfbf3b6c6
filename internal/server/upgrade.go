package server

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
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
// client opens. Anything else, and an upgrade whose head does not fit the
// buffer, is handed to net/http with the bytes already read, as if it had
// accepted the connection itself.
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
// upgrade; otherwise it hands c to net/http.
func (l *upgradeListener) sniff(c net.Conn) {
	defer l.srv.handlers.Done()
	br := sniffReaders.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		sniffReaders.Put(br)
	}()
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	head, err := peekHead(br)
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
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
	req, err := http.ReadRequest(br)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		w := newUpgradeResponse(c, br)
		writeError(w, http.StatusBadRequest, "bad_request", "malformed request")
		w.finish()
		return
	}
	req.RemoteAddr = c.RemoteAddr().String()
	w := newUpgradeResponse(c, br)
	l.srv.upgradeHandler.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
	}
}

// peekHead returns the request head (up to the blank line) in br's
// buffer without consuming it; bufio.ErrBufferFull when it does not fit.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		if _, err := br.Peek(n); err != nil {
			return nil, err
		}
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], nil
		}
		if br.Buffered() == br.Size() {
			return nil, bufio.ErrBufferFull
		}
	}
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
}

func newUpgradeResponse(c net.Conn, br *bufio.Reader) *upgradeResponse {
	return &upgradeResponse{c: c, br: br, header: http.Header{}}
}

func (w *upgradeResponse) Header() http.Header { return w.header }

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
	return w.c, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.c, 64)), nil
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
	w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	w.header.Set("Connection", "close")
	_ = w.header.Write(&b)
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
