package conformance_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestRoomNames checks the room-name rule ^[A-Za-z0-9_.:-]{1,64}$ for
// every command that names a room (PROTOCOL.md §2).
func TestRoomNames(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		c := connect(t, tp.a, fresh("rn"))
		valid := []string{"a", "Z", "0", "_", ".", ":", "-", strings.Repeat("x", 64), "AZaz09_.:-" + fresh("r")}
		invalid := []any{"", strings.Repeat("x", 65), "a b", "a/b", "a*", "é", "a\n", "a\x00", "🙂", "a,b", "#a", 5, []string{"a"}}
		for _, room := range valid {
			t.Run(fmt.Sprintf("valid %q", room), func(t *testing.T) {
				if room != strings.Repeat("x", 64) && len(room) == 1 {
					room = room + fresh("") // a fresh room, still valid
				}
				c.join(room)
				c.must("history", map[string]any{"type": "history", "room": room})
				c.post(room, "hello")
				c.leave(room)
			})
		}
		for _, room := range invalid {
			t.Run(fmt.Sprintf("invalid %q", room), func(t *testing.T) {
				for _, typ := range []string{"join", "leave", "send", "history", "typing"} {
					c.wantError("bad_request", map[string]any{"type": typ, "room": room, "text": "x"})
				}
			})
		}
		t.Run("missing room", func(t *testing.T) {
			for _, typ := range []string{"join", "leave", "send", "history", "typing"} {
				c.wantError("bad_request", map[string]any{"type": typ, "text": "x"})
			}
		})
		t.Run("names are case-sensitive", func(t *testing.T) {
			room := fresh("Room")
			lower := strings.ToLower(room)
			b := connect(t, tp.b, fresh("rn"))
			c.join(room)
			b.join(lower)
			c.post(room, "upper")
			b.none("message of "+room+" in "+lower, quiet, isType("message"))
		})
	})
}

// TestTextLimit checks the message text limit, 4096 bytes of UTF-8 by
// default (PROTOCOL.md §2), and that text arrives unchanged.
func TestTextLimit(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		a, b := connect(t, tp.a, fresh("tx")), connect(t, tp.b, fresh("tx"))
		a.join(room)
		b.join(room)
		for _, text := range []string{
			strings.Repeat("a", 4096),
			strings.Repeat("é", 2048),
			strings.Repeat("🙂", 1024),
			"x",
			" ",
			"<b>not html</b> & \"quotes\" \\ \n\t\u2028 \u0000 end",
		} {
			s := a.post(room, text)
			for _, c := range []*client{a, b} {
				if m := c.await("message", isMessageID(s.str("id"))); m.str("text") != text {
					t.Errorf("text of %d bytes arrived as %q", len(text), m.str("text"))
				}
			}
		}
		for _, row := range []struct {
			text any
			code string
		}{
			{strings.Repeat("a", 4097), "too_large"},
			{strings.Repeat("é", 2049), "too_large"},
			{strings.Repeat("a", 60000), "too_large"},
			{"", "bad_request"},
			{nil, "bad_request"},
			{5, "bad_request"},
		} {
			cmd := map[string]any{"type": "send", "room": room}
			if row.text != nil {
				cmd["text"] = row.text
			}
			e := a.wantError(row.code, cmd)
			if e.has("retry_ms") {
				t.Errorf("%s carries retry_ms", e)
			}
		}
		a.none("message after refused sends", quiet, isType("message"))
		b.none("message after refused sends", 0, isType("message"))
	})
}

// TestJoin checks join and joined: members cluster-wide, history, recovered,
// presence of the first connection only, joining twice, the rooms claim and
// the room limit (PROTOCOL.md §3, §4).
func TestJoin(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		t.Run("joined and presence", func(t *testing.T) {
			room := fresh("room")
			ou, xu := fresh("obs"), fresh("x")
			o := connect(t, tp.b, ou)
			x := connect(t, tp.a, xu)
			oj := o.join(room)
			if got := members(oj); !maps.Equal(got, map[string]string{ou: displayName(ou)}) {
				t.Errorf("members %v, want only %s", got, ou)
			}
			if l := oj.list("history"); len(l) != 0 {
				t.Errorf("history of a new room: %v", l)
			}
			if r, _ := oj.bool("recovered"); r {
				t.Errorf("recovered true without since: %s", oj)
			}
			o.await("own presence join", isPresence(room, ou, "join"))

			xj := x.join(room)
			want := map[string]string{ou: displayName(ou), xu: displayName(xu)}
			if got := members(xj); !maps.Equal(got, want) {
				t.Errorf("members %v, want %v (cluster-wide)", got, want)
			}
			if xj.str("room") != room {
				t.Errorf("joined %s, want room %s", xj, room)
			}
			// Own presence comes right after joined (docs/protocol.md §4).
			if e, _ := x.next(wait); !isPresence(room, xu, "join")(e) || e.str("name") != displayName(xu) {
				t.Errorf("after joined: %s, want own presence join", e)
			}
			p := o.await("presence join of "+xu, isPresence(room, xu, ""))
			if p.str("state") != "join" || p.str("name") != displayName(xu) {
				t.Errorf("presence %s, want join of %s", p, xu)
			}

			// A second connection of the same user on the other node is no
			// second join; its joined lists the user once.
			x2 := connect(t, tp.b, xu)
			x2j := x2.join(room)
			if got := members(x2j); !maps.Equal(got, want) {
				t.Errorf("members %v, want %v", got, want)
			}
			if n := len(x2j.list("members")); n != 2 {
				t.Errorf("members lists %d entries, want 2 (once per user)", n)
			}
			// Joining again serves the join again, without a second presence.
			again := x.join(room)
			if !maps.Equal(members(again), want) {
				t.Errorf("members %v on the second join", members(again))
			}
			for _, c := range []*client{o, x, x2} {
				c.none("second presence join", quiet, isPresence(room, xu, ""))
			}

			// The first connection leaving is no leave; the last is.
			x.leave(room)
			o.none("presence leave while a connection remains", quiet, isPresence(room, xu, ""))
			x2.leave(room)
			o.await("presence leave", isPresence(room, xu, "leave"))
			// Dropping the last connection is a leave too.
			y := connect(t, tp.a, fresh("y"))
			y.join(room)
			o.await("presence join of y", isPresence(room, y.user, "join"))
			_ = y.conn.CloseNow()
			o.await("presence leave of a dropped connection", isPresence(room, y.user, "leave"))
			o.none("duplicate presence", quiet, isType("presence"))
		})
		t.Run("history of joined without since", func(t *testing.T) {
			room := fresh("room")
			s := connect(t, tp.a, fresh("s"))
			s.join(room)
			sent := postMany(t, s, room, 60)
			j := connect(t, tp.b, fresh("j")).join(room)
			h := j.messages("history")
			if got := ids(h); !slices.Equal(got, sent[10:]) {
				t.Errorf("joined.history is %d messages %v..., want the 50 most recent, oldest first", len(got), got[:min(3, len(got))])
			}
			for _, m := range h {
				if m.str("from") != s.user || m.str("name") != displayName(s.user) || m.str("room") != room {
					t.Errorf("history message %s", m)
					break
				}
			}
			if r, _ := j.bool("recovered"); r {
				t.Errorf("recovered true without since")
			}
		})
		t.Run("rooms claim", func(t *testing.T) {
			base := fresh("team")
			c := claims(fresh("rc"))
			c["rooms"] = []string{"lobby-" + base, base + "-*", "a*z-" + base, "dot.x-" + base}
			rc := connectToken(t, tp.a, c["sub"].(string), sign(t, c))
			for _, room := range []string{"lobby-" + base, base + "-1", base + "-", "abcz-" + base, "az-" + base} {
				rc.join(room)
				rc.must("history", map[string]any{"type": "history", "room": room})
			}
			for _, room := range []string{"lobby-" + base + "x", "lobby", base, "other-" + base + "-1", "a-" + base, "dotXx-" + base, "LOBBY-" + base} {
				e := rc.wantError("forbidden", map[string]any{"type": "join", "room": room})
				if e.str("message") == "" {
					t.Errorf("forbidden without message")
				}
				rc.wantError("forbidden", map[string]any{"type": "history", "room": room})
				rc.wantError("not_joined", map[string]any{"type": "send", "room": room, "text": "x"})
			}
			c = claims(fresh("rc"))
			c["rooms"] = []string{}
			none := connectToken(t, tp.b, c["sub"].(string), sign(t, c))
			none.wantError("forbidden", map[string]any{"type": "join", "room": fresh("room")})
			none.wantError("forbidden", map[string]any{"type": "history", "room": fresh("room")})
		})
		t.Run("bad since", func(t *testing.T) {
			c := connect(t, tp.b, fresh("bs"))
			for _, since := range badIDs {
				c.wantError("bad_request", map[string]any{"type": "join", "room": fresh("room"), "since": since})
			}
		})
		t.Run("256 rooms, not 257", func(t *testing.T) {
			c := connect(t, tp.a, fresh("many"))
			base := fresh("m")
			for i := range 256 {
				c.write(map[string]any{"type": "join", "room": fmt.Sprintf("%s-%d", base, i), "ref": fmt.Sprint("j", i)})
			}
			for i := range 256 {
				ref := fmt.Sprint("j", i)
				if e := c.await("joined "+ref, func(e event) bool { return e.str("ref") == ref }); e.typ() != "joined" {
					t.Fatalf("join %d: %s", i, e)
				}
			}
			c.wantError("bad_request", map[string]any{"type": "join", "room": base + "-256"})
			// Joining one of the 256 again is still served.
			c.must("joined", map[string]any{"type": "join", "room": base + "-0"})
		})
	})
}

// badIDs are not message ids of the form <ms>-<seq> (PROTOCOL.md §5),
// among them the special ids and range syntax of Redis streams.
var badIDs = []any{"abc", "1-", "-1", "1-2-3", "1.5-0", " 1-0", "1-0 ", "18446744073709551616-0", "0x10-0",
	"1700000000000", "0", "+", "-", "$", ">", "*", "(1-0", "1-*", 5, true, []string{"1-0"}}

// postMany sends n messages to room, pipelined, and returns their ids in
// the order of the sent replies.
func postMany(t *testing.T, c *client, room string, n int) []string {
	t.Helper()
	return postManyText(t, c, room, n, "")
}

// postManyText is postMany with pad appended to every text.
func postManyText(t *testing.T, c *client, room string, n int, pad string) []string {
	t.Helper()
	prefix := c.ref()
	for i := range n {
		text := fmt.Sprint("m", i, pad)
		c.write(map[string]any{"type": "send", "room": room, "text": text[:min(len(text), 4096)], "ref": fmt.Sprint(prefix, ".", i)})
	}
	out := make([]string, n)
	for i := range n {
		ref := fmt.Sprint(prefix, ".", i)
		e := c.await("sent "+ref, func(e event) bool { return e.str("ref") == ref })
		if e.typ() != "sent" {
			t.Fatalf("send %d answered %s", i, e)
		}
		out[i] = e.str("id")
	}
	checkIncreasing(t, "sent ids", out)
	return out
}

// TestLeave checks leave, left and not_joined (PROTOCOL.md §3).
func TestLeave(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		x, o := connect(t, tp.a, fresh("x")), connect(t, tp.b, fresh("o"))
		o.join(room)
		x.join(room)
		o.await("presence join", isPresence(room, x.user, "join"))
		l := x.leave(room)
		if l.str("room") != room || l.str("ref") == "" {
			t.Errorf("left %s", l)
		}
		o.await("presence leave", isPresence(room, x.user, "leave"))
		o.post(room, "after the leave")
		x.drop()
		x.none("message of a room left", quiet, inRoom(room))
		x.wantError("not_joined", map[string]any{"type": "leave", "room": room})
		x.wantError("not_joined", map[string]any{"type": "leave", "room": fresh("room")})
		x.wantError("not_joined", map[string]any{"type": "send", "room": room, "text": "x"})
		x.wantError("not_joined", map[string]any{"type": "typing", "room": room})
	})
}

// TestSend checks send, sent and message on both nodes, cid, and the
// retry of a send with the same cid from another connection on the other
// node (PROTOCOL.md §3, §4).
func TestSend(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		xu := fresh("x")
		x, y := connect(t, tp.a, xu), connect(t, tp.b, fresh("y"))
		x.join(room)
		y.join(room)
		cid := "6f1c7c1e-0d2b-4a8e-9f5b-" + fresh("c")
		before := time.Now().UnixMilli()
		s := x.must("sent", map[string]any{"type": "send", "room": room, "text": "hello", "cid": cid, "ref": "s1"})
		after := time.Now().UnixMilli()
		if s.str("ref") != "s1" || s.str("room") != room {
			t.Errorf("sent %s", s)
		}
		ts, _ := s.int("ts")
		if ts < before-1000 || ts > after+1000 {
			t.Errorf("sent.ts %d is not the server's time in ms (%d..%d)", ts, before, after)
		}
		for _, c := range []*client{x, y} {
			m := c.await("message", isMessage(room))
			if m.str("id") != s.str("id") || m.str("from") != xu || m.str("name") != displayName(xu) || m.str("text") != "hello" || m.str("cid") != cid || m.str("room") != room {
				t.Errorf("%s got %s, want the message of %s", c.user, m, s)
			}
			if mts, _ := m.int("ts"); mts != ts {
				t.Errorf("message.ts %d, sent.ts %d", mts, ts)
			}
			if m.has("ref") {
				t.Errorf("message carries ref: %s", m)
			}
		}

		t.Run("no cid, no cid field", func(t *testing.T) {
			s := x.post(room, "plain")
			if m := y.await("message", isMessageID(s.str("id"))); m.has("cid") {
				t.Errorf("message %s has cid", m)
			}
		})
		t.Run("cid of 64 bytes, not 65", func(t *testing.T) {
			c64 := strings.Repeat("c", 64)
			s := x.must("sent", map[string]any{"type": "send", "room": room, "text": "x", "cid": c64})
			x.await("message", isMessageID(s.str("id")))
			y.await("message", isMessageID(s.str("id")))
			x.wantError("bad_request", map[string]any{"type": "send", "room": room, "text": "x", "cid": c64 + "x"})
			x.wantError("bad_request", map[string]any{"type": "send", "room": room, "text": "x", "cid": 5})
		})
		t.Run("cid retry on the other node", func(t *testing.T) {
			x.drop()
			y.drop()
			cid := fresh("retry")
			orig := x.must("sent", map[string]any{"type": "send", "room": room, "text": "once", "cid": cid})
			y.await("the original message", isMessageID(orig.str("id")))
			x.await("the original message", isMessageID(orig.str("id")))
			// The retry after a drop: a new connection of the same user on
			// the other node, joined again.
			x2 := connect(t, tp.b, xu)
			x2.join(room)
			for i, c := range []*client{x2, x, x2} {
				r := c.must("sent", map[string]any{"type": "send", "room": room, "text": fmt.Sprint("once, retried ", i), "cid": cid, "ref": "retry"})
				if r.str("id") != orig.str("id") || r.str("room") != room || r.str("ref") != "retry" {
					t.Errorf("retry %d answered %s, want the original sent %s", i, r, orig)
				}
				ots, _ := orig.int("ts")
				if rts, _ := r.int("ts"); rts != ots {
					t.Errorf("retry %d: ts %d, original %d", i, rts, ots)
				}
			}
			for _, c := range []*client{x, x2, y} {
				c.none("a second message for a retried cid", quiet, isMessage(room))
			}
			h := y.must("history", map[string]any{"type": "history", "room": room, "limit": 100}).messages("messages")
			n := 0
			for _, m := range h {
				if m.str("cid") == cid {
					n++
				}
			}
			if n != 1 {
				t.Errorf("history holds %d messages with cid %s, want 1", n, cid)
			}
		})
		t.Run("an empty cid is no cid", func(t *testing.T) {
			a := x.cmd(map[string]any{"type": "send", "room": room, "text": "e1", "cid": ""})
			b := x.cmd(map[string]any{"type": "send", "room": room, "text": "e2", "cid": ""})
			if a.typ() == "sent" && b.typ() == "sent" && a.str("id") == b.str("id") {
				t.Errorf("two sends with cid \"\" answered with one sent %s: an empty cid de-duplicates", a)
			}
			if a.typ() == "sent" {
				if m := y.await("message", isMessageID(a.str("id"))); m.has("cid") {
					t.Errorf("message %s carries an empty cid", m)
				}
			}
			if b.typ() == "sent" {
				y.await("message", isMessageID(b.str("id")))
			}
		})
		t.Run("the same cid from another user, or in another room, is a new message", func(t *testing.T) {
			cid := fresh("shared")
			a := x.must("sent", map[string]any{"type": "send", "room": room, "text": "a", "cid": cid})
			b := y.must("sent", map[string]any{"type": "send", "room": room, "text": "b", "cid": cid})
			other := fresh("room")
			x.join(other)
			c := x.must("sent", map[string]any{"type": "send", "room": other, "text": "c", "cid": cid})
			if a.str("id") == b.str("id") || c.str("room") != other {
				t.Errorf("sent %s, %s, %s: want three messages", a, b, c)
			}
			y.await("message of another user with the same cid", isMessageID(b.str("id")))
			x.await("message in another room with the same cid", isMessageID(c.str("id")))
		})
	})
}

// TestHistory checks history paging: before (exclusive), limit 1–100
// (default 50), more, and errors (PROTOCOL.md §3; docs/protocol.md §3).
func TestHistory(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		s := connect(t, tp.a, fresh("s"))
		s.join(room)
		sent := postMany(t, s, room, 120)
		for _, n := range tp.each() {
			t.Run(n.id, func(t *testing.T) {
				h := connect(t, n, fresh("h")) // never joins: history needs no join
				page := func(v map[string]any) ([]string, bool) {
					t.Helper()
					v["type"], v["room"] = "history", room
					e := h.must("history", v)
					if e.str("room") != room || e.str("ref") == "" {
						t.Errorf("history %s", e)
					}
					more, ok := e.bool("more")
					if !ok {
						t.Errorf("history without more: %s", e)
					}
					return ids(e.messages("messages")), more
				}
				check := func(name string, v map[string]any, want []string, wantMore bool) {
					t.Helper()
					got, more := page(v)
					if !slices.Equal(got, want) || more != wantMore {
						t.Errorf("%s: %d messages (%v...), more %v; want %d (%v...), more %v", name, len(got), got[:min(2, len(got))], more, len(want), want[:min(2, len(want))], wantMore)
					}
				}
				check("default", map[string]any{}, sent[70:], true)
				check("limit 100", map[string]any{"limit": 100}, sent[20:], true)
				check("limit 100 before the 21st", map[string]any{"limit": 100, "before": sent[20]}, sent[:20], false)
				check("limit 1", map[string]any{"limit": 1}, sent[119:], true)
				check("limit 10 before the 51st", map[string]any{"limit": 10, "before": sent[50]}, sent[40:50], true)
				check("limit 10 before the 11th", map[string]any{"limit": 10, "before": sent[10]}, sent[:10], false)
				check("before the first", map[string]any{"before": sent[0]}, nil, false)
				check("before 0-0", map[string]any{"before": "0-0"}, nil, false)
				check("before a future id", map[string]any{"before": "99999999999999-0"}, sent[70:], true)
				check("limit null is the default", map[string]any{"limit": nil}, sent[70:], true)
				// Paging back through everything.
				var all []string
				before := ""
				for range 10 {
					v := map[string]any{"limit": 33}
					if before != "" {
						v["before"] = before
					}
					got, more := page(v)
					all = append(slices.Clone(got), all...)
					if !more {
						break
					}
					before = got[0]
				}
				if !slices.Equal(all, sent) {
					t.Errorf("paging back with limit 33 gave %d messages, want the %d sent, in order", len(all), len(sent))
				}
				for _, bad := range []map[string]any{
					{"limit": 0}, {"limit": 101}, {"limit": -1}, {"limit": "5"}, {"limit": 2.5}, {"limit": true},
					{"before": ""},
				} {
					bad["type"], bad["room"] = "history", room
					h.wantError("bad_request", bad)
				}
				for _, before := range badIDs {
					h.wantError("bad_request", map[string]any{"type": "history", "room": room, "before": before})
				}
			})
		}
		t.Run("an empty room", func(t *testing.T) {
			e := s.must("history", map[string]any{"type": "history", "room": fresh("room")})
			if l, ok := e.m["messages"].([]any); !ok || len(l) != 0 {
				t.Errorf("history of an empty room %s, want messages []", e)
			}
		})
	})
}

// TestTyping checks typing: relayed to the other members on every node,
// not to the typist's own connections, no reply, not_joined (PROTOCOL.md
// §3), and one a second per user and room (docs/protocol.md §3).
func TestTyping(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		xu := fresh("x")
		x, x2 := connect(t, tp.a, xu), connect(t, tp.b, xu)
		y, z := connect(t, tp.b, fresh("y")), connect(t, tp.a, fresh("z"))
		for _, c := range []*client{x, x2, y, z} {
			c.join(room)
		}
		for _, c := range []*client{x, x2, y, z} {
			c.drop()
		}
		x.write(map[string]any{"type": "typing", "room": room, "ref": "ty"})
		for _, c := range []*client{y, z} {
			e := c.await("typing", isType("typing"))
			if e.str("room") != room || e.str("user") != xu || e.str("name") != displayName(xu) || e.has("ref") {
				t.Errorf("typing %s", e)
			}
		}
		isReply := func(e event) bool { return e.has("ref") || e.typ() == "error" }
		x.none("reply to typing", quiet, isReply)
		x2.none("typing of the own user", 0, isType("typing"))
		x.none("typing of the own user", 0, isType("typing"))
		// A second typing within the second, from the same node, is
		// dropped silently.
		x.write(map[string]any{"type": "typing", "room": room, "ref": "ty2"})
		for _, c := range []*client{y, z} {
			c.none("a second typing within a second", quiet, isType("typing"))
		}
		x.none("reply to a dropped typing", 0, isReply)
		// A message of the user lets the next typing through at once.
		s := x.post(room, "done typing")
		for _, c := range []*client{x, x2, y, z} {
			c.await("message", isMessageID(s.str("id")))
		}
		x.write(map[string]any{"type": "typing", "room": room})
		y.await("typing after a message", isType("typing"))
		z.await("typing after a message", isType("typing"))

		x.wantError("not_joined", map[string]any{"type": "typing", "room": fresh("room"), "ref": "tn"})
	})
}

// TestRefresh checks refresh and refreshed, a refused token, and a
// narrower rooms claim (PROTOCOL.md §3; docs/protocol.md §3).
func TestRefresh(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		user := fresh("rf")
		x := connect(t, tp.a, user)
		keep, drop := fresh("keep"), fresh("drop")
		x.join(keep)
		x.join(drop)
		c := claims(user)
		exp := time.Now().Add(2 * time.Hour).Unix()
		c["exp"] = exp
		r := x.must("refreshed", map[string]any{"type": "refresh", "token": sign(t, c), "ref": "rf1"})
		if got, _ := r.int("exp"); got != exp || r.str("ref") != "rf1" {
			t.Errorf("refreshed %s, want exp %d", r, exp)
		}
		for _, bad := range []struct {
			name string
			tok  any
		}{
			{"bad signature", signWith(t, jwt.SigningMethodHS256, []byte(strings.Repeat("w", 40)), claims(user))},
			{"expired", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Unix() - 60 })(t, user)},
			{"alg none", unsigned(t, user)},
			{"no exp", with(func(c jwt.MapClaims) { delete(c, "exp") })(t, user)},
			{"not a JWT", "garbage"},
		} {
			t.Run(bad.name, func(t *testing.T) {
				x.wantError("forbidden", map[string]any{"type": "refresh", "token": bad.tok})
				x.ping()
			})
		}
		t.Run("a narrower rooms claim leaves the rooms it no longer allows", func(t *testing.T) {
			x.drop()
			c := claims(user)
			c["rooms"] = []string{"keep-*"}
			x.write(map[string]any{"type": "refresh", "token": sign(t, c), "ref": "rf2"})
			l := x.await("left", isType("left"))
			if l.str("room") != drop || l.has("ref") {
				t.Errorf("left %s, want %s without ref", l, drop)
			}
			r := x.await("refreshed", isType("refreshed"))
			if r.str("ref") != "rf2" {
				t.Errorf("refreshed %s", r)
			}
			evs := x.events()
			li, ri := slices.IndexFunc(evs, func(e event) bool { return e.typ() == "left" && e.str("room") == drop }), slices.IndexFunc(evs, func(e event) bool { return e.typ() == "refreshed" && e.str("ref") == "rf2" })
			if li > ri {
				t.Errorf("left came after refreshed")
			}
			x.none("a second left", quiet, isType("left"))
			x.wantError("not_joined", map[string]any{"type": "send", "room": drop, "text": "x"})
			x.wantError("forbidden", map[string]any{"type": "join", "room": drop})
			x.post(keep, "still here")
		})
	})
}

// TestPing checks ping and pong (PROTOCOL.md §3).
func TestPing(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		c := connect(t, tp.b, fresh("pg"))
		if e := c.must("pong", map[string]any{"type": "ping", "ref": "p1"}); e.str("ref") != "p1" {
			t.Errorf("pong %s", e)
		}
		c.write(map[string]any{"type": "ping"})
		if e := c.await("pong", isType("pong")); e.has("ref") {
			t.Errorf("pong %s to a ping without ref", e)
		}
	})
}
