package server

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestDeferAccept: the listener gets TCP_DEFER_ACCEPT, and a connection
// that sends its request right away is accepted with it.
func TestDeferAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deferAccept(ln, sniffTimeout)
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if v <= 0 {
		t.Fatalf("TCP_DEFER_ACCEPT is %d", v)
	}

	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /ws HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	buf := make([]byte, 64)
	_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := sc.Read(buf); err != nil || string(buf[:n]) != "GET /ws HTTP/1.1\r\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}

	// Not a TCP listener: nothing to do, and no panic.
	deferAccept(struct{ net.Listener }{ln}, sniffTimeout)
}
