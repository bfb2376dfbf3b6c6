package server_test

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/ws"
)

var idPattern = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// compareIDs compares message ids numerically, part by part (§5).
func compareIDs(t testing.TB, a, b string) int {
	t.Helper()
	pa, pb := splitID(t, a), splitID(t, b)
	for i := range 2 {
		if pa[i] != pb[i] {
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func splitID(t testing.TB, id string) [2]uint64 {
	t.Helper()
	if !idPattern.MatchString(id) {
		t.Fatalf("id %q is not <milliseconds>-<sequence>", id)
	}
	ms, seq, _ := strings.Cut(id, "-")
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("id %q does not parse", id)
	}
	return [2]uint64{a, b}
}

func texts(msgs []msg) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.str("text")
	}
	return out
}

func users(members []msg) []string {
	out := make([]string, len(members))
	for i, m := range members {
		out[i] = m.str("user") + "/" + m.str("name")
	}
	slices.Sort(out)
	return out
}

// TestWelcome: the first message on every connection (§4).
func TestWelcome(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.NodeID = "node-7"
	cfg.Heartbeat = 3 * time.Second
	ts := startServer(t, cfg)
	seen := map[string]bool{}
	for _, spec := range []auth.TokenSpec{{Subject: "u1", Name: "Ünïcode Name"}, {Subject: "u2"}, {Subject: "u1", Name: "Ünïcode Name"}} {
		c := ts.dialWith(t, spec.Subject, dialOpts{header: http.Header{"Authorization": {"Bearer " + ts.sign(t, spec)}}})
		w := c.expect("welcome")
		wantName := spec.Name
		if wantName == "" {
			wantName = spec.Subject // no name claim: the user id
		}
		if w.str("user") != spec.Subject || w.str("name") != wantName || w.str("node") != "node-7" || w.num("heartbeat") != 3 {
			t.Errorf("welcome %v, want user %s, name %s, node node-7, heartbeat 3", w, spec.Subject, wantName)
		}
		conn := w.str("conn")
		if conn == "" || seen[conn] {
			t.Errorf("conn %q is empty or not unique", conn)
		}
		seen[conn] = true
	}
}

// TestJoinAndLeave: joined with members and history, left, and presence
// (§3, §4).
func TestJoinAndLeave(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	b := ts.dial(t, "bob")

	j := a.join("lobby")
	if j.str("room") != "lobby" || j.list("history") == nil || !j.has("history") || len(j.list("history")) != 0 || j.has("recovered") && j["recovered"] != false {
		t.Errorf("joined %v, want room lobby, empty history, recovered false", j)
	}
	if j["recovered"] != false {
		t.Errorf("joined without since: recovered %v, want false", j["recovered"])
	}
	if got := users(j.list("members")); !slices.Equal(got, []string{"alice/Alice"}) {
		t.Errorf("members %v, want alice", got)
	}
	// The joiner's own presence comes right after joined.
	if p := a.expect("presence"); p.str("user") != "alice" || p.str("state") != "join" || p.str("name") != "Alice" || p.str("room") != "lobby" {
		t.Errorf("own presence %v", p)
	}

	j = b.join("lobby")
	if got := users(j.list("members")); !slices.Equal(got, []string{"alice/Alice", "bob/Bob"}) {
		t.Errorf("members %v, want alice and bob", got)
	}
	p := a.expect("presence")
	if p.str("user") != "bob" || p.str("name") != "Bob" || p.str("state") != "join" || p.str("room") != "lobby" {
		t.Errorf("presence %v, want bob join", p)
	}
	b.sync()

	// Joining again serves the join again, with no new presence.
	j = b.join("lobby")
	if got := users(j.list("members")); len(got) != 2 {
		t.Errorf("second join: members %v", got)
	}

	l := b.roundTrip(map[string]any{"type": "leave", "room": "lobby"})
	if l.typ() != "left" || l.str("room") != "lobby" {
		t.Errorf("leave: %v, want left", l)
	}
	p = a.expect("presence")
	if p.str("user") != "bob" || p.str("state") != "leave" {
		t.Errorf("presence %v, want bob leave", p)
	}
	a.post("lobby", "after bob left")
	a.sync()
	if extra := b.sync(); len(extra) != 0 {
		t.Errorf("bob got %v after leaving", extra)
	}
	if m := b.roundTrip(map[string]any{"type": "leave", "room": "lobby"}); m.str("code") != "not_joined" {
		t.Errorf("second leave: %v, want not_joined", m)
	}
}

// TestSendAndMessage: sent to the sender, message to every member with
// every field (§3, §4).
func TestSendAndMessage(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	b := ts.dial(t, "bob")
	a.join("lobby")
	b.join("lobby")
	a.sync()
	b.sync()

	before := time.Now().UnixMilli()
	text := "héllo \"world\" \n\t <b>&</b> \u2028 🙂"
	s := a.roundTrip(map[string]any{"type": "send", "room": "lobby", "text": text, "cid": "c-1"})
	after := time.Now().UnixMilli()
	if s.typ() != "sent" || s.str("room") != "lobby" || !idPattern.MatchString(s.str("id")) {
		t.Fatalf("sent %v", s)
	}
	if ts := s.num("ts"); ts < before-1000 || ts > after+1000 {
		t.Errorf("ts %d is not the server time in Unix milliseconds (%d..%d)", ts, before, after)
	}
	for _, c := range []*client{a, b} {
		m := c.waitFor("message", nil)
		want := msg{"type": "message", "room": "lobby", "id": s.str("id"), "from": "alice", "name": "Alice", "text": text, "ts": float64(s.num("ts")), "cid": "c-1"}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("%s got %v, want %v", c.name, m, want)
		}
	}
	// Without cid, message has no cid.
	a.post("lobby", "plain")
	if m := b.waitFor("message", nil); m.has("cid") {
		t.Errorf("message without cid: %v", m)
	}
}

// TestSendDeduplication: a send repeated with the same cid by the same
// user in the same room is answered with the original sent and posted
// once, from any connection of the user (§3).
func TestSendDeduplication(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a1 := ts.dial(t, "alice")
	a2 := ts.dial(t, "alice")
	b := ts.dial(t, "bob")
	for _, c := range []*client{a1, a2, b} {
		c.join("lobby")
		c.join("other")
	}
	first := a1.roundTrip(map[string]any{"type": "send", "room": "lobby", "text": "once", "cid": "k1"})
	again := a1.roundTrip(map[string]any{"type": "send", "room": "lobby", "text": "once", "cid": "k1"})
	tab2 := a2.roundTrip(map[string]any{"type": "send", "room": "lobby", "text": "once", "cid": "k1"})
	for _, s := range []msg{again, tab2} {
		if s.typ() != "sent" || s.str("id") != first.str("id") || s.num("ts") != first.num("ts") {
			t.Errorf("repeated send: %v, want the original %v", s, first)
		}
	}
	// The same cid from another user, or in another room, is a new message.
	other := b.roundTrip(map[string]any{"type": "send", "room": "lobby", "text": "mine", "cid": "k1"})
	room2 := a1.roundTrip(map[string]any{"type": "send", "room": "other", "text": "there", "cid": "k1"})
	if other.str("id") == first.str("id") {
		t.Errorf("cid collided across users: %v %v", first, other)
	}
	if h := a1.roundTrip(map[string]any{"type": "history", "room": "other"}); !slices.Equal(texts(h.list("messages")), []string{"there"}) || h.list("messages")[0].str("id") != room2.str("id") {
		t.Errorf("cid collided across rooms: history of other is %v", h)
	}
	// Every connection received "once" exactly once.
	for _, c := range []*client{a1, a2, b} {
		n := 0
		for _, m := range c.sync() {
			if m.typ() == "message" && m.str("text") == "once" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s received once %d times", c.name, n)
		}
	}
	h := b.roundTrip(map[string]any{"type": "history", "room": "lobby"})
	if got := texts(h.list("messages")); !slices.Equal(got, []string{"once", "mine"}) {
		t.Errorf("lobby history %v, want once, mine", got)
	}
}

// TestSendDeliveredOnce counts the deliveries of a repeated send on a
// fresh connection that saw everything.
func TestSendDeliveredOnce(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	b := ts.dial(t, "bob")
	a.join("lobby")
	b.join("lobby")
	b.sync()
	for range 3 {
		a.roundTrip(map[string]any{"type": "send", "room": "lobby", "text": "retry", "cid": "same"})
	}
	a.post("lobby", "end")
	var got []string
	for {
		m := b.waitFor("message", nil)
		got = append(got, m.str("text"))
		if m.str("text") == "end" {
			break
		}
	}
	if !slices.Equal(got, []string{"retry", "end"}) {
		t.Errorf("bob received %v, want retry once, then end", got)
	}
}

// TestHistory: joined.history (latest 50, oldest first), and paging with
// before, limit and more; history needs no join (§3, §4).
func TestHistory(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	a.join("lobby")
	var ids []string
	for i := range 60 {
		ids = append(ids, a.post("lobby", "m"+strconv.Itoa(i)).str("id"))
	}
	for i := 1; i < len(ids); i++ {
		if compareIDs(t, ids[i-1], ids[i]) >= 0 {
			t.Fatalf("ids not increasing: %s then %s", ids[i-1], ids[i])
		}
	}
	want := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, "m"+strconv.Itoa(i))
		}
		return out
	}

	b := ts.dial(t, "bob")
	j := b.join("lobby")
	if got := texts(j.list("history")); !slices.Equal(got, want(10, 60)) {
		t.Errorf("joined.history %v, want m10..m59", got)
	}
	if j["recovered"] != false {
		t.Errorf("recovered %v without since", j["recovered"])
	}

	// history needs no join.
	c := ts.dial(t, "carol")
	h := c.roundTrip(map[string]any{"type": "history", "room": "lobby"})
	if h.typ() != "history" || h.str("room") != "lobby" || h["more"] != true {
		t.Fatalf("history: %v", h)
	}
	if got := texts(h.list("messages")); !slices.Equal(got, want(10, 60)) {
		t.Errorf("history default %v, want m10..m59", got)
	}
	h = c.roundTrip(map[string]any{"type": "history", "room": "lobby", "limit": 5})
	if got := texts(h.list("messages")); !slices.Equal(got, want(55, 60)) || h["more"] != true {
		t.Errorf("limit 5: %v more=%v", got, h["more"])
	}
	h = c.roundTrip(map[string]any{"type": "history", "room": "lobby", "before": ids[10], "limit": 100})
	if got := texts(h.list("messages")); !slices.Equal(got, want(0, 10)) || h["more"] != false {
		t.Errorf("before m10: %v more=%v, want m0..m9 and more false", got, h["more"])
	}
	h = c.roundTrip(map[string]any{"type": "history", "room": "lobby", "before": ids[10], "limit": 10})
	if h["more"] != false {
		t.Errorf("exactly the rest: more=%v, want false", h["more"])
	}
	h = c.roundTrip(map[string]any{"type": "history", "room": "lobby", "before": ids[10], "limit": 9})
	if got := texts(h.list("messages")); !slices.Equal(got, want(1, 10)) || h["more"] != true {
		t.Errorf("before m10 limit 9: %v more=%v", got, h["more"])
	}
	// Paging back from the end collects everything once, in order.
	var all []string
	before := ""
	for page := 0; ; page++ {
		cmd := map[string]any{"type": "history", "room": "lobby", "limit": 7}
		if before != "" {
			cmd["before"] = before
		}
		h := c.roundTrip(cmd)
		msgs := h.list("messages")
		all = append(texts(msgs), all...)
		if h["more"] != true {
			break
		}
		before = msgs[0].str("id")
		if page > 20 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(all, want(0, 60)) {
		t.Errorf("paged history %v", all)
	}
	// A before id that is not stored pages from where it would be.
	h = c.roundTrip(map[string]any{"type": "history", "room": "lobby", "before": "1-0"})
	if len(h.list("messages")) != 0 || h["more"] != false {
		t.Errorf("before 1-0: %v", h)
	}
	h = c.roundTrip(map[string]any{"type": "history", "room": "never-used"})
	if h.typ() != "history" || len(h.list("messages")) != 0 || h["more"] != false {
		t.Errorf("history of an empty room: %v", h)
	}
	// A configured history limit applies to joined.history.
	cfg := fastConfig()
	cfg.HistoryLimit = 3
	ts2 := startServer(t, cfg)
	d := ts2.dial(t, "dave")
	d.join("r")
	for i := range 5 {
		d.post("r", "m"+strconv.Itoa(i))
	}
	e := ts2.dial(t, "erin")
	if got := texts(e.join("r").list("history")); !slices.Equal(got, want(2, 5)) {
		t.Errorf("history limit 3: %v", got)
	}
}

// TestJoinSince: join with since replays exactly the missed messages, with
// recovered true, or false when the gap exceeded retention (§5).
func TestJoinSince(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig(), serverOpts{retention: hub.RetentionConfig{Size: 5}})
	a := ts.dial(t, "alice")
	b := ts.dial(t, "bob")
	a.join("lobby")
	b.join("lobby")
	ids := []string{a.post("lobby", "m0").str("id"), a.post("lobby", "m1").str("id")}
	last := b.waitFor("message", func(m msg) bool { return m.str("text") == "m1" }).str("id")
	if last != ids[1] {
		t.Fatalf("bob's last id %s, want %s", last, ids[1])
	}
	// bob drops; three messages are posted while he is away.
	_ = b.conn.CloseNow()
	a.waitFor("presence", func(m msg) bool { return m.str("user") == "bob" && m.str("state") == "leave" })
	for _, s := range []string{"m2", "m3", "m4"} {
		a.post("lobby", s)
	}
	b = ts.dial(t, "bob")
	j := b.roundTrip(map[string]any{"type": "join", "room": "lobby", "since": last})
	if got := texts(j.list("history")); !slices.Equal(got, []string{"m2", "m3", "m4"}) || j["recovered"] != true {
		t.Errorf("join since m1: %v recovered=%v, want m2..m4 and true", got, j["recovered"])
	}
	// Nothing missed: empty and recovered.
	j = b.roundTrip(map[string]any{"type": "join", "room": "lobby", "since": j.list("history")[2].str("id")})
	if len(j.list("history")) != 0 || j["recovered"] != true {
		t.Errorf("join since the last id: %v", j)
	}
	// Since an id older than anything retained: what is retained, and
	// recovered false (retention is 5 messages; m0 was dropped).
	a.post("lobby", "m5")
	j = b.roundTrip(map[string]any{"type": "join", "room": "lobby", "since": ids[0]})
	if got := texts(j.list("history")); !slices.Equal(got, []string{"m1", "m2", "m3", "m4", "m5"}) || j["recovered"] != true {
		t.Errorf("join since m0 (m1..m5 retained): %v recovered=%v", got, j["recovered"])
	}
	a.post("lobby", "m6")
	j = b.roundTrip(map[string]any{"type": "join", "room": "lobby", "since": ids[0]})
	if got := texts(j.list("history")); !slices.Equal(got, []string{"m2", "m3", "m4", "m5", "m6"}) || j["recovered"] != false {
		t.Errorf("join since m0 after m1 was dropped: %v recovered=%v, want m2..m6 and false", got, j["recovered"])
	}
	// since 0-0 asks for everything retained.
	j = b.roundTrip(map[string]any{"type": "join", "room": "lobby", "since": "0-0"})
	if len(j.list("history")) != 5 || j["recovered"] != false {
		t.Errorf("join since 0-0: %v", j)
	}
	// A room that never had a message, since an id from this node's
	// time: nothing missed.
	j = b.roundTrip(map[string]any{"type": "join", "room": "fresh", "since": ids[0]})
	if len(j.list("history")) != 0 || j["recovered"] != true {
		t.Errorf("join fresh since m0: %v", j)
	}
	// Since 0-0, or an id from before the node started (a node that
	// restarted lost its history): nothing to replay, and nothing the
	// node can vouch for.
	old := fmt.Sprintf("%d-0", time.Now().Add(-time.Hour).UnixMilli())
	for _, since := range []string{"0-0", old} {
		j = b.roundTrip(map[string]any{"type": "join", "room": "fresh", "since": since})
		if len(j.list("history")) != 0 || j["recovered"] != false {
			t.Errorf("join fresh since %s: %v, want no history, recovered false", since, j)
		}
	}
}

// TestJoinSinceUnderLoad: messages published while a join with since is
// served are delivered exactly once, after joined, in order.
func TestJoinSinceUnderLoad(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	a.join("busy")
	a.sync()
	const total = 300
	// alice pipelines her sends without waiting for the replies; the
	// server slows her down rather than closing her as a slow consumer.
	done := make(chan error, 1)
	go func() {
		for i := range total {
			if err := a.conn.WriteMessage(ws.Text, []byte(`{"type":"send","room":"busy","text":"`+strconv.Itoa(i)+`"}`)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b := ts.dial(t, "bob")
	j := b.roundTrip(map[string]any{"type": "join", "room": "busy", "since": "0-0"})
	got := texts(j.list("history"))
	if err := <-done; err != nil {
		t.Fatalf("alice: write: %v", err)
	}
	for len(got) < total {
		m, ok := b.nextWithin(waitTimeout)
		if !ok {
			t.Fatalf("bob got %d of %d messages: %v", len(got), total, got)
		}
		if m.typ() == "message" {
			got = append(got, m.str("text"))
		}
	}
	for i, s := range got {
		if s != strconv.Itoa(i) {
			t.Fatalf("message %d is %q: %v", i, s, got)
		}
	}
	b.quiet(100*time.Millisecond, "presence")
}

// TestTyping: relayed to the other members, not to the typing user's own
// connections, never stored, no reply (§3, §4).
func TestTyping(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	b1 := ts.dial(t, "bob")
	b2 := ts.dial(t, "bob")
	for _, c := range []*client{a, b1, b2} {
		c.join("lobby")
	}
	for _, c := range []*client{a, b1, b2} {
		c.sync()
	}
	b1.send(map[string]any{"type": "typing", "room": "lobby", "ref": "t1"})
	m := a.expect("typing")
	if fmt.Sprint(m) != fmt.Sprint(msg{"type": "typing", "room": "lobby", "user": "bob", "name": "Bob"}) {
		t.Errorf("typing %v", m)
	}
	for _, c := range []*client{b1, b2} {
		if extra := c.sync(); len(extra) != 0 {
			t.Errorf("%s got %v after typing", c.name, extra)
		}
	}
	h := a.roundTrip(map[string]any{"type": "history", "room": "lobby"})
	if len(h.list("messages")) != 0 {
		t.Errorf("typing was stored: %v", h)
	}
}

// TestTypingCoalesced: a node relays at most one typing per user and room
// every hub.TypingInterval, whichever of the user's connections sends it;
// the extras are dropped without a reply. A message from the user starts
// afresh: their next typing is relayed at once.
func TestTypingCoalesced(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	b1 := ts.dial(t, "bob")
	b2 := ts.dial(t, "bob")
	c := ts.dial(t, "carol")
	for _, cl := range []*client{a, b1, b2, c} {
		cl.join("lobby")
	}
	for _, cl := range []*client{a, b1, b2, c} {
		cl.sync()
	}
	typings := func(ms []msg) map[string]int {
		n := map[string]int{}
		for _, m := range ms {
			if m.typ() == "typing" {
				n[m.str("user")]++
			}
		}
		return n
	}
	noReplies := func(cls ...*client) {
		t.Helper()
		for _, cl := range cls {
			for _, m := range cl.sync() {
				if m.typ() != "typing" && m.typ() != "message" {
					t.Errorf("%s got %v: a dropped typing is not answered", cl.name, m)
				}
			}
		}
	}

	start := time.Now()
	for range 10 {
		b1.send(map[string]any{"type": "typing", "room": "lobby", "ref": "t"})
		b2.send(map[string]any{"type": "typing", "room": "lobby"})
	}
	c.send(map[string]any{"type": "typing", "room": "lobby"})
	noReplies(b1, b2, c)
	got := typings(a.sync())
	if time.Since(start) < hub.TypingInterval && (got["bob"] != 1 || got["carol"] != 1) {
		t.Errorf("20 typings from bob's two connections and one from carol within %v: alice got %v, want one each", hub.TypingInterval, got)
	}

	// A message, then typing again: relayed at once.
	b1.post("lobby", "hello")
	sent := time.Now()
	b1.send(map[string]any{"type": "typing", "room": "lobby"})
	if m := a.waitFor("typing", nil); m.str("user") != "bob" {
		t.Fatalf("after bob's message, alice got typing from %v, want bob", m)
	}
	// And the next one only an interval after that one: keep typing until
	// it comes through.
	for {
		b2.send(map[string]any{"type": "typing", "room": "lobby"})
		if n := typings(a.sync())["bob"]; n > 0 {
			if n > 1 || time.Since(sent) < hub.TypingInterval {
				t.Fatalf("alice got %d typings from bob %v after the one that was relayed, want one, after at least %v", n, time.Since(sent), hub.TypingInterval)
			}
			break
		}
		if time.Since(sent) > waitTimeout {
			t.Fatalf("no typing relayed %v after the last one", waitTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	noReplies(b1, b2)
}

// TestPresencePerUser: presence counts users, not connections (§4).
func TestPresencePerUser(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	a.join("lobby")
	a.sync()
	b1 := ts.dial(t, "bob")
	b2 := ts.dial(t, "bob")
	b1.join("lobby")
	if p := a.expect("presence"); p.str("user") != "bob" || p.str("state") != "join" {
		t.Fatalf("presence %v, want bob join", p)
	}
	j := b2.join("lobby") // second tab: no presence
	if got := users(j.list("members")); !slices.Equal(got, []string{"alice/Alice", "bob/Bob"}) {
		t.Errorf("members %v: bob once", got)
	}
	if extra := a.sync(); len(extra) != 0 {
		t.Errorf("second tab produced %v", extra)
	}
	b1.roundTrip(map[string]any{"type": "leave", "room": "lobby"}) // bob is still there in b2
	if extra := a.sync(); len(extra) != 0 {
		t.Errorf("leaving one tab produced %v", extra)
	}
	_ = b2.conn.CloseNow() // the last connection drops
	if p := a.expect("presence"); p.str("user") != "bob" || p.str("state") != "leave" || p.str("name") != "Bob" {
		t.Errorf("presence %v, want bob leave", p)
	}
	c := ts.dial(t, "carol")
	if got := users(c.join("lobby").list("members")); !slices.Equal(got, []string{"alice/Alice", "carol/Carol"}) {
		t.Errorf("members after bob left: %v", got)
	}
}

// TestPresenceConcurrentTabs: tabs of one user joining and leaving at the
// same time never leave the user present without a presence join, or
// absent while a tab is in the room.
func TestPresenceConcurrentTabs(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	a := ts.dial(t, "alice")
	a.join("lobby")
	a.sync()
	var tabs []*client
	for range 4 {
		tabs = append(tabs, ts.dial(t, "bob"))
	}
	var wg sync.WaitGroup
	for _, c := range tabs {
		wg.Go(func() {
			for range 10 {
				c.send(map[string]any{"type": "join", "room": "lobby"})
				c.send(map[string]any{"type": "leave", "room": "lobby"})
			}
			c.send(map[string]any{"type": "join", "room": "lobby"})
		})
	}
	wg.Wait()
	for _, c := range tabs {
		c.sync()
	}
	// Every tab is in: bob is present, and alice's last presence says so.
	var last msg
	for _, m := range a.sync() {
		if m.typ() == "presence" {
			last = m
		}
	}
	if last == nil || last.str("state") != "join" {
		t.Errorf("last presence %v, want bob join", last)
	}
	c := ts.dial(t, "carol")
	if got := users(c.join("lobby").list("members")); !slices.Equal(got, []string{"alice/Alice", "bob/Bob", "carol/Carol"}) {
		t.Errorf("members %v", got)
	}
}

// TestOrder: ids strictly increase, and every member receives the room's
// messages in the same order under concurrent senders (§5).
func TestOrder(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	const senders, each = 4, 40
	var cs []*client
	for i := range senders {
		c := ts.dial(t, "user"+strconv.Itoa(i))
		c.join("race")
		cs = append(cs, c)
	}
	listener := ts.dial(t, "listener")
	listener.join("race")
	for _, c := range cs {
		c.sync()
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for i := range each {
				c.send(map[string]any{"type": "send", "room": "race", "text": c.name + ":" + strconv.Itoa(i)})
			}
		})
	}
	wg.Wait()
	var sequences [][]string
	for _, c := range append(cs, listener) {
		var ids []string
		for len(ids) < senders*each {
			m := c.next()
			if m.typ() == "message" {
				ids = append(ids, m.str("id"))
			}
		}
		for i := 1; i < len(ids); i++ {
			if compareIDs(t, ids[i-1], ids[i]) >= 0 {
				t.Fatalf("%s: id %s after %s", c.name, ids[i], ids[i-1])
			}
		}
		sequences = append(sequences, ids)
	}
	for i := 1; i < len(sequences); i++ {
		if !slices.Equal(sequences[0], sequences[i]) {
			t.Fatalf("members saw different orders")
		}
	}
	// Ids compare part by part: "10-0" is after "9-5".
	if compareIDs(t, "10-0", "9-5") != 1 || compareIDs(t, "9-10", "9-9") != 1 {
		t.Fatal("compareIDs is wrong")
	}
}

// TestFanoutToManyMembers: with more members than one batched submission
// of writes takes (ws.Batch), and several members posting at once, every
// member gets every message once, each poster's in the order posted, and
// all members in the same order: the room's.
func TestFanoutToManyMembers(t *testing.T) {
	t.Parallel()
	t.Logf("fan-out writes through io_uring: %v", ws.BatchRing())
	cfg := fastConfig()
	cfg.SendRate, cfg.SendBurst = 1000, 1000
	cfg.UserRate, cfg.UserBurst = 1000, 1000
	cfg.CommandRate, cfg.CommandBurst = 1000, 1000
	ts := startServer(t, cfg)
	const members, posters, posts = 100, 3, 20
	clients := make([]*client, members)
	for i := range clients {
		clients[i] = ts.dial(t, fmt.Sprintf("m%d", i))
		clients[i].join("crowd")
	}
	for _, c := range clients {
		c.sync()
	}
	// Sent without waiting for the replies: the server reads the
	// posters' commands on as many goroutines, at once.
	for i := range posts {
		for p := range posters {
			clients[p].send(map[string]any{"type": "send", "room": "crowd", "text": fmt.Sprintf("%d/%d", p, i)})
		}
	}
	var first []string
	for n, c := range clients {
		var got []string
		next := make([]int, posters)
		for len(got) < posters*posts {
			m := c.waitFor("message", nil)
			var p, i int
			if _, err := fmt.Sscanf(m.str("text"), "%d/%d", &p, &i); err != nil || p >= posters || i != next[p] {
				t.Fatalf("%s: got %q after %v", c.name, m.str("text"), got)
			}
			next[p]++
			got = append(got, m.str("text"))
		}
		if n == 0 {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("%s got the messages in another order than %s:\n%v\n%v", c.name, clients[0].name, got, first)
		}
	}
	for _, c := range clients {
		c.quiet(50*time.Millisecond, "presence", "sent")
	}
}
