package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ratelimit"
)

func TestLocalUserLimiter(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	type call struct {
		user  string
		at    time.Duration
		ok    bool
		retry time.Duration
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		calls []call
	}{
		{
			name: "burst, retry and refill", rate: 4, burst: 2,
			calls: []call{
				{"ann", 0, true, 0}, {"ann", 0, true, 0},
				{"ann", 0, false, 250 * ms},
				{"ann", 100 * ms, false, 150 * ms},
				{"ann", 250 * ms, true, 0},
				{"ann", 250 * ms, false, 250 * ms},
			},
		},
		{
			name: "users are isolated", rate: 1, burst: 1,
			calls: []call{
				{"ann", 0, true, 0}, {"ann", 0, false, time.Second},
				{"bob", 0, true, 0}, {"bob", 0, false, time.Second},
				{"", 0, true, 0}, {"", 0, false, time.Second},
				{"ann", time.Second, true, 0},
			},
		},
		{
			name: "unlimited", rate: 0, burst: 1,
			calls: []call{{"ann", 0, true, 0}, {"ann", 0, true, 0}, {"ann", 0, true, 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := ratelimit.NewLocalUserLimiter(tt.rate, tt.burst)
			for i, c := range tt.calls {
				d := l.AllowAt(c.user, at(c.at))
				if d.Allowed != c.ok || d.RetryAfter != c.retry {
					t.Fatalf("call %d (%q at %v) = %+v, want {Allowed:%v RetryAfter:%v}", i, c.user, c.at, d, c.ok, c.retry)
				}
			}
		})
	}
}

func TestLocalUserLimiterAllowUsesClock(t *testing.T) {
	t.Parallel()
	var l ratelimit.UserLimiter = ratelimit.NewLocalUserLimiter(1e-3, 1)
	ctx := context.Background()
	if d, err := l.Allow(ctx, "ann"); err != nil || !d.Allowed {
		t.Fatalf("first Allow = %+v, %v; want allowed", d, err)
	}
	// 1000 s per token: refused whatever the wall clock does during the test.
	if d, err := l.Allow(ctx, "ann"); err != nil || d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("second Allow = %+v, %v; want refused with RetryAfter > 0", d, err)
	}
}

func TestLocalUserLimiterSweep(t *testing.T) {
	t.Parallel()
	// rate 2, burst 4: a full burst refills in 2 s.
	l := ratelimit.NewLocalUserLimiter(2, 4)
	for i := range 100 {
		l.AllowAt(fmt.Sprint("user", i), t0)
	}
	l.AllowAt("busy", t0)
	l.AllowAt("busy", t0)
	l.AllowAt("busy", t0)
	if n := l.Len(); n != 101 {
		t.Fatalf("Len = %d, want 101", n)
	}
	// At 0.5 s the one-token users are full again; busy (3 taken) is not.
	l.Sweep(at(500 * time.Millisecond))
	if n := l.Len(); n != 1 {
		t.Fatalf("Len after sweep = %d, want 1 (busy)", n)
	}
	// busy's state survived the sweep: one token left, then refused.
	if d := l.AllowAt("busy", at(500*time.Millisecond)); !d.Allowed {
		t.Fatalf("busy: %+v, want allowed (1 + 1 refilled of 4)", d)
	}
	if d := l.AllowAt("busy", at(500*time.Millisecond)); !d.Allowed {
		t.Fatalf("busy: %+v, want allowed", d)
	}
	if d := l.AllowAt("busy", at(500*time.Millisecond)); d.Allowed || d.RetryAfter != 500*time.Millisecond {
		t.Fatalf("busy: %+v, want refused for 500ms", d)
	}
	l.Sweep(at(2500 * time.Millisecond))
	if n := l.Len(); n != 0 {
		t.Fatalf("Len after full refill = %d, want 0", n)
	}
}

// Without Sweep, expiry still happens during Allow, so memory follows the
// number of recently active users, not of all users ever seen.
func TestLocalUserLimiterLazyExpiry(t *testing.T) {
	t.Parallel()
	l := ratelimit.NewLocalUserLimiter(10, 1) // refill 100 ms; shards sweep every 1 s
	now := t0
	for round := range 20 {
		for i := range 1000 {
			l.AllowAt(fmt.Sprintf("r%d-u%d", round, i), now)
		}
		now = now.Add(5 * time.Second)
	}
	// Each round's users are idle by the next round; 64 shards sweep
	// themselves when touched, so at most the last round plus stragglers
	// of shards the last round did not reach remain.
	if n := l.Len(); n > 2000 {
		t.Fatalf("Len = %d after 20 rounds of 1000 users, want <= 2000", n)
	}
}

func TestLocalUserLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const burst, workers, perWorker = 50, 16, 100
	l := ratelimit.NewLocalUserLimiter(1, burst)
	var allowed [3]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				u := (w + i) % len(allowed)
				if l.AllowAt(fmt.Sprint("u", u), t0).Allowed {
					allowed[u].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for u := range allowed {
		if n := allowed[u].Load(); n != burst {
			t.Errorf("user %d: %d allowed at one instant, want exactly the burst %d", u, n, burst)
		}
	}
}
