//go:build unix

package ws

import (
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
	c.r.freshErr = nil
	// c.rawReadFn is the method value c.rawRead, made once in newConn: a
	// closure made here would cost allocations on every message.
	if err := c.raw.Read(c.rawReadFn); err != nil {
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
