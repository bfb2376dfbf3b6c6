package hub

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/protocol"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func (b *MemoryBroker) roomCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.rooms)
}

func publish(t *testing.T, b *MemoryBroker, room, text string) protocol.Message {
	t.Helper()
	m, _, err := b.Publish(context.Background(), protocol.Message{Room: room, From: "ann", Text: text})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func since(t *testing.T, b *MemoryBroker, room, id string) ([]protocol.Message, bool) {
	t.Helper()
	msgs, rec, err := b.Since(context.Background(), room, id)
	if err != nil {
		t.Fatal(err)
	}
	return msgs, rec
}

// TestMemoryBrokerForgetsExpiredRooms: a room whose history has expired
// entirely, with nobody in it and no subscription, is forgotten (memory
// does not grow with every room name ever used); a room with a member or
// a subscription, or with history left, is kept. Recovery stays
// conservative: a since below a forgotten room's last id is never
// recovered, in the room's next incarnation too, and ids keep growing.
func TestMemoryBrokerForgetsExpiredRooms(t *testing.T) {
	clock := newFakeClock()
	b := newMemoryBroker(RetentionConfig{Size: 10, TTL: time.Minute}, clock.now)
	ctx := context.Background()
	var lasts []protocol.Message
	for i := range 100 {
		publish(t, b, "r"+strconv.Itoa(i), "first")
		lasts = append(lasts, publish(t, b, "r"+strconv.Itoa(i), "last"))
		clock.advance(time.Millisecond)
	}
	if _, err := b.AddMember(ctx, "r0", protocol.Member{User: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	clock.advance(30 * time.Second)
	publish(t, b, "fresh", "kept") // within retention at the sweep below
	clock.advance(31 * time.Second)

	b.History(ctx, "anything", "", 1) // any call sweeps once a sweep is due
	if n := b.roomCount(); n != 3 {
		t.Fatalf("%d rooms after every history but one expired, want 3 (r0 with a member, r1 subscribed, fresh)", n)
	}
	for _, room := range []string{"r0", "r1", "fresh"} {
		if b.room(room, false) == nil {
			t.Errorf("room %s was forgotten", room)
		}
	}

	// The forgotten rooms' last id is the floor of what comes next: a
	// since below it is not recovered, one at or above it is.
	last := lasts[99]
	if _, rec := since(t, b, "r50", lasts[50].ID); rec {
		t.Errorf("forgotten room, since below the highest forgotten id: recovered")
	}
	if _, rec := since(t, b, "r99", last.ID); !rec {
		t.Errorf("forgotten room, since its last id: not recovered")
	}
	again := publish(t, b, "r50", "again")
	if msgs, rec := since(t, b, "r50", lasts[50].ID); rec || len(msgs) != 1 || msgs[0].ID != again.ID {
		t.Errorf("r50's next incarnation, since its old last id: %v recovered=%v; want the new message, not recovered", msgs, rec)
	}
	if _, rec := since(t, b, "r50", again.ID); !rec {
		t.Errorf("r50's next incarnation, since its own message: not recovered")
	}

	// A member leaving a room whose history expired forgets it at once.
	clock.advance(2 * time.Minute)
	if _, err := b.RemoveMember(ctx, "r0", "bob"); err != nil {
		t.Fatal(err)
	}
	if b.room("r0", false) != nil {
		t.Error("r0 kept after its last member left and its history expired")
	}

	// The clock goes back: ids in a room made now still follow every
	// forgotten id.
	b.mu.Lock()
	floor := b.floor
	b.mu.Unlock()
	clock.advance(-time.Hour)
	if m := publish(t, b, "r7", "after the clock went back"); mustParse(t, m.ID).Compare(floor) <= 0 {
		t.Errorf("id %s after the clock went back does not follow the floor %s", m.ID, floor)
	}
}

func mustParse(t *testing.T, s string) protocol.ID {
	t.Helper()
	id, ok := protocol.ParseID(s)
	if !ok {
		t.Fatalf("bad id %q", s)
	}
	return id
}

// recordingHandler counts deliveries per room.
type recordingHandler struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (h *recordingHandler) DeliverMessage(m protocol.Message) {
	h.mu.Lock()
	h.msgs[m.Room]++
	h.mu.Unlock()
}

func (h *recordingHandler) DeliverEvent(Event) {}

// TestMemoryBrokerSweepRace: a room that holds nothing yet may be swept
// between its lookup and its use; a subscription, a member or a message
// put in it must not be lost with it. The hook sweeps at the worst moment
// every other lookup.
func TestMemoryBrokerSweepRace(t *testing.T) {
	clock := newFakeClock()
	b := newMemoryBroker(RetentionConfig{TTL: time.Hour}, clock.now)
	h := &recordingHandler{msgs: map[string]int{}}
	b.SetHandler(h)
	var lookups, swept int
	testHookRoomLookedUp = func(hb *MemoryBroker) {
		if hb != b {
			return
		}
		if lookups++; lookups%2 == 1 {
			hb.mu.Lock()
			before := len(hb.rooms)
			hb.sweepLocked(clock.now())
			swept += before - len(hb.rooms)
			hb.mu.Unlock()
		}
	}
	t.Cleanup(func() { testHookRoomLookedUp = nil })
	ctx := context.Background()
	for i := range 3 {
		room := "s" + strconv.Itoa(i)
		if err := b.Subscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddMember(ctx, room, protocol.Member{User: "bob"}); err != nil {
			t.Fatal(err)
		}
		publish(t, b, room, "hello")
		if ms, err := b.Members(ctx, room); err != nil || len(ms) != 1 {
			t.Errorf("room %s: members %v, %v; want bob", room, ms, err)
		}
	}
	// Publish alone, to a room nobody is in.
	publish(t, b, "quiet", "stored")
	if hist, _, _ := b.History(ctx, "quiet", "", 10); len(hist) != 1 {
		t.Errorf("a message published as its room was swept is not in history: %v", hist)
	}
	if swept == 0 {
		t.Fatal("the hook swept no room: the test proves nothing")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range 3 {
		if n := h.msgs["s"+strconv.Itoa(i)]; n != 1 {
			t.Errorf("room s%d: %d deliveries, want 1 (its subscription was lost to a sweep)", i, n)
		}
	}
}

// TestMemoryBrokerCIDIndex: a cid outlives its message's count trimming
// for the retention time and is forgotten after it; the index stays
// bounded, by age and by the room's cid limit, oldest first.
func TestMemoryBrokerCIDIndex(t *testing.T) {
	clock := newFakeClock()
	b := newMemoryBroker(RetentionConfig{Size: 3, TTL: time.Minute}, clock.now)
	b.maxCIDs = 50
	ctx := context.Background()
	send := func(text, cid string) (protocol.Message, bool) {
		t.Helper()
		m, dup, err := b.Publish(ctx, protocol.Message{Room: "r", From: "ann", Text: text, CID: cid})
		if err != nil {
			t.Fatal(err)
		}
		return m, dup
	}
	size := func() (int, int) {
		r := b.room("r", false)
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.cids), len(r.cidOrder) - r.cidHead
	}
	orig, _ := send("orig", "k")
	for i := range 10 {
		clock.advance(time.Second)
		send("filler", "f"+strconv.Itoa(i))
	}
	clock.advance(40 * time.Second) // 50 s after orig
	if m, dup := send("retry", "k"); !dup || m.ID != orig.ID || m.TS != orig.TS {
		t.Fatalf("retry 50 s after, trimmed by count: %+v dup=%v; want the original %s", m, dup, orig.ID)
	}
	clock.advance(11 * time.Second) // 61 s after orig, 51 s after the last filler
	if m, dup := send("late", "k"); dup || m.ID == orig.ID {
		t.Fatalf("retry past the retention time: %+v dup=%v; want a new message", m, dup)
	}
	if n, q := size(); n != 11 || q != 11 {
		t.Fatalf("%d cids indexed, %d queued; want the 10 fillers and the new k", n, q)
	}
	// Past the limit of 50, the oldest are forgotten first.
	var first protocol.Message
	for i := range 200 {
		m, _ := send("burst", "b"+strconv.Itoa(i))
		if i == 150 {
			first = m
		}
	}
	if n, q := size(); n != 50 || q != 50 {
		t.Fatalf("%d cids indexed, %d queued after 211 with a limit of 50", n, q)
	}
	if m, dup := send("retry", "b150"); !dup || m.ID != first.ID {
		t.Fatalf("retry of the 50th newest cid: %+v dup=%v; want %s", m, dup, first.ID)
	}
	if _, dup := send("retry", "b149"); dup {
		t.Fatal("a cid beyond the limit was still remembered")
	}
	// Once everything expired, nothing is left.
	clock.advance(2 * time.Minute)
	publish(t, b, "r", "no cid")
	if n, q := size(); n != 0 || q != 0 {
		t.Fatalf("%d cids indexed, %d queued after all expired", n, q)
	}
}
