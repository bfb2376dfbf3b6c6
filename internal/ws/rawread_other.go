//go:build !unix

package ws

import (
	"net"
	"syscall"
)

func rawConnOf(net.Conn) syscall.RawConn { return nil }

func (c *Conn) readFresh() error {
	c.r.buf, c.r.start, c.r.end = getReadBuffer(0), 0, 0
	return nil
}

func (c *Conn) rawRead(uintptr) bool { return true }

func (c *Conn) tryWrite([]byte) (int, error) { return 0, nil }

func (c *Conn) rawWrite(uintptr) {}

func (c *Conn) socketDrained() bool { return false }
