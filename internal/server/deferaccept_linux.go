package server

import (
	"net"
	"syscall"
	"time"
)

// deferAccept asks the kernel to hand a new connection over only once
// its first bytes have arrived (TCP_DEFER_ACCEPT, tcp(7)), or after
// timeout. Every client of chatd speaks first (an HTTP request, a TLS
// hello), and a connection accepted before its request arrived costs a
// read that finds nothing and a wait in the poller before the read that
// gets it. Best effort: a listener that is not TCP, or a kernel that
// refuses, accepts as before.
func deferAccept(ln net.Listener, timeout time.Duration) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, int(timeout/time.Second))
	})
}
