package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestBuckets checks the bucket layout: every value falls in a bucket
// whose high end is at or above it and within 1/histHalf of it, buckets
// are ordered, and the top bucket takes everything larger.
func TestBuckets(t *testing.T) {
	t.Parallel()
	check := func(v int64) {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, i, histBuckets)
		}
		hi := bucketHigh(i)
		if v >= 1<<histMaxBits {
			if i != histBuckets-1 {
				t.Fatalf("bucketOf(%d) = %d, want the top bucket", v, i)
			}
			return
		}
		if hi < v || float64(hi-v) > float64(v)/histHalf {
			t.Fatalf("value %d: bucket %d ends at %d, more than 1/%d above", v, i, hi, histHalf)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Fatalf("value %d is in bucket %d but the one below ends at %d", v, i, bucketHigh(i-1))
		}
	}
	for v := range int64(100_000) {
		check(v)
	}
	for s := 17; s < 63; s++ {
		for _, d := range []int64{-1, 0, 1} {
			check(int64(1)<<s + d)
		}
	}
	check(math.MaxInt64)
	for i := 1; i < histBuckets; i++ {
		if bucketHigh(i) <= bucketHigh(i-1) {
			t.Fatalf("bucket %d ends at %d, not above bucket %d (%d)", i, bucketHigh(i), i-1, bucketHigh(i-1))
		}
		if bucketOf(bucketHigh(i)) != i {
			t.Fatalf("bucketOf(bucketHigh(%d)) = %d", i, bucketOf(bucketHigh(i)))
		}
	}
}

func TestQuantiles(t *testing.T) {
	t.Parallel()
	// exact is the q-quantile of sorted values by the same rank rule.
	exact := func(sorted []int64, q float64) int64 {
		rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
		return sorted[rank-1]
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name   string
		values []int64
	}{
		{"one value", []int64{1_500_000}},
		{"small exact values", []int64{3, 1, 2, 5, 4}},
		{"1 to 10000", seq(1, 10_000)},
		{"uniform µs to s", randValues(50_000, func() int64 { return 1000 + rng.Int64N(1e9) })},
		{"exponential around 2ms", randValues(50_000, func() int64 { return int64(rng.ExpFloat64() * 2e6) })},
		{"long tail", append(seq(1_000_000, 1_000_999), 5e9)},
		{"zeros", make([]int64, 10)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHist()
			for _, v := range tc.values {
				h.record(v)
			}
			sorted := slices.Clone(tc.values)
			slices.Sort(sorted)
			if h.count() != uint64(len(sorted)) {
				t.Fatalf("count %d, want %d", h.count(), len(sorted))
			}
			for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.quantile(q), exact(sorted, q)
				// The bucket's high end: at or above the exact value, by at
				// most 1/128 of it, and never beyond the max.
				if got < want || float64(got-want) > float64(want)/histHalf || got > sorted[len(sorted)-1] {
					t.Errorf("quantile(%v) = %d, exact %d", q, got, want)
				}
			}
			s := h.summary()
			if s.MinMS != ms(sorted[0]) || s.MaxMS != ms(sorted[len(sorted)-1]) {
				t.Errorf("min %v max %v, want %v %v", s.MinMS, s.MaxMS, ms(sorted[0]), ms(sorted[len(sorted)-1]))
			}
			var sum int64
			for _, v := range sorted {
				sum += v
			}
			if want := ms(sum / int64(len(sorted))); s.MeanMS != want {
				t.Errorf("mean %v, want %v", s.MeanMS, want)
			}
		})
	}
}

func TestHistEdges(t *testing.T) {
	t.Parallel()
	h := newHist()
	if h.quantile(0.99) != 0 || h.summary() != (latency{}) {
		t.Errorf("empty histogram: quantile %d summary %+v", h.quantile(0.99), h.summary())
	}
	h.record(-5) // a clock step counts as zero
	h.record(1 << 50)
	if h.quantile(0.5) != 0 || h.quantile(1) != 1<<50 {
		t.Errorf("quantiles %d %d, want 0 and the exact max", h.quantile(0.5), h.quantile(1))
	}
}

// TestShardedHist records from many goroutines (run with -race) and
// checks the merged snapshot.
func TestShardedHist(t *testing.T) {
	t.Parallel()
	s := newShardedHist()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range int64(1000) {
				s.record(g, v*1000+int64(g))
			}
		}()
	}
	// A progress line reads while the recordings go on.
	_ = s.snapshot().quantile(0.99)
	wg.Wait()
	h := s.snapshot()
	if h.count() != 32_000 || h.min.Load() != 0 || h.max.Load() != 999*1000+31 {
		t.Errorf("count %d min %d max %d", h.count(), h.min.Load(), h.max.Load())
	}
	if p50 := h.quantile(0.5); p50 < 499_000 || p50 > 505_000 {
		t.Errorf("p50 %d, want about 500000", p50)
	}
}

func seq(from, to int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

func randValues(n int, gen func() int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = gen()
	}
	return out
}

func BenchmarkHistRecord(b *testing.B) {
	s := newShardedHist()
	b.RunParallel(func(pb *testing.PB) {
		var v int64
		for pb.Next() {
			v += 7919
			s.record(int(v), v%1e9)
		}
	})
}
