package brokertest_test

import (
	"testing"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/hub/brokertest"
)

func TestMemoryBroker(t *testing.T) {
	t.Parallel()
	brokertest.Run(t, func(t *testing.T, ret hub.RetentionConfig) hub.Broker {
		b := hub.NewMemoryBroker(ret)
		t.Cleanup(func() { b.Close() })
		return b
	})
}
