// Package floor measures what the kernel charges a server for one small
// TCP write to a loopback peer: the floor under chatd's CPU per delivery,
// since chatd makes one write(2) per delivery whenever messages to a
// connection are further apart than the time it takes to write them.
//
//	cd bench && go test -run '^$' -bench . ./floor/
//
// The writer is one goroutine locked to its thread, writing a message to
// each of 1,000 connections in turn, 100 rounds a second (the shape of a
// 1,000-member room at 100 msg/s); its CPU is that thread's, from
// getrusage(RUSAGE_THREAD), which on loopback includes the receiving side's
// TCP processing that the kernel runs in the sender's context. The readers
// are goroutines of the same process, on other threads.
package floor

import (
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

func threadCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func connect(tb testing.TB, n int) (fds []int, done func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var clients, servers []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
		}()
		raw, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			tb.Fatal(err)
		}
		// The descriptor stays valid while s is open; the benchmark
		// closes s only after its last write.
		_ = raw.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
	}
	_ = ln.Close()
	return fds, func() {
		for _, s := range servers {
			_ = s.Close()
		}
		wg.Wait()
		for _, c := range clients {
			_ = c.Close()
		}
	}
}

// BenchmarkLoopbackWrite reports cpu-ns/write: the writing thread's CPU per
// 150-byte write(2), paced like a room's fan-out. b.N is the number of
// writes.
func BenchmarkLoopbackWrite(b *testing.B) {
	const conns = 1000
	fds, done := connect(b, conns)
	defer done()
	msg := make([]byte, 150) // about one chatd "message" event, framed

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	start := threadCPU(b)
	written := 0
	for written < b.N {
		<-tick.C
		for _, fd := range fds {
			if written == b.N {
				break
			}
			if _, err := syscall.Write(fd, msg); err != nil && err != syscall.EAGAIN {
				b.Fatalf("write: %v", err)
			}
			written++
		}
	}
	b.ReportMetric(float64(threadCPU(b)-start)/float64(written), "cpu-ns/write")
}
