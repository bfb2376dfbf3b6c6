package ratelimit_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ratelimit"
)

func TestIPLimiterGrouping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		first     string
		second    string
		sameGroup bool
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", true},
		{"neighbouring IPv4", "192.0.2.1", "192.0.2.2", false},
		{"same IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"other IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv4-mapped is IPv4", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"zone ignored", "fe80::1%eth0", "fe80::2", true},
		{"IPv4 is not ::/64", "0.0.0.0", "::1", false},
		{"invalid is not ::/64", "", "::1", false},
		{"invalid shares one bucket", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := ratelimit.NewIPLimiter(1, 1, 0)
			if ok, _ := l.Allow(addr(t, tt.first), t0); !ok {
				t.Fatal("first upgrade refused")
			}
			ok, retry := l.Allow(addr(t, tt.second), t0)
			if ok == tt.sameGroup {
				t.Fatalf("second upgrade: ok = %v, want %v", ok, !tt.sameGroup)
			}
			if !ok && retry != time.Second {
				t.Fatalf("retryAfter = %v, want 1s", retry)
			}
		})
	}
}

func addr(t *testing.T, s string) netip.Addr {
	t.Helper()
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestIPLimiterRefill(t *testing.T) {
	t.Parallel()
	l := ratelimit.NewIPLimiter(0.5, 2, 0) // one upgrade per 2 s, burst 2
	ip := netip.MustParseAddr("198.51.100.7")
	for i, s := range []step{
		{0, true, 0}, {0, true, 0}, {0, false, 2 * time.Second},
		{time.Second, false, time.Second},
		{2 * time.Second, true, 0},
		{2 * time.Second, false, 2 * time.Second},
	} {
		ok, retry := l.Allow(ip, at(s.at))
		if ok != s.ok || retry != s.retry {
			t.Fatalf("step %d at %v: (%v, %v), want (%v, %v)", i, s.at, ok, retry, s.ok, s.retry)
		}
	}
}

// ipN returns a distinct IPv6 /64 for each n.
func ipN(n int) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0x20, 0x01
	a[4], a[5], a[6], a[7] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return netip.AddrFrom16(a)
}

func TestIPLimiterBound(t *testing.T) {
	t.Parallel()
	for _, max := range []int{1, 7, 256, 5000, 100_000} {
		l := ratelimit.NewIPLimiter(1, 5, max)
		// A flood of new addresses, all at one instant so none is idle.
		for i := range 3 * max {
			if ok, _ := l.Allow(ipN(i), t0); !ok {
				t.Fatalf("max %d: fresh address %d refused", max, i)
			}
			if i%97 == 0 && l.Len() > max {
				t.Fatalf("max %d: Len = %d after %d addresses", max, l.Len(), i+1)
			}
		}
		if n := l.Len(); n > max || n < max*9/10 {
			t.Fatalf("max %d: Len = %d, want at most max and close to it", max, n)
		}
	}
}

// When the table is full, idle entries go before busy ones, so a flood of
// new addresses does not reset the limit of an address being limited.
func TestIPLimiterEvictsIdleFirst(t *testing.T) {
	t.Parallel()
	l := ratelimit.NewIPLimiter(1, 1, 4)
	for i := 1; i <= 3; i++ {
		l.Allow(ipN(i), t0) // idle again from t0+1s
	}
	busy := netip.MustParseAddr("203.0.113.9")
	now := at(1500 * time.Millisecond)
	l.Allow(busy, now) // table full: 3 idle + busy
	for i := 10; i < 13; i++ {
		if ok, _ := l.Allow(ipN(i), now); !ok {
			t.Fatalf("new address %d refused", i)
		}
		if ok, _ := l.Allow(busy, now); ok {
			t.Fatalf("after new address %d, busy address was forgotten", i)
		}
	}
	if n := l.Len(); n != 4 {
		t.Fatalf("Len = %d, want 4", n)
	}
}

func TestIPLimiterSweep(t *testing.T) {
	t.Parallel()
	l := ratelimit.NewIPLimiter(1, 3, 0) // refill of a full burst: 3 s
	for i := range 50 {
		l.Allow(ipN(i), t0)
	}
	busy := ipN(1000)
	for range 3 {
		l.Allow(busy, t0)
	}
	l.Sweep(at(time.Second))
	if n := l.Len(); n != 1 {
		t.Fatalf("Len after 1 s = %d, want 1", n)
	}
	l.Sweep(at(3 * time.Second))
	if n := l.Len(); n != 0 {
		t.Fatalf("Len after 3 s = %d, want 0", n)
	}
}

func TestIPLimiterUnlimited(t *testing.T) {
	t.Parallel()
	l := ratelimit.NewIPLimiter(0, 1, 10)
	for i := range 100 {
		if ok, _ := l.Allow(ipN(0), t0); !ok {
			t.Fatalf("call %d refused by an unlimited limiter", i)
		}
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("unlimited limiter tracks %d addresses, want 0", n)
	}
}
