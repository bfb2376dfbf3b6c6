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
	var (
		buf  []byte
		n    int
		rerr error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			b := getReadBuffer(0)
			n, rerr = syscall.Read(int(fd), b)
			switch rerr {
			case syscall.EINTR:
				putReadBuffer(b)
				continue
			case syscall.EAGAIN:
				putReadBuffer(b)
				return false // wait for readability in the netpoller
			}
			buf = b
			return true
		}
	})
	switch {
	case err != nil:
		if buf != nil {
			putReadBuffer(buf)
		}
		return err
	case rerr != nil:
		putReadBuffer(buf)
		return os.NewSyscallError("read", rerr)
	case n == 0:
		putReadBuffer(buf)
		return io.EOF
	}
	c.r.buf, c.r.start, c.r.end = buf, 0, n
	return nil
}
