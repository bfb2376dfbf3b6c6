package redisbroker

import (
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub/brokertest"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/protocol"
)

// TestRecoveryAfterRedisLostData: a Redis restarted without persistence
// forgot every room. A client that rejoins with a since from before the
// loss gets what was sent since, and recovered false: the messages sent
// between its since and the loss are gone, and nothing in Redis says
// whether there were any. A since from after the loss recovers.
func TestRecoveryAfterRedisLostData(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // no persistence: a restart loses everything
	b := newBroker(t, client(t, srv.URL(), false), testConfig(t, "node-a", redistest.Prefix(t)))
	waitReady(t, b)
	ctx := bg(t)
	brokertest.Publish(t, b, "lost", "ann", "m1", "")
	m2 := brokertest.Publish(t, b, "lost", "ann", "m2", "")
	if _, rec, err := b.Since(ctx, "lost", m2.ID); err != nil || !rec {
		t.Fatalf("since the last message before the loss: recovered=%v, %v", rec, err)
	}

	srv.Stop()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, b)
	// Before anything new: no record of the room, nothing vouched for.
	if msgs, rec, err := b.Since(ctx, "lost", m2.ID); err != nil || rec || len(msgs) != 0 {
		t.Errorf("since m2 after the loss: %v recovered=%v %v; want nothing, not recovered", msgs, rec, err)
	}
	var m3 protocol.Message
	waitFor(t, 15*time.Second, "a publish after the restart", func() error {
		var err error
		m3, _, err = b.Publish(ctx, protocol.Message{Room: "lost", From: "ann", Text: "m3"})
		return err
	})
	msgs, rec, err := b.Since(ctx, "lost", m2.ID)
	if err != nil || rec || len(msgs) != 1 || msgs[0].ID != m3.ID {
		t.Errorf("since m2 after the loss and m3: %v recovered=%v %v; want m3, not recovered", msgs, rec, err)
	}
	if msgs, rec, err := b.Since(ctx, "lost", m3.ID); err != nil || !rec || len(msgs) != 0 {
		t.Errorf("since m3: %v recovered=%v %v; want nothing, recovered", msgs, rec, err)
	}
}
