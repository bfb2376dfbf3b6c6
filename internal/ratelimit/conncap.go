package ratelimit

import "sync/atomic"

// ConnCap caps the number of connections one node serves (PROTOCOL.md §1
// admission: 503 with Retry-After when full). It is a counter rather than a
// semaphore channel so that the current value is cheap to export as a metric
// and an unlimited cap costs one atomic add.
//
// A ConnCap is safe for concurrent use. The zero ConnCap is unlimited.
type ConnCap struct {
	max int64
	cur atomic.Int64
}

// NewConnCap returns a cap of n connections; zero or negative means
// unlimited (Current still counts).
func NewConnCap(n int64) *ConnCap {
	return &ConnCap{max: n}
}

// TryAcquire takes a slot and reports whether one was free. Every true must
// be matched by exactly one Release, when the connection ends.
func (c *ConnCap) TryAcquire() bool {
	if c.max <= 0 {
		c.cur.Add(1)
		return true
	}
	// A CAS loop rather than Add-then-undo: the undo would briefly push the
	// count over max and make a concurrent caller fail while a slot is free.
	for {
		n := c.cur.Load()
		if n >= c.max {
			return false
		}
		if c.cur.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back a slot taken by TryAcquire. Releasing more than was
// acquired is a bug in the caller and panics, like a negative
// sync.WaitGroup, because a cap that silently drifts is worse.
func (c *ConnCap) Release() {
	if c.cur.Add(-1) < 0 {
		c.cur.Add(1)
		panic("ratelimit: ConnCap.Release without a matching TryAcquire")
	}
}

// Current returns the number of slots in use.
func (c *ConnCap) Current() int64 { return c.cur.Load() }

// Max returns the cap; zero or negative means unlimited.
func (c *ConnCap) Max() int64 { return c.max }
