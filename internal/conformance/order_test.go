package conformance_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// TestOrder checks that ids strictly increase and that every member of a
// room, on every node, receives its messages in the same order, with
// concurrent senders on both nodes (PROTOCOL.md §5).
func TestOrder(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		const senders, each = 4, 25
		var all []*client
		shared := fresh("u") // one user with a connection on each node
		for i := range 4 {
			n := tp.a
			if i%2 == 1 {
				n = tp.b
			}
			user := fresh("m")
			if i >= 2 {
				user = shared
			}
			all = append(all, connect(t, n, user))
		}
		var ss []*client
		for i := range senders {
			n := tp.a
			if i%2 == 1 {
				n = tp.b
			}
			c := connect(t, n, fresh("s"))
			ss = append(ss, c)
			all = append(all, c)
		}
		for _, c := range all {
			c.join(room)
		}
		var wg sync.WaitGroup
		for i, s := range ss {
			wg.Go(func() {
				for j := range each {
					b := fmt.Appendf(nil, `{"type":"send","room":%q,"text":"s%d-%03d","ref":"o%d"}`, room, i, j, j)
					if err := s.conn.WriteMessage(ws.Text, b); err != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		sentIDs := map[string]string{} // text -> id, from the sent replies
		for i, s := range ss {
			for j := range each {
				ref := fmt.Sprint("o", j)
				e := s.await("sent", func(e event) bool { return e.str("ref") == ref })
				if e.typ() != "sent" {
					t.Fatalf("send answered %s", e)
				}
				sentIDs[fmt.Sprintf("s%d-%03d", i, j)] = e.str("id")
			}
		}
		var first []string
		for k, c := range all {
			ms := c.messagesIn(room, senders*each)
			got := ids(ms)
			checkIncreasing(t, fmt.Sprintf("%s on %s", c.user, c.node.id), got)
			if k == 0 {
				first = got
			} else if !slices.Equal(got, first) {
				t.Errorf("%s on %s received another order than %s on %s", c.user, c.node.id, all[0].user, all[0].node.id)
			}
			// Each sender's messages in the order it sent them, with the
			// ids of their sent replies.
			next := make([]int, senders)
			for _, m := range ms {
				var i, j int
				if _, err := fmt.Sscanf(m.str("text"), "s%d-%03d", &i, &j); err != nil || i >= senders {
					t.Fatalf("message %s", m)
				}
				if j != next[i] {
					t.Errorf("%s: message %s of sender %d arrived after %d of its messages", c.user, m.str("text"), i, next[i])
				}
				next[i] = j + 1
				if sentIDs[m.str("text")] != m.str("id") {
					t.Errorf("message %s has id %s, its sent said %s", m.str("text"), m.str("id"), sentIDs[m.str("text")])
				}
			}
			c.none("a duplicate message", 0, isMessage(room))
		}
		// history from either node holds the same order.
		for _, n := range tp.each() {
			h := connect(t, n, fresh("h")).must("history", map[string]any{"type": "history", "room": room, "limit": 100})
			if got := ids(h.messages("messages")); !slices.Equal(got, first) {
				t.Errorf("history on %s differs from the order delivered", n.id)
			}
		}
	})
}

// TestRecovery checks join with since: exactly the missed messages, from
// either node, recovered true; since 0-0 and the latest id; and that a
// message published while the join is served arrives exactly once
// (PROTOCOL.md §5; docs/protocol.md §3, §7).
func TestRecovery(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		room := fresh("room")
		ru := fresh("r")
		s := connect(t, tp.b, fresh("s"))
		s.join(room)
		r := connect(t, tp.a, ru)
		r.join(room)
		before := postMany(t, s, room, 5)
		got := ids(r.messagesIn(room, 5))
		if !slices.Equal(got, before) {
			t.Fatalf("received %v, sent %v", got, before)
		}
		last := got[len(got)-1]
		_ = r.conn.CloseNow()
		missed := postMany(t, s, room, 7)
		for _, n := range []*node{tp.b, tp.a} {
			t.Run("rejoin on "+n.id, func(t *testing.T) {
				r2 := connect(t, n, ru)
				j := r2.joinSince(room, last)
				if got := ids(j.messages("history")); !slices.Equal(got, missed) {
					t.Errorf("joined.history %v, want exactly the missed %v", got, missed)
				}
				if rec, _ := j.bool("recovered"); !rec {
					t.Errorf("recovered false: %s", j)
				}
				j = r2.joinSince(room, missed[len(missed)-1])
				if rec, _ := j.bool("recovered"); len(j.list("history")) != 0 || !rec {
					t.Errorf("since the latest id: %s, want no history, recovered", j)
				}
				j = r2.joinSince(room, "0-0")
				if got := ids(j.messages("history")); !slices.Equal(got, append(slices.Clone(before), missed...)) {
					t.Errorf("since 0-0: %v, want every message", got)
				}
				if rec, _ := j.bool("recovered"); rec {
					t.Errorf("since 0-0 recovered true (docs/protocol.md §7: never)")
				}
			})
		}
		t.Run("messages published during the join arrive exactly once", func(t *testing.T) {
			r3 := connect(t, tp.a, ru)
			since := missed[len(missed)-1]
			const n = 60
			done := make(chan []string)
			go func() {
				// Pipelined sends while the join is served; await is not
				// safe off the test goroutine, so only write here.
				for i := range n {
					b := fmt.Appendf(nil, `{"type":"send","room":%q,"text":"during %d","ref":"d%d"}`, room, i, i)
					if err := s.conn.WriteMessage(ws.Text, b); err != nil {
						break
					}
					if i == n/3 {
						time.Sleep(2 * time.Millisecond)
					}
				}
				close(done)
			}()
			time.Sleep(time.Millisecond)
			j := r3.joinSince(room, since)
			<-done
			var sent []string
			for i := range n {
				ref := fmt.Sprint("d", i)
				sent = append(sent, s.await("sent", func(e event) bool { return e.str("ref") == ref }).str("id"))
			}
			seen := ids(j.messages("history"))
			for len(seen) < n {
				m, ok := r3.take(wait, isMessage(room))
				if !ok {
					break
				}
				seen = append(seen, m.str("id"))
			}
			if !slices.Equal(seen, sent) {
				t.Errorf("history then messages: %d ids, want each of the %d sent once, in order", len(seen), n)
			}
			r3.none("a duplicate", quiet, isMessage(room))
		})
	})
}

// TestRetention checks recovered false when the gap is larger than what is
// retained, by count (-history-size) and by age (-history-ttl), and that
// history holds only what is retained (PROTOCOL.md §5).
func TestRetention(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		t.Run("by count", func(t *testing.T) {
			ktp := tp.nodes(t, "-history-size", "5")
			room := fresh("room")
			s := connect(t, ktp.a, fresh("s"))
			s.join(room)
			sent := postMany(t, s, room, 10)
			for _, n := range ktp.each() {
				c := connect(t, n, fresh("r"))
				for _, row := range []struct {
					since     string
					recovered bool
				}{
					{sent[4], true},
					{sent[7], true},
					{sent[3], false},
					{sent[0], false},
					{"0-0", false},
				} {
					j := c.joinSince(room, row.since)
					want := sent[5:]
					if row.since == sent[7] {
						want = sent[8:]
					}
					if got := ids(j.messages("history")); !slices.Equal(got, want) {
						t.Errorf("%s: since %s: history %v, want %v", n.id, row.since, got, want)
					}
					if rec, _ := j.bool("recovered"); rec != row.recovered {
						t.Errorf("%s: since %s: recovered %v, want %v", n.id, row.since, rec, row.recovered)
					}
				}
				if got := ids(c.join(room).messages("history")); !slices.Equal(got, sent[5:]) {
					t.Errorf("%s: joined.history %v, want the 5 retained", n.id, got)
				}
				h := c.must("history", map[string]any{"type": "history", "room": room, "limit": 100})
				if got := ids(h.messages("messages")); !slices.Equal(got, sent[5:]) {
					t.Errorf("%s: history %v, want the 5 retained", n.id, got)
				}
				if more, _ := h.bool("more"); more {
					t.Errorf("%s: history more true with nothing older retained", n.id)
				}
			}
		})
		t.Run("by age", func(t *testing.T) {
			t.Parallel()
			ktp := tp.nodes(t, "-history-ttl", "1s")
			room := fresh("room")
			s := connect(t, ktp.a, fresh("s"))
			s.join(room)
			old := postMany(t, s, room, 2)
			time.Sleep(2500 * time.Millisecond)
			newID := s.post(room, "new").str("id")
			for _, n := range ktp.each() {
				c := connect(t, n, fresh("r"))
				j := c.joinSince(room, old[0])
				if got := ids(j.messages("history")); !slices.Equal(got, []string{newID}) {
					t.Errorf("%s: since the first: history %v, want only the message within the ttl", n.id, got)
				}
				if rec, _ := j.bool("recovered"); rec {
					t.Errorf("%s: since the first: recovered true, though the second expired", n.id)
				}
				j = c.joinSince(room, old[1])
				if rec, _ := j.bool("recovered"); !rec || !slices.Equal(ids(j.messages("history")), []string{newID}) {
					t.Errorf("%s: since the second: %s, want the new message, recovered", n.id, j)
				}
			}
		})
	})
}

// TestRedisStreamIDs checks that with Redis a message id is the stream id
// of the stored message (PROTOCOL.md §5), in the room's stream as
// docs/operations.md names it (chatd:{room}:s).
func TestRedisStreamIDs(t *testing.T) {
	t.Parallel()
	tp := redisTopology(t)
	room := fresh("room")
	c := connect(t, tp.a, fresh("s"))
	c.join(room)
	sent := postMany(t, c, room, 5)
	key := "chatd:{" + room + "}:s"
	n, err := state.rs.Do("XLEN", key)
	if err != nil || n != "5" {
		t.Fatalf("XLEN %s: %q %v, want 5", key, n, err)
	}
	for _, id := range sent {
		out, err := state.rs.Do("XRANGE", key, id, id)
		if err != nil || !strings.HasPrefix(out, id+"\n") {
			t.Errorf("XRANGE %s %s: %q %v: no stream entry with the message's id", key, id, out, err)
		}
	}
}
