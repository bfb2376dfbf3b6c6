package hub_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ws"
)

// countingConn is a local connection that counts what it is sent and
// remembers the last frame.
type countingConn struct {
	user string
	n    atomic.Int64
	last atomic.Pointer[ws.PreparedMessage]
}

func (c *countingConn) Send(pm *ws.PreparedMessage, droppable bool) bool {
	c.n.Add(1)
	c.last.Store(pm)
	return false
}

func (c *countingConn) Flush(*ws.Batch) {}

func (c *countingConn) UserID() string { return c.user }

// BenchmarkHubFanout publishes to a room with 1000 local members: one
// message is stored, encoded once, and queued on every member.
func BenchmarkHubFanout(b *testing.B) {
	for _, members := range []int{10, 1000} {
		b.Run(strconv.Itoa(members), func(b *testing.B) {
			broker := hub.NewMemoryBroker(hub.RetentionConfig{Size: 1000})
			h := hub.New(broker)
			ctx := context.Background()
			conns := make([]*countingConn, members)
			for i := range conns {
				c := &countingConn{user: "u" + strconv.Itoa(i)}
				conns[i] = c
				if _, err := h.Join(ctx, c, "room", protocol.Member{User: c.user, Name: c.user}, "", "", 50); err != nil {
					b.Fatal(err)
				}
			}
			sender := conns[0]
			m := protocol.Message{Room: "room", From: sender.user, Name: sender.user, Text: "hello, this is a fairly ordinary chat message"}
			before := conns[members-1].n.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := h.Publish(ctx, sender, m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := conns[members-1].n.Load() - before; got != int64(b.N) {
				b.Fatalf("the last member got %d of %d messages", got, b.N)
			}
			// Every member got the very same frame: encoded once.
			if conns[0].last.Load() != conns[members-1].last.Load() {
				b.Fatal("members got different frames for one message")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(members), "ns/delivery")
		})
	}
}

// BenchmarkJoinLeave is a connection joining a room and leaving it
// again, as a client that opens a page and closes it does: in an empty
// room (the room is made and forgotten each time), and in a room where
// another member stays.
func BenchmarkJoinLeave(b *testing.B) {
	for _, others := range []int{0, 1} {
		b.Run("others="+strconv.Itoa(others), func(b *testing.B) {
			h := hub.New(hub.NewMemoryBroker(hub.RetentionConfig{}))
			ctx := context.Background()
			for i := range others {
				c := &countingConn{user: "stays" + strconv.Itoa(i)}
				if _, err := h.Join(ctx, c, "room", protocol.Member{User: c.user, Name: c.user}, "", "", 50); err != nil {
					b.Fatal(err)
				}
			}
			c := &countingConn{user: "comes-and-goes"}
			member := protocol.Member{User: c.user, Name: c.user}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Join(ctx, c, "room", member, "j", "", 50); err != nil {
					b.Fatal(err)
				}
				if err := h.Leave(ctx, c, "room"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// lapsingBroker is a MemoryBroker that can let presence lapse, and
// records which claims it was asked to.
type lapsingBroker struct {
	*hub.MemoryBroker
	mu     sync.Mutex
	lapsed []string
}

func (b *lapsingBroker) LapseMember(ctx context.Context, room, user string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lapsed = append(b.lapsed, room+"/"+user)
	return nil
}

func (b *lapsingBroker) lapses() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.lapsed)
}

// TestDrainLetsPresenceLapse: once the hub drains, a connection that ends
// lets its user's presence lapse (no RemoveMember, no leave event), while
// a client's own leave still withdraws it; before the drain, an ending
// connection withdraws it too.
func TestDrainLetsPresenceLapse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := &lapsingBroker{MemoryBroker: hub.NewMemoryBroker(hub.RetentionConfig{})}
	h := hub.New(b)
	join := func(user, room string) *countingConn {
		c := &countingConn{user: user}
		if _, err := h.Join(ctx, c, room, protocol.Member{User: user, Name: user}, "", "", 50); err != nil {
			t.Fatal(err)
		}
		return c
	}
	members := func(room string) int {
		ms, err := b.Members(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	early := join("early", "r")
	if err := h.Disconnect(ctx, early, "r"); err != nil {
		t.Fatal(err)
	}
	if members("r") != 0 || len(b.lapses()) != 0 {
		t.Fatalf("a connection that ended before the drain: %d members, lapses %v; want it withdrawn", members("r"), b.lapses())
	}
	watcher := join("watcher", "r")
	ann, bob := join("ann", "r"), join("bob", "r")
	h.Drain()
	before := watcher.n.Load()
	if err := h.Disconnect(ctx, ann, "r"); err != nil {
		t.Fatal(err)
	}
	if got := b.lapses(); !slices.Equal(got, []string{"r/ann"}) {
		t.Errorf("lapses %v, want r/ann", got)
	}
	if err := h.Leave(ctx, bob, "r"); err != nil {
		t.Fatal(err)
	}
	// ann is still claimed (until the claim expires, in a broker that
	// expires them); bob left and was announced.
	if n := members("r"); n != 2 {
		t.Errorf("%d members after the drain, want watcher and ann", n)
	}
	if got := watcher.n.Load() - before; got != 1 {
		t.Errorf("the watcher got %d events, want one: bob's leave", got)
	}
}

// keepingBroker is a MemoryBroker that asks the hub to keep rooms
// subscribed for a while, and counts subscriptions.
type keepingBroker struct {
	*hub.MemoryBroker
	keep        time.Duration
	subs, unsub atomic.Int64
	unsubbed    chan string
}

func (b *keepingBroker) KeepSubscribed() time.Duration { return b.keep }

func (b *keepingBroker) Subscribe(ctx context.Context, room string) error {
	b.subs.Add(1)
	return b.MemoryBroker.Subscribe(ctx, room)
}

func (b *keepingBroker) Unsubscribe(ctx context.Context, room string) error {
	b.unsub.Add(1)
	err := b.MemoryBroker.Unsubscribe(ctx, room)
	b.unsubbed <- room
	return err
}

// TestKeepSubscribed: with a broker that is a SubscriptionKeeper, a room
// whose last member left stays subscribed (a member coming back costs no
// subscription) until it has been empty for the time asked, and is then
// unsubscribed once; Rooms counts only rooms with members throughout.
func TestKeepSubscribed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := &keepingBroker{MemoryBroker: hub.NewMemoryBroker(hub.RetentionConfig{}), keep: 200 * time.Millisecond, unsubbed: make(chan string, 10)}
	h := hub.New(b)
	defer h.Close()
	for i := range 5 {
		c := &countingConn{user: "u" + strconv.Itoa(i)}
		if _, err := h.Join(ctx, c, "r", protocol.Member{User: c.user, Name: c.user}, "", "", 50); err != nil {
			t.Fatal(err)
		}
		if n := h.Rooms(); n != 1 {
			t.Fatalf("Rooms() = %d with a member, want 1", n)
		}
		if err := h.Leave(ctx, c, "r"); err != nil {
			t.Fatal(err)
		}
		if n := h.Rooms(); n != 0 {
			t.Fatalf("Rooms() = %d once the member left, want 0", n)
		}
	}
	if n := b.subs.Load(); n != 1 {
		t.Errorf("%d subscriptions for five joins in a row, want 1", n)
	}
	select {
	case room := <-b.unsubbed:
		if room != "r" {
			t.Errorf("unsubscribed %q, want r", room)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the empty room was never unsubscribed")
	}
	// Joining again subscribes again.
	c := &countingConn{user: "late"}
	if _, err := h.Join(ctx, c, "r", protocol.Member{User: "late", Name: "late"}, "", "", 50); err != nil {
		t.Fatal(err)
	}
	if n, u := b.subs.Load(), b.unsub.Load(); n != 2 || u != 1 {
		t.Errorf("%d subscriptions and %d unsubscriptions, want 2 and 1", n, u)
	}
}

// TestCloseStopsKeptSubscriptions: once the hub is closed, a room kept
// subscribed is left to the broker's Close, not unsubscribed by a timer.
func TestCloseStopsKeptSubscriptions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := &keepingBroker{MemoryBroker: hub.NewMemoryBroker(hub.RetentionConfig{}), keep: 50 * time.Millisecond, unsubbed: make(chan string, 10)}
	h := hub.New(b)
	c := &countingConn{user: "u"}
	if _, err := h.Join(ctx, c, "r", protocol.Member{User: "u", Name: "u"}, "", "", 50); err != nil {
		t.Fatal(err)
	}
	if err := h.Leave(ctx, c, "r"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	select {
	case room := <-b.unsubbed:
		t.Fatalf("unsubscribed %q after Close", room)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestLateDeliveryOfJoinedHistory: a message the join's history already
// held, delivered by the broker only after the join was served (with
// Redis, its PUBLISH can reach the node after the stream was read), is not
// sent again; the next message is.
func TestLateDeliveryOfJoinedHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := hub.NewMemoryBroker(hub.RetentionConfig{})
	h := hub.New(b)
	early, _, err := b.Publish(ctx, protocol.Message{Room: "r", From: "ann", Name: "Ann", Text: "before the join"})
	if err != nil {
		t.Fatal(err)
	}
	c := &countingConn{user: "bob"}
	res, err := h.Join(ctx, c, "r", protocol.Member{User: "bob", Name: "Bob"}, "", "", 50)
	if err != nil {
		t.Fatal(err)
	}
	if res.History != 1 {
		t.Fatalf("joined with %d messages of history, want 1", res.History)
	}
	joined := c.n.Load()
	h.DeliverMessage(early) // late
	if got := c.n.Load() - joined; got != 0 {
		t.Fatalf("the late delivery of a message in the joined history was sent (%d frames)", got)
	}
	if _, _, err := h.Publish(ctx, c, protocol.Message{Room: "r", From: "bob", Name: "Bob", Text: "after"}); err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load() - joined; got != 1 {
		t.Fatalf("%d frames for the message after the join, want 1", got)
	}
}
