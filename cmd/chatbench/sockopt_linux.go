package main

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h), missing
// from package syscall.
const ipBindAddressNoPort = 24

// bindAddressNoPort is the Control of a net.Dialer with a LocalAddr: it
// lets the kernel pick the source port at connect time, for the whole
// 4-tuple, instead of at bind time, where a port bound to one source
// address can never be shared by two connections. Without it a source
// address gives at most one connection per ephemeral port in all (about
// 28,000), TIME_WAIT included; with it, one per port and server.
func bindAddressNoPort(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		// Best effort: an old kernel without it still works, with fewer ports.
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}
