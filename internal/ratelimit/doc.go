// Package ratelimit holds the admission and flood limits of chatd
// (PROTOCOL.md §1 "admission" and §6 "rate limits").
//
// Everything here decides from the time the caller passes in: no
// goroutines, no timers, and therefore nothing to Close. Passing now
// explicitly saves a clock read the caller has usually made already and
// makes every limit testable without sleeping. The one exception is
// UserLimiter.Allow: a limiter shared by the cluster must decide on a single
// clock, so it takes none (LocalUserLimiter.AllowAt takes one for tests).
//
//   - Bucket limits one connection's messages; it lives inside the
//     connection, is 24 bytes and allocates nothing.
//   - Strikes notices a connection that keeps sending far over its Bucket,
//     which the server closes with 1008.
//   - UserLimiter is the per-user limit across all nodes. LocalUserLimiter
//     is the single-node implementation; a Redis one will satisfy the same
//     interface later.
//   - IPLimiter limits WebSocket upgrades per client address (IPv6 grouped
//     by /64) and ConnCap caps the connections of one node; both answer
//     with 429/503 and a Retry-After built by RetryAfterSeconds.
//
// All limits use GCRA (the generic cell rate algorithm), which is a token
// bucket stored as a single timestamp: the "theoretical arrival time" (TAT)
// at which the bucket would be full again. Tokens are never stored or
// refilled; they follow from how far TAT is ahead of now. One int64 of state
// is what keeps Bucket small, and "TAT <= now" is exactly "the bucket is full,
// forgetting it loses nothing", which is how the shared tables expire idle
// entries.
package ratelimit
