package main

import (
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/hub/redisbroker"
	"github.com/chatd/chatd/internal/ratelimit"
	"github.com/chatd/chatd/internal/ratelimit/redislimit"
)

// backend is what serve builds the server on: the broker, the per-user
// limiter (nil: the server's local one) and what to close at the end.
type backend struct {
	broker  hub.Broker
	limiter ratelimit.UserLimiter
	kind    string // for the start-up log
	closers []io.Closer
}

func (b *backend) Close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		_ = b.closers[i].Close()
	}
}

// newBackend chooses the broker: in memory for one node, or Redis with a
// Redis URL. A Redis that is down at start is not an error: the node
// serves, answers `unavailable` to what needs Redis, reports not ready,
// and connects when Redis is back.
func newBackend(cfg *config, log zerolog.Logger) (*backend, error) {
	retention := hub.RetentionConfig{Size: cfg.historySize, TTL: cfg.historyTTL}
	if cfg.redisURL == "" {
		b := hub.NewMemoryBroker(retention)
		return &backend{broker: b, kind: "memory", closers: []io.Closer{b}}, nil
	}
	client, err := redisbroker.NewClient(cfg.redisURL, cfg.redisCluster)
	if err != nil {
		return nil, err
	}
	b, err := redisbroker.New(client, redisbroker.Config{
		NodeID:    cfg.srv.NodeID,
		Retention: retention,
		Logger:    log,
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	kind := "redis"
	if _, ok := client.(*redis.ClusterClient); ok {
		kind = "redis-cluster"
	}
	lim := redislimit.New(client, "chatd:", cfg.srv.UserRate, cfg.srv.UserBurst)
	log.Info().Str("redis", redisbroker.Redact(cfg.redisURL)).Str("broker", kind).Msg("using Redis; serving while it connects")
	return &backend{broker: b, limiter: lim, kind: kind, closers: []io.Closer{client, b}}, nil
}

// checkRedisURL validates the Redis settings at start, so that a typo is
// one line and exit 2 rather than a node that never becomes ready.
func checkRedisURL(url string, cluster bool) error {
	if url == "" {
		if cluster {
			return fmt.Errorf("%s needs a Redis URL in %s", setting("redis-cluster"), setting("redis"))
		}
		return nil
	}
	c, err := redisbroker.NewClient(url, cluster)
	if err != nil {
		return fmt.Errorf("%s: %v", setting("redis"), err)
	}
	return c.Close()
}
