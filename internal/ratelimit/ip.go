package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// DefaultMaxIPs is the number of addresses an IPLimiter tracks when given no
// cap: at a 16-byte key and 8 bytes of state each, plus map overhead, a few
// MiB.
const DefaultMaxIPs = 100_000

// IPLimiter limits WebSocket upgrades per client address (PROTOCOL.md §1
// admission: 429 with Retry-After). It is safe for concurrent use.
//
// IPv6 addresses are grouped by /64: that is the smallest block handed to a
// subscriber, so one host can pick any address in it and a per-address limit
// would be no limit at all. IPv4-mapped IPv6 addresses count as their IPv4
// address, and zones are ignored.
//
// Memory is bounded twice: entries expire once their bucket is full again
// (lazily, or by Sweep), and the table never holds more than its cap. A new
// address arriving at a full table evicts an idle entry if one is found in
// a small random sample, else the sampled entry closest to full; either way
// the cost per call is constant, even under a flood from many addresses.
type IPLimiter struct {
	t *table[[16]byte]
}

// NewIPLimiter returns a limiter of rate upgrades per second with a burst of
// burst per address (or /64), tracking at most maxIPs addresses
// (DefaultMaxIPs if maxIPs <= 0). A rate that is zero, negative, NaN or +Inf
// disables the limit; a burst below 1 is taken as 1.
func NewIPLimiter(rate float64, burst int, maxIPs int) *IPLimiter {
	if maxIPs <= 0 {
		maxIPs = DefaultMaxIPs
	}
	seed := maphash.MakeSeed()
	// A seeded hash, so that nobody can aim many addresses at one shard.
	hash := func(k [16]byte) uint64 { return maphash.Bytes(seed, k[:]) }
	return &IPLimiter{t: newTable(newLimit(rate, burst), maxIPs, hash)}
}

// Allow counts one upgrade from ip at time now. When refused, retryAfter is
// how long until the next upgrade would be allowed (see RetryAfterSeconds).
// The invalid (zero) Addr has a bucket of its own, shared by every caller
// that passes one.
func (l *IPLimiter) Allow(ip netip.Addr, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.t.allow(ipKey(ip), nanos(now))
}

// Sweep drops the entries whose buckets are full at now.
func (l *IPLimiter) Sweep(now time.Time) { l.t.sweepAll(nanos(now)) }

// Len returns the number of addresses tracked, for metrics and tests.
func (l *IPLimiter) Len() int { return l.t.len() }

// invalidKey is the key of the zero Addr: all ones is neither IPv4-mapped
// nor a /64 prefix, so no real address shares it (all zeros would be ::/64,
// which holds ::1).
var invalidKey = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ipKey is the 16-byte form of the group ip belongs to: the address itself
// for IPv4 (as IPv4-mapped IPv6, which no /64 key can equal because a /64
// key has its low 64 bits zero), its /64 prefix for IPv6. A fixed-size array
// rather than netip.Addr keeps zones out and pointers out of the map.
func ipKey(ip netip.Addr) [16]byte {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return invalidKey
	}
	k := ip.As16()
	if ip.Is6() {
		clear(k[8:])
	}
	return k
}
