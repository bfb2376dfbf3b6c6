package ratelimit_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ratelimit"
)

func BenchmarkBucketAllow(b *testing.B) {
	bk := ratelimit.NewBucket(100, 10)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		bk.Allow(now)
	}
}

func BenchmarkStrikesDeny(b *testing.B) {
	s := ratelimit.NewStrikes(100, time.Second)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		s.Deny(now)
	}
}

func BenchmarkLocalUserLimiter(b *testing.B) {
	l := ratelimit.NewLocalUserLimiter(100, 10)
	users := make([]string, 1024)
	for i := range users {
		users[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.AllowAt(users[i%len(users)], t0.Add(time.Duration(i)*time.Microsecond))
			i++
		}
	})
}

func BenchmarkIPLimiter(b *testing.B) {
	l := ratelimit.NewIPLimiter(10, 10, 0)
	ips := make([]netip.Addr, 1024)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(ips[i%len(ips)], t0.Add(time.Duration(i)*time.Microsecond))
			i++
		}
	})
}

func BenchmarkConnCap(b *testing.B) {
	c := ratelimit.NewConnCap(1 << 40)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if c.TryAcquire() {
				c.Release()
			}
		}
	})
}
