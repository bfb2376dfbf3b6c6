package ratelimit

import (
	"context"
	"hash/maphash"
	"time"
)

// Decision is the answer of a UserLimiter.
type Decision struct {
	Allowed bool
	// RetryAfter is how long until the next message would be allowed;
	// set only when Allowed is false. It becomes retry_ms in the
	// rate_limited error.
	RetryAfter time.Duration
}

// UserLimiter is the per-user message limit of PROTOCOL.md §6, which holds
// across all nodes: a user with connections on three nodes shares one
// budget. It is an interface so that the single-node LocalUserLimiter can be
// replaced by one that keeps the state in Redis.
//
// Allow takes no time argument on purpose: a shared limiter must decide on
// one clock (the Redis server's), not on the clocks of the nodes.
//
// Allow returns an error only when it could not decide (Redis down, ctx
// done). Callers should then let the message through: the per-connection
// Bucket still bounds each connection, and refusing every message while the
// broker is down would turn an outage into a lockout.
//
// Implementations must be safe for concurrent use.
type UserLimiter interface {
	Allow(ctx context.Context, user string) (Decision, error)
}

var _ UserLimiter = (*LocalUserLimiter)(nil)

// LocalUserLimiter is a UserLimiter for a single node: a token bucket per
// user in a sharded in-memory map. It is safe for concurrent use.
//
// Memory is bounded by expiry, without a goroutine: a user's entry is
// dropped once its bucket is full again (idle for the time a whole burst
// takes to refill), which loses nothing. Each shard sweeps itself lazily
// during Allow; Sweep lets an owner with a ticker do it eagerly.
type LocalUserLimiter struct {
	t *table[string]
}

// NewLocalUserLimiter returns a limiter of rate messages per second with a
// burst of burst per user. A rate that is zero, negative, NaN or +Inf
// disables the limit; a burst below 1 is taken as 1.
func NewLocalUserLimiter(rate float64, burst int) *LocalUserLimiter {
	seed := maphash.MakeSeed()
	hash := func(s string) uint64 { return maphash.String(seed, s) }
	return &LocalUserLimiter{t: newTable(newLimit(rate, burst), 0, hash)}
}

// Allow implements UserLimiter on the local clock. It never returns an error
// and does not block, so ctx is not consulted.
func (l *LocalUserLimiter) Allow(_ context.Context, user string) (Decision, error) {
	return l.AllowAt(user, time.Now()), nil
}

// AllowAt is Allow at a given time, for tests and for callers that already
// read the clock.
func (l *LocalUserLimiter) AllowAt(user string, now time.Time) Decision {
	ok, retry := l.t.allow(user, nanos(now))
	return Decision{Allowed: ok, RetryAfter: retry}
}

// Sweep drops the entries of users whose buckets are full at now.
func (l *LocalUserLimiter) Sweep(now time.Time) { l.t.sweepAll(nanos(now)) }

// Len returns the number of users tracked, for metrics and tests.
func (l *LocalUserLimiter) Len() int { return l.t.len() }
