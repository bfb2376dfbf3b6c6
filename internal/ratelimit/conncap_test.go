package ratelimit_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chatd/chatd/internal/ratelimit"
)

func TestConnCap(t *testing.T) {
	t.Parallel()
	c := ratelimit.NewConnCap(2)
	for i, want := range []bool{true, true, false, false} {
		if got := c.TryAcquire(); got != want {
			t.Fatalf("TryAcquire %d = %v, want %v", i, got, want)
		}
	}
	if n := c.Current(); n != 2 {
		t.Fatalf("Current = %d, want 2", n)
	}
	c.Release()
	if !c.TryAcquire() {
		t.Fatal("TryAcquire after Release = false")
	}
	c.Release()
	c.Release()
	if n := c.Current(); n != 0 {
		t.Fatalf("Current = %d, want 0", n)
	}
}

func TestConnCapUnlimited(t *testing.T) {
	t.Parallel()
	for _, c := range []*ratelimit.ConnCap{ratelimit.NewConnCap(0), ratelimit.NewConnCap(-1), new(ratelimit.ConnCap)} {
		for range 1000 {
			if !c.TryAcquire() {
				t.Fatal("unlimited cap refused")
			}
		}
		if n := c.Current(); n != 1000 {
			t.Fatalf("Current = %d, want 1000", n)
		}
	}
}

func TestConnCapReleaseWithoutAcquirePanics(t *testing.T) {
	t.Parallel()
	c := ratelimit.NewConnCap(1)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
		if n := c.Current(); n != 0 {
			t.Fatalf("Current after the panic = %d, want 0", n)
		}
	}()
	c.Release()
}

func TestConnCapConcurrent(t *testing.T) {
	t.Parallel()
	const max, workers, rounds = 10, 32, 500
	c := ratelimit.NewConnCap(max)
	var holders, peak, acquired atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				if !c.TryAcquire() {
					continue
				}
				acquired.Add(1)
				h := holders.Add(1)
				for p := peak.Load(); h > p && !peak.CompareAndSwap(p, h); p = peak.Load() {
				}
				holders.Add(-1)
				c.Release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Fatalf("%d connections held at once, cap %d", p, max)
	}
	if acquired.Load() == 0 {
		t.Fatal("nothing acquired")
	}
	if n := c.Current(); n != 0 {
		t.Fatalf("Current after all released = %d, want 0", n)
	}

	// All at once, nobody releasing: exactly max succeed.
	var ok atomic.Int64
	for range workers {
		wg.Go(func() {
			if c.TryAcquire() {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != max || c.Current() != max {
		t.Fatalf("%d acquired, Current %d; want %d", ok.Load(), c.Current(), max)
	}
}
