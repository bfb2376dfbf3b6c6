package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// forEach calls fn(i) for i in [0, n) on at most workers goroutines, and
// stops handing out work when ctx ends.
func forEach(ctx context.Context, n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// closeAll closes the connections with 1000 (normal closure), at most
// workers at a time, each waiting for the server's close frame.
func closeAll(conns []*ws.Conn, workers int) {
	forEach(context.Background(), len(conns), workers, func(i int) {
		if c := conns[i]; c != nil {
			_ = c.Close(ws.StatusNormalClosure, "benchmark done")
		}
	})
}

// waitGroupTimeout waits for wg at most d; it reports whether wg finished.
func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// sleepUntil sleeps until t or until ctx ends; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
