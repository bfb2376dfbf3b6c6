package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram's layout, in the style of HdrHistogram: values below
// histSub are counted exactly; above, every power of two is split into
// histHalf sub-buckets, so a value is known to within 1/histHalf (0.8 %).
const (
	histSubBits = 8
	histSub     = 1 << histSubBits
	histHalf    = histSub / 2
	// histMaxBits bounds the values: 2^47 ns is 39 hours. Larger values
	// are counted in the top bucket (and kept exactly as the max).
	histMaxBits = 47
	histBuckets = histSub + (histMaxBits-histSubBits)*histHalf
)

// hist is a log-linear histogram of non-negative values (nanoseconds
// here). Its memory is fixed, about 41 KiB, whatever is recorded, which is
// what lets a run record every one of millions of deliveries. record is
// safe for concurrent use; so is reading, which sees a value at most a
// few recordings stale.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	min    atomic.Int64
	max    atomic.Int64
}

func newHist() *hist {
	h := &hist{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf is the index of v's bucket.
func bucketOf(v int64) int {
	if v < histSub {
		return int(v)
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	g := bits.Len64(uint64(v)) - histSubBits // v is in [2^(7+g), 2^(8+g))
	sub := int(v>>g) - histHalf
	return histSub + (g-1)*histHalf + sub
}

// bucketHigh is the highest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	g := (i-histSub)/histHalf + 1
	sub := (i - histSub) % histHalf
	lo := int64(sub+histHalf) << g
	return lo + int64(1)<<g - 1
}

func (h *hist) record(v int64) {
	if v < 0 {
		v = 0 // a clock step; never negative latency
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
}

// merge adds o into h; h must not be recorded into meanwhile.
func (h *hist) merge(o *hist) {
	n := o.n.Load()
	if n == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(n)
	h.sum.Add(o.sum.Load())
	h.max.Store(max(h.max.Load(), o.max.Load()))
	h.min.Store(min(h.min.Load(), o.min.Load()))
}

func (h *hist) count() uint64 { return h.n.Load() }

// quantile returns the value at quantile q (0 < q <= 1): the highest
// value of the bucket holding the ceil(q*n)-th smallest value, clamped to
// the exact min and max. An empty histogram gives 0.
func (h *hist) quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			if i == histBuckets-1 {
				break // the top bucket is unbounded: its values end at max
			}
			v := bucketHigh(i)
			return min(max(v, h.min.Load()), h.max.Load())
		}
	}
	return h.max.Load()
}

// histShards is how many histograms a sharded one spreads recordings
// over, so that thousands of reading goroutines do not all contend on
// the same counters.
const histShards = 16

type shardedHist struct {
	shards [histShards]*hist
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i] = newHist()
	}
	return s
}

func (s *shardedHist) record(shard int, v int64) { s.shards[shard%histShards].record(v) }

// snapshot merges the shards into a new histogram.
func (s *shardedHist) snapshot() *hist {
	out := newHist()
	for _, h := range s.shards {
		out.merge(h)
	}
	return out
}

// latency is a histogram's summary as reported, in milliseconds.
type latency struct {
	Count  uint64  `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return math.Round(float64(ns)/float64(time.Millisecond)*1000) / 1000 }

func (h *hist) summary() latency {
	n := h.n.Load()
	if n == 0 {
		return latency{}
	}
	return latency{
		Count:  n,
		MinMS:  ms(h.min.Load()),
		MeanMS: ms(int64(h.sum.Load() / n)),
		P50MS:  ms(h.quantile(0.50)),
		P90MS:  ms(h.quantile(0.90)),
		P99MS:  ms(h.quantile(0.99)),
		P999MS: ms(h.quantile(0.999)),
		MaxMS:  ms(h.max.Load()),
	}
}
