package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// writer is the write-side state of a Conn, guarded by Conn.writeMu.
type writer struct {
	hdr      [maxHeaderSize]byte
	vec      [][]byte // backing array for a writev's buffers, kept between writes
	maskRand *mrand.ChaCha8

	// pend is what TryWritePrepared accepted but the socket did not take:
	// the rest of a frame, and the frames after it. It is written before
	// anything else (flushPendingLocked). pendBuf is the pooled buffer it
	// points into, if any, returned once it is written. When nothing is
	// pending, a writev uses pend for the buffers it consumes.
	pend    net.Buffers
	pendBuf *[]byte

	// The RawConn.Write callback's argument and results (see tryWrite).
	out      []byte
	outN     int
	outErrno syscall.Errno
}

const (
	// Payloads up to smallWrite are copied behind their header and sent
	// with one write; larger ones go out with writev, uncopied.
	smallWrite = 2048
	// writeBufferSize is the pooled scratch buffer for small writes, for
	// coalescing frames on non-TCP connections, and for masking.
	writeBufferSize = 16 << 10
)

var writeBufferPool = sync.Pool{New: func() any { b := make([]byte, 0, writeBufferSize); return &b }}

func getWriteBuffer() *[]byte { return writeBufferPool.Get().(*[]byte) }

func putWriteBuffer(b *[]byte) {
	*b = (*b)[:0]
	writeBufferPool.Put(b)
}

var compressBufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putCompressBuffer(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return // do not keep a one-off huge buffer alive
	}
	b.Reset()
	compressBufferPool.Put(b)
}

// WriteMessage sends p as one message of type typ, compressed when
// permessage-deflate was negotiated and p is at least CompressionThreshold
// long, and split into frames of FragmentSize when that is set.
func (c *Conn) WriteMessage(typ MessageType, p []byte) error {
	if typ != Text && typ != Binary {
		return errors.New("ws: WriteMessage needs Text or Binary")
	}
	var cb *bytes.Buffer
	rsv1 := false
	if c.deflate && len(p) >= c.opts.CompressionThreshold {
		// Compress before taking the lock: it is the slow part.
		cb = compressBufferPool.Get().(*bytes.Buffer)
		compressMessage(cb, p, c.opts.CompressionLevel, c.writeWindowBits)
		p, rsv1 = cb.Bytes(), true
		defer putCompressBuffer(cb)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.writableLocked(); err != nil {
		return err
	}
	frag := c.opts.FragmentSize
	op := opcode(typ)
	for {
		chunk, fin := p, true
		if frag > 0 && len(p) > frag {
			chunk, fin = p[:frag], false
		}
		if err := c.writeFrameLocked(fin, rsv1, op, chunk); err != nil {
			return err
		}
		if fin {
			return nil
		}
		p, op, rsv1 = p[len(chunk):], opContinuation, false
	}
}

// Ping sends a ping with the given payload (at most 125 bytes). The pong
// is consumed by the reader.
func (c *Conn) Ping(payload []byte) error {
	if len(payload) > maxControlPayload {
		return errors.New("ws: ping payload longer than 125 bytes")
	}
	return c.writeControl(opPing, payload)
}

func (c *Conn) writeControl(op opcode, payload []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.writableLocked(); err != nil {
		return err
	}
	return c.writeFrameLocked(true, false, op, payload)
}

func (c *Conn) writableLocked() error {
	if c.writeErr != nil {
		return c.writeErr
	}
	if c.closeSent {
		return ErrClosed
	}
	return nil
}

// writeClose sends a close frame unless one was sent already; sent says
// whether this call sent it. initiate records it as the close this side
// started (rather than the echo of the peer's).
func (c *Conn) writeClose(code StatusCode, reason string, initiate bool) (sent bool, err error) {
	// A pooled buffer: an array here would be on the heap (the write
	// path keeps the payloads it is given out of sight of the compiler).
	bp := getWriteBuffer()
	defer putWriteBuffer(bp)
	payload := (*bp)[:0]
	if code != StatusNoStatusReceived && code != 0 {
		payload = binary.BigEndian.AppendUint16(payload, uint16(code))
		payload = append(payload, truncateUTF8(reason, maxControlPayload-2)...)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return false, nil
	}
	c.closeSent = true
	if initiate {
		c.localClose.Store(&CloseError{Code: code, Reason: reason})
	}
	if c.writeErr != nil {
		return false, c.writeErr
	}
	return true, c.writeFrameLocked(true, false, opClose, payload)
}

// truncateUTF8 shortens s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// writeFrameLocked writes one frame. The server sends its payload as is;
// the client masks a copy, in chunks of the scratch buffer, with a fresh
// key per frame.
func (c *Conn) writeFrameLocked(fin, rsv1 bool, op opcode, p []byte) error {
	if c.server {
		hdr := appendHeader(c.w.hdr[:0], fin, rsv1, op, len(p), false, 0)
		if len(p) > smallWrite {
			return c.writevLocked(hdr, p)
		}
		bp := getWriteBuffer()
		b := append(append(*bp, hdr...), p...)
		err := c.netWriteLocked(b)
		*bp = b
		putWriteBuffer(bp)
		return err
	}
	key := uint32(c.w.maskRand.Uint64())
	bp := getWriteBuffer()
	defer putWriteBuffer(bp)
	b := appendHeader(*bp, fin, rsv1, op, len(p), true, key)
	for {
		n := min(len(p), writeBufferSize-len(b))
		start := len(b)
		b = append(b, p[:n]...)
		key = maskBytes(key, b[start:])
		p = p[n:]
		if err := c.netWriteLocked(b); err != nil {
			*bp = b
			return err
		}
		if len(p) == 0 {
			*bp = b
			return nil
		}
		b = b[:0]
	}
}

// writevLocked writes the buffers as one write. Up to writeBufferSize in
// all, they are copied into a pooled buffer: one plain write, and nothing
// kept per connection. Larger ones go out with writev, uncopied (the
// vector is kept for the next time; the frames it held are cleared).
func (c *Conn) writevLocked(bufs ...[]byte) error {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total <= writeBufferSize {
		bp := getWriteBuffer()
		b := *bp
		for _, p := range bufs {
			b = append(b, p...)
		}
		err := c.netWriteLocked(b)
		*bp = b
		putWriteBuffer(bp)
		return err
	}
	if err := c.flushPendingLocked(); err != nil {
		return err
	}
	c.w.vec = append(c.w.vec[:0], bufs...)
	c.w.pend = c.w.vec // empty after flushPendingLocked: free to use here
	err := c.waitWritevLocked(&c.w.pend)
	c.w.pend = nil
	clear(c.w.vec) // do not keep shared frames alive
	return err
}

// netWriteLocked writes b in full. It first writes what the socket takes
// without waiting, which is all of it unless the peer is behind: such a
// write needs no deadline. Only a write that has to wait for the peer sets
// one (WriteTimeout), for that wait alone.
func (c *Conn) netWriteLocked(b []byte) error {
	if err := c.flushPendingLocked(); err != nil {
		return err
	}
	n, err := c.tryWrite(b)
	if err != nil {
		return c.wroteLocked(err)
	}
	if n == len(b) {
		return nil
	}
	c.setWriteDeadlineLocked()
	_, err = c.nc.Write(b[n:])
	return c.waitedLocked(err)
}

// waitWritevLocked writes bufs in full with writev, waiting for the peer
// as long as WriteTimeout allows.
func (c *Conn) waitWritevLocked(bufs *net.Buffers) error {
	c.setWriteDeadlineLocked()
	_, err := bufs.WriteTo(c.nc)
	return c.waitedLocked(err)
}

func (c *Conn) setWriteDeadlineLocked() {
	if c.opts.WriteTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
	}
}

// waitedLocked ends a write that may have waited: on a TCP connection the
// deadline is cleared again, because writes that do not wait (tryWrite)
// must not find an expired one.
func (c *Conn) waitedLocked(err error) error {
	if err == nil && c.opts.WriteTimeout > 0 && c.raw != nil {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	return c.wroteLocked(err)
}

// flushPendingLocked writes, waiting as long as it takes (within
// WriteTimeout), what TryWritePrepared left pending; every write does it
// first, so that frames go out whole and in order.
func (c *Conn) flushPendingLocked() error {
	if len(c.w.pend) == 0 {
		return nil
	}
	var err error
	if len(c.w.pend) == 1 {
		c.setWriteDeadlineLocked()
		_, err = c.nc.Write(c.w.pend[0])
		err = c.waitedLocked(err)
	} else {
		err = c.waitWritevLocked(&c.w.pend)
	}
	// Dropped rather than kept: a connection that fell behind once keeps
	// nothing for it.
	c.w.pend = nil
	if c.w.pendBuf != nil {
		putWriteBuffer(c.w.pendBuf)
		c.w.pendBuf = nil
	}
	return err
}

// wroteLocked makes a write error sticky and closes the transport: after a
// partial write the stream cannot be resumed, and the reader must stop.
func (c *Conn) wroteLocked(err error) error {
	if err == nil {
		return nil
	}
	c.writeErr = err
	c.closeTransport(nil)
	return err
}
