package ratelimit_test

import (
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ratelimit"
)

func TestStrikes(t *testing.T) {
	t.Parallel()
	s := time.Second
	type deny struct {
		at      time.Duration
		tooMany bool
	}
	tests := []struct {
		name   string
		max    int
		window time.Duration
		denies []deny
	}{
		{
			name: "more than max within window", max: 3, window: 10 * s,
			denies: []deny{{0, false}, {1 * s, false}, {2 * s, false}, {3 * s, true}, {4 * s, true}},
		},
		{
			name: "window ends and is forgotten", max: 2, window: 10 * s,
			denies: []deny{{0, false}, {5 * s, false}, {10 * s, false}, {11 * s, false}, {12 * s, true}},
		},
		{
			name: "slow trickle never trips", max: 1, window: 10 * s,
			denies: []deny{{0, false}, {10 * s, false}, {20 * s, false}, {30 * s, false}},
		},
		{
			name: "exactly at the window edge starts a new window", max: 1, window: 10 * s,
			denies: []deny{{0, false}, {10*s - 1, true}, {10 * s, false}},
		},
		{
			name: "clock going back starts a new window", max: 1, window: 10 * s,
			denies: []deny{{time.Hour, false}, {0, false}, {1 * s, true}},
		},
		{
			name: "zero max is disabled", max: 0, window: 10 * s,
			denies: []deny{{0, false}, {0, false}, {0, false}},
		},
		{
			name: "zero window is disabled", max: 1, window: 0,
			denies: []deny{{0, false}, {0, false}, {0, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := ratelimit.NewStrikes(tt.max, tt.window)
			for i, d := range tt.denies {
				if got := st.Deny(at(d.at)); got != d.tooMany {
					t.Fatalf("deny %d at %v: tooMany = %v, want %v", i, d.at, got, d.tooMany)
				}
			}
		})
	}
}

func TestStrikesReset(t *testing.T) {
	t.Parallel()
	s := ratelimit.NewStrikes(1, time.Minute)
	s.Deny(t0)
	if !s.Deny(t0) {
		t.Fatal("second denial: tooMany = false, want true")
	}
	s.Reset()
	if s.Deny(t0) {
		t.Fatal("after Reset: tooMany = true, want false")
	}
	if !s.Deny(t0) {
		t.Fatal("after Reset, second denial: tooMany = false, want true")
	}
}

func TestStrikesZeroValue(t *testing.T) {
	t.Parallel()
	var s ratelimit.Strikes
	for range 100 {
		if s.Deny(t0) {
			t.Fatal("zero Strikes reported tooMany")
		}
	}
}

// A long flood must keep reporting tooMany without the counter wrapping.
func TestStrikesNoOverflow(t *testing.T) {
	t.Parallel()
	s := ratelimit.NewStrikes(1<<40, time.Hour) // clamped to the int32 range
	for i := range 1 << 20 {
		if s.Deny(t0) {
			t.Fatalf("denial %d: tooMany = true under a huge max", i)
		}
	}
	s = ratelimit.NewStrikes(2, time.Hour)
	for i := range 1 << 20 {
		if got := s.Deny(t0); got != (i >= 2) {
			t.Fatalf("denial %d: tooMany = %v", i, got)
		}
	}
}

// The way the server is meant to combine Bucket and Strikes: a client
// sending at twice its rate is limited but not closed; one sending at ten
// times its rate is closed.
func TestBucketWithStrikes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		every     time.Duration
		wantClose bool
	}{
		{"twice the rate", 50 * time.Millisecond, false},
		{"ten times the rate", 10 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := ratelimit.NewBucket(10, 10)
			// Close after more than 150 refusals in 10 s (15/s): a client
			// at twice the rate of 10/s is refused 10 times a second, one
			// at ten times the rate 90 times.
			s := ratelimit.NewStrikes(150, 10*time.Second)
			closed := false
			for now := t0; now.Before(at(time.Minute)) && !closed; now = now.Add(tt.every) {
				if ok, _ := b.Allow(now); !ok && s.Deny(now) {
					closed = true
				}
			}
			if closed != tt.wantClose {
				t.Fatalf("closed = %v, want %v", closed, tt.wantClose)
			}
		})
	}
}
