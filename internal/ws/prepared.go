package ws

import (
	"bytes"
	"compress/flate"
	"net"
	"sync"
)

// PreparedMessage is a message framed once, and compressed once, for
// writing to many connections: a broadcast to N connections costs one
// encoding and N writes of the same bytes. It is safe for concurrent use.
//
// The frames are built lazily on the first write that needs them. Server
// connections write them as they are; client connections, which must mask
// every frame with a fresh key, copy them. Prepared messages are never
// fragmented, and are compressed at flate.BestSpeed.
type PreparedMessage struct {
	typ  MessageType
	data []byte

	plainOnce sync.Once
	plain     []byte // header and payload, unmasked

	// framed is set when plain was built by NewPreparedMessageInPlace;
	// it never changes afterwards.
	framed bool

	deflateOnce sync.Once
	deflated    []byte // header and compressed payload, RSV1 set
	deflatedLen int    // length of the compressed payload
}

// NewPreparedMessage prepares data as a message of type typ. data must not
// be modified afterwards.
func NewPreparedMessage(typ MessageType, data []byte) *PreparedMessage {
	return &PreparedMessage{typ: typ, data: data}
}

// PreparedHeadroom is the room NewPreparedMessageInPlace needs in front of
// the payload: the largest header of an unmasked frame (RFC 6455 section
// 5.2: two bytes and a 64-bit length).
const PreparedHeadroom = 10

// NewPreparedMessageInPlace prepares buf[PreparedHeadroom:] as a message
// of type typ, and writes the header of its unmasked frame into the
// headroom in front of it, so that the frame a server writes is buf itself
// rather than a copy: a message encoded by appending to
// make([]byte, PreparedHeadroom, PreparedHeadroom+n) costs one allocation
// fewer. It panics when buf is shorter than PreparedHeadroom. buf must not
// be modified afterwards.
func NewPreparedMessageInPlace(typ MessageType, buf []byte) *PreparedMessage {
	data := buf[PreparedHeadroom:]
	var hdr [PreparedHeadroom]byte
	h := appendHeader(hdr[:0], true, false, opcode(typ), len(data), false, 0)
	start := PreparedHeadroom - len(h)
	copy(buf[start:], h)
	return &PreparedMessage{typ: typ, data: data, plain: buf[start:], framed: true}
}

// Data returns the message payload.
func (pm *PreparedMessage) Data() []byte { return pm.data }

// Type returns the message type.
func (pm *PreparedMessage) Type() MessageType { return pm.typ }

func (pm *PreparedMessage) plainFrame() []byte {
	if pm.framed {
		return pm.plain
	}
	pm.plainOnce.Do(func() {
		b := make([]byte, 0, maxHeaderSize+len(pm.data))
		b = appendHeader(b, true, false, opcode(pm.typ), len(pm.data), false, 0)
		pm.plain = append(b, pm.data...)
	})
	return pm.plain
}

func (pm *PreparedMessage) deflatedFrame() []byte {
	pm.deflateOnce.Do(func() {
		cb := compressBufferPool.Get().(*bytes.Buffer)
		compressMessage(cb, pm.data, flate.BestSpeed, 15)
		b := make([]byte, 0, maxHeaderSize+cb.Len())
		b = appendHeader(b, true, true, opcode(pm.typ), cb.Len(), false, 0)
		pm.deflated = append(b, cb.Bytes()...)
		pm.deflatedLen = cb.Len()
		putCompressBuffer(cb)
	})
	return pm.deflated
}

// frameFor returns the frame to send on c: compressed when c negotiated
// compression, the message is worth compressing, and the peer's window
// admits a full-window stream for it.
func (pm *PreparedMessage) frameFor(c *Conn) (frame []byte, compressed bool) {
	if c.deflate && len(pm.data) >= c.opts.CompressionThreshold &&
		(c.writeWindowBits == 0 || c.writeWindowBits == 15 || len(pm.data) <= 1<<c.writeWindowBits) {
		return pm.deflatedFrame(), true
	}
	return pm.plainFrame(), false
}

// WritePrepared writes the messages in order; on a server connection with
// a single write (a batch of small frames is copied into one buffer, a
// larger one goes out with writev). It waits for the peer when its socket
// buffer is full, up to WriteTimeout, after writing first whatever
// TryWritePrepared left pending.
func (c *Conn) WritePrepared(pms ...*PreparedMessage) error {
	if c.server {
		// Build (and compress) outside the lock: only the first
		// connection to need a frame pays for it.
		for _, pm := range pms {
			pm.frameFor(c)
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.writableLocked(); err != nil {
		return err
	}
	if err := c.flushPendingLocked(); err != nil {
		return err
	}
	if !c.server {
		for _, pm := range pms {
			frame, compressed := pm.frameFor(c)
			payloadLen := len(pm.data)
			if compressed {
				payloadLen = pm.deflatedLen
			}
			payload := frame[len(frame)-payloadLen:]
			if err := c.writeFrameLocked(true, compressed, opcode(pm.typ), payload); err != nil {
				return err
			}
		}
		return nil
	}
	switch len(pms) {
	case 0:
		return nil
	case 1:
		// The frame is contiguous already: write it as it is.
		frame, _ := pms[0].frameFor(c)
		return c.netWriteLocked(frame)
	}
	if bp := c.coalesce(pms); bp != nil {
		// One write, nothing kept.
		err := c.netWriteLocked(*bp)
		putWriteBuffer(bp)
		return err
	}
	c.w.vec = c.w.vec[:0]
	for _, pm := range pms {
		frame, _ := pm.frameFor(c)
		c.w.vec = append(c.w.vec, frame)
	}
	return c.writevLocked(c.w.vec...)
}

// coalesce copies the frames of pms for c into one pooled write buffer,
// when together they fit in one (small messages that piled up: one write
// system call for all); nil when they do not.
func (c *Conn) coalesce(pms []*PreparedMessage) *[]byte {
	total := 0
	for _, pm := range pms {
		frame, _ := pm.frameFor(c)
		total += len(frame)
	}
	if total > writeBufferSize {
		return nil
	}
	bp := getWriteBuffer()
	b := *bp
	for _, pm := range pms {
		frame, _ := pm.frameFor(c)
		b = append(b, frame...)
	}
	*bp = b
	return bp
}

// TryWritePrepared writes the messages if it can do so without waiting,
// for a caller that must not block, such as a goroutine fanning a message
// out to many connections. It never waits: not for the peer, and not for
// another write in progress on the connection.
//
// When taken is false, nothing was written (another write is in progress,
// something is still pending, or the connection is not a server TCP
// connection, whose socket can be written without waiting): write the
// messages with WritePrepared, from a goroutine that may block. When taken
// is true, the messages are the connection's: all written when complete is
// true; otherwise the socket took only part, and the rest is pending until
// Flush (or any other write) writes it, waiting for the peer. A caller
// that got complete false must call Flush, from a goroutine that may
// block, before it considers the messages sent.
func (c *Conn) TryWritePrepared(pms ...*PreparedMessage) (taken, complete bool, err error) {
	if locked, err := c.tryLockWrite(pms); !locked {
		return false, false, err
	}
	defer c.writeMu.Unlock()
	if len(pms) == 0 {
		return true, true, nil
	}
	if frame, bufp := c.oneFrame(pms); frame != nil {
		n, err := c.tryWrite(frame)
		complete, err := c.settleLocked(frame, bufp, n, err)
		return err == nil, complete, err
	}
	// Large frames, written one after the other; what the socket does not
	// take stays pending, uncopied (prepared frames never change).
	for i, pm := range pms {
		frame, _ := pm.frameFor(c)
		n, err := c.tryWrite(frame)
		if err != nil {
			return false, false, c.wroteLocked(err)
		}
		if n < len(frame) {
			pend := make(net.Buffers, 0, len(pms)-i)
			pend = append(pend, frame[n:])
			for _, rest := range pms[i+1:] {
				f, _ := rest.frameFor(c)
				pend = append(pend, f)
			}
			c.w.pend = pend
			return true, false, nil
		}
	}
	return true, true, nil
}

// tryLockWrite takes the write lock for a write of pms that must not
// wait, and reports whether it did: not for a connection that is not a
// server TCP connection, during another write, or with something still
// pending; err is the connection's write error, when it has one. The
// frames are built (and compressed) first, outside the lock.
func (c *Conn) tryLockWrite(pms []*PreparedMessage) (locked bool, err error) {
	if !c.server || c.raw == nil {
		return false, nil
	}
	for _, pm := range pms {
		pm.frameFor(c)
	}
	if !c.writeMu.TryLock() {
		return false, nil
	}
	if err := c.writableLocked(); err != nil {
		c.writeMu.Unlock()
		return false, err
	}
	if len(c.w.pend) > 0 {
		c.writeMu.Unlock()
		return false, nil
	}
	return true, nil
}

// oneFrame is what one write system call sends for pms (at least one):
// the frame of a single message, or the frames of several copied into one
// pooled buffer, bufp; nil when they are too large to copy.
func (c *Conn) oneFrame(pms []*PreparedMessage) (frame []byte, bufp *[]byte) {
	if len(pms) == 1 {
		frame, _ = pms[0].frameFor(c)
		return frame, nil
	}
	if bufp = c.coalesce(pms); bufp == nil {
		return nil, nil
	}
	return *bufp, bufp
}

// settleLocked records the outcome of a non-blocking write of frame (n
// bytes written, or err): the rest of a short write is pending, with the
// pooled buffer frame lives in, if any, until it is written; an error is
// the connection's from now on.
func (c *Conn) settleLocked(frame []byte, bufp *[]byte, n int, err error) (complete bool, _ error) {
	switch {
	case err != nil:
		if bufp != nil {
			putWriteBuffer(bufp)
		}
		return false, c.wroteLocked(err)
	case n == len(frame):
		if bufp != nil {
			putWriteBuffer(bufp)
		}
		return true, nil
	}
	// A prepared frame is never changed, so the rest is not copied.
	c.w.pend, c.w.pendBuf = net.Buffers{frame[n:]}, bufp
	return false, nil
}

// Flush writes what TryWritePrepared left pending, waiting for the peer up
// to WriteTimeout. It returns at once when nothing is pending.
func (c *Conn) Flush() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if len(c.w.pend) == 0 {
		return c.writeErr
	}
	if err := c.writableLocked(); err != nil {
		return err
	}
	return c.flushPendingLocked()
}
