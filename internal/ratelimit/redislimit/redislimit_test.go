package redislimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd/chatd/internal/hub/redisbroker"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/ratelimit"
	"github.com/chatd/chatd/internal/ratelimit/redislimit"
)

func newClient(t *testing.T, url string, cluster bool) redis.UniversalClient {
	t.Helper()
	c, err := redisbroker.NewClient(url, cluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.URL(), false)
	ctx := context.Background()

	t.Run("burst then denied with a retry time", func(t *testing.T) {
		// One message per 10 s: the burst is all a fast test can use.
		l := redislimit.New(c, redistest.Prefix(t), 0.1, 3)
		for i := range 3 {
			d, err := l.Allow(ctx, "ann")
			if err != nil || !d.Allowed {
				t.Fatalf("message %d of the burst: %+v, %v", i, d, err)
			}
		}
		d, err := l.Allow(ctx, "ann")
		if err != nil || d.Allowed {
			t.Fatalf("after the burst: %+v, %v; want denied", d, err)
		}
		if d.RetryAfter <= 9*time.Second || d.RetryAfter > 10*time.Second {
			t.Errorf("retry after %v, want just under 10s", d.RetryAfter)
		}
		// Another user has their own budget.
		if d, err := l.Allow(ctx, "bob"); err != nil || !d.Allowed {
			t.Fatalf("another user: %+v, %v", d, err)
		}
	})

	t.Run("refills", func(t *testing.T) {
		// One per 33.333 ms: retry times are not whole milliseconds.
		l := redislimit.New(c, redistest.Prefix(t), 30, 1)
		for range 3 {
			if d, _ := l.Allow(ctx, "ann"); !d.Allowed {
				t.Fatal("first message denied")
			}
			d, _ := l.Allow(ctx, "ann")
			if d.Allowed {
				t.Fatal("second message at once allowed with a burst of 1")
			}
			// retry_ms as the server sends it: a client that waits exactly
			// that long is admitted.
			time.Sleep(time.Duration(ratelimit.RetryMillis(d.RetryAfter)) * time.Millisecond)
			if d, err := l.Allow(ctx, "ann"); err != nil || !d.Allowed {
				t.Fatalf("after waiting retry_ms of %v: %+v, %v", d.RetryAfter, d, err)
			}
			time.Sleep(40 * time.Millisecond) // the bucket is full again
		}
	})

	t.Run("unlimited", func(t *testing.T) {
		l := redislimit.New(c, redistest.Prefix(t), 0, 1)
		for range 100 {
			if d, err := l.Allow(ctx, "ann"); err != nil || !d.Allowed {
				t.Fatalf("a disabled limit denied: %+v, %v", d, err)
			}
		}
	})
}

// Limiters on several nodes share one budget per user: however many
// connections on however many nodes, the burst is all that gets through
// at once.
func TestSharedAcrossNodes(t *testing.T) {
	t.Parallel()
	modes := []struct {
		name    string
		url     func(t *testing.T) string
		cluster bool
	}{
		{"standalone", func(t *testing.T) string { return redistest.Start(t).URL() }, false},
		{"cluster", func(t *testing.T) string { return redistest.StartCluster(t).URL() }, true},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			url := mode.url(t)
			prefix := redistest.Prefix(t)
			const nodes, conns, tries, burst = 3, 4, 10, 7
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for range nodes {
				l := redislimit.New(newClient(t, url, mode.cluster), prefix, 0.01, burst)
				for range conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range tries {
							d, err := l.Allow(context.Background(), "ann")
							if err != nil {
								t.Error(err)
								return
							}
							if d.Allowed {
								allowed.Add(1)
							}
						}
					}()
				}
			}
			wg.Wait()
			if got := allowed.Load(); got != burst {
				t.Fatalf("%d messages allowed across %d nodes × %d connections, want the burst %d", got, nodes, conns, burst)
			}
		})
	}
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClient(t, srv.URL(), false)
	l := redislimit.New(c, redistest.Prefix(t), 1, 1)
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.Allow(ctx, "ann"); err == nil {
		t.Fatal("Allow with Redis down returned no error")
	}
}
