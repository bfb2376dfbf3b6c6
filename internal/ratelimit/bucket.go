package ratelimit

import (
	"math"
	"strconv"
	"time"
)

// epoch is the origin of the int64 clock used by every limiter here.
// Converting with now.Sub(epoch) rather than now.UnixNano() keeps the
// monotonic reading of time.Now() values, so a wall-clock step (NTP, a VM
// resume) does not empty or refill buckets. Times without a monotonic
// reading (time.Unix in tests) are compared on the wall clock, which is fine
// as long as one limiter is always fed the same kind of time.
var epoch = time.Now()

// nanos returns now on the package clock. time.Time.Sub saturates instead of
// overflowing, so even the zero Time gives a usable (if meaningless) value.
func nanos(now time.Time) int64 { return int64(now.Sub(epoch)) }

const (
	// maxBurst caps burst so that interval*burst cannot overflow. A burst of
	// a billion is indistinguishable from no limit for chat traffic.
	maxBurst = 1 << 30
	// maxTau caps the time a full bucket takes to refill (about 36 years),
	// keeping TAT arithmetic far from int64 overflow for any real now.
	maxTau = 1 << 60
)

// limit is the immutable part of a GCRA limiter: the emission interval (how
// long one token takes to come back) and tau, the refill time of a whole
// burst. interval == 0 means unlimited.
type limit struct {
	interval int64
	tau      int64
}

// newLimit converts a rate per second and a burst into GCRA terms.
// A rate that is not a positive finite number disables the limit, so that a
// configuration value of 0 means "off" everywhere in chatd.
func newLimit(rate float64, burst int) limit {
	if !(rate > 0) || math.IsInf(rate, 1) {
		return limit{}
	}
	b := int64(min(max(burst, 1), maxBurst))
	interval := float64(time.Second) / rate
	// Clamp in float before converting: a conversion of an out-of-range
	// float to int64 is implementation-defined in Go.
	interval = min(max(interval, 1), float64(maxTau/b))
	l := limit{interval: int64(interval)}
	l.tau = l.interval * b
	return l
}

// allow is the GCRA step on TAT for time t. It returns the new TAT and, when
// the request is refused, how long until it would be accepted.
func (l limit) allow(tat, t int64) (newTAT int64, ok bool, retryAfter time.Duration) {
	if l.interval == 0 {
		return tat, true, 0
	}
	switch {
	case tat < t:
		// The bucket is full: idle time beyond a full burst is not banked.
		tat = t
	case tat-t > l.tau:
		// Only possible if the clock went backwards (a wall-clock time after
		// a step). Keep at most one burst of debt instead of refusing for as
		// long as the clock jumped.
		tat = t + l.tau
	}
	next := tat + l.interval
	if over := next - t - l.tau; over > 0 {
		return tat, false, time.Duration(over)
	}
	return next, true, 0
}

// Bucket is a token bucket for one connection: rate tokens per second, at
// most burst of them saved up, one token per message.
//
// Tokens are computed from the time passed to Allow (see the package
// comment), so a Bucket needs no goroutine or timer and Allow never
// allocates. It is 24 bytes and meant to be a field of the connection, not a
// pointer.
//
// A Bucket is not safe for concurrent use: it belongs to the goroutine that
// reads the connection. The zero Bucket allows everything.
type Bucket struct {
	limit
	tat int64
}

// NewBucket returns a full bucket that refills at rate tokens per second and
// holds at most burst tokens (a burst below 1 is taken as 1). A rate that is
// zero, negative, NaN or +Inf returns an unlimited bucket.
//
// The time per token is kept in whole nanoseconds, rounded down, so a rate
// above about a million per second is approximate (and errs on allowing).
func NewBucket(rate float64, burst int) Bucket {
	return Bucket{limit: newLimit(rate, burst), tat: math.MinInt64}
}

// Allow takes one token at time now. When none is left it returns false and
// how long until one will be: the retry_ms of a rate_limited error.
// A refused call takes nothing, so a client that waits retryAfter succeeds.
func (b *Bucket) Allow(now time.Time) (ok bool, retryAfter time.Duration) {
	b.tat, ok, retryAfter = b.allow(b.tat, nanos(now))
	return ok, retryAfter
}

// RetryMillis is d in whole milliseconds for retry_ms, rounded up so that
// a client that waits exactly that long is admitted (rounded down, it
// would come back up to a millisecond early and be refused again), and at
// least 1.
func RetryMillis(d time.Duration) int64 {
	if d <= time.Millisecond {
		return 1
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}

// RetryAfterSeconds formats d for an HTTP Retry-After header: whole seconds,
// rounded up so that a client that obeys it is not refused again, and at
// least 1 because "0" invites an immediate retry storm.
func RetryAfterSeconds(d time.Duration) string {
	if d <= 0 {
		return "1"
	}
	s := d / time.Second
	if d%time.Second != 0 {
		s++
	}
	return strconv.FormatInt(int64(s), 10)
}
