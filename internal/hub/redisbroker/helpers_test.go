package redisbroker

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
)

// The package's tests share one standalone Redis and one Redis Cluster,
// started on first use and stopped by TestMain; each test has its own key
// prefix. Tests that stop or break Redis start their own.
var (
	sharedMu      sync.Mutex
	sharedServer  *redistest.Server
	sharedCluster *redistest.Cluster
	sharedDirs    []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	if sharedServer != nil {
		sharedServer.Close()
	}
	if sharedCluster != nil {
		sharedCluster.Close()
	}
	for _, d := range sharedDirs {
		os.RemoveAll(d)
	}
	sharedMu.Unlock()
	os.Exit(code)
}

func standalone(t testing.TB) *redistest.Server {
	t.Helper()
	redistest.Require(t, "redis-server")
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedServer == nil {
		dir, err := os.MkdirTemp("", "chatd-redis-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDirs = append(sharedDirs, dir)
		if sharedServer, err = redistest.StartProcess(dir); err != nil {
			t.Fatal(err)
		}
	}
	return sharedServer
}

func cluster(t testing.TB) *redistest.Cluster {
	t.Helper()
	redistest.Require(t, "redis-server", "redis-cli")
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedCluster == nil {
		dir, err := os.MkdirTemp("", "chatd-cluster-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDirs = append(sharedDirs, dir)
		if sharedCluster, err = redistest.StartClusterProcess(dir); err != nil {
			t.Fatal(err)
		}
	}
	return sharedCluster
}

// client makes a client for url, closed when t ends.
func client(t testing.TB, url string, isCluster bool) redis.UniversalClient {
	t.Helper()
	c, err := NewClient(url, isCluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testConfig has short intervals, so that failures are noticed quickly.
func testConfig(t testing.TB, node, prefix string) Config {
	return Config{
		NodeID:        node,
		Prefix:        prefix,
		PresenceTTL:   3 * time.Second,
		ProbeInterval: 200 * time.Millisecond,
		StallTimeout:  2 * time.Second,
		ReconnectMin:  20 * time.Millisecond,
		ReconnectMax:  200 * time.Millisecond,
		Logger:        zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
}

// newBroker makes a broker over c, closed when t ends.
func newBroker(t testing.TB, c redis.UniversalClient, cfg Config) *Broker {
	t.Helper()
	b, err := New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// waitReady waits until b is ready.
func waitReady(t testing.TB, b hub.Broker) {
	t.Helper()
	waitFor(t, 15*time.Second, "broker ready", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return b.Ready(ctx)
	})
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// abandon stops b as a crashed node would stop: no more heartbeats or
// subscriptions, and its presence claims left in Redis to expire.
func (b *Broker) abandon() {
	b.cancel()
	shards := b.shardList()
	for _, sh := range shards {
		sh.stop()
	}
	b.wg.Wait()
	b.membersMu.Lock()
	b.members = map[string]map[string]string{}
	b.membersMu.Unlock()
}
