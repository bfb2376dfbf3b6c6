// Package brokertest is the contract of hub.Broker as a test suite: every
// broker (the in-memory one, the Redis one over a standalone Redis and over
// a Redis Cluster) runs the same tests, so that chatd behaves the same on
// one node and on many.
package brokertest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
)

// Timeout bounds every wait for a delivery; it is generous because tests
// run with -race on a loaded machine.
const Timeout = 10 * time.Second

// NewBroker makes a broker with the given retention for one test; the
// factory closes it when the test ends. Brokers made for different tests
// must not share rooms (a key prefix per test does it for Redis).
type NewBroker func(t *testing.T, ret hub.RetentionConfig) hub.Broker

// Run runs the contract against the brokers newBroker makes.
func Run(t *testing.T, newBroker NewBroker) {
	tests := []struct {
		name string
		fn   func(*testing.T, NewBroker)
	}{
		{"PublishAssignsIncreasingIDs", testPublishIDs},
		{"DeliveryFollowsSubscription", testDelivery},
		{"ConcurrentPublishersOneOrder", testConcurrentOrder},
		{"IdempotentCID", testIdempotent},
		{"CIDOutlivesCountTrim", testCIDAfterCountTrim},
		{"HistoryPaging", testHistoryPaging},
		{"HistoryBadInput", testHistoryBadInput},
		{"SinceRecovers", testSince},
		{"RecoveryFloor", testRecoveryFloor},
		{"SinceAfterCountTrim", testSinceAfterCountTrim},
		{"AgeTrim", testAgeTrim},
		{"Presence", testPresence},
		{"Events", testEvents},
		{"PresenceAnnounced", testPresenceAnnounced},
		{"ReadJoin", testReadJoin},
		{"ReadJoinAnnounces", testReadJoinAnnounces},
		{"CanceledContext", testCanceled},
		{"Ready", testReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newBroker)
		})
	}
}

// Recorder is a hub.Handler that records what it is given.
type Recorder struct {
	Msgs   chan protocol.Message
	Events chan hub.Event
}

// NewRecorder returns a recorder with room for many deliveries.
func NewRecorder() *Recorder {
	return &Recorder{Msgs: make(chan protocol.Message, 10000), Events: make(chan hub.Event, 1000)}
}

// DeliverMessage implements hub.Handler.
func (r *Recorder) DeliverMessage(m protocol.Message) { r.Msgs <- m }

// DeliverEvent implements hub.Handler.
func (r *Recorder) DeliverEvent(ev hub.Event) { r.Events <- ev }

// Next waits for the next message.
func (r *Recorder) Next(t testing.TB) protocol.Message {
	t.Helper()
	select {
	case m := <-r.Msgs:
		return m
	case <-time.After(Timeout):
		t.Fatalf("no message delivered within %v", Timeout)
		return protocol.Message{}
	}
}

// NextEvent waits for the next event.
func (r *Recorder) NextEvent(t testing.TB) hub.Event {
	t.Helper()
	select {
	case ev := <-r.Events:
		return ev
	case <-time.After(Timeout):
		t.Fatalf("no event delivered within %v", Timeout)
		return hub.Event{}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return c
}

func defaultRetention() hub.RetentionConfig { return hub.RetentionConfig{Size: 1000, TTL: time.Hour} }

// subscribed returns a new broker whose deliveries go to the returned
// Recorder, subscribed to room.
func subscribed(t *testing.T, nb NewBroker, rc hub.RetentionConfig, room string) (hub.Broker, *Recorder, context.Context) {
	t.Helper()
	b := nb(t, rc)
	rec := NewRecorder()
	b.SetHandler(rec)
	c := ctx(t)
	if err := b.Subscribe(c, room); err != nil {
		t.Fatal(err)
	}
	return b, rec, c
}

// expectEvent checks that the step just made delivered want (nil: no
// event) and nothing else: a marker event published after the step comes
// after want, and right away when want is nil.
func expectEvent(t *testing.T, b hub.Broker, rec *Recorder, room string, want *hub.Event, step string) {
	t.Helper()
	marker := hub.Event{Kind: hub.EventTyping, Room: room, User: "marker"}
	if err := b.PublishEvent(ctx(t), marker); err != nil {
		t.Fatal(err)
	}
	if want != nil {
		if ev := rec.NextEvent(t); ev != *want {
			t.Fatalf("%s: delivered %+v, want %+v", step, ev, *want)
		}
	}
	if ev := rec.NextEvent(t); ev != marker {
		t.Fatalf("%s: delivered %+v, want only the marker", step, ev)
	}
}

// Publish publishes text in room as user and fails the test on error.
func Publish(t testing.TB, b hub.Broker, room, user, text, cid string) protocol.Message {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	m, dup, err := b.Publish(c, protocol.Message{Room: room, From: user, Name: "Name " + user, Text: text, CID: cid})
	if err != nil {
		t.Fatalf("publish %q to %s: %v", text, room, err)
	}
	if dup {
		t.Fatalf("publish %q to %s: reported as a duplicate", text, room)
	}
	return m
}

func mustID(t testing.TB, s string) protocol.ID {
	t.Helper()
	id, ok := protocol.ParseID(s)
	if !ok {
		t.Fatalf("id %q is not <ms>-<seq>", s)
	}
	return id
}

func texts(ms []protocol.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Text
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

func testPublishIDs(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	var prev protocol.ID
	for i := range 20 {
		before := time.Now().UnixMilli()
		m := Publish(t, b, "ids", "ann", "m"+strconv.Itoa(i), "")
		id := mustID(t, m.ID)
		if id.Compare(prev) <= 0 {
			t.Fatalf("message %d: id %s does not follow %s", i, m.ID, prev)
		}
		prev = id
		if m.TS != int64(id.MS) {
			t.Errorf("ts %d is not the id's milliseconds %d", m.TS, id.MS)
		}
		if m.TS < before-60_000 || m.TS > time.Now().UnixMilli()+60_000 {
			t.Errorf("ts %d is far from now", m.TS)
		}
		if m.Room != "ids" || m.From != "ann" || m.Name != "Name ann" || m.Text != "m"+strconv.Itoa(i) || m.CID != "" {
			t.Errorf("stored message %+v lost a field", m)
		}
	}
}

func testDelivery(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	rec := NewRecorder()
	b.SetHandler(rec)
	c := ctx(t)
	Publish(t, b, "d1", "ann", "before subscribe", "")
	if err := b.Subscribe(c, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(c, "d2"); err != nil {
		t.Fatal(err)
	}
	want := Publish(t, b, "d1", "ann", "one", "c1")
	got := rec.Next(t)
	if got != want {
		t.Fatalf("delivered %+v, published %+v", got, want)
	}
	// Texts survive whatever they hold.
	odd := "a:1:b\x00\n\"{}\" ✓ 12:"
	Publish(t, b, "d1", "bob", odd, "")
	if got := rec.Next(t); got.Text != odd || got.From != "bob" {
		t.Fatalf("delivered %+v, want text %q from bob", got, odd)
	}
	if err := b.Unsubscribe(c, "d1"); err != nil {
		t.Fatal(err)
	}
	Publish(t, b, "d1", "ann", "after unsubscribe", "")
	Publish(t, b, "d2", "ann", "barrier", "")
	if got := rec.Next(t); got.Room != "d2" || got.Text != "barrier" {
		t.Fatalf("after unsubscribing d1, delivered %+v; want only d2's barrier", got)
	}
	// Subscribing again works, and the room's messages flow again.
	if err := b.Subscribe(c, "d1"); err != nil {
		t.Fatal(err)
	}
	Publish(t, b, "d1", "ann", "again", "")
	if got := rec.Next(t); got.Room != "d1" || got.Text != "again" {
		t.Fatalf("after subscribing again, delivered %+v", got)
	}
}

func testConcurrentOrder(t *testing.T, nb NewBroker) {
	b, rec, _ := subscribed(t, nb, defaultRetention(), "conc")
	const senders, each = 4, 40
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				Publish(t, b, "conc", "u"+strconv.Itoa(s), fmt.Sprintf("%d-%d", s, i), "")
			}
		}()
	}
	wg.Wait()
	var prev protocol.ID
	next := make([]int, senders)
	var got []protocol.Message
	for range senders * each {
		m := rec.Next(t)
		got = append(got, m)
		id := mustID(t, m.ID)
		if id.Compare(prev) <= 0 {
			t.Fatalf("delivered %s after %s: not in id order", m.ID, prev)
		}
		prev = id
		var s, i int
		fmt.Sscanf(m.Text, "%d-%d", &s, &i)
		if i != next[s] {
			t.Fatalf("sender %d: got its message %d, want %d", s, i, next[s])
		}
		next[s]++
	}
	hist, _, err := b.History(ctx(t), "conc", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	tail := got[len(got)-len(hist):]
	for i := range hist {
		if hist[i] != tail[i] {
			t.Fatalf("history[%d] = %+v, delivered %+v: history order differs from delivery order", i, hist[i], tail[i])
		}
	}
}

func testIdempotent(t *testing.T, nb NewBroker) {
	b, rec, c := subscribed(t, nb, defaultRetention(), "idem")
	orig := Publish(t, b, "idem", "ann", "hello", "k1")
	rec.Next(t)
	retry, dup, err := b.Publish(c, protocol.Message{Room: "idem", From: "ann", Name: "Name ann", Text: "hello again", CID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if !dup || retry != orig {
		t.Fatalf("retry with the same cid: got %+v dup=%v, want the original %+v dup=true", retry, dup, orig)
	}
	// The same cid from another user, or in another room, is new.
	other := Publish(t, b, "idem", "bob", "bob's", "k1")
	if other.ID == orig.ID {
		t.Fatal("another user's cid was taken as a retry")
	}
	if got := rec.Next(t); got.ID != other.ID {
		t.Fatalf("after a duplicate, delivered %+v; want bob's %s (the retry must not be delivered)", got, other.ID)
	}
	Publish(t, b, "idem2", "ann", "elsewhere", "k1")
	// A cid that is a prefix of another user's key is still distinct.
	a := Publish(t, b, "idem", "an", "x", "nk1")
	if a.ID == orig.ID {
		t.Fatal("user an with cid nk1 collided with ann's k1")
	}
	hist, _, err := b.History(c, "idem", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(texts(hist), []string{"hello", "bob's", "x"}) {
		t.Fatalf("history %q", texts(hist))
	}
}

func testHistoryPaging(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	c := ctx(t)
	var all []protocol.Message
	for i := 1; i <= 10; i++ {
		all = append(all, Publish(t, b, "hist", "ann", "m"+strconv.Itoa(i), ""))
	}
	tests := []struct {
		name   string
		before string
		limit  int
		want   []string
		more   bool
	}{
		{"newest", "", 3, seq("m", 8, 10), true},
		{"page back", all[7].ID, 3, seq("m", 5, 7), true},
		{"last page exactly", all[3].ID, 3, seq("m", 1, 3), false},
		{"short last page", all[2].ID, 5, seq("m", 1, 2), false},
		{"everything", "", 50, seq("m", 1, 10), false},
		{"exactly everything", "", 10, seq("m", 1, 10), false},
		{"before the first", all[0].ID, 5, nil, false},
		{"before an id between messages", protocol.ID{MS: mustID(t, all[5].ID).MS, Seq: mustID(t, all[5].ID).Seq + 1}.String(), 2, seq("m", 5, 6), true},
		{"before a future id", "99999999999999-0", 2, seq("m", 9, 10), true},
	}
	for _, tt := range tests {
		got, more, err := b.History(c, "hist", tt.before, tt.limit)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !equal(texts(got), tt.want) || more != tt.more {
			t.Errorf("%s: got %q more=%v, want %q more=%v", tt.name, texts(got), more, tt.want, tt.more)
		}
	}
	got, more, err := b.History(c, "no-such-room", "", 10)
	if err != nil || len(got) != 0 || more {
		t.Errorf("unknown room: got %d messages, more=%v, err=%v", len(got), more, err)
	}
}

func testHistoryBadInput(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	c := ctx(t)
	Publish(t, b, "bad", "ann", "m1", "")
	for _, before := range []string{"x", "1-", "-1", "1-2-3", "١-١"} {
		got, more, err := b.History(c, "bad", before, 10)
		if err != nil || len(got) != 0 || more {
			t.Errorf("before %q: got %d messages, more=%v, err=%v; want none", before, len(got), more, err)
		}
		got, rec, err := b.Since(c, "bad", before)
		if err != nil || len(got) != 0 || rec {
			t.Errorf("since %q: got %d messages, recovered=%v, err=%v; want none, not recovered", before, len(got), rec, err)
		}
	}
}

func testSince(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	c := ctx(t)
	var all []protocol.Message
	for i := 1; i <= 5; i++ {
		all = append(all, Publish(t, b, "since", "ann", "m"+strconv.Itoa(i), ""))
	}
	tests := []struct {
		name      string
		since     string
		want      []string
		recovered bool
	}{
		{"from the first", all[0].ID, seq("m", 2, 5), true},
		{"from the middle", all[2].ID, seq("m", 4, 5), true},
		{"from the last", all[4].ID, nil, true},
		// Everything retained, but what came before the room's history
		// began is unknown (RecoveryFloor).
		{"from zero", "0-0", seq("m", 1, 5), false},
		{"from the future", "99999999999999-0", nil, true},
		{"from the largest id", "18446744073709551615-18446744073709551615", nil, true},
	}
	for _, tt := range tests {
		got, rec, err := b.Since(c, "since", tt.since)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !equal(texts(got), tt.want) || rec != tt.recovered {
			t.Errorf("%s: got %q recovered=%v, want %q recovered=%v", tt.name, texts(got), rec, tt.want, tt.recovered)
		}
	}
}

// testRecoveryFloor: a broker vouches only for what its history holds
// since it began. A broker that lost its data (a single node restarted, a
// Redis restarted without persistence) is, to a client that rejoins, a
// broker whose history begins after the client's since: a since below
// where the history begins (its floor) is not recovered, while what is
// retained is still replayed.
func testRecoveryFloor(t *testing.T, nb NewBroker) {
	// An id from before the broker was made, like a since a client kept
	// across the loss.
	before := protocol.ID{MS: uint64(time.Now().Add(-time.Hour).UnixMilli()), Seq: 3}.String()
	b := nb(t, defaultRetention())
	c := ctx(t)
	check := func(name, room, since string, want []string, recovered bool) {
		t.Helper()
		got, rec, err := b.Since(c, room, since)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !equal(texts(got), want) || rec != recovered {
			t.Errorf("%s: since %s: got %q recovered=%v, want %q recovered=%v", name, since, texts(got), rec, want, recovered)
		}
	}
	check("a fresh broker, a room it never saw", "floor", before, nil, false)
	check("a fresh broker, zero", "floor", "0-0", nil, false)
	var all []protocol.Message
	for i := 1; i <= 3; i++ {
		all = append(all, Publish(t, b, "floor", "ann", "m"+strconv.Itoa(i), ""))
	}
	check("a since from before the broker", "floor", before, seq("m", 1, 3), false)
	check("zero", "floor", "0-0", seq("m", 1, 3), false)
	check("within retention", "floor", all[0].ID, seq("m", 2, 3), true)
	check("the very last message", "floor", all[2].ID, nil, true)
	check("another room, from before the broker", "floor-other", before, nil, false)
	// A room that had messages once: the floor does not move with
	// members coming and going.
	if _, err := b.AddMember(c, "floor", protocol.Member{User: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RemoveMember(c, "floor", "bob"); err != nil {
		t.Fatal(err)
	}
	check("after a member came and went", "floor", all[1].ID, seq("m", 3, 3), true)
}

func testSinceAfterCountTrim(t *testing.T, nb NewBroker) {
	b := nb(t, hub.RetentionConfig{Size: 5, TTL: time.Hour})
	c := ctx(t)
	var all []protocol.Message
	for i := 1; i <= 8; i++ {
		all = append(all, Publish(t, b, "trim", "ann", "m"+strconv.Itoa(i), ""))
	}
	hist, more, err := b.History(c, "trim", "", 50)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(texts(hist), seq("m", 4, 8)) || more {
		t.Fatalf("history after trimming to 5: %q more=%v", texts(hist), more)
	}
	tests := []struct {
		name      string
		since     string
		want      []string
		recovered bool
	}{
		{"a dropped message before the last dropped", all[1].ID, seq("m", 4, 8), false},
		{"zero", "0-0", seq("m", 4, 8), false},
		{"the last dropped", all[2].ID, seq("m", 4, 8), true},
		{"the first retained", all[3].ID, seq("m", 5, 8), true},
	}
	for _, tt := range tests {
		got, rec, err := b.Since(c, "trim", tt.since)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !equal(texts(got), tt.want) || rec != tt.recovered {
			t.Errorf("%s: got %q recovered=%v, want %q recovered=%v", tt.name, texts(got), rec, tt.want, tt.recovered)
		}
	}
}

// testCIDAfterCountTrim: a cid is remembered for the retention time, not
// only while its message is retained (PROTOCOL.md §3: a retry "within the
// retention time is not posted again"). A retry after the original was
// trimmed from the history by count is answered with the original's id and
// ts, and delivered to nobody.
func testCIDAfterCountTrim(t *testing.T, nb NewBroker) {
	const room = "trim-cid"
	b, rec, c := subscribed(t, nb, hub.RetentionConfig{Size: 5, TTL: time.Hour}, room)
	orig := Publish(t, b, room, "ann", "first", "k")
	for i := range 10 {
		Publish(t, b, room, "ann", "filler"+strconv.Itoa(i), "f"+strconv.Itoa(i))
	}
	for range 11 {
		rec.Next(t)
	}
	hist, _, err := b.History(c, room, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(texts(hist), seq("filler", 5, 9)) {
		t.Fatalf("history after trimming to 5: %q", texts(hist))
	}
	for _, retry := range []string{"first", "first, edited before the retry"} {
		got, dup, err := b.Publish(c, protocol.Message{Room: room, From: "ann", Name: "Name ann", Text: retry, CID: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if !dup || got.ID != orig.ID || got.TS != orig.TS || got.Room != room {
			t.Fatalf("retry of cid k after its message was trimmed by count: got %+v dup=%v; want the original id %s and ts %d, dup=true", got, dup, orig.ID, orig.TS)
		}
	}
	// Also a cid whose message is still retained, in the same room.
	got, dup, err := b.Publish(c, protocol.Message{Room: room, From: "ann", Name: "Name ann", Text: "filler9", CID: "f9"})
	if err != nil || !dup || got != hist[4] {
		t.Fatalf("retry of a retained message's cid: got %+v dup=%v err=%v; want %+v", got, dup, err, hist[4])
	}
	barrier := Publish(t, b, room, "bob", "barrier", "k")
	if got := rec.Next(t); got.ID != barrier.ID {
		t.Fatalf("after the retries, delivered %+v; want bob's %s (a retry must not be delivered)", got, barrier.ID)
	}
	hist, _, err = b.History(c, room, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(seq("filler", 6, 9), "barrier"); !equal(texts(hist), want) {
		t.Fatalf("history after the retries: %q, want %q", texts(hist), want)
	}
}

func testAgeTrim(t *testing.T, nb NewBroker) {
	b := nb(t, hub.RetentionConfig{Size: 100, TTL: time.Second})
	c := ctx(t)
	old := Publish(t, b, "age", "ann", "old", "k")
	// Wait until the message has aged out; Redis and Go agree on time to
	// well within the generous deadline.
	deadline := time.Now().Add(Timeout)
	for {
		hist, _, err := b.History(c, "age", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a message older than the 1s retention is still in history")
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, rec, err := b.Since(c, "age", "0-0")
	if err != nil || len(got) != 0 || rec {
		t.Fatalf("since 0-0 after the only message aged out: %d messages, recovered=%v, err=%v; want none, not recovered", len(got), rec, err)
	}
	got, rec, err = b.Since(c, "age", old.ID)
	if err != nil || len(got) != 0 || !rec {
		t.Fatalf("since the aged-out last message: %d messages, recovered=%v, err=%v; want none, recovered", len(got), rec, err)
	}
	m, dup, err := b.Publish(c, protocol.Message{Room: "age", From: "ann", Text: "new", CID: "k"})
	if err != nil || dup {
		t.Fatalf("cid of an aged-out message: dup=%v err=%v; want a new message", dup, err)
	}
	if mustID(t, m.ID).Compare(mustID(t, old.ID)) <= 0 {
		t.Fatalf("new id %s does not follow the aged-out %s", m.ID, old.ID)
	}
}

func testPresence(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	c := ctx(t)
	steps := []struct {
		op    string // add, remove
		user  string
		want  bool // first / last
		after []protocol.Member
	}{
		{"add", "bob", true, []protocol.Member{{User: "bob", Name: "Bob"}}},
		{"add", "ann", true, []protocol.Member{{User: "ann", Name: "Ann"}, {User: "bob", Name: "Bob"}}},
		{"add", "ann", false, []protocol.Member{{User: "ann", Name: "Ann"}, {User: "bob", Name: "Bob"}}},
		{"remove", "ann", true, []protocol.Member{{User: "bob", Name: "Bob"}}},
		{"remove", "ann", false, []protocol.Member{{User: "bob", Name: "Bob"}}},
		{"remove", "bob", true, []protocol.Member{}},
		{"add", "bob", true, []protocol.Member{{User: "bob", Name: "Bob"}}},
	}
	names := map[string]string{"ann": "Ann", "bob": "Bob"}
	for i, s := range steps {
		var got bool
		var err error
		if s.op == "add" {
			got, err = b.AddMember(c, "pres", protocol.Member{User: s.user, Name: names[s.user]})
		} else {
			got, err = b.RemoveMember(c, "pres", s.user)
		}
		if err != nil {
			t.Fatalf("step %d %s %s: %v", i, s.op, s.user, err)
		}
		if got != s.want {
			t.Errorf("step %d %s %s: first/last = %v, want %v", i, s.op, s.user, got, s.want)
		}
		members, err := b.Members(c, "pres")
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != len(s.after) {
			t.Fatalf("step %d: members %v, want %v", i, members, s.after)
		}
		for j := range members {
			if members[j] != s.after[j] {
				t.Fatalf("step %d: members %v, want %v (sorted by user)", i, members, s.after)
			}
		}
	}
	if last, err := b.RemoveMember(c, "never", "ann"); err != nil || last {
		t.Errorf("remove from a room never joined: last=%v err=%v", last, err)
	}
	if m, err := b.Members(c, "never"); err != nil || len(m) != 0 {
		t.Errorf("members of a room never joined: %v, %v", m, err)
	}
}

func testEvents(t *testing.T, nb NewBroker) {
	b, rec, c := subscribed(t, nb, defaultRetention(), "ev")
	evs := []hub.Event{
		{Kind: hub.EventTyping, Room: "ev", User: "ann", Name: "Ann"},
		{Kind: hub.EventPresence, Room: "ev", User: "bob", Name: "Bob", State: protocol.PresenceJoin},
		{Kind: hub.EventPresence, Room: "ev", User: "bob", Name: "Bob", State: protocol.PresenceLeave},
	}
	for _, ev := range evs {
		if err := b.PublishEvent(c, ev); err != nil {
			t.Fatal(err)
		}
		if got := rec.NextEvent(t); got != ev {
			t.Fatalf("delivered %+v, published %+v", got, ev)
		}
	}
	// Events of a room the node is not subscribed to do not arrive.
	if err := b.PublishEvent(c, hub.Event{Kind: hub.EventTyping, Room: "ev-other", User: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishEvent(c, evs[0]); err != nil {
		t.Fatal(err)
	}
	if got := rec.NextEvent(t); got != evs[0] {
		t.Fatalf("delivered %+v; an unsubscribed room's event came through", got)
	}
}

// testPresenceAnnounced: AnnounceMember publishes the join only for the
// first claim and WithdrawMember the leave only when the last is
// withdrawn, and the claims are those AddMember and RemoveMember make.
func testPresenceAnnounced(t *testing.T, nb NewBroker) {
	b, rec, c := subscribed(t, nb, defaultRetention(), "pann")
	bob := protocol.Member{User: "bob", Name: "Bob"}
	join := hub.Event{Kind: hub.EventPresence, Room: "pann", User: "bob", Name: "Bob", State: protocol.PresenceJoin}
	leave := join
	leave.State = protocol.PresenceLeave
	steps := []struct {
		op   string // announce, withdraw
		want bool   // first / last
		ev   *hub.Event
	}{
		{"announce", true, &join},
		{"announce", false, nil},
		{"withdraw", true, &leave},
		{"withdraw", false, nil},
		{"announce", true, &join},
	}
	for i, s := range steps {
		var got bool
		var err error
		if s.op == "announce" {
			got, err = b.AnnounceMember(c, "pann", bob, join)
		} else {
			got, err = b.WithdrawMember(c, "pann", "bob", leave)
		}
		if err != nil {
			t.Fatalf("step %d %s: %v", i, s.op, err)
		}
		if got != s.want {
			t.Errorf("step %d %s: first/last = %v, want %v", i, s.op, got, s.want)
		}
		expectEvent(t, b, rec, "pann", s.ev, fmt.Sprintf("step %d %s", i, s.op))
		members, err := b.Members(c, "pann")
		if err != nil {
			t.Fatal(err)
		}
		if present := len(members) == 1 && members[0] == bob; present != (s.op == "announce") {
			t.Errorf("step %d %s: members %v", i, s.op, members)
		}
	}
}

// testReadJoin: ReadJoin answers what History or Since and Members
// answer.
func testReadJoin(t *testing.T, nb NewBroker) {
	b := nb(t, hub.RetentionConfig{Size: 5, TTL: time.Hour})
	c := ctx(t)
	var ids []string
	for i := range 8 {
		ids = append(ids, Publish(t, b, "rj", "ann", "m"+strconv.Itoa(i), "").ID)
	}
	for _, u := range []string{"bob", "ann"} {
		if _, err := b.AddMember(c, "rj", protocol.Member{User: u, Name: "N" + u}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, room, since string
		limit             int
	}{
		{"latest", "rj", "", 3},
		{"more than kept", "rj", "", 50},
		{"no history", "rj", "", 0},
		{"since recovered", "rj", ids[5], 50},
		{"since trimmed", "rj", ids[0], 50},
		{"since the last", "rj", ids[7], 50},
		{"since not an id", "rj", "x-y", 50},
		{"empty room", "rj-none", "", 50},
		{"empty room since", "rj-none", ids[3], 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hist, rec, members, err := b.ReadJoin(c, tc.room, tc.since, tc.limit, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want []protocol.Message
			var wantRec bool
			if tc.since != "" {
				want, wantRec, err = b.Since(c, tc.room, tc.since)
			} else {
				want, _, err = b.History(c, tc.room, "", tc.limit)
			}
			if err != nil {
				t.Fatal(err)
			}
			wantMembers, err := b.Members(c, tc.room)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(texts(hist), texts(want)) || rec != wantRec {
				t.Errorf("history %v recovered %v, want %v %v", texts(hist), rec, texts(want), wantRec)
			}
			if fmt.Sprint(members) != fmt.Sprint(wantMembers) {
				t.Errorf("members %v, want %v", members, wantMembers)
			}
		})
	}
}

// testReadJoinAnnounces: ReadJoin with a join event claims the user's
// presence before it reads, so that the members it returns include the
// user, and publishes the event only when the claim is the first, as
// AnnounceMember does.
func testReadJoinAnnounces(t *testing.T, nb NewBroker) {
	b, rec, c := subscribed(t, nb, defaultRetention(), "rja")
	Publish(t, b, "rja", "ann", "hello", "")
	if m := rec.Next(t); m.Text != "hello" {
		t.Fatalf("delivered %+v, want the message", m)
	}
	carol := protocol.Member{User: "carol", Name: "Carol"}
	join := hub.Event{Kind: hub.EventPresence, Room: "rja", User: "carol", Name: "Carol", State: protocol.PresenceJoin}
	for i, announced := range []*hub.Event{&join, nil} {
		hist, _, members, err := b.ReadJoin(c, "rja", "", 10, &join)
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		if len(hist) != 1 || hist[0].Text != "hello" {
			t.Errorf("join %d: history %v, want the one message", i, texts(hist))
		}
		if len(members) != 1 || members[0] != carol {
			t.Errorf("join %d: members %v, want carol, claimed before the read", i, members)
		}
		// A claim that is not the first is not announced.
		expectEvent(t, b, rec, "rja", announced, fmt.Sprintf("join %d", i))
	}
	leave := join
	leave.State = protocol.PresenceLeave
	if last, err := b.WithdrawMember(c, "rja", "carol", leave); err != nil || !last {
		t.Fatalf("WithdrawMember after two claims of one node: last %v, err %v; want true", last, err)
	}
	if ev := rec.NextEvent(t); ev != leave {
		t.Fatalf("delivered %+v, want %+v", ev, leave)
	}
}

func testCanceled(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := b.Publish(c, protocol.Message{Room: "cx", From: "ann", Text: "x"}); err == nil {
		t.Fatal("publish with a canceled context succeeded")
	}
	hist, _, err := b.History(ctx(t), "cx", "", 10)
	if err != nil || len(hist) != 0 {
		t.Fatalf("history after a canceled publish: %d messages, %v", len(hist), err)
	}
}

func testReady(t *testing.T, nb NewBroker) {
	b := nb(t, defaultRetention())
	deadline := time.Now().Add(Timeout)
	for {
		err := b.Ready(ctx(t))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %v: %v", Timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
