package redisbroker

import (
	"testing"

	"github.com/chatd/chatd/internal/hub/brokertest"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/protocol"
)

// TestReadJoinAfterScriptFlush: a Redis that lost its scripts (restarted,
// or SCRIPT FLUSH) answers the join's script call with NOSCRIPT; ReadJoin
// then sends the script's text, which Redis caches again.
func TestReadJoinAfterScriptFlush(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	c := client(t, srv.URL(), false)
	b := newBroker(t, c, testConfig(t, "n1", redistest.Prefix(t)))
	ctx := bg(t)
	sent := brokertest.Publish(t, b, "r", "ann", "hello", "")
	if _, err := b.AddMember(ctx, "r", protocol.Member{User: "ann", Name: "Ann"}); err != nil {
		t.Fatal(err)
	}
	// Only this broker's scripts matter here; other tests' calls load
	// theirs again on NOSCRIPT.
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	hist, _, members, err := b.ReadJoin(ctx, "r", "", 10, nil)
	if err != nil {
		t.Fatalf("ReadJoin after SCRIPT FLUSH: %v", err)
	}
	if len(hist) != 1 || hist[0].ID != sent.ID || len(members) != 1 || members[0].User != "ann" {
		t.Fatalf("ReadJoin after SCRIPT FLUSH: history %v, members %v", hist, members)
	}
	// And the call by SHA works again once the script is back.
	if _, _, _, err := b.ReadJoin(ctx, "r", sent.ID, 10, nil); err != nil {
		t.Fatal(err)
	}
}
