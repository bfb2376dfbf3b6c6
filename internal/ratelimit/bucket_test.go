package ratelimit_test

import (
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/chatd/chatd/internal/ratelimit"
)

// t0 is an arbitrary wall-clock time. Tests pass times explicitly and never
// sleep, so they are deterministic under -race and on a loaded machine.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

type step struct {
	at    time.Duration // since t0
	ok    bool
	retry time.Duration
}

func TestBucket(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{
			name: "burst then refill", rate: 2, burst: 3,
			steps: []step{
				{0, true, 0}, {0, true, 0}, {0, true, 0},
				{0, false, 500 * ms},
				{250 * ms, false, 250 * ms},
				{500 * ms, true, 0},
				{500 * ms, false, 500 * ms},
				{1000 * ms, true, 0},
			},
		},
		{
			name: "idle time is not banked beyond burst", rate: 2, burst: 3,
			steps: []step{
				{0, true, 0},
				{time.Hour, true, 0}, {time.Hour, true, 0}, {time.Hour, true, 0},
				{time.Hour, false, 500 * ms},
			},
		},
		{
			name: "refused calls take nothing", rate: 1, burst: 1,
			steps: []step{
				{0, true, 0},
				{100 * ms, false, 900 * ms}, {200 * ms, false, 800 * ms}, {900 * ms, false, 100 * ms},
				{1000 * ms, true, 0},
			},
		},
		{
			name: "steady rate is always allowed", rate: 10, burst: 1,
			steps: []step{
				{0, true, 0}, {100 * ms, true, 0}, {200 * ms, true, 0}, {300 * ms, true, 0},
				{350 * ms, false, 50 * ms},
			},
		},
		{
			name: "burst below 1 is 1", rate: 1, burst: 0,
			steps: []step{{0, true, 0}, {0, false, time.Second}},
		},
		{
			name: "fractional rate", rate: 0.5, burst: 1,
			steps: []step{{0, true, 0}, {time.Second, false, time.Second}, {2 * time.Second, true, 0}},
		},
		{
			name: "zero rate is unlimited", rate: 0, burst: 1,
			steps: []step{{0, true, 0}, {0, true, 0}, {0, true, 0}},
		},
		{
			name: "negative rate is unlimited", rate: -1, burst: 1,
			steps: []step{{0, true, 0}, {0, true, 0}},
		},
		{
			name: "NaN rate is unlimited", rate: math.NaN(), burst: 1,
			steps: []step{{0, true, 0}, {0, true, 0}},
		},
		{
			name: "infinite rate is unlimited", rate: math.Inf(1), burst: 1,
			steps: []step{{0, true, 0}, {0, true, 0}},
		},
		{
			name: "clock stepping back costs at most one burst", rate: 1, burst: 2,
			steps: []step{
				{time.Hour, true, 0}, {time.Hour, true, 0},
				{0, false, time.Second}, // an hour back: not refused for an hour
				{time.Second, true, 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := ratelimit.NewBucket(tt.rate, tt.burst)
			for i, s := range tt.steps {
				ok, retry := b.Allow(at(s.at))
				if ok != s.ok || retry != s.retry {
					t.Fatalf("step %d at %v: Allow = (%v, %v), want (%v, %v)", i, s.at, ok, retry, s.ok, s.retry)
				}
			}
		})
	}
}

func TestBucketZeroValueIsUnlimited(t *testing.T) {
	t.Parallel()
	var b ratelimit.Bucket
	for i := range 1000 {
		if ok, _ := b.Allow(t0); !ok {
			t.Fatalf("call %d refused", i)
		}
	}
}

// A full bucket must work for times on either side of the package's
// internal epoch (time.Unix(0,0) in tests, time.Now() in production).
func TestBucketFarPastAndFuture(t *testing.T) {
	t.Parallel()
	for _, base := range []time.Time{time.Unix(0, 0), time.Unix(1, 0), time.Now(), time.Now().Add(100 * 365 * 24 * time.Hour)} {
		b := ratelimit.NewBucket(1, 2)
		for i, want := range []bool{true, true, false} {
			if ok, _ := b.Allow(base); ok != want {
				t.Fatalf("base %v call %d: ok = %v, want %v", base, i, ok, want)
			}
		}
	}
}

// The Bucket lives in every connection; keep it small.
func TestBucketSize(t *testing.T) {
	t.Parallel()
	if s := unsafe.Sizeof(ratelimit.Bucket{}); s > 24 {
		t.Fatalf("sizeof(Bucket) = %d, want <= 24", s)
	}
	if s := unsafe.Sizeof(ratelimit.Strikes{}); s > 24 {
		t.Fatalf("sizeof(Strikes) = %d, want <= 24", s)
	}
}

func TestAllocs(t *testing.T) {
	b := ratelimit.NewBucket(1000, 10)
	s := ratelimit.NewStrikes(5, time.Second)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		b.Allow(now)
	}); n != 0 {
		t.Errorf("Bucket.Allow: %v allocs/op, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		s.Deny(now)
	}); n != 0 {
		t.Errorf("Strikes.Deny: %v allocs/op, want 0", n)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Hour, "1"},
		{0, "1"},
		{1, "1"},
		{time.Second, "1"},
		{time.Second + 1, "2"},
		{1500 * time.Millisecond, "2"},
		{59*time.Second + time.Millisecond, "60"},
		{time.Hour, "3600"},
		{math.MaxInt64, "9223372037"},
	}
	for _, tt := range tests {
		if got := ratelimit.RetryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestRetryMillis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want int64
	}{
		{-time.Hour, 1},
		{0, 1},
		{1, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{333_333_334, 334},
		{time.Second, 1000},
		{time.Second + 1, 1001},
		{math.MaxInt64, 9223372036855},
	}
	for _, tt := range tests {
		if got := ratelimit.RetryMillis(tt.d); got != tt.want {
			t.Errorf("RetryMillis(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

// TestRetryMillisAdmits: a client told retry_ms that waits exactly that
// long is admitted, whatever fraction of a millisecond the limiter's
// interval has; one that comes back a millisecond early is not. Rounded
// down, retry_ms would send it back early and have it refused again.
func TestRetryMillisAdmits(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{3, 7, 0.3, 1000.0 / 3, 20} {
		for _, burst := range []int{1, 4} {
			limiters := map[string]func(now time.Time) (bool, time.Duration){}
			b := ratelimit.NewBucket(rate, burst)
			limiters["Bucket"] = b.Allow
			u := ratelimit.NewLocalUserLimiter(rate, burst)
			limiters["LocalUserLimiter"] = func(now time.Time) (bool, time.Duration) {
				d := u.AllowAt("ann", now)
				return d.Allowed, d.RetryAfter
			}
			for name, allow := range limiters {
				now := at(0)
				for range burst {
					if ok, _ := allow(now); !ok {
						t.Fatalf("%s %v/%d: the burst was refused", name, rate, burst)
					}
				}
				// Refused a little later than the burst, at an odd moment.
				now = now.Add(123457 * time.Nanosecond)
				ok, retry := allow(now)
				if ok {
					t.Fatalf("%s %v/%d: allowed beyond the burst", name, rate, burst)
				}
				wait := time.Duration(ratelimit.RetryMillis(retry)) * time.Millisecond
				if early, _ := allow(now.Add(wait - time.Millisecond)); early && wait > time.Millisecond {
					t.Errorf("%s %v/%d: admitted a millisecond before retry_ms %v (retry %v)", name, rate, burst, wait, retry)
				}
				if ok, again := allow(now.Add(wait)); !ok {
					t.Errorf("%s %v/%d: refused after waiting exactly retry_ms %v (retry %v, now %v more)", name, rate, burst, wait, retry, again)
				}
			}
		}
	}
}
