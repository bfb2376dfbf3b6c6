package compare

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"

	coder "github.com/coder/websocket"
	gobwas "github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/chatd/chatd/internal/ws"
)

// library is one WebSocket server implementation, used the way its own
// documentation recommends for speed: buffers reused where its API allows,
// and its own prepared-message facility for broadcasts where it has one.
type library interface {
	name() string
	// echo handles a connection by echoing every data message.
	echo() http.Handler
	// hold handles a connection by registering it with h and reading
	// until it ends: an idle connection, and a broadcast target. The
	// reading runs in a goroutine of its own and the handler returns, so
	// that net/http lets go of what it holds for the request (its 4 KiB
	// read and write buffers, the request): with a handler that stays,
	// that is about 10 KB more per connection for every library.
	hold(h *holder) http.Handler
	// prepare encodes msg for broadcasting; write sends it to one held
	// connection.
	prepare(msg []byte) any
	write(conn, prepared any) error
}

var libraries = []library{ours{}, gorilla{}, coderLib{}, gobwasLib{}}

// broadcaster is a library with a way of its own to write one prepared
// message to many connections at once.
type broadcaster interface {
	broadcast(conns []any, prepared any) error
}

// deflater is a library whose echo server can negotiate permessage-deflate
// (without context takeover, which is what all of them support). gobwas/ws
// leaves compression to a separate package with a lower-level API, and is
// not measured there.
type deflater interface {
	library
	echoDeflate() http.Handler
}

// holder collects the held connections of a server.
type holder struct {
	mu     sync.Mutex
	conns  []any
	added  chan struct{}  // one token per connection added
	active sync.WaitGroup // connections whose read loop has not ended
}

func newHolder(n int) *holder { return &holder{added: make(chan struct{}, n)} }

// add registers a connection; its read loop calls h.active.Done when it
// ends.
func (h *holder) add(c any) {
	h.active.Add(1)
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	select {
	case h.added <- struct{}{}:
	default:
	}
}

func (h *holder) list() []any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]any(nil), h.conns...)
}

// ours: internal/ws. Reads reuse the buffer; broadcasts use
// PreparedMessage (framed once, written as is to every connection).
type ours struct{}

func (ours) name() string { return "chatd-ws" }

func (ours) echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, &ws.AcceptOptions{CheckOrigin: allowAll})
		if err != nil {
			return
		}
		defer c.CloseNow()
		var buf []byte
		for {
			typ, p, err := c.ReadMessage(buf[:0])
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				return
			}
			buf = p
		}
	})
}

func (ours) echoDeflate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, &ws.AcceptOptions{CheckOrigin: allowAll, Compression: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		var buf []byte
		for {
			typ, p, err := c.ReadMessage(buf[:0])
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, p); err != nil {
				return
			}
			buf = p
		}
	})
}

func (ours) hold(h *holder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, &ws.AcceptOptions{CheckOrigin: allowAll})
		if err != nil {
			return
		}
		h.add(c)
		go func() {
			defer h.active.Done()
			defer c.CloseNow()
			for {
				if _, _, err := c.ReadMessage(nil); err != nil {
					return
				}
			}
		}()
	})
}

func (ours) prepare(msg []byte) any { return ws.NewPreparedMessage(ws.Text, msg) }

func (ours) write(c, pm any) error { return c.(*ws.Conn).WritePrepared(pm.(*ws.PreparedMessage)) }

// broadcast writes pm to every connection through a ws.Batch, as chatd
// fans a message out: the writes go into the kernel together (io_uring,
// many sends per system call, where the kernel allows it). Once the batch
// is submitted (nothing may wait before that), a connection the batch did
// not take is written to with WritePrepared, and one whose socket took
// only part with Flush.
func (ours) broadcast(conns []any, pm any) error {
	p := pm.(*ws.PreparedMessage)
	ob := &oursBroadcast
	if len(ob.results) < len(conns) {
		ob.results = make([]batchResult, len(conns))
	}
	var failed error
	for i, c := range conns {
		ob.results[i] = batchResult{}
		added, err := ob.batch.Add(c.(*ws.Conn), &ob.results[i], p)
		if err != nil {
			failed = err
			break
		}
		ob.results[i].notTaken = !added
	}
	ob.batch.Submit()
	if failed != nil {
		return failed
	}
	for i, c := range conns {
		r := ob.results[i]
		var err error
		switch {
		case r.notTaken:
			err = c.(*ws.Conn).WritePrepared(p)
		case r.err != nil:
			err = r.err
		case !r.complete:
			err = c.(*ws.Conn).Flush()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// oursBroadcast is ours.broadcast's batch and results, reused from one
// broadcast to the next (the benchmarks broadcast from one goroutine).
var oursBroadcast struct {
	batch   ws.Batch
	results []batchResult
}

// batchResult is a ws.BatchWriter that keeps what it was told.
type batchResult struct {
	notTaken bool // the batch did not take the write
	complete bool
	err      error
}

func (r *batchResult) BatchWritten(complete bool, err error) { r.complete, r.err = complete, err }

// gorilla: gorilla/websocket. Echo with NextReader/NextWriter and
// io.Copy (the writer implements io.ReaderFrom, so nothing is copied
// twice), as its own echo examples do; broadcasts with
// PreparedMessage; idle connections release their write buffer
// (WriteBufferPool).
type gorilla struct{}

func (gorilla) name() string { return "gorilla" }

var gorillaWritePool sync.Pool

func (gorilla) echo() http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, rd, err := c.NextReader()
			if err != nil {
				return
			}
			wr, err := c.NextWriter(typ)
			if err != nil {
				return
			}
			if _, err := io.Copy(wr, rd); err != nil {
				return
			}
			if err := wr.Close(); err != nil {
				return
			}
		}
	})
}

func (gorilla) echoDeflate() http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, EnableCompression: true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, rd, err := c.NextReader()
			if err != nil {
				return
			}
			wr, err := c.NextWriter(typ)
			if err != nil {
				return
			}
			if _, err := io.Copy(wr, rd); err != nil {
				return
			}
			if err := wr.Close(); err != nil {
				return
			}
		}
	})
}

func (gorilla) hold(h *holder) http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, WriteBufferPool: &gorillaWritePool}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		h.add(c)
		go func() {
			defer h.active.Done()
			defer c.Close()
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
	})
}

func (gorilla) prepare(msg []byte) any {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, msg)
	if err != nil {
		panic(err)
	}
	return pm
}

func (gorilla) write(c, pm any) error {
	return c.(*websocket.Conn).WritePreparedMessage(pm.(*websocket.PreparedMessage))
}

// coderLib: coder/websocket. Echo with Reader into a reused buffer and
// Write; it has no prepared messages, so a broadcast is a Write per
// connection.
type coderLib struct{}

func (coderLib) name() string { return "coder" }

func (coderLib) echo() http.Handler { return coderEcho(coder.CompressionDisabled) }

func (coderLib) echoDeflate() http.Handler { return coderEcho(coder.CompressionNoContextTakeover) }

func coderEcho(mode coder.CompressionMode) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{InsecureSkipVerify: true, CompressionMode: mode})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := context.Background()
		buf := make([]byte, 0, 64<<10)
		for {
			typ, rd, err := c.Reader(ctx)
			if err != nil {
				return
			}
			buf = buf[:0]
			for {
				if len(buf) == cap(buf) {
					buf = append(buf, 0)[:len(buf)]
				}
				n, err := rd.Read(buf[len(buf):cap(buf)])
				buf = buf[:len(buf)+n]
				if err == io.EOF {
					break
				}
				if err != nil {
					return
				}
			}
			if err := c.Write(ctx, typ, buf); err != nil {
				return
			}
		}
	})
}

func (coderLib) hold(h *holder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		h.add(c)
		go func() {
			defer h.active.Done()
			defer c.CloseNow()
			for {
				if _, _, err := c.Reader(context.Background()); err != nil {
					return
				}
			}
		}()
	})
}

func (coderLib) prepare(msg []byte) any { return msg }

func (coderLib) write(c, msg any) error {
	return c.(*coder.Conn).Write(context.Background(), coder.MessageText, msg.([]byte))
}

// gobwasLib: gobwas/ws at its low level, the way it is meant for speed:
// frame headers read and written with caller buffers, payloads unmasked
// in place, a broadcast frame compiled once (CompileFrame) and written to
// every connection. The echo reads through a 4 KiB bufio.Reader; held
// connections read headers straight from the socket and hold no buffer.
type gobwasLib struct{}

func (gobwasLib) name() string { return "gobwas" }

func (gobwasLib) echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, _, err := gobwas.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReaderSize(nc, 4096)
		hbuf := make([]byte, 0, gobwas.MaxHeaderSize)
		var payload []byte
		for {
			h, err := gobwas.ReadHeaderBuffer(br, hbuf)
			if err != nil {
				return
			}
			if cap(payload) < int(h.Length) {
				payload = make([]byte, h.Length)
			}
			payload = payload[:h.Length]
			if _, err := io.ReadFull(br, payload); err != nil {
				return
			}
			if h.Masked {
				gobwas.Cipher(payload, h.Mask, 0)
			}
			if h.OpCode == gobwas.OpClose {
				return
			}
			if h.OpCode.IsControl() {
				continue
			}
			h.Masked = false
			if err := gobwas.WriteHeaderBuffer(nc, h, hbuf[:cap(hbuf)]); err != nil {
				return
			}
			if _, err := nc.Write(payload); err != nil {
				return
			}
		}
	})
}

func (gobwasLib) hold(h *holder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, _, _, err := gobwas.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		h.add(&gobwasConn{nc: nc})
		go func() {
			defer h.active.Done()
			defer nc.Close()
			var hbuf [gobwas.MaxHeaderSize]byte
			for {
				hd, err := gobwas.ReadHeaderBuffer(nc, hbuf[:0])
				if err != nil {
					return
				}
				if _, err := io.CopyN(io.Discard, nc, hd.Length); err != nil {
					return
				}
			}
		}()
	})
}

// gobwasConn serialises writes, as every other library does internally.
type gobwasConn struct {
	mu sync.Mutex
	nc net.Conn
}

func (gobwasLib) prepare(msg []byte) any { return gobwas.MustCompileFrame(gobwas.NewTextFrame(msg)) }

func (gobwasLib) write(c, frame any) error {
	gc := c.(*gobwasConn)
	gc.mu.Lock()
	defer gc.mu.Unlock()
	_, err := gc.nc.Write(frame.([]byte))
	return err
}

func allowAll(*http.Request) bool { return true }
