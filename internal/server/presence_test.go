package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
)

// gateBroker holds the withdrawal of user "bob" until the gate opens, so
// a test can make a leave and a join of the same user overlap.
type gateBroker struct {
	hub.Broker
	removing chan struct{} // receives when bob's withdrawal waits
	adding   chan struct{} // receives when bob's claim is made
	gate     chan struct{} // closed to let the withdrawal go on
}

func (b *gateBroker) WithdrawMember(ctx context.Context, room, user string, leave hub.Event) (bool, error) {
	if user == "bob" {
		b.removing <- struct{}{}
		<-b.gate
	}
	return b.Broker.WithdrawMember(ctx, room, user, leave)
}

// ReadJoin is where the hub claims a user's presence: with the join's
// read, when the user had no connection in the room on this node.
func (b *gateBroker) ReadJoin(ctx context.Context, room, since string, limit int, join *hub.Event) ([]protocol.Message, bool, []protocol.Member, error) {
	if join != nil && join.User == "bob" {
		select {
		case b.adding <- struct{}{}:
		default:
		}
	}
	return b.Broker.ReadJoin(ctx, room, since, limit, join)
}

// TestPresenceLeaveJoinOverlap: one tab of a user leaves a room while
// another tab of the same user joins it. However the two overlap, the
// user ends up present, announced by a last presence join, and listed in
// members.
func TestPresenceLeaveJoinOverlap(t *testing.T) {
	t.Parallel()
	gb := &gateBroker{removing: make(chan struct{}, 1), adding: make(chan struct{}, 1), gate: make(chan struct{})}
	ts := startServer(t, fastConfig(), serverOpts{broker: func(b hub.Broker) hub.Broker { gb.Broker = b; return gb }})
	a := ts.dial(t, "alice")
	a.join("lobby")
	b1 := ts.dial(t, "bob")
	b2 := ts.dial(t, "bob")
	b1.join("lobby")
	a.waitFor("presence", func(m msg) bool { return m.str("user") == "bob" && m.str("state") == "join" })
	<-gb.adding // b1's, consumed

	b1.send(map[string]any{"type": "leave", "room": "lobby", "ref": "l"})
	<-gb.removing // b1's leave waits in WithdrawMember
	b2.send(map[string]any{"type": "join", "room": "lobby", "ref": "j"})
	// Give b2's join the chance to run into the broker while b1's leave
	// is still in it (what the hub must prevent: it cannot be awaited,
	// because a correct hub makes b2 wait instead).
	select {
	case <-gb.adding:
	case <-time.After(300 * time.Millisecond):
	}
	close(gb.gate)
	b1.waitFor("left", nil)
	b2.waitFor("joined", nil)

	var last msg
	for _, m := range a.sync() {
		if m.typ() == "presence" && m.str("user") == "bob" {
			last = m
		}
	}
	if last == nil || last.str("state") != "join" {
		t.Errorf("alice's last presence of bob: %v, want join", last)
	}
	c := ts.dial(t, "carol")
	if got := users(c.join("lobby").list("members")); !slices.Equal(got, []string{"alice/Alice", "bob/Bob", "carol/Carol"}) {
		t.Errorf("members %v, want bob among them", got)
	}
}
