package conformance_test

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/ws"
)

// expiring returns a token of user that expires at exp (Unix seconds).
func expiring(t *testing.T, user string, exp int64) string {
	c := claims(user)
	c["exp"] = exp
	return sign(t, c)
}

// checkClosedAt checks that a 4001 close came at exp, not before, and
// soon after (docs/protocol.md §9: at exp, not exp plus the leeway).
func checkClosedAt(t *testing.T, at time.Time, exp int64) {
	t.Helper()
	e := time.Unix(exp, 0)
	if at.Before(e.Add(-100*time.Millisecond)) || at.After(e.Add(1500*time.Millisecond)) {
		t.Errorf("closed at %v, %v from exp %v", at.Format(time.StampMilli), at.Sub(e), e.Format(time.StampMilli))
	}
}

// TestExpiry checks the close with 4001 at exp, refresh moving it, the
// refresh for another sub closing with 4003, and a token that expires
// within the leeway (PROTOCOL.md §1, §3, §6).
func TestExpiry(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		t.Run("4001 at exp", func(t *testing.T) {
			t.Parallel()
			user := fresh("ex")
			exp := time.Now().Unix() + 2
			c := connectToken(t, tp.b, user, expiring(t, user, exp))
			c.ping()
			at := c.wantClose(4001, wait)
			checkClosedAt(t, at, exp)
		})
		t.Run("refresh moves the close to the new exp", func(t *testing.T) {
			t.Parallel()
			user := fresh("ex")
			exp := time.Now().Unix() + 2
			c := connectToken(t, tp.a, user, expiring(t, user, exp))
			room := fresh("room")
			c.join(room)
			next := exp + 2
			r := c.must("refreshed", map[string]any{"type": "refresh", "token": expiring(t, user, next)})
			if got, _ := r.int("exp"); got != next {
				t.Errorf("refreshed %s, want exp %d", r, next)
			}
			time.Sleep(time.Until(time.Unix(exp, 0).Add(700 * time.Millisecond)))
			c.ping()
			c.post(room, "still here after the first exp")
			at := c.wantClose(4001, wait)
			checkClosedAt(t, at, next)
		})
		t.Run("a token that expires within the leeway", func(t *testing.T) {
			t.Parallel()
			user := fresh("ex")
			exp := time.Now().Unix() - 2
			c := connectToken(t, tp.b, user, expiring(t, user, exp))
			at := c.wantClose(4001, wait)
			if d := at.Sub(c.welcome.at); d > 1500*time.Millisecond {
				t.Errorf("closed %v after welcome, want right after it", d)
			}
		})
		t.Run("refresh with another sub closes with 4003", func(t *testing.T) {
			c := connect(t, tp.a, fresh("ex"))
			c.write(map[string]any{"type": "refresh", "token": token(t, fresh("other")), "ref": "x"})
			c.wantClose(4003, wait)
			if slices.ContainsFunc(c.events(), isType("refreshed")) {
				t.Errorf("refreshed before 4003")
			}
		})
		t.Run("an invalid token for another sub is forbidden, not 4003", func(t *testing.T) {
			c := connect(t, tp.b, fresh("ex"))
			bad := signWith(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes or more..."), claims(fresh("other")))
			c.wantError("forbidden", map[string]any{"type": "refresh", "token": bad})
			c.ping()
		})
	})
}

// TestDrain checks SIGTERM: every connection of the node gets draining with
// a reconnect_ms spread over the drain window, then close 1001; new
// upgrades are refused; with two nodes, the other node keeps serving, a
// client that moves there recovers with since, and the members that stay
// see it neither leave nor join (PROTOCOL.md §4, §6; docs/protocol.md §4
// presence, §9 draining).
func TestDrain(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	forEach(t, func(t *testing.T, tp *topology) {
		dtp := tp.nodes(t, "-drain-window", window.String())
		room := fresh("room")
		mu := fresh("mover")
		mover := connect(t, dtp.a, mu)
		mover.join(room)
		var others []*client
		for range 15 {
			c := connect(t, dtp.a, fresh("d"))
			c.join(room)
			others = append(others, c)
		}
		stayer := connect(t, dtp.b, fresh("stay"))
		stayer.join(room)
		s := stayer.post(room, "before the drain")
		mover.await("message", isMessageID(s.str("id")))
		last := s.str("id")
		stayer.drop()

		dtp.a.signal(syscall.SIGTERM)
		d := mover.await("draining", isType("draining"))
		ms, _ := d.int("reconnect_ms")
		if ms < 0 || ms > window.Milliseconds() {
			t.Errorf("reconnect_ms %d, want within the drain window %v", ms, window)
		}
		at := mover.wantClose(ws.StatusGoingAway, wait)
		if late := at.Sub(d.at) - time.Duration(ms)*time.Millisecond; late > time.Second {
			t.Errorf("closed %v after reconnect_ms ran out", late)
		}
		// New upgrades on the draining node: 503 with Retry-After, or
		// nobody listening any more.
		resp, body, _, err := tryRoundTrip(t, dtp.a, upgrade(dtp.a, token(t, fresh("late"))))
		if err == nil {
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("an upgrade during the drain: %s %s, want 503", resp.Status, body)
			} else if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("503 with Retry-After %q", resp.Header.Get("Retry-After"))
			}
		}
		spread := map[int64]bool{ms: true}
		for _, c := range others {
			d := c.await("draining", isType("draining"))
			v, _ := d.int("reconnect_ms")
			if v < 0 || v > window.Milliseconds() {
				t.Errorf("reconnect_ms %d, want within the drain window %v", v, window)
			}
			spread[v] = true
			c.wantClose(ws.StatusGoingAway, wait)
		}
		if len(spread) < 4 {
			t.Errorf("16 connections got only %d distinct reconnect_ms: not spread out", len(spread))
		}
		if code, err := dtp.a.exitCode(wait + 5*time.Second); err != nil || code != 0 {
			t.Errorf("the drained node: exit %d, %v", code, err)
		}
		if !dtp.clustered() {
			return
		}
		// The other node serves on; the mover comes back there.
		stayer.none("draining on the node that stays", 0, isType("draining"))
		s2 := stayer.post(room, "during the move")
		back := connect(t, dtp.b, mu)
		j := back.joinSince(room, last)
		if got := ids(j.messages("history")); !slices.Equal(got, []string{s2.str("id")}) {
			t.Errorf("rejoined on the other node: history %v, want the message sent during the move", got)
		}
		if rec, _ := j.bool("recovered"); !rec {
			t.Errorf("recovered false after a drain")
		}
		if _, ok := members(j)[mu]; !ok {
			t.Errorf("members %v without the mover", members(j))
		}
		stayer.none("presence of the mover, who came back in time", quiet, isPresence(room, mu, ""))
		// The leaves of those who did not come back: TestNodeLoss.
	})
}

// TestNodeLoss checks presence and recovery when one of two nodes is
// killed or stops: the users of the lost node who do not come back are
// announced leaving once their presence expires; a user who also has a
// connection on the other node, or who comes back in time, is never
// announced leaving; the one who comes back recovers with since
// (PROTOCOL.md §4 presence "on any node", §5; docs/protocol.md §4).
func TestNodeLoss(t *testing.T) {
	t.Parallel()
	tp := redisTopology(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			ltp := tp.nodes(t, "-drain-window", "1s")
			room := fresh("room")
			stay := connect(t, ltp.b, fresh("stay"))
			stay.join(room)
			mu, multi, gone := fresh("mover"), fresh("multi"), fresh("gone")
			mover := connect(t, ltp.a, mu)
			mover.join(room)
			for _, n := range ltp.each() {
				connect(t, n, multi).join(room)
			}
			connect(t, ltp.a, gone).join(room)
			for _, u := range []string{mu, multi, gone} {
				stay.await("presence join of "+u, isPresence(room, u, "join"))
			}
			s := stay.post(room, "before")
			mover.await("message", isMessageID(s.str("id")))

			ltp.a.signal(sig)
			if _, err := ltp.a.exitCode(wait + 5*time.Second); err != nil {
				t.Fatalf("node %s did not exit after %v", ltp.a.id, sig)
			}
			during := stay.post(room, "during")
			back := connect(t, ltp.b, mu)
			j := back.joinSince(room, s.str("id"))
			if got := ids(j.messages("history")); !slices.Equal(got, []string{during.str("id")}) {
				t.Errorf("back on the other node: history %v, want the message sent meanwhile", got)
			}
			if rec, _ := j.bool("recovered"); !rec {
				t.Errorf("recovered false")
			}
			if _, ok := stay.take(30*time.Second, isPresence(room, gone, "leave")); !ok {
				t.Errorf("no presence leave of %s, whose only node is gone, within 30 s", gone)
			}
			stay.none("presence of a user still connected to the other node, or back in time", quiet, func(e event) bool {
				return isPresence(room, multi, "")(e) || isPresence(room, mu, "")(e)
			})
			want := map[string]string{stay.user: displayName(stay.user), mu: displayName(mu), multi: displayName(multi)}
			nc := connect(t, ltp.b, fresh("new"))
			want[nc.user] = displayName(nc.user)
			if got := members(nc.join(room)); !maps.Equal(got, want) {
				t.Errorf("members %v, want %v", got, want)
			}
		})
	}
}
