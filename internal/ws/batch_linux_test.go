package ws

import (
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBatch is the CPU a fan-out's writes cost the writing thread:
// one message to each of 1,000 connections, whose readers drain them, paced
// like a 1,000-member room at 100 msg/s. cpu-ns/write is from
// getrusage(RUSAGE_THREAD), which on loopback includes the receiving
// side's TCP processing.
func BenchmarkBatch(b *testing.B) {
	for _, mode := range batchModes {
		b.Run(mode.name, func(b *testing.B) {
			const conns = 1000
			scs, rcs := serverConns(b, conns)
			var wg sync.WaitGroup
			for _, rc := range rcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 4096)
					for {
						if _, err := rc.nc.Read(buf); err != nil {
							return
						}
					}
				}()
			}
			defer func() {
				for _, rc := range rcs {
					rc.nc.Close()
				}
				wg.Wait()
			}()
			pm := NewPreparedMessage(Text, make([]byte, 140))
			batch := &Batch{oneByOne: mode.oneByOne}
			recs := make([]recorder, conns)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			start := threadCPU(b)
			written := 0
			for written < b.N {
				<-tick.C
				for i, sc := range scs {
					if written == b.N {
						break
					}
					if added, err := batch.Add(sc, &recs[i], pm); !added || err != nil {
						b.Fatalf("conn %d: added %v err %v", i, added, err)
					}
					written++
				}
				batch.Submit()
			}
			b.ReportMetric(float64(threadCPU(b)-start)/float64(written), "cpu-ns/write")
		})
	}
}

// threadCPU is the calling thread's CPU time so far.
func threadCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
