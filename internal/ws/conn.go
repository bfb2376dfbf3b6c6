package ws

import (
	"compress/flate"
	"crypto/rand"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configure a connection; the zero value of every field means its
// default. They are shared by Accept (AcceptOptions) and Dial (DialOptions).
type Options struct {
	// ReadLimit is the largest message, in bytes after decompression, that
	// ReadMessage accepts; a larger one fails the connection with 1009.
	// Default 1 MiB.
	ReadLimit int64
	// PingInterval, when positive, sends a ping that often; a peer from
	// which nothing at all was read within PongTimeout after a ping is
	// considered dead and the connection is closed (ReadMessage then
	// reports a *CloseError wrapping ErrPongTimeout). Only bytes read by
	// ReadMessage count, so the connection must have a reader.
	PingInterval time.Duration
	// PongTimeout defaults to 10 s.
	PongTimeout time.Duration
	// WriteTimeout bounds every write that has to wait for the peer (its
	// socket buffer is full); 0 means no deadline. A write the socket takes
	// at once, the usual case, sets no deadline at all.
	WriteTimeout time.Duration
	// CloseTimeout bounds the closing handshake. Default 5 s.
	CloseTimeout time.Duration
	// FragmentSize, when positive, splits messages larger than it into
	// frames of at most that many payload bytes. Default: no fragmentation.
	FragmentSize int
	// CompressionThreshold is the smallest message that is compressed when
	// permessage-deflate was negotiated; smaller ones are sent plain (§6.1
	// allows uncompressed messages). Default 128.
	CompressionThreshold int
	// CompressionLevel is a compress/flate level. Default flate.BestSpeed.
	CompressionLevel int
}

const (
	defaultReadLimit            = 1 << 20
	defaultPongTimeout          = 10 * time.Second
	defaultCloseTimeout         = 5 * time.Second
	defaultCompressionThreshold = 128
	readBufferSize              = 4096
)

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.ReadLimit <= 0 {
		r.ReadLimit = defaultReadLimit
	}
	if r.PongTimeout <= 0 {
		r.PongTimeout = defaultPongTimeout
	}
	if r.CloseTimeout <= 0 {
		r.CloseTimeout = defaultCloseTimeout
	}
	if r.CompressionThreshold <= 0 {
		r.CompressionThreshold = defaultCompressionThreshold
	}
	if r.CompressionLevel == 0 || r.CompressionLevel < flate.HuffmanOnly || r.CompressionLevel > flate.BestCompression {
		r.CompressionLevel = flate.BestSpeed
	}
	return r
}

// Conn is a WebSocket connection. ReadMessage must be called by one
// goroutine at a time; the write methods, Ping and Close are safe for
// concurrent use.
type Conn struct {
	nc     net.Conn
	raw    syscall.RawConn // set for TCP: lets an idle read wait without a buffer
	server bool
	// opts are shared by every connection made with the same options
	// (internOptions): a copy each would be 64 bytes per connection.
	opts *Options
	// readLimit is opts.ReadLimit, changeable by SetReadLimit while a
	// reader is blocked.
	readLimit atomic.Int64
	// rawReadFn and rawWriteFn are c.rawRead and c.rawWrite, the RawConn
	// callbacks, bound once.
	rawReadFn  func(fd uintptr) bool
	rawWriteFn func(fd uintptr)

	subprotocol string
	deflate     bool
	// readTakeover: the peer compresses with context takeover (only a
	// server that ignored our offer does), so its window is kept in dict.
	readTakeover bool
	// writeWindowBits is the largest window the peer accepts from us.
	writeWindowBits int

	readMu  sync.Mutex
	r       reader // guarded by readMu
	readErr error  // guarded by readMu; sticky once set

	// parkID identifies the connection while it is parked (Park); 0
	// otherwise. Guarded by the parker's mutex.
	parkID uint64

	writeMu   sync.Mutex
	w         writer // guarded by writeMu
	writeErr  error  // guarded by writeMu; sticky once set
	closeSent bool   // guarded by writeMu

	// localClose is the close this side sent first, if it did.
	localClose atomic.Pointer[CloseError]
	// cause is why the transport was closed from our side (pong timeout).
	cause    atomic.Pointer[error]
	ncClosed sync.Once
	// done is closed when the transport is. It is made only when someone
	// waits for it (Close), to keep idle connections small.
	doneMu    sync.Mutex
	done      chan struct{} // guarded by doneMu
	isDone    bool          // guarded by doneMu
	keepalive *keepalive
}

func newConn(nc net.Conn, server bool, buffered []byte, opts Options, subprotocol string, dp *deflateParams) *Conn {
	c := &Conn{
		nc:          nc,
		server:      server,
		opts:        internOptions(opts),
		subprotocol: subprotocol,
	}
	c.raw = rawConnOf(nc)
	c.rawReadFn = c.rawRead
	c.rawWriteFn = c.rawWrite
	c.readLimit.Store(opts.ReadLimit)
	if dp != nil {
		c.deflate = true
		if server {
			c.writeWindowBits = dp.serverMaxWindowBits
		} else {
			c.writeWindowBits = dp.clientMaxWindowBits
			c.readTakeover = !dp.serverNoContextTakeover
		}
	}
	if !server {
		var seed [32]byte
		_, _ = rand.Read(seed[:]) // never fails (crypto/rand since Go 1.24)
		// ChaCha8 is a CSPRNG: masking keys are unpredictable, as §10.3
		// requires, without a system call per frame.
		c.w.maskRand = mrand.NewChaCha8(seed)
	}
	if len(buffered) > 0 {
		c.r.buf = getReadBuffer(len(buffered))
		c.r.end = copy(c.r.buf, buffered)
	}
	if opts.PingInterval > 0 {
		startKeepalive(c, opts.PingInterval, opts.PongTimeout)
	}
	return c
}

// interned holds one *Options per distinct value of Options, so that the
// connections of a server (or of a load tool) share one. Options is small
// and comparable; a program uses few distinct ones, and past maxInterned
// the rest get copies of their own. A map keyed by the value itself: a
// lookup allocates nothing, where a sync.Map's key would be boxed in an
// interface on every connection.
var (
	internMu sync.RWMutex
	interned = map[Options]*Options{}
)

const maxInterned = 64

func internOptions(o Options) *Options {
	internMu.RLock()
	p := interned[o]
	internMu.RUnlock()
	if p != nil {
		return p
	}
	p = new(Options)
	*p = o
	internMu.Lock()
	defer internMu.Unlock()
	if q := interned[o]; q != nil {
		return q
	}
	if len(interned) < maxInterned {
		interned[o] = p
	}
	return p
}

// Subprotocol returns the negotiated subprotocol, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Compressed reports whether permessage-deflate was negotiated.
func (c *Conn) Compressed() bool { return c.deflate }

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// SetReadLimit changes the read limit for the following frames; n <= 0
// restores the default. It does not wait for a blocked ReadMessage.
func (c *Conn) SetReadLimit(n int64) {
	if n <= 0 {
		n = defaultReadLimit
	}
	c.readLimit.Store(n)
}

// noteActivity records that bytes arrived from the peer, for keepalive.
func (c *Conn) noteActivity() {
	if c.keepalive != nil {
		c.keepalive.sawFrame()
	}
}

// closeTransport closes the network connection once; cause, when not nil,
// is reported as the reason by the reads that fail because of it.
func (c *Conn) closeTransport(cause error) {
	c.ncClosed.Do(func() {
		if cause != nil {
			// A copy: taking cause's own address would put it on the
			// heap on every call, nil or not.
			p := new(error)
			*p = cause
			c.cause.Store(p)
		}
		if c.keepalive != nil {
			c.keepalive.stop()
		}
		_ = c.nc.Close()
		c.doneMu.Lock()
		c.isDone = true
		if c.done != nil {
			close(c.done)
		}
		c.doneMu.Unlock()
		// A parked reader has no goroutine to see the close: resume it.
		c.unpark()
	})
}

// closed returns a channel that is closed once the transport is.
func (c *Conn) closed() <-chan struct{} {
	c.doneMu.Lock()
	defer c.doneMu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.isDone {
			close(c.done)
		}
	}
	return c.done
}

// Buffer pools: an idle connection holds neither a read nor a write buffer.

// The pool holds array pointers: a slice converts to one and back without
// an allocation, whereas putting &slice would allocate a header every time.
var readBufferPool = sync.Pool{New: func() any { return new([readBufferSize]byte) }}

func getReadBuffer(min int) []byte {
	if min > readBufferSize {
		return make([]byte, min)
	}
	return readBufferPool.Get().(*[readBufferSize]byte)[:]
}

func putReadBuffer(b []byte) {
	if cap(b) != readBufferSize {
		return
	}
	readBufferPool.Put((*[readBufferSize]byte)(b[:readBufferSize]))
}

// keepalive pings the peer every interval and closes the connection when
// nothing at all was read within timeout after a ping. It runs on one timer
// (no goroutine while waiting) that alternates between the two phases.
type keepalive struct {
	c        *Conn
	interval time.Duration
	timeout  time.Duration
	lastRead atomic.Int64 // unix nanoseconds of the last read from the peer
	mu       sync.Mutex
	timer    *time.Timer
	pingAt   int64 // when the outstanding ping was sent; 0 when none
	stopped  bool
}

// startKeepalive sets c.keepalive and starts its timer. Everything the
// timer's goroutine reads (c.keepalive, k.timer) is written before it can
// run, or under k.mu.
func startKeepalive(c *Conn, interval, timeout time.Duration) {
	k := &keepalive{c: c, interval: interval, timeout: timeout}
	k.lastRead.Store(time.Now().UnixNano())
	c.keepalive = k
	k.mu.Lock()
	k.timer = time.AfterFunc(interval, k.tick)
	k.mu.Unlock()
}

// sawFrame records that the peer is alive (any bytes read count).
func (k *keepalive) sawFrame() { k.lastRead.Store(time.Now().UnixNano()) }

func (k *keepalive) tick() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	now := time.Now().UnixNano()
	if k.pingAt != 0 {
		// Check phase: any frame since the ping counts as an answer.
		if k.lastRead.Load() >= k.pingAt {
			next := time.Duration(k.pingAt + int64(k.interval) - now)
			k.pingAt = 0
			k.timer.Reset(max(next, 0))
			k.mu.Unlock()
			return
		}
		if now-k.pingAt >= int64(k.timeout) {
			k.stopped = true
			k.mu.Unlock()
			k.c.closeTransport(ErrPongTimeout)
			return
		}
		// Checked early (the interval is shorter than the timeout) and
		// no answer yet: look again when the timeout runs out.
		k.timer.Reset(time.Duration(k.pingAt + int64(k.timeout) - now))
		k.mu.Unlock()
		return
	}
	k.pingAt = now
	// Check at the next ping's time or at the timeout, whichever comes
	// first, so that an interval shorter than the timeout is kept.
	k.timer.Reset(min(k.interval, k.timeout))
	k.mu.Unlock()
	// A failed ping needs no handling here: the reader sees the broken
	// connection, and the check phase closes a peer that stopped reading.
	_ = k.c.writeControl(opPing, nil)
}

func (k *keepalive) stop() {
	k.mu.Lock()
	k.stopped = true
	k.timer.Stop()
	k.mu.Unlock()
}
