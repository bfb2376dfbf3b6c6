package ratelimit

import "time"

// Strikes counts the refusals of one connection to tell a client that is
// briefly over its limit (it gets rate_limited errors) from one that keeps
// sending far over it (PROTOCOL.md §6: closed with 1008).
//
// The count runs in fixed windows: the first refusal opens a window of
// length window, and Deny reports tooMany once more than maxDenials
// refusals fell inside it. A window that has ended is forgotten at the next
// refusal. So tooMany is never reported unless maxDenials+1 refusals really
// happened within one window length; a flood that straddles a window edge
// is caught one window later, which is soon enough for abuse and keeps the
// state to a start time and a count (a sliding window would need
// maxDenials timestamps).
//
// Call Deny only when the connection's Bucket refused a message, not on
// every message: accepted messages must not wash out the refusals of a
// client sending at twice its rate, which alternates between the two.
//
// Strikes is 24 bytes, allocates nothing and, like Bucket, is not safe for
// concurrent use. The zero Strikes never reports tooMany.
type Strikes struct {
	window int64 // nanoseconds; 0 disables
	start  int64 // package clock time the current window opened
	max    int32
	count  int32
}

// NewStrikes returns a counter that reports tooMany from the
// (maxDenials+1)th refusal within window on. A maxDenials or window that is
// zero or negative disables it.
func NewStrikes(maxDenials int, window time.Duration) Strikes {
	if maxDenials <= 0 || window <= 0 {
		return Strikes{}
	}
	// count is int32; a maxDenials beyond 2^30 is "never" in practice.
	return Strikes{window: int64(window), max: int32(min(maxDenials, 1<<30))}
}

// Deny records one refusal at time now and reports whether the connection
// has now been refused more than maxDenials times within the current window.
func (s *Strikes) Deny(now time.Time) (tooMany bool) {
	if s.window == 0 {
		return false
	}
	t := nanos(now)
	// t < s.start only if the clock went backwards; start over rather than
	// keep a window that would then never end.
	if s.count == 0 || t-s.start >= s.window || t < s.start {
		s.start, s.count = t, 0
	}
	if s.count <= s.max {
		s.count++ // stays at max+1, so it cannot overflow
	}
	return s.count > s.max
}

// Reset forgets all refusals, keeping the configuration.
func (s *Strikes) Reset() {
	s.start, s.count = 0, 0
}
