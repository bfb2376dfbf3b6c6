//go:build unix

package ws

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// rawConnOf returns the raw connection of a TCP connection, or nil.
func rawConnOf(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// readFresh waits until the connection is readable and only then takes a
// read buffer from the pool and reads into it. An idle connection parked
// here holds no buffer: with many idle connections, that is most of the
// memory a connection would otherwise cost.
func (c *Conn) readFresh() error {
	if c.raw == nil {
		c.r.buf, c.r.start, c.r.end = getReadBuffer(0), 0, 0
		return nil
	}
	if !c.r.lingering {
		c.dropLingerDeadline()
	}
	c.r.freshErr = nil
	// c.rawReadFn is the method value c.rawRead, made once in newConn: a
	// closure made here would cost allocations on every message.
	if err := c.raw.Read(c.rawReadFn); err != nil {
		if c.r.lingering && errors.Is(err, os.ErrDeadlineExceeded) {
			return errWouldBlock // Linger's time is up
		}
		return err // the callback never succeeded, so no buffer is held
	}
	if err := c.r.freshErr; err != nil {
		c.r.freshErr = nil
		return err
	}
	c.noteActivity()
	return nil
}

// rawRead is the RawConn.Read callback of readFresh: false asks the
// netpoller to wait for readability.
func (c *Conn) rawRead(fd uintptr) bool {
	for {
		b := getReadBuffer(0)
		n, err := syscall.Read(int(fd), b)
		switch {
		case err == syscall.EINTR:
			putReadBuffer(b)
			continue
		case err == syscall.EAGAIN:
			putReadBuffer(b)
			if c.r.nonblock {
				c.r.freshErr = errWouldBlock
				return true
			}
			return false
		case err != nil:
			putReadBuffer(b)
			c.r.freshErr = os.NewSyscallError("read", err)
		case n == 0:
			putReadBuffer(b)
			c.r.freshErr = io.EOF
		default:
			c.r.buf, c.r.start, c.r.end = b, 0, n
		}
		return true
	}
}

// tryWrite writes as much of b as the socket takes now, without waiting
// and without a deadline: n < len(b) with a nil error means the socket's
// buffer is full. Without a raw connection (TLS, pipes) it writes nothing.
//
// It goes through RawConn.Control, which only holds a reference on the
// descriptor (so that it cannot be closed and reused meanwhile), rather
// than RawConn.Write, which also prepares the poller for a wait that never
// comes: on a server writing to thousands of connections, each of them
// touched a few times a second, that preparation is cache misses on the
// poller's state of every connection. Writes are serialised by writeMu.
func (c *Conn) tryWrite(b []byte) (n int, err error) {
	if c.raw == nil || len(b) == 0 {
		return 0, nil
	}
	c.w.out, c.w.outN, c.w.outErrno = b, 0, 0
	// c.rawWriteFn is c.rawWrite bound once, like rawReadFn.
	err = c.raw.Control(c.rawWriteFn)
	n, errno := c.w.outN, c.w.outErrno
	c.w.out = nil
	if err != nil {
		return 0, err // closed
	}
	if errno != 0 {
		return 0, os.NewSyscallError("write", errno)
	}
	return n, nil
}

// rawWrite is the RawConn.Control callback of tryWrite: one write system
// call, never a wait.
func (c *Conn) rawWrite(fd uintptr) {
	for {
		n, err := syscall.Write(int(fd), c.w.out)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
		case err != nil:
			c.w.outErrno, _ = err.(syscall.Errno)
			if c.w.outErrno == 0 {
				c.w.outErrno = syscall.EIO // syscall.Write returns only Errno
			}
		default:
			// A short write means the socket is full: trying the rest
			// now would only cost a system call that fails.
			c.w.outN = n
		}
		return
	}
}

// socketDrained reports whether the socket holds no unread bytes (or the
// peer has closed): then closing it sends no reset. It peeks without
// waiting; without a raw connection it reports false.
func (c *Conn) socketDrained() bool {
	if c.raw == nil {
		return false
	}
	drained := false
	_ = c.raw.Control(func(fd uintptr) {
		var b [1]byte
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			drained = err == syscall.EAGAIN || (err == nil && n == 0)
			return
		}
	})
	return drained
}
