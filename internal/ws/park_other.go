//go:build !linux

package ws

// Park reports false: without epoll, a connection is read on its own
// goroutine (see park_linux.go).
func (c *Conn) Park(resume func()) bool { return false }

func (c *Conn) unpark() {}
