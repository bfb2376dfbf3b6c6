package ratelimit

import (
	"math"
	"sync"
	"time"
)

const (
	// maxShards bounds lock contention; a shard per core or so is plenty.
	maxShards = 64
	// minPerShard keeps small tables in few shards, so that a cap of a few
	// hundred entries is enforced exactly instead of being split into
	// shards too small to hold a burst of new addresses.
	minPerShard = 256
	// evictSample is how many entries a full shard looks at to make room
	// (Redis-style sampled eviction): constant work per insert even when an
	// attacker keeps every entry busy.
	evictSample = 8
	// minSweepEvery stops a very fast limit (small tau) from sweeping a
	// shard on nearly every call.
	minSweepEvery = int64(time.Second)
	// rebuildAbove is the map size from which a sweep that shrinks a map
	// to a quarter of its peak copies it: Go maps never give memory back on
	// delete, so without this a spike of users would be kept forever.
	rebuildAbove = 1024
)

// table is a sharded map from key to GCRA TAT, shared by the per-user and
// per-IP limiters. Only the TAT is stored: the limit is the same for all
// keys. An entry whose TAT is not after now is a full bucket, equal to no
// entry at all, so sweeping and eviction drop those first and lose nothing.
type table[K comparable] struct {
	limit
	shards     []shard[K]
	perShard   int // 0: unbounded
	sweepEvery int64
	hash       func(K) uint64
}

type shard[K comparable] struct {
	mu        sync.Mutex
	m         map[K]int64
	nextSweep int64
	peak      int
	// Keep the locks of neighbouring shards off one cache line.
	_ [32]byte
}

// newTable returns a table for l holding at most maxEntries keys
// (maxEntries <= 0: no cap, memory is bounded by expiry alone).
func newTable[K comparable](l limit, maxEntries int, hash func(K) uint64) *table[K] {
	n := maxShards
	perShard := 0
	if maxEntries > 0 {
		n = min(max(maxEntries/minPerShard, 1), maxShards)
		perShard = maxEntries / n // n*perShard <= maxEntries
	}
	t := &table[K]{
		limit:      l,
		shards:     make([]shard[K], n),
		perShard:   perShard,
		sweepEvery: max(l.tau, minSweepEvery),
		hash:       hash,
	}
	for i := range t.shards {
		t.shards[i].m = make(map[K]int64)
		t.shards[i].nextSweep = math.MinInt64
	}
	return t
}

func (t *table[K]) allow(key K, now int64) (bool, time.Duration) {
	if t.interval == 0 {
		return true, 0 // unlimited: track nothing
	}
	sh := &t.shards[t.hash(key)%uint64(len(t.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()

	// Lazy expiry: each shard sweeps itself at most once per refill time,
	// so an entry outlives its last use by at most about two refill times
	// and the sweeps cost O(1) per call amortised. The second condition
	// recovers from a wall clock that jumped backwards.
	if now >= sh.nextSweep || sh.nextSweep-now > t.sweepEvery {
		sh.sweep(now)
		sh.nextSweep = now + t.sweepEvery
	}

	tat, found := sh.m[key]
	if !found {
		tat = math.MinInt64
	}
	next, ok, retry := t.limit.allow(tat, now)
	if !found {
		if t.perShard > 0 && len(sh.m) >= t.perShard {
			sh.evict(now)
		}
		sh.m[key] = next
		sh.peak = max(sh.peak, len(sh.m))
	} else if next != tat {
		sh.m[key] = next
	}
	return ok, retry
}

// evict makes room for one entry in a full shard. Idle entries in the sample
// go first; if none is idle, the sampled entry nearest to full goes, which
// forgets the least debt. Evicting a busy entry hands its key a fresh burst,
// but the keys in a full table are mostly the flooder's own, and it could
// get the same by using another address.
func (sh *shard[K]) evict(now int64) {
	var (
		victim    K
		victimTAT int64 = math.MaxInt64
		freed     bool
		seen      int
	)
	for k, tat := range sh.m { // map order is randomised: a cheap sample
		if tat <= now {
			delete(sh.m, k)
			freed = true
		} else if tat < victimTAT {
			victim, victimTAT = k, tat
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if !freed && victimTAT != math.MaxInt64 {
		delete(sh.m, victim)
	}
}

func (sh *shard[K]) sweep(now int64) {
	for k, tat := range sh.m {
		if tat <= now {
			delete(sh.m, k)
		}
	}
	if sh.peak >= rebuildAbove && len(sh.m) < sh.peak/4 {
		m := make(map[K]int64, len(sh.m))
		for k, tat := range sh.m {
			m[k] = tat
		}
		sh.m = m
		sh.peak = len(m)
	}
}

// sweepAll drops every idle entry now.
func (t *table[K]) sweepAll(now int64) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.sweep(now)
		sh.nextSweep = now + t.sweepEvery
		sh.mu.Unlock()
	}
}

func (t *table[K]) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
