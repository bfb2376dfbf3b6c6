//go:build linux

package ws

import (
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Park lets a server that serves many idle connections wait for their
// next messages without a goroutine each: an idle connection then costs
// no goroutine stack at all, only its Conn and socket.
//
// Parked connections are watched by one epoll instance of the package's
// own (the parker), with a one-shot registration each. The parker's epoll
// descriptor is itself watched by the Go netpoller, so that nothing
// blocks a thread: one goroutine (parker.loop) runs while any connection
// is parked, and hands each readable connection to a waker goroutine
// (Conn.wake, see wakers), which reads what arrived without waiting: control frames
// are handled there (a ping answered, a pong seen by keepalive), and only
// a data message, an error or the end of the connection resumes the
// caller. A connection closed while parked (CloseNow, a failed write, a
// pong timeout) is resumed too, so that its reader sees the error; so is,
// within a few seconds (sweepInterval), one whose net.Conn was closed
// underneath it.

// Park arranges for resume to run, on another goroutine, once the next data
// message has started arriving (WaitMessage then returns at once, and
// ReadMessage reads it) or the connection has failed or was closed (both
// return the error). It reports whether it parked the connection: false
// when there is something to read already (bytes buffered, a message
// started, an error), or the connection cannot be parked (TLS and other
// non-TCP connections): then the caller reads on its own goroutine, as
// without Park. Once Park returned true, the caller
// must not read until resume runs.
func (c *Conn) Park(resume func()) bool {
	if c.raw == nil || !c.quiet() {
		return false
	}
	return c.park(resume)
}

// quiet reports whether the reader has nothing to do but wait: no bytes
// buffered, no message under way (its first frame was read, by a wake or
// WaitMessage), no error to report. Parking otherwise would be resumed at
// once, over and over.
func (c *Conn) quiet() bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return c.r.end == c.r.start && !c.r.inMessage && c.readErr == nil
}

// park registers the connection with the parker. The caller is the
// reader, and holds no lock.
func (c *Conn) park(resume func()) bool {
	p := &theParker
	if p.start() != nil {
		return false
	}
	p.mu.Lock()
	c.doneMu.Lock()
	done := c.isDone
	c.doneMu.Unlock()
	if done {
		p.mu.Unlock()
		return false // the reader sees the closed connection
	}
	p.nextID++
	id := p.nextID
	p.addLocked(id, c, resume)
	c.parkID = id
	// Decided and set here, under the lock: once the registration below
	// is armed, it may fire and the next park run on another goroutine
	// before this one goes on.
	op := syscall.EPOLL_CTL_MOD
	if !c.r.parkAdded {
		op = syscall.EPOLL_CTL_ADD
		c.r.parkAdded = true
	}
	if !p.running {
		p.running = true
		go p.loop()
	}
	p.mu.Unlock()

	// One-shot: the registration fires once, and is armed again by the
	// next park. Level-triggered, so that bytes that arrived before it
	// was armed fire it at once.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var ctlErr error
	err := c.raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
		switch ctlErr {
		case syscall.EEXIST: // added before after all
			ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		case syscall.ENOENT: // not added yet after all
			ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil {
		err = ctlErr
	}
	if err == nil {
		return true // nothing of c may be touched from here on
	}
	// Not registered (closed meanwhile, or out of resources): take the
	// entry back, unless closeTransport did and resumes the reader.
	p.mu.Lock()
	_, mine := p.takeLocked(id)
	p.mu.Unlock()
	return !mine
}

// wake runs on a new goroutine when a parked connection became readable or
// was closed: it reads what arrived without waiting, and resumes the
// caller of Park when a data message started or the connection failed;
// otherwise (control frames only) it parks the connection again.
func (c *Conn) wake(resume func()) {
	c.readMu.Lock()
	started, err := c.pollMessageLocked()
	c.readMu.Unlock()
	if started || err != nil || !c.park(resume) {
		resume()
	}
}

// pollMessageLocked is WaitMessage without the wait: it reads and handles
// what the socket holds, and reports whether a data message has started.
// It returns a nil error and false when the socket ran dry first.
func (c *Conn) pollMessageLocked() (started bool, err error) {
	c.r.nonblock = true
	started, err = c.startMessageLocked()
	c.r.nonblock = false
	return started, err
}

// unpark resumes the reader of a connection that is closed while parked.
func (c *Conn) unpark() {
	p := &theParker
	p.mu.Lock()
	if c.parkID == 0 {
		p.mu.Unlock()
		return
	}
	e, ok := p.takeLocked(c.parkID)
	if !ok {
		p.mu.Unlock()
		return
	}
	empty := len(p.parked) == 0
	p.mu.Unlock()
	if empty {
		p.kick() // let the loop see there is nothing left to watch
	}
	p.workers.run(e)
}

// parker is the epoll instance that watches parked connections.
type parker struct {
	startOnce sync.Once
	startErr  error
	epfd      int
	file      *os.File        // epfd, in the Go netpoller
	raw       syscall.RawConn // file's
	kickR     int             // read end of a pipe in the epoll set: kick wakes the loop
	kickW     int

	mu      sync.Mutex
	nextID  uint64
	parked  map[uint64]parkEntry
	list    []parkRef // the parked connections, for the sweep
	running bool      // loop runs

	workers wakers
}

// wakers run the wakes (and the resumed readers) of parked connections.
// A wake served by a new goroutine would start on a small stack and grow
// it, copying it twice or so, while it serves a command, and that for
// every message of every parked connection; a worker that stays a while
// keeps its grown stack for the next wake. Workers are started when none
// is idle (a resumed reader may block, on a broker call say, and never
// holds up the others), and end after wakerIdle without work, so that an
// idle server keeps none.
type wakers struct {
	mu   sync.Mutex
	idle []*waker // last in, first out: the most recently used stack first
}

type waker struct {
	next chan parkEntry
}

// wakerIdle is how long a waker waits for work before it ends.
const wakerIdle = time.Second

// run has e's wake run by an idle waker, or a new one.
func (ws *wakers) run(e parkEntry) {
	ws.mu.Lock()
	if n := len(ws.idle); n > 0 {
		w := ws.idle[n-1]
		ws.idle[n-1] = nil
		ws.idle = ws.idle[:n-1]
		ws.mu.Unlock()
		w.next <- e // buffered: never blocks
		return
	}
	ws.mu.Unlock()
	w := &waker{next: make(chan parkEntry, 1)}
	go w.loop(ws, e)
}

func (w *waker) loop(ws *wakers, e parkEntry) {
	var timer *time.Timer
	for {
		e.c.wake(e.resume)
		e = parkEntry{}
		ws.mu.Lock()
		ws.idle = append(ws.idle, w)
		ws.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wakerIdle)
		} else {
			timer.Reset(wakerIdle)
		}
		select {
		case e = <-w.next:
			timer.Stop()
			continue
		case <-timer.C:
		}
		ws.mu.Lock()
		i := slices.Index(ws.idle, w)
		if i >= 0 {
			ws.idle = slices.Delete(ws.idle, i, i+1)
		}
		ws.mu.Unlock()
		if i >= 0 {
			return // nobody took this waker: it ends
		}
		// Taken just as its time ran out: the work is on its way.
		e = <-w.next
	}
}

type parkEntry struct {
	c      *Conn
	resume func()
	idx    int // in parker.list
}

// parkRef is an entry of parker.list: what the sweep needs, contiguous.
type parkRef struct {
	id uint64
	c  *Conn
}

// addLocked records a parked connection.
func (p *parker) addLocked(id uint64, c *Conn, resume func()) {
	p.parked[id] = parkEntry{c: c, resume: resume, idx: len(p.list)}
	p.list = append(p.list, parkRef{id: id, c: c})
}

// takeLocked removes a parked connection and returns its entry, if it is
// still parked.
func (p *parker) takeLocked(id uint64) (parkEntry, bool) {
	e, ok := p.parked[id]
	if !ok {
		return e, false
	}
	delete(p.parked, id)
	last := len(p.list) - 1
	if e.idx != last {
		moved := p.list[last]
		p.list[e.idx] = moved
		me := p.parked[moved.id]
		me.idx = e.idx
		p.parked[moved.id] = me
	}
	p.list[last] = parkRef{}
	p.list = p.list[:last]
	e.c.parkID = 0
	return e, true
}

var theParker parker

// start creates the epoll instance once; an error (no epoll) leaves Park
// answering false.
func (p *parker) start() error {
	p.startOnce.Do(func() { p.startErr = p.open() })
	return p.startErr
}

func (p *parker) open() error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return os.NewSyscallError("pipe2", err)
	}
	// Id 0 is the pipe: connections' ids start at 1.
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, pipe[0], &syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
		syscall.Close(epfd)
		syscall.Close(pipe[0])
		syscall.Close(pipe[1])
		return os.NewSyscallError("epoll_ctl", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	// A nonblocking descriptor given to os.NewFile joins the netpoller.
	f := os.NewFile(uintptr(epfd), "ws-parker")
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	p.epfd, p.file, p.raw, p.kickR, p.kickW = epfd, f, raw, pipe[0], pipe[1]
	p.mu.Lock()
	p.parked = map[uint64]parkEntry{}
	p.mu.Unlock()
	return nil // f stays open (and reachable) for the life of the process
}

// kick wakes the loop.
func (p *parker) kick() {
	_, _ = syscall.Write(p.kickW, []byte{1})
}

// The loop looks for parked connections whose socket was closed
// underneath their Conn (net.Conn.Close called on the connection Accept
// took over): such a close removes the socket from the epoll set without
// an event, and would leave the reader parked forever. It looks at every
// parked connection within sweepInterval, sweepChunk of them at a time
// without holding the lock, so that parks and wakes never wait behind a
// sweep of thousands of connections.
const (
	sweepInterval = 5 * time.Second
	sweepChunk    = 256
)

// loop hands readable connections to wake goroutines. It runs while any
// connection is parked, and ends when none is.
func (p *parker) loop() {
	events := make([]syscall.EpollEvent, 256)
	var ready []parkEntry
	nextSweep := time.Now().Add(sweepInterval)
	for {
		n := 0
		_ = p.file.SetReadDeadline(nextSweep)
		_ = p.raw.Read(func(fd uintptr) bool {
			for {
				m, err := syscall.EpollWait(int(fd), events, 0)
				if err == syscall.EINTR {
					continue
				}
				if err != nil {
					return true // not expected; look at the map and go on
				}
				n = m
				return m > 0
			}
		})
		p.mu.Lock()
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				var b [64]byte
				for {
					if m, _ := syscall.Read(p.kickR, b[:]); m <= 0 {
						break
					}
				}
				continue
			}
			// Not found: the connection was unparked (closed) already.
			if e, ok := p.takeLocked(id); ok {
				ready = append(ready, e)
			}
		}
		stop := len(p.parked) == 0
		if stop {
			p.running = false
		}
		p.mu.Unlock()
		for i, e := range ready {
			p.workers.run(e)
			ready[i] = parkEntry{}
		}
		ready = ready[:0]
		if stop {
			return
		}
		if now := time.Now(); !now.Before(nextSweep) {
			p.sweep()
			nextSweep = now.Add(sweepInterval)
		}
	}
}

// sweep resumes the parked connections whose socket is closed, checking
// sweepChunk of them per hold of the lock. Connections parked or woken
// meanwhile may be skipped or looked at twice: the next sweep sees them.
func (p *parker) sweep() {
	var chunk [sweepChunk]parkRef
	for start := 0; ; start += sweepChunk {
		p.mu.Lock()
		n := copy(chunk[:], p.list[min(start, len(p.list)):])
		p.mu.Unlock()
		for _, r := range chunk[:n] {
			if r.c.raw.Control(func(uintptr) {}) == nil {
				continue
			}
			p.mu.Lock()
			e, ok := p.takeLocked(r.id)
			p.mu.Unlock()
			if ok {
				p.workers.run(e) // its wake reads the error
			}
		}
		clear(chunk[:n])
		if n < sweepChunk {
			return
		}
	}
}
