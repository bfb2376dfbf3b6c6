package ws

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// reader is the read-side state of a Conn, guarded by Conn.readMu.
type reader struct {
	// buf holds bytes read from the network but not yet consumed,
	// buf[start:end]. It is nil while no message is being read, so an idle
	// connection holds no buffer.
	buf        []byte
	start, end int
	freshErr   error // set by rawRead, the readFresh callback

	// The current data frame.
	frameLeft int64  // payload bytes not yet consumed
	frameFin  bool   // it is the last frame of its message
	masked    bool   // its payload is masked with key
	key       uint32 // masking key, rotated to the next payload byte

	// nonblock makes readFresh answer errWouldBlock instead of waiting
	// (Park's reads). parkAdded says the socket is in the parker's epoll
	// set; it is guarded by the parker's mutex, not readMu (see park).
	nonblock, parkAdded bool

	// Linger's read deadline: lingering is set while Linger waits (a
	// deadline then ends the wait, not the connection); deadlineSet says
	// the deadline may still be pending, to be cleared before any other
	// read (see dropLingerDeadline).
	lingering, deadlineSet bool

	// The current message.
	inMessage  bool // its first frame was read and its last one not yet
	op         opcode
	compressed bool
	size       int64 // bytes delivered so far (after decompression)
	utf8       utf8Validator

	src  deflateSource // feeds the decompressor
	dict []byte        // the peer's window, kept only with read takeover
}

// ReadMessage reads the next data message, appending its payload to dst,
// and returns the message type and the extended slice. Control frames that
// arrive before or inside it are handled on the way: pings are answered,
// and a close frame completes the closing handshake and is returned as a
// *CloseError. Once it returns an error, every later call returns the same
// error.
//
// Passing a reused dst[:0] makes reading allocation-free.
func (c *Conn) ReadMessage(dst []byte) (MessageType, []byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return 0, dst, c.readErr
	}
	typ, out, err := c.readMessage(dst)
	if err != nil {
		c.readErr = c.readFailed(err)
		c.releaseReadBuffer()
		return 0, out, c.readErr
	}
	if c.r.start == c.r.end {
		c.releaseReadBuffer()
	}
	return typ, out, nil
}

func (c *Conn) releaseReadBuffer() {
	if c.r.buf != nil {
		putReadBuffer(c.r.buf)
		c.r.buf, c.r.start, c.r.end = nil, 0, 0
	}
}

// WaitMessage blocks until the next data message starts arriving: its
// first frame's header was read (control frames before it are handled on
// the way, as ReadMessage does). While nothing arrives the connection holds
// no buffer, so a caller can take the buffer it passes to ReadMessage only
// once there is a message to read into it. It returns the error that
// ReadMessage would.
func (c *Conn) WaitMessage() error {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	_, err := c.startMessageLocked()
	return err
}

// startMessageLocked reads up to the next data message's first frame, as
// WaitMessage does, and reports whether it started. With the socket
// empty and no wait allowed (Park's nonblocking reads, a Linger whose time
// is up) it returns false and a nil error; a failure becomes the
// connection's read error.
func (c *Conn) startMessageLocked() (started bool, err error) {
	if c.readErr != nil {
		return false, c.readErr
	}
	if c.r.inMessage {
		return true, nil
	}
	switch err := c.nextDataFrame(); {
	case err == errWouldBlock:
		return false, nil
	case err != nil:
		c.readErr = c.readFailed(err)
		c.releaseReadBuffer()
		return false, c.readErr
	}
	return true, nil
}

// Buffered reports whether bytes from the peer are buffered in the
// connection, already read from the network: then the next WaitMessage
// or ReadMessage may find what it needs without waiting.
func (c *Conn) Buffered() bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return c.r.end > c.r.start
}

func (c *Conn) readMessage(dst []byte) (MessageType, []byte, error) {
	r := &c.r
	// A message is in progress only when WaitMessage started it.
	if !r.inMessage {
		if err := c.nextDataFrame(); err != nil {
			return 0, dst, err
		}
	}
	typ := MessageType(r.op)
	var err error
	if r.compressed {
		dst, err = c.readCompressed(dst)
	} else {
		dst, err = c.readPlain(dst)
	}
	if err != nil {
		return 0, dst, err
	}
	if typ == Text && !r.utf8.complete() {
		return 0, dst, errInvalidUTF8()
	}
	r.inMessage = false
	return typ, dst, nil
}

// readPlain reads the rest of an uncompressed message into dst.
func (c *Conn) readPlain(dst []byte) ([]byte, error) {
	r := &c.r
	for {
		for r.frameLeft > 0 {
			if cap(dst)-len(dst) == 0 {
				// The frame says how much is coming (already checked
				// against the read limit), so grow once per frame.
				dst = grow(dst, int(min(r.frameLeft, 1<<20)))
			}
			start := len(dst)
			n, err := c.readFramePayload(dst[start:cap(dst)])
			dst = dst[:start+n]
			if r.op == opText && !r.utf8.write(dst[start:]) {
				return dst, errInvalidUTF8()
			}
			if err != nil {
				return dst, err
			}
		}
		if r.frameFin {
			return dst, nil
		}
		if err := c.nextDataFrame(); err != nil {
			return dst, err
		}
	}
}

// readCompressed decompresses the rest of a permessage-deflate message into
// dst, checking the read limit and UTF-8 as the output grows, so that a
// decompression bomb or bad text fails before the message is complete.
func (c *Conn) readCompressed(dst []byte) ([]byte, error) {
	r := &c.r
	r.src = deflateSource{c: c}
	fr := getFlateReader(&r.src, r.dict)
	defer putFlateReader(fr)
	base := len(dst)
	for {
		if cap(dst)-len(dst) < 512 {
			dst = grow(dst, min(max(len(dst)-base, 4096), 1<<20))
		}
		start := len(dst)
		n, err := fr.Read(dst[start:cap(dst)])
		dst = dst[:start+n]
		if int64(len(dst)-base) > c.readLimit.Load() {
			return dst, errReadLimit()
		}
		if r.op == opText && !r.utf8.write(dst[start:]) {
			return dst, errInvalidUTF8()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if r.src.err != nil {
				return dst, r.src.err // the network or frame error underneath
			}
			if r.src.n == 0 && r.src.done() {
				// An empty payload is not a complete DEFLATE stream even
				// with the tail appended, but zlib-based receivers take it
				// for an empty message, and so do we.
				break
			}
			return dst, &protocolError{code: StatusInvalidPayload, msg: "invalid compressed data: " + err.Error()}
		}
	}
	// The stream may end with a final block (RFC 7692 §7.2.3.3) before the
	// tail; what follows it in the message may only be empty frames.
	for !r.src.done() {
		if r.frameLeft > 0 {
			return dst, &protocolError{code: StatusInvalidPayload, msg: "data after the end of the compressed stream"}
		}
		if err := c.nextDataFrame(); err != nil {
			return dst, err
		}
	}
	if c.readTakeover {
		r.dict = appendWindow(r.dict, dst[base:])
	}
	return dst, nil
}

// errWouldBlock is readFresh's answer in nonblocking mode when the socket
// holds nothing; it never leaves the package.
var errWouldBlock = errors.New("ws: would block")

func errReadLimit() error {
	return &protocolError{code: StatusMessageTooBig, msg: "message exceeds read limit", err: ErrReadLimit}
}

func errInvalidUTF8() error {
	return &protocolError{code: StatusInvalidPayload, msg: "text message is not valid UTF-8"}
}

// appendWindow keeps the last 32 KiB of the peer's output, the deflate
// window a peer with context takeover may refer back into.
func appendWindow(dict, out []byte) []byte {
	const window = 1 << 15
	if len(out) >= window {
		return append(dict[:0], out[len(out)-window:]...)
	}
	if len(dict)+len(out) > window {
		drop := len(dict) + len(out) - window
		dict = dict[:copy(dict, dict[drop:])]
	}
	return append(dict, out...)
}

// satAdd adds two non-negative numbers, saturating at the largest int64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func grow(b []byte, n int) []byte {
	if n < 64 {
		n = 64
	}
	return append(b, make([]byte, n)...)[:len(b)]
}

// deflateSource is the compressed payload of the current message as a byte
// stream across its frames, followed by deflateTail. It implements
// io.ByteReader so that compress/flate reads it without a bufio wrapper.
type deflateSource struct {
	c    *Conn
	n    int64 // payload bytes returned
	tail int   // bytes of deflateTail already returned
	err  error // the first error from below, kept for readCompressed
}

// done reports whether the message's payload was consumed. The tail need
// not be: a sender may end with a final block (RFC 7692 §7.2.3.3), after
// which the decompressor stops before the tail.
func (s *deflateSource) done() bool { return s.c.r.frameLeft == 0 && s.c.r.frameFin }

func (s *deflateSource) Read(p []byte) (int, error) {
	if err := s.advance(); err != nil {
		return 0, err
	}
	r := &s.c.r
	if r.frameLeft == 0 {
		n := copy(p, deflateTail[s.tail:])
		s.tail += n
		return n, nil
	}
	n, err := s.c.readFramePayload(p)
	s.n += int64(n)
	if err != nil {
		s.err = err
	}
	return n, err
}

func (s *deflateSource) ReadByte() (byte, error) {
	if err := s.advance(); err != nil {
		return 0, err
	}
	r := &s.c.r
	if r.frameLeft == 0 {
		b := deflateTail[s.tail]
		s.tail++
		return b, nil
	}
	if r.start == r.end {
		if err := s.c.fill(1); err != nil {
			s.err = err
			return 0, err
		}
	}
	b := r.buf[r.start]
	r.start++
	r.frameLeft--
	s.n++
	if r.masked {
		b ^= byte(r.key)
		r.key = r.key>>8 | r.key<<24
	}
	return b, nil
}

// advance moves to the next frame of the message when the current one is
// consumed, and reports io.EOF after the tail.
func (s *deflateSource) advance() error {
	r := &s.c.r
	for r.frameLeft == 0 && !r.frameFin {
		if err := s.c.nextDataFrame(); err != nil {
			s.err = err
			return err
		}
	}
	if r.frameLeft == 0 && s.tail == len(deflateTail) {
		return io.EOF
	}
	return nil
}

// nextDataFrame reads frame headers until a data frame starts: the first
// frame of a message when none is in progress, its next fragment otherwise.
// Control frames in between are handled here.
func (c *Conn) nextDataFrame() error {
	r := &c.r
	for {
		h, err := c.readHeader()
		if err != nil {
			return err
		}
		if h.op.isControl() {
			if err := c.handleControl(h); err != nil {
				return err
			}
			continue
		}
		if h.op == opContinuation {
			if !r.inMessage {
				return errProtocol("continuation frame with no message to continue")
			}
		} else {
			if r.inMessage {
				return errProtocol("new message started before the previous one ended")
			}
			r.inMessage, r.op, r.compressed, r.size = true, h.op, h.rsv1, 0
			r.utf8.reset()
		}
		// Fail before reading a payload that cannot fit. Compressed
		// frames are measured after decompression, but their raw size is
		// bounded too (incompressible data grows a little). The sum is
		// compared without overflow: a frame may claim up to 2^63-1 bytes.
		limit := c.readLimit.Load()
		if r.compressed {
			limit = satAdd(limit, limit/8+1024)
		}
		if h.length > limit-r.size {
			return errReadLimit()
		}
		r.size += h.length
		r.frameLeft, r.frameFin, r.masked, r.key = h.length, h.fin, h.masked, h.key
		return nil
	}
}

// readHeader reads one frame header and checks it against RFC 6455 §5.2.
func (c *Conn) readHeader() (header, error) {
	r := &c.r
	if err := c.fill(2); err != nil {
		return header{}, err
	}
	n := headerLen(r.buf[r.start+1])
	if err := c.fill(n); err != nil {
		return header{}, err
	}
	h, err := parseHeader(r.buf[r.start : r.start+n])
	r.start += n
	if err != nil {
		return h, err
	}
	switch {
	case !h.op.isKnown():
		return h, errProtocol("reserved opcode")
	case h.rsv2 || h.rsv3:
		return h, errProtocol("reserved bit set with no extension negotiated")
	case h.rsv1 && (!c.deflate || h.op == opContinuation || h.op.isControl()):
		// RFC 7692 §6: RSV1 marks the first frame of a compressed
		// message, and only once permessage-deflate was negotiated.
		return h, errProtocol("RSV1 set on a frame that cannot be compressed")
	case h.op.isControl() && !h.fin:
		return h, errProtocol("fragmented control frame")
	case h.op.isControl() && h.length > maxControlPayload:
		return h, errProtocol("control frame payload longer than 125 bytes")
	case c.server && !h.masked:
		return h, errProtocol("client frame is not masked")
	case !c.server && h.masked:
		return h, errProtocol("server frame is masked")
	}
	return h, nil
}

// handleControl reads a control frame's payload and acts on it (§5.5).
func (c *Conn) handleControl(h header) error {
	r := &c.r
	n := int(h.length)
	if err := c.fill(n); err != nil {
		return err
	}
	// Unmasked in place: the payload is consumed here, before the buffer
	// is read into again.
	p := r.buf[r.start : r.start+n]
	r.start += n
	if h.masked {
		maskBytes(h.key, p)
	}
	switch h.op {
	case opPing:
		// A failed pong shows up as a failed read soon enough.
		_ = c.writeControl(opPong, p)
		return nil
	case opPong:
		return nil // keepalive already saw the frame
	}
	return c.handleCloseFrame(p)
}

// handleCloseFrame validates the peer's close frame (§5.5.1, §7.4), answers
// it when this side has not sent a close yet, and ends the connection.
func (c *Conn) handleCloseFrame(p []byte) error {
	// Made into a *CloseError only when it is the one returned.
	remote := CloseError{Code: StatusNoStatusReceived, Remote: true}
	switch {
	case len(p) == 1:
		return errProtocol("close frame with a 1-byte payload")
	case len(p) >= 2:
		remote.Code = StatusCode(binary.BigEndian.Uint16(p))
		if !validWireCode(remote.Code) {
			return errProtocol("invalid close code " + remote.Code.String())
		}
		if !utf8.Valid(p[2:]) {
			return &protocolError{code: StatusInvalidPayload, msg: "close reason is not valid UTF-8"}
		}
		remote.Reason = string(p[2:])
	}
	// Echo the peer's code, unless we started the close ourselves.
	_, _ = c.writeClose(remote.Code, "", false)
	if c.server {
		// §7.1.1: the server closes the TCP connection first. A peer
		// sends nothing after its close frame; when indeed nothing is
		// left unread, closing at once sends a FIN, never a reset, and
		// our close frame arrives whole, so there is nothing to linger
		// for (a read, a timer and a wait saved on every close).
		if c.r.start == c.r.end && c.socketDrained() {
			c.closeTransport(nil)
		} else {
			c.lingerClose()
		}
	} else {
		c.awaitServerClose()
	}
	if local := c.localClose.Load(); local != nil {
		return local
	}
	e := new(CloseError)
	*e = remote
	return e
}

// awaitServerClose lets the server close the TCP connection first, as
// §7.1.1 asks of clients, before closing it anyway after CloseTimeout.
func (c *Conn) awaitServerClose() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.opts.CloseTimeout))
	c.drainTransport()
	c.closeTransport(nil)
}

// lingerClose closes the connection after our close frame was written,
// without losing it: it half-closes (the peer sees the end of the stream,
// which is how a server "closes the TCP connection first", §7.1.1) and
// reads until the peer closes too, for at most a second. Closing at once
// with unread data from the peer in the socket (frames it sent after its
// close, or the rest of a message we refused) would make the kernel send a
// reset, which may destroy our close frame before the peer reads it.
func (c *Conn) lingerClose() {
	if hc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(min(c.opts.CloseTimeout, time.Second)))
	c.drainTransport()
	c.closeTransport(nil)
}

// drainTransport reads and discards until the peer closes or the read
// deadline passes.
func (c *Conn) drainTransport() {
	// A pooled buffer: an array here would be on the heap (nc.Read is an
	// interface call), on every close.
	scratch := getReadBuffer(0)
	defer putReadBuffer(scratch)
	for {
		if _, err := c.nc.Read(scratch); err != nil {
			return
		}
	}
}

// readFailed turns the error that ended reading into the error callers see,
// and does what §7.1.7 asks: a protocol violation is answered with a close
// frame carrying its code before the connection is closed.
func (c *Conn) readFailed(err error) error {
	if ce, ok := errors.AsType[*CloseError](err); ok {
		return ce
	}
	if pe, ok := errors.AsType[*protocolError](err); ok {
		_, _ = c.writeClose(pe.code, pe.msg, true)
		c.lingerClose()
		return &CloseError{Code: pe.code, Reason: pe.msg, Err: pe}
	}
	c.closeTransport(nil)
	if cause := c.cause.Load(); cause != nil {
		err = *cause
	}
	if local := c.localClose.Load(); local != nil {
		// We were closing and the peer hung up or never answered.
		return &CloseError{Code: local.Code, Reason: local.Reason, Err: err}
	}
	return &CloseError{Code: StatusAbnormalClosure, Err: err}
}

// fill makes at least n bytes available in r.buf[r.start:r.end]; n is at
// most maxHeaderSize+maxControlPayload, well within the buffer.
func (c *Conn) fill(n int) error {
	r := &c.r
	if r.end-r.start >= n {
		return nil // an empty control frame asks for nothing
	}
	if r.buf != nil && r.start == r.end {
		// Nothing buffered (after a control frame, or between the frames
		// of a message): wait without the buffer, like an idle connection.
		c.releaseReadBuffer()
	}
	if r.buf == nil {
		if err := c.readFresh(); err != nil {
			return err
		}
	}
	for r.end-r.start < n {
		if len(r.buf)-r.start < n {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		// The rest of a frame's head: read it however long it takes, as
		// WaitMessage would.
		c.dropLingerDeadline()
		m, err := c.nc.Read(r.buf[r.end:])
		if m > 0 {
			c.noteActivity()
		}
		r.end += m
		if err != nil {
			if r.end-r.start >= n {
				return nil
			}
			return err
		}
	}
	return nil
}

// readFramePayload reads up to len(p) bytes of the current frame's payload
// and unmasks them. Large reads bypass the buffer.
func (c *Conn) readFramePayload(p []byte) (int, error) {
	r := &c.r
	if int64(len(p)) > r.frameLeft {
		p = p[:r.frameLeft]
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	switch {
	case r.end > r.start:
		n = copy(p, r.buf[r.start:r.end])
		r.start += n
	case len(p) >= readBufferSize:
		c.dropLingerDeadline() // the rest of a message: no time limit
		n, err = c.nc.Read(p)
	default:
		if c.raw != nil {
			// Nothing buffered: wait without the buffer, as fill does.
			c.releaseReadBuffer()
			if err = c.readFresh(); err != nil {
				return 0, err
			}
		} else {
			if r.buf == nil {
				r.buf = getReadBuffer(0)
			}
			r.start, r.end = 0, 0
			var m int
			m, err = c.nc.Read(r.buf)
			r.end = m
		}
		n = copy(p, r.buf[r.start:r.end])
		r.start += n
		if n > 0 {
			err = nil // the error comes back on the next read
		}
	}
	if n > 0 {
		c.noteActivity()
	}
	if r.masked {
		r.key = maskBytes(r.key, p[:n])
	}
	r.frameLeft -= int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	return n, err
}
