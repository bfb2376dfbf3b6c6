package ratelimit_test

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ratelimit"
)

// FuzzBucket drives a Bucket with arbitrary rates, bursts and gaps between
// calls, and checks the promises the server relies on: never more than the
// burst plus what the rate refilled, a positive retryAfter on refusal, and
// success when the client waits exactly retryAfter.
func FuzzBucket(f *testing.F) {
	f.Add(2.0, 3, []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Add(0.001, 1, []byte{255, 255, 255, 255, 0, 0, 0, 0})
	f.Add(1e9, 1<<20, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, rate float64, burst int, gaps []byte) {
		b := ratelimit.NewBucket(rate, burst)
		limited := rate > 0 && !math.IsInf(rate, 1)
		now, start := t0, t0
		allowed := 0
		for len(gaps) >= 4 {
			// Gaps of up to about 4 s, in nanoseconds.
			now = now.Add(time.Duration(binary.LittleEndian.Uint32(gaps)))
			gaps = gaps[4:]
			probe := b // Bucket is a value: probe the future on a copy
			ok, retry := b.Allow(now)
			if !limited {
				if !ok {
					t.Fatal("unlimited bucket refused")
				}
				continue
			}
			if ok {
				allowed++
				if retry != 0 {
					t.Fatalf("allowed with retryAfter %v", retry)
				}
				continue
			}
			if retry <= 0 {
				t.Fatalf("refused with retryAfter %v", retry)
			}
			early := probe
			if ok, _ := probe.Allow(now.Add(retry)); !ok {
				t.Fatalf("refused again after waiting retryAfter %v", retry)
			}
			// retryAfter is exact: one nanosecond less is still too early.
			if ok, _ := early.Allow(now.Add(retry - 1)); ok {
				t.Fatalf("allowed before retryAfter %v", retry)
			}
		}
		if !limited {
			return
		}
		effBurst := float64(min(max(burst, 1), 1<<30))
		elapsed := now.Sub(start).Seconds()
		// Allow one token of slack for the rounding of the interval.
		if limit := effBurst + elapsed*rate*1.000001 + 1; float64(allowed) > limit {
			t.Fatalf("rate %v burst %d: %d allowed in %v, limit %.0f", rate, burst, allowed, now.Sub(start), limit)
		}
	})
}
