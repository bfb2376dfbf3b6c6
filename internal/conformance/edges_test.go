package conformance_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/ws"
)

// TestCompressedLimits checks the rules of PROTOCOL.md §2 on messages that
// arrive compressed (permessage-deflate): the read limit applies to the
// message, not to its compressed frame; invalid UTF-8 and binary are
// closed as when plain.
func TestCompressedLimits(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		dialZ := func(t *testing.T) *client {
			user := fresh("z")
			c, err := dial(t, tp.a, user, dialOptions{token: token(t, user), compression: true})
			if err != nil {
				t.Fatal(err)
			}
			if !c.conn.Compressed() {
				t.Fatal("permessage-deflate not negotiated")
			}
			return c
		}
		t.Run("over the read limit once inflated closes with 1009", func(t *testing.T) {
			c := dialZ(t)
			c.writeRaw(padded(`{"type":"ping","ref":"z","pad":"`, `"}`, 200<<10))
			c.wantClose(ws.StatusMessageTooBig, wait)
		})
		t.Run("exactly the read limit once inflated is served", func(t *testing.T) {
			c := dialZ(t)
			c.writeRaw(padded(`{"type":"ping","ref":"z","pad":"`, `"}`, 64<<10))
			c.await("pong", isType("pong"))
		})
		t.Run("invalid UTF-8 closes with 1007", func(t *testing.T) {
			c := dialZ(t)
			c.writeRaw(append(padded(`{"type":"ping","pad":"`, ``, 300), "\xff\"}"...))
			c.wantClose(ws.StatusInvalidPayload, wait)
		})
		t.Run("binary closes with 1003", func(t *testing.T) {
			c := dialZ(t)
			if err := c.conn.WriteMessage(ws.Binary, padded(`{"type":"ping","pad":"`, `"}`, 300)); err != nil {
				t.Fatal(err)
			}
			c.wantClose(ws.StatusUnsupportedData, wait)
		})
	})
}

// TestCloseFrames checks the server's answer to close frames that break
// RFC 6455 §5.5.1 and §7.4 (PROTOCOL.md §6: 1002 protocol error).
func TestCloseFrames(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		for _, row := range []struct {
			name    string
			payload []byte
			want    ws.StatusCode
		}{
			{"no code", nil, ws.StatusNoStatusReceived},
			{"4001 echoed", closePayload(4001), 4001},
			{"a 1-byte payload", []byte{3}, ws.StatusProtocolError},
			{"code 999", closePayload(999), ws.StatusProtocolError},
			{"code 1004", closePayload(1004), ws.StatusProtocolError},
			{"code 1006", closePayload(1006), ws.StatusProtocolError},
			{"code 5000", closePayload(5000), ws.StatusProtocolError},
			{"reason not UTF-8", append(closePayload(1000), 0xff), ws.StatusInvalidPayload},
		} {
			t.Run(row.name, func(t *testing.T) {
				rc := openRaw(t, tp.b, fresh("cl"))
				rc.writeFrame(true, 0, opClose, row.payload, true)
				got := rc.readClose(wait)
				if row.want == ws.StatusNoStatusReceived {
					// An empty close may be answered empty or with 1000.
					if got != ws.StatusNoStatusReceived && got != ws.StatusNormalClosure {
						t.Errorf("close %v, want an empty close or 1000", got)
					}
					return
				}
				if got != row.want {
					t.Errorf("close %v, want %v", got, row.want)
				}
			})
		}
	})
}

// TestSinceReplaysEverything checks that joined.history with since holds
// every retained message after it, not only the 50 of a join without since
// nor the 100 of a history page: here all 1000 retained messages of 4096
// bytes, about 4 MB in one joined (PROTOCOL.md §4 joined; docs/protocol.md
// §8 large messages).
func TestSinceReplaysEverything(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		s := connect(t, tp.a, fresh("s"))
		s.join(room)
		sent := postManyText(t, s, room, 1000, strings.Repeat("x", 4096))
		for _, n := range tp.each() {
			c := connect(t, n, fresh("r"))
			j := c.joinSince(room, sent[0])
			if got := ids(j.messages("history")); !slices.Equal(got, sent[1:]) {
				t.Errorf("%s: since the first of 1000: %d messages, want 999", n.id, len(got))
			}
			if rec, _ := j.bool("recovered"); !rec {
				t.Errorf("%s: recovered false", n.id)
			}
		}
	})
}

// TestNames checks that the name of a token without name is its sub
// wherever a name is shown: message, presence, typing, members
// (docs/protocol.md §1 Tokens).
func TestNames(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		user := fresh("noname")
		c := claims(user)
		delete(c, "name")
		x := connectToken(t, tp.a, user, sign(t, c))
		o := connect(t, tp.b, fresh("o"))
		o.join(room)
		x.join(room)
		if p := o.await("presence", isPresence(room, user, "join")); p.str("name") != user {
			t.Errorf("presence %s, want name %s", p, user)
		}
		if m := members(o.join(room)); m[user] != user {
			t.Errorf("members %v, want %s named %s", m, user, user)
		}
		x.write(map[string]any{"type": "typing", "room": room})
		if e := o.await("typing", isType("typing")); e.str("name") != user {
			t.Errorf("typing %s, want name %s", e, user)
		}
		s := x.post(room, "hi")
		if m := o.await("message", isMessageID(s.str("id"))); m.str("name") != user {
			t.Errorf("message %s, want name %s", m, user)
		}
	})
}

// TestPresenceRaces checks presence when two connections of one user, on
// two nodes, join at once and leave at once: one join, then one leave,
// never none and never two (PROTOCOL.md §4 presence).
func TestPresenceRaces(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		for i := range 3 {
			room := fresh("room")
			user := fresh("twin")
			o := connect(t, tp.a, fresh("o"))
			o.join(room)
			a, b := connect(t, tp.a, user), connect(t, tp.b, user)
			var wg sync.WaitGroup
			for _, c := range []*client{a, b} {
				wg.Go(func() {
					_ = c.conn.WriteMessage(ws.Text, fmt.Appendf(nil, `{"type":"join","room":%q,"ref":"j"}`, room))
				})
			}
			wg.Wait()
			a.await("joined", isType("joined"))
			b.await("joined", isType("joined"))
			o.await(fmt.Sprint("presence join, round ", i), isPresence(room, user, "join"))
			o.none("a second presence join", quiet, isPresence(room, user, ""))
			for _, c := range []*client{a, b} {
				wg.Go(func() {
					_ = c.conn.WriteMessage(ws.Text, fmt.Appendf(nil, `{"type":"leave","room":%q,"ref":"l"}`, room))
				})
			}
			wg.Wait()
			a.await("left", isType("left"))
			b.await("left", isType("left"))
			o.await(fmt.Sprint("presence leave, round ", i), isPresence(room, user, "leave"))
			o.none("a second presence leave", quiet, isPresence(room, user, ""))
			if m := members(connect(t, tp.b, fresh("late")).join(room)); len(m) != 2 {
				t.Errorf("members %v, want the observer and the newcomer", m)
			}
		}
	})
}

// TestConcurrentCidRetry checks that one cid sent at once from connections
// of the same user on both nodes is posted once, and every send is
// answered with the same sent (PROTOCOL.md §3 send).
func TestConcurrentCidRetry(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		user := fresh("dup")
		var cs []*client
		for i := range 4 {
			n := tp.a
			if i%2 == 1 {
				n = tp.b
			}
			c := connect(t, n, user)
			c.join(room)
			cs = append(cs, c)
		}
		o := connect(t, tp.b, fresh("o"))
		o.join(room)
		for round := range 10 {
			cid := fresh("cid")
			var wg sync.WaitGroup
			for _, c := range cs {
				wg.Go(func() {
					_ = c.conn.WriteMessage(ws.Text, fmt.Appendf(nil, `{"type":"send","room":%q,"text":"t","cid":%q,"ref":%q}`, room, cid, cid))
				})
			}
			wg.Wait()
			var first string
			for _, c := range cs {
				e := c.await("sent", func(e event) bool { return e.str("ref") == cid })
				if e.typ() != "sent" {
					t.Fatalf("round %d: %s", round, e)
				}
				if first == "" {
					first = e.str("id")
				} else if e.str("id") != first {
					t.Errorf("round %d: sent ids %s and %s for one cid", round, first, e.str("id"))
				}
			}
			o.await("the message", isMessageID(first))
		}
		o.none("a second message for a cid", quiet, isMessage(room))
	})
}

// TestRefreshRooms checks that a refreshed token's rooms claim applies at
// once in both directions: a wider claim allows rooms the old one did not
// (docs/protocol.md §3 refresh).
func TestRefreshRooms(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		user := fresh("rr")
		c := claims(user)
		c["rooms"] = []string{"a-*"}
		x := connectToken(t, tp.a, user, sign(t, c))
		room := "b-" + fresh("room")
		x.wantError("forbidden", map[string]any{"type": "join", "room": room})
		x.must("refreshed", map[string]any{"type": "refresh", "token": token(t, user)})
		x.join(room)
		x.must("history", map[string]any{"type": "history", "room": room})
	})
}

// TestRefreshEarlier checks that the close with 4001 moves to the new exp
// also when the refreshed token expires sooner than the old one (PROTOCOL.md
// §1: closed at that time unless refreshed; docs/protocol.md §3).
func TestRefreshEarlier(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		user := fresh("re")
		x := connect(t, tp.b, user) // exp in an hour
		exp := time.Now().Unix() + 2
		x.must("refreshed", map[string]any{"type": "refresh", "token": expiring(t, user, exp)})
		at := x.wantClose(4001, wait)
		checkClosedAt(t, at, exp)
	})
}

// TestServerClosesAnnounceLeave checks that a connection the server closes
// (4001, 4003, 1008) is announced leaving like any other (PROTOCOL.md §4
// presence).
func TestServerClosesAnnounceLeave(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		o := connect(t, tp.a, fresh("o"))
		o.join(room)
		eu := fresh("exp")
		e := connectToken(t, tp.b, eu, expiring(t, eu, time.Now().Unix()+2))
		e.join(room)
		fu := fresh("sub")
		f := connect(t, tp.b, fu)
		f.join(room)
		o.await("presence join", isPresence(room, eu, "join"))
		o.await("presence join", isPresence(room, fu, "join"))
		f.write(map[string]any{"type": "refresh", "token": token(t, fresh("other"))})
		f.wantClose(4003, wait)
		o.await("presence leave after 4003", isPresence(room, fu, "leave"))
		e.wantClose(4001, wait)
		o.await("presence leave after 4001", isPresence(room, eu, "leave"))
	})
}

// TestRefusedSendsAreNotPosted checks that a send refused with
// rate_limited is not delivered: the room receives exactly the admitted
// ones (PROTOCOL.md §6).
func TestRefusedSendsAreNotPosted(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		ltp := tp.nodes(t, defaultLimits...)
		room := fresh("room")
		o := connect(t, ltp.b, fresh("o"))
		o.join(room)
		c := connect(t, ltp.a, fresh("rl"))
		c.join(room)
		var cmds []map[string]any
		for i := range 35 {
			cmds = append(cmds, map[string]any{"type": "send", "room": room, "text": fmt.Sprint(i)})
		}
		es, _ := replies(t, c, cmds)
		var admitted []string
		for _, e := range es {
			if e.typ() == "sent" {
				admitted = append(admitted, e.str("id"))
			}
		}
		if got := ids(o.messagesIn(room, len(admitted))); !slices.Equal(got, admitted) {
			t.Errorf("the room got %v, admitted %v", got, admitted)
		}
		o.none("a refused send delivered", quiet, isMessage(room))
	})
}

// TestUserLimitRetry checks that retry_ms of the per-user limit, shared by
// the nodes, is enough: a send retry_ms after the refusal is admitted
// (docs/protocol.md §9 rate limits).
func TestUserLimitRetry(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		// The per-connection limit out of the way: only the user's counts.
		ltp := tp.nodes(t, "-user-rate", "2", "-user-burst", "4")
		room := fresh("room")
		user := fresh("ul")
		a, b := connect(t, ltp.a, user), connect(t, ltp.b, user)
		a.join(room)
		b.join(room)
		for range 4 {
			a.post(room, "burst")
		}
		e := b.wantError("rate_limited", map[string]any{"type": "send", "room": room, "text": "over"})
		ms, _ := e.int("retry_ms")
		if ms < 1 || ms > 600 {
			t.Errorf("retry_ms %d for 2 messages a second", ms)
		}
		time.Sleep(time.Until(e.at.Add(time.Duration(ms) * time.Millisecond)))
		b.post(room, "after retry_ms")
	})
}

// TestBrokerDown checks that with Redis down a send is answered with
// unavailable, never dropped in silence, and that the nodes serve again
// once it is back (PROTOCOL.md §4 error codes).
func TestBrokerDown(t *testing.T) {
	t.Parallel()
	redistest.Require(t, "redis-server")
	rs := redistest.Start(t)
	tp := (&topology{name: "redis", redisURL: rs.URL()})
	tp.a = startTestNode(t, "-redis", rs.URL())
	tp.b = startTestNode(t, "-redis", rs.URL())
	room := fresh("room")
	x, y := connect(t, tp.a, fresh("x")), connect(t, tp.b, fresh("y"))
	x.join(room)
	y.join(room)
	s := x.post(room, "before")
	y.await("message", isMessageID(s.str("id")))
	rs.Stop()
	e := x.cmd(map[string]any{"type": "send", "room": room, "text": "while down", "cid": "down-1"})
	if e.typ() != "error" || e.str("code") != "unavailable" {
		t.Errorf("send with Redis down answered %s, want error unavailable", e)
	}
	for _, cmd := range []map[string]any{
		{"type": "join", "room": fresh("room")},
		{"type": "history", "room": room},
	} {
		if e := y.cmd(cmd); e.typ() != "error" || e.str("code") != "unavailable" {
			t.Errorf("%v with Redis down answered %s, want error unavailable", cmd, e)
		}
	}
	y.ping()
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * wait)
	for {
		e := x.cmd(map[string]any{"type": "send", "room": room, "text": "back", "cid": "back-1"})
		if e.typ() == "sent" {
			y.await("a message after Redis came back", isMessageID(e.str("id")))
			break
		}
		if e.str("code") != "unavailable" || time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %s", e)
		}
		time.Sleep(200 * time.Millisecond)
	}
	z := connect(t, tp.b, fresh("z"))
	zj := z.join(room)
	s2 := z.post(room, "from the newcomer")
	x.await("the newcomer's message", isMessageID(s2.str("id")))
	// Redis came back without the history: since from before the loss is
	// not recovered (docs/protocol.md §7).
	j := connect(t, tp.a, x.user).joinSince(room, s.str("id"))
	if rec, _ := j.bool("recovered"); rec {
		t.Errorf("since from before Redis lost its data: recovered true, %s", j)
	}
	x.none("the send refused while Redis was down", 0, func(e event) bool { return e.str("text") == "while down" })
	t.Run("members after Redis came back empty", func(t *testing.T) {
		// The members still connected are members of the room in the
		// Redis that came back empty.
		want := map[string]string{x.user: displayName(x.user), y.user: displayName(y.user), z.user: displayName(z.user)}
		got := members(zj)
		if maps.Equal(got, want) {
			return
		}
		t.Errorf("members of a join as soon as a send went through again: %v, want %v", got, want)
		// Nor does the newcomer learn of them later by presence.
		for _, u := range []string{x.user, y.user} {
			if _, ok := got[u]; ok {
				continue
			}
			if _, ok := z.take(10*time.Second, isPresence(room, u, "join")); !ok {
				t.Errorf("%s, left out of members, was not announced by a presence join either within 10 s: the newcomer never learns that %s is present", u, u)
			}
		}
	})
}

// TestDrainKeepsServing checks that a draining connection works as usual
// until its close: commands are answered and messages delivered
// (docs/protocol.md §4 draining, §9).
func TestDrainKeepsServing(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		dtp := tp.nodes(t, "-drain-window", "4s")
		room := fresh("room")
		var cs []*client
		for range 10 {
			c := connect(t, dtp.a, fresh("d"))
			c.join(room)
			cs = append(cs, c)
		}
		dtp.a.signal(syscall.SIGTERM)
		// The connection with the latest reconnect_ms is served a while.
		var late *client
		var most int64 = -1
		for _, c := range cs {
			d := c.await("draining", isType("draining"))
			if v, _ := d.int("reconnect_ms"); v > most {
				late, most = c, v
			}
		}
		if most < 1000 {
			t.Skipf("the latest reconnect_ms is %d: too soon to check", most)
		}
		late.ping()
		s := late.post(room, "while draining")
		late.await("own message while draining", isMessageID(s.str("id")))
		late.wantClose(ws.StatusGoingAway, wait)
	})
}

// TestCidWithinRetentionTime checks that a send repeated with the same cid
// within the retention time is not posted again, also when the room has
// since trimmed the original by count (PROTOCOL.md §3 send: "within the
// retention time").
func TestCidWithinRetentionTime(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		ktp := tp.nodes(t, "-history-size", "5")
		room := fresh("room")
		user := fresh("x")
		x, o := connect(t, ktp.a, user), connect(t, ktp.b, fresh("o"))
		x.join(room)
		o.join(room)
		orig := x.must("sent", map[string]any{"type": "send", "room": room, "text": "once", "cid": "c-1"})
		later := postMany(t, x, room, 10)
		o.messagesIn(room, 11)
		retry := connect(t, ktp.b, user)
		retry.join(room)
		r := retry.cmd(map[string]any{"type": "send", "room": room, "text": "once", "cid": "c-1"})
		if r.typ() != "sent" || r.str("id") != orig.str("id") {
			t.Errorf("a retry a moment later, %d messages on: %s, want the original sent %s", len(later), r, orig)
		}
		o.none("a second message for cid c-1", quiet, isMessage(room))
	})
}

// TestPipelining checks that a client that sends commands without reading
// their replies is slowed down, never closed: every reply arrives once it
// reads again (docs/protocol.md §8 slow readers, §9 pipelining).
func TestPipelining(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		user := fresh("pipe")
		c, err := dial(t, tp.b, user, dialOptions{token: token(t, user), netDial: smallReceiveBuffer, noReader: true})
		if err != nil {
			t.Fatal(err)
		}
		const n = 3000
		wrote := make(chan int, 1)
		go func() {
			i := 0
			for ; i < n; i++ {
				b := fmt.Appendf(nil, `{"type":"ping","ref":"p%d","pad":"%s"}`, i, strings.Repeat("x", 200))
				if c.conn.WriteMessage(ws.Text, b) != nil {
					break
				}
			}
			wrote <- i
		}()
		time.Sleep(1500 * time.Millisecond)
		c.startReading()
		for i := range n {
			ref := fmt.Sprint("p", i)
			e, ok := c.take(wait, func(e event) bool { return e.str("ref") == ref })
			if !ok {
				t.Fatalf("reply %d of %d missing (connection: %v)", i, n, c.endErr())
			}
			if e.typ() != "pong" {
				t.Fatalf("reply %s", e)
			}
		}
		if got := <-wrote; got != n {
			t.Errorf("wrote %d of %d", got, n)
		}
		c.ping()
	})
}

// TestNothingAfterLeft checks that once left arrives, nothing more of the
// room is sent, also while another member publishes into it from the
// other node (docs/protocol.md §3 leave).
func TestNothingAfterLeft(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		pub := connect(t, tp.b, fresh("pub"))
		for round := range 3 {
			room := fresh("room")
			pub.join(room)
			x := connect(t, tp.a, fresh("x"))
			x.join(room)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range 200 {
					b := fmt.Appendf(nil, `{"type":"send","room":%q,"text":"%d"}`, room, i)
					if pub.conn.WriteMessage(ws.Text, b) != nil {
						return
					}
				}
			}()
			x.await("a first message", isMessage(room))
			x.write(map[string]any{"type": "leave", "room": room, "ref": "bye"})
			x.await("left", isType("left"))
			<-done
			time.Sleep(quiet)
			evs := x.events()
			li := slices.IndexFunc(evs, isType("left"))
			if k := slices.IndexFunc(evs[li+1:], inRoom(room)); k >= 0 {
				t.Errorf("round %d: after left: %s", round, evs[li+1+k])
			}
			pub.leave(room)
		}
	})
}

// TestPubSubCatchUp checks that members on both nodes miss nothing and get
// nothing twice when the nodes' Redis subscriptions are cut while messages
// are published (PROTOCOL.md §5: every member receives the room's messages;
// docs/operations.md: no gap, no duplicate).
func TestPubSubCatchUp(t *testing.T) {
	t.Parallel()
	redistest.Require(t, "redis-server")
	rs := redistest.Start(t)
	a := startTestNode(t, "-redis", rs.URL())
	b := startTestNode(t, "-redis", rs.URL())
	room := fresh("room")
	x, y := connect(t, a, fresh("x")), connect(t, b, fresh("y"))
	x.join(room)
	y.join(room)
	var sent []string
	for range 3 {
		if _, err := rs.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatalf("CLIENT KILL: %v", err)
		}
		sent = append(sent, postMany(t, y, room, 30)...)
	}
	for _, c := range []*client{x, y} {
		if got := ids(c.messagesIn(room, len(sent))); !slices.Equal(got, sent) {
			t.Errorf("%s on %s: %d messages not those sent, in order", c.user, c.node.id, len(got))
		}
		c.none("a duplicate after the catch-up", quiet, isMessage(room))
	}
}
