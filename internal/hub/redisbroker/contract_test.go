package redisbroker

import (
	"testing"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/hub/brokertest"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
)

// The broker contract over a standalone Redis and over a Redis Cluster
// with sharded pub/sub.
func TestContract(t *testing.T) {
	t.Parallel()
	modes := []struct {
		name string
		url  func(t *testing.T) (string, bool)
	}{
		{"standalone", func(t *testing.T) (string, bool) { return standalone(t).URL(), false }},
		{"cluster", func(t *testing.T) (string, bool) { return cluster(t).URL(), true }},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			brokertest.Run(t, func(t *testing.T, ret hub.RetentionConfig) hub.Broker {
				url, isCluster := mode.url(t)
				cfg := testConfig(t, "node-a", redistest.Prefix(t))
				cfg.Retention = ret
				return newBroker(t, client(t, url, isCluster), cfg)
			})
		})
	}
}
