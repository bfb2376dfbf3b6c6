package redisbroker

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
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

// TestPresenceAfterRedisLostData: Redis restarts without persistence while
// users are in a room on two nodes. Each node registers its members again
// as soon as it is back, before it reports ready, publishes or serves a
// join (not at its next heartbeat, which is far off here): a newcomer's
// members are everyone still connected.
func TestPresenceAfterRedisLostData(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // no persistence: a restart loses everything
	bs, _ := nodes(t, srv.URL(), false, 2, func(c *Config) { c.PresenceTTL = time.Minute })
	ctx := bg(t)
	for _, b := range bs {
		waitReady(t, b)
		if err := b.Subscribe(ctx, "room"); err != nil {
			t.Fatal(err)
		}
	}
	ann, bob, cat := protocol.Member{User: "ann", Name: "Ann"}, protocol.Member{User: "bob", Name: "Bob"}, protocol.Member{User: "cat", Name: "Cat"}
	if _, err := bs[0].AddMember(ctx, "room", ann); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[1].AddMember(ctx, "room", bob); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	waitFor(t, 15*time.Second, "node 1 not ready with Redis down", func() error {
		if bs[1].Ready(ctx) == nil {
			return errors.New("still ready")
		}
		return nil
	})
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// Ready again means registered again.
	waitReady(t, bs[1])
	if score, err := srv.Do("ZSCORE", bs[1].keys("room").presence, "bob"); err != nil || score == "" {
		t.Fatalf("node 1 is ready, but bob is not registered again: %q, %v", score, err)
	}
	// A message published by node 0 means node 0's members are back too,
	// whether or not its pub/sub connection is.
	waitFor(t, 15*time.Second, "a publish on node 0", func() error {
		_, _, err := bs[0].Publish(ctx, protocol.Message{Room: "room", From: "ann", Text: "back"})
		return err
	})
	first, err := bs[1].AddMember(ctx, "room", cat)
	if err != nil || !first {
		t.Fatalf("cat's join: first=%v, %v", first, err)
	}
	ms, err := bs[1].Members(ctx, "room")
	if want := []protocol.Member{ann, bob, cat}; err != nil || !slices.Equal(ms, want) {
		t.Fatalf("members after Redis came back empty: %v, %v; want %v", ms, err, want)
	}
	// Only the users Redis did not hold are announced; ann and bob now are.
	if first, err := bs[0].AddMember(ctx, "room", bob); err != nil || first {
		t.Fatalf("bob on node 0 too: first=%v, %v; want not first", first, err)
	}
}

// TestPresenceFoundMissing: a node that finds at a heartbeat that Redis
// no longer holds its members (their keys were deleted, with no
// connection lost to tell it) registers them again and announces their
// join, so that whoever joined meanwhile learns of them.
func TestPresenceFoundMissing(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	bs, recs := nodes(t, srv.URL(), false, 2, func(c *Config) { c.PresenceTTL = 1500 * time.Millisecond })
	ctx := bg(t)
	for _, b := range bs {
		if err := b.Subscribe(ctx, "room"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bs[0].AddMember(ctx, "room", protocol.Member{User: "ann", Name: "Ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[1].AddMember(ctx, "room", protocol.Member{User: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	k := bs[0].keys("room")
	if _, err := srv.Do("DEL", k.presence, k.entries); err != nil {
		t.Fatal(err)
	}
	// Each node's next heartbeat (every 0.5 s) finds its user missing.
	for n, rec := range recs {
		got := map[string]string{}
		for len(got) < 2 {
			ev := rec.NextEvent(t)
			if ev.Kind != hub.EventPresence || ev.State != protocol.PresenceJoin || ev.Room != "room" {
				t.Fatalf("node %d: %+v, want presence joins of ann and bob", n, ev)
			}
			if _, dup := got[ev.User]; dup {
				t.Fatalf("node %d: %s announced twice", n, ev.User)
			}
			got[ev.User] = ev.Name
		}
		if !maps.Equal(got, map[string]string{"ann": "Ann", "bob": "Bob"}) {
			t.Fatalf("node %d: joins of %v", n, got)
		}
	}
	ms, err := bs[1].Members(ctx, "room")
	if err != nil || len(ms) != 2 {
		t.Fatalf("members after the heartbeats: %v, %v", ms, err)
	}
	// Present again: later heartbeats announce nothing.
	time.Sleep(1200 * time.Millisecond)
	for n, rec := range recs {
		select {
		case ev := <-rec.Events:
			t.Fatalf("node %d: %+v after the users were registered again", n, ev)
		default:
		}
	}
}

// TestWithdrawDuringRenewal: a member withdrawn while a renewal of the
// node's claims runs stays withdrawn. The renewal took the members before
// the withdrawal; were the two to interleave, it would claim the user
// again, and every node would show them present until the claim expired.
func TestWithdrawDuringRenewal(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	c := client(t, srv.URL(), false)
	b := newBroker(t, c, testConfig(t, "n1", redistest.Prefix(t)))
	ctx := bg(t)
	if _, err := b.AddMember(ctx, "r", protocol.Member{User: "ann", Name: "Ann"}); err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	var once sync.Once
	b.renewMu.Lock() // the hook is read under it, by this test's renewal or the heartbeat's
	b.afterClaims = func() {
		once.Do(func() {
			// The withdrawal starts once the renewal took ann, and has
			// time to run before the renewal goes on, unless it waits.
			go func() {
				_, err := b.RemoveMember(ctx, "r", "ann")
				removed <- err
			}()
			time.Sleep(200 * time.Millisecond)
		})
	}
	b.renewMu.Unlock()
	if err := b.heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-removed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RemoveMember did not return")
	}
	members, err := b.Members(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 0 {
		t.Fatalf("members after the withdrawal: %v, want none", members)
	}
}
