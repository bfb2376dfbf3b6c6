// Package redislimit is the per-user message limit of a chatd cluster: a
// ratelimit.UserLimiter whose state lives in Redis, so that a user with
// connections on several nodes shares one budget, and opening more
// connections on more nodes buys no more messages.
//
// The limit is GCRA (the generic cell rate algorithm, a token bucket kept
// as one timestamp): one key per user holding the theoretical arrival time
// of the next message, updated by a Lua script on Redis's clock, so that
// the nodes' clocks do not matter.
package redislimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd/chatd/internal/ratelimit"
)

// gcraScript decides one message.
//
// KEYS: the user's key. ARGV: emission interval in microseconds (the time
// one message costs), burst. Returns {allowed, retry after in
// microseconds}.
//
// tat is when the user's bucket would be full again; a message is allowed
// while tat - now is at most (burst-1) intervals, and moves tat on by one
// interval. The key expires when the bucket is full again.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
`)

// Limiter is a ratelimit.UserLimiter over Redis. It is safe for
// concurrent use.
type Limiter struct {
	client   redis.Scripter
	prefix   string
	interval int64 // microseconds per message; 0: no limit
	burst    int
}

var _ ratelimit.UserLimiter = (*Limiter)(nil)

// New returns a limiter of rate messages per second with a burst of burst
// per user, keeping its keys under prefix (e.g. "chatd:"). A rate that is
// zero, negative, NaN or +Inf disables the limit; a burst below 1 is taken
// as 1.
func New(client redis.Scripter, prefix string, rate float64, burst int) *Limiter {
	l := &Limiter{client: client, prefix: prefix, burst: max(burst, 1)}
	if rate > 0 && !math.IsInf(rate, 0) && !math.IsNaN(rate) {
		l.interval = max(int64(1e6/rate), 1)
	}
	return l
}

// key is the user's key; the user is the hash tag, so that users spread
// over the slots of a Redis Cluster.
func (l *Limiter) key(user string) string { return l.prefix + "rl:{" + user + "}" }

// Allow implements ratelimit.UserLimiter. It returns an error only when
// Redis could not decide.
func (l *Limiter) Allow(ctx context.Context, user string) (ratelimit.Decision, error) {
	if l.interval == 0 {
		return ratelimit.Decision{Allowed: true}, nil
	}
	res, err := gcraScript.Run(ctx, l.client, []string{l.key(user)}, l.interval, l.burst).Int64Slice()
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("rate limit %s: %w", user, err)
	}
	if len(res) != 2 {
		return ratelimit.Decision{}, fmt.Errorf("rate limit %s: unexpected reply %v", user, res)
	}
	if res[0] == 1 {
		return ratelimit.Decision{Allowed: true}, nil
	}
	return ratelimit.Decision{RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}
