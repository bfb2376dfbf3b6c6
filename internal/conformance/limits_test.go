package conformance_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// TestKeepalive checks that the server pings every heartbeat seconds and
// closes a client it has heard nothing from within the pong timeout after
// a ping, while any frame from the client counts as an answer
// (PROTOCOL.md §6).
func TestKeepalive(t *testing.T) {
	t.Parallel()
	const heartbeat, timeout = time.Second, time.Second
	forEach(t, func(t *testing.T, tp *topology) {
		ktp := tp.nodes(t, "-heartbeat", "1s", "-pong-timeout", "1s")
		for _, n := range ktp.each() {
			t.Run(n.id, func(t *testing.T) {
				t.Run("welcome.heartbeat", func(t *testing.T) {
					t.Parallel()
					c := connect(t, n, fresh("ka"))
					if hb, ok := c.welcome.int("heartbeat"); !ok || hb != 1 {
						t.Errorf("welcome %s, want heartbeat 1", c.welcome)
					}
					// Our client answers the pings: it stays.
					time.Sleep(3*heartbeat + timeout)
					c.ping()
				})
				t.Run("pings every heartbeat, answered", func(t *testing.T) {
					t.Parallel()
					start := time.Now()
					rc := openRaw(t, n, fresh("ka"))
					var pings []time.Duration
					for time.Since(start) < 4*heartbeat+timeout {
						op, p, err := rc.readFrame(wait)
						if err != nil {
							t.Fatalf("after pings at %v: %v", pings, err)
						}
						if op == opPing {
							pings = append(pings, time.Since(start))
							rc.writeFrame(true, 0, opPong, p, true)
						}
					}
					if len(pings) < 3 {
						t.Fatalf("pings at %v in %v, want one every %v", pings, time.Since(start), heartbeat)
					}
					for i, at := range pings {
						prev := time.Duration(0)
						if i > 0 {
							prev = pings[i-1]
						}
						if d := at - prev; d < heartbeat/2 || d > 2*heartbeat {
							t.Errorf("pings at %v: an interval of %v, want about %v", pings, d, heartbeat)
							break
						}
					}
				})
				t.Run("a silent client is closed", func(t *testing.T) {
					t.Parallel()
					start := time.Now()
					rc := openRaw(t, n, fresh("ka"))
					pings := 0
					for {
						op, _, err := rc.readFrame(wait)
						if err != nil || op == opClose {
							break
						}
						if op == opPing {
							pings++
						}
					}
					took := time.Since(start)
					if pings == 0 {
						t.Errorf("closed without a ping")
					}
					if took < heartbeat+timeout-200*time.Millisecond || took > heartbeat+timeout+2*time.Second {
						t.Errorf("a silent client closed after %v, want about %v", took, heartbeat+timeout)
					}
				})
				t.Run("any frame counts as an answer", func(t *testing.T) {
					t.Parallel()
					start := time.Now()
					rc := openRaw(t, n, fresh("ka"))
					last := time.Time{}
					pings := 0
					defer func() {
						// Pings go on while the client is busy: "every
						// heartbeat seconds".
						if took := time.Since(start); pings < int(took/heartbeat)-1 {
							t.Errorf("%d pings in %v of a busy connection, want one every %v", pings, took, heartbeat)
						}
					}()
					for time.Since(start) < 3*heartbeat+2*timeout {
						if time.Since(last) > 300*time.Millisecond {
							rc.writeFrame(true, 0, opText, []byte(`{"type":"ping"}`), true)
							last = time.Now()
						}
						op, p, err := rc.readFrame(300 * time.Millisecond)
						if ne, ok := err.(net.Error); ok && ne.Timeout() {
							continue
						}
						if err != nil || op == opClose {
							t.Fatalf("closed after %v though it sent a command every 300ms: %v %q", time.Since(start), err, p)
						}
						if op == opPing {
							pings++
						}
					}
				})
			})
		}
	})
}

// defaultLimits are chatd's default rate limits (docs/protocol.md §8),
// given after the base flags, which they override.
var defaultLimits = []string{
	"-send-rate", "10", "-send-burst", "20",
	"-user-rate", "20", "-user-burst", "40",
	"-command-rate", "50", "-command-burst", "100",
}

// replies sends cmds pipelined on c, each with a ref, and returns the
// replies in order with the time the sending took.
func replies(t *testing.T, c *client, cmds []map[string]any) ([]event, time.Duration) {
	t.Helper()
	prefix := c.ref()
	start := time.Now()
	for i, cmd := range cmds {
		cmd["ref"] = fmt.Sprint(prefix, ".", i)
		c.write(cmd)
	}
	out := make([]event, len(cmds))
	for i := range cmds {
		ref := fmt.Sprint(prefix, ".", i)
		out[i] = c.await("reply "+ref, func(e event) bool { return e.str("ref") == ref })
	}
	return out, time.Since(start)
}

// countReplies counts replies of type ok and rate_limited errors, failing
// t on anything else.
func countReplies(t *testing.T, es []event, ok string) (admitted, refused int, lastRefusal event) {
	t.Helper()
	for _, e := range es {
		switch {
		case e.typ() == ok:
			admitted++
		case e.typ() == "error" && e.str("code") == "rate_limited":
			refused++
			lastRefusal = e
			if ms, has := e.int("retry_ms"); !has || ms < 1 {
				t.Errorf("rate_limited without a positive retry_ms: %s", e)
			}
		default:
			t.Errorf("reply %s, want %s or rate_limited", e, ok)
		}
	}
	return admitted, refused, lastRefusal
}

// TestRateLimits checks the rate limits at chatd's defaults: messages per
// connection, per user across nodes, commands per connection, retry_ms,
// and close 1008 for a client that keeps sending far over the limit
// (PROTOCOL.md §6; docs/protocol.md §8).
func TestRateLimits(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		ltp := tp.nodes(t, defaultLimits...)
		room := fresh("room")
		t.Run("messages per connection", func(t *testing.T) {
			c := connect(t, ltp.a, fresh("rl"))
			c.join(room)
			var cmds []map[string]any
			for i := range 30 {
				cmds = append(cmds, map[string]any{"type": "send", "room": room, "text": fmt.Sprint(i)})
			}
			es, took := replies(t, c, cmds)
			admitted, refused, last := countReplies(t, es, "sent")
			if max := 20 + int(10*took.Seconds()) + 1; admitted < 20 || admitted > max {
				t.Errorf("%d of 30 sends admitted in %v, want 20 (the burst) to %d", admitted, took, max)
			}
			if refused == 0 {
				t.Fatalf("30 sends in %v, none refused", took)
			}
			// A send retry_ms after the refusal arrived is admitted.
			ms, _ := last.int("retry_ms")
			if ms > 1000 {
				t.Errorf("retry_ms %d for 10 messages a second", ms)
			}
			time.Sleep(time.Until(last.at.Add(time.Duration(ms) * time.Millisecond)))
			c.must("sent", map[string]any{"type": "send", "room": room, "text": "after retry_ms"})
		})
		t.Run("messages per user across nodes", func(t *testing.T) {
			user := fresh("rl")
			cs := []*client{connect(t, ltp.a, user), connect(t, ltp.b, user), connect(t, ltp.a, user)}
			for _, c := range cs {
				c.join(room)
			}
			var wg sync.WaitGroup
			start := time.Now()
			for k, c := range cs {
				wg.Go(func() {
					for i := range 20 {
						b := fmt.Appendf(nil, `{"type":"send","room":%q,"text":"u%d.%d","ref":"u%d.%d"}`, room, k, i, k, i)
						if c.conn.WriteMessage(ws.Text, b) != nil {
							return
						}
					}
				})
			}
			wg.Wait()
			var es []event
			for k, c := range cs {
				for i := range 20 {
					ref := fmt.Sprintf("u%d.%d", k, i)
					es = append(es, c.await("reply "+ref, func(e event) bool { return e.str("ref") == ref }))
				}
			}
			took := time.Since(start)
			admitted, refused, _ := countReplies(t, es, "sent")
			if max := 40 + int(20*took.Seconds()) + 1; admitted > max {
				t.Errorf("%d of 60 sends of one user on %d nodes admitted in %v, want at most %d (burst 40, 20 a second)", admitted, len(ltp.each()), took, max)
			}
			if refused == 0 {
				t.Errorf("60 sends of one user in %v, none refused", took)
			}
		})
		t.Run("commands per connection", func(t *testing.T) {
			c := connect(t, ltp.b, fresh("rl"))
			var cmds []map[string]any
			for range 150 {
				cmds = append(cmds, map[string]any{"type": "ping"})
			}
			es, took := replies(t, c, cmds)
			admitted, refused, _ := countReplies(t, es, "pong")
			if max := 100 + int(50*took.Seconds()) + 1; admitted < 100 || admitted > max {
				t.Errorf("%d of 150 pings answered in %v, want 100 (the burst) to %d", admitted, took, max)
			}
			if refused == 0 {
				t.Errorf("150 pings in %v, none refused", took)
			}
		})
		t.Run("invalid commands count against the command limit", func(t *testing.T) {
			c := connect(t, ltp.a, fresh("rl"))
			var cmds []map[string]any
			for range 150 {
				cmds = append(cmds, map[string]any{"type": "dance"})
			}
			es, _ := replies(t, c, cmds)
			limited := 0
			for _, e := range es {
				if e.str("code") == "rate_limited" {
					limited++
				} else if e.str("code") != "unknown_type" {
					t.Errorf("reply %s", e)
				}
			}
			if limited == 0 {
				t.Errorf("150 unknown commands, none rate_limited")
			}
		})
		t.Run("abuse closes with 1008", func(t *testing.T) {
			c := connect(t, ltp.b, fresh("rl"))
			go func() {
				b := []byte(`{"type":"ping"}`)
				for range 2000 {
					if c.conn.WriteMessage(ws.Text, b) != nil {
						return
					}
				}
			}()
			c.wantClose(ws.StatusPolicyViolation, wait)
			if !slices.ContainsFunc(c.events(), func(e event) bool { return e.str("code") == "rate_limited" }) {
				t.Errorf("closed with 1008 before any rate_limited")
			}
		})
	})
}

// smallReceiveBuffer dials with a small socket receive buffer, so that a
// client that stops reading lets the server's queue fill soon.
func smallReceiveBuffer(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.DialContext(ctx, network, addr)
}

// TestSlowConsumer checks that a member that stops reading while another
// member publishes is closed with 1013 without slowing the others down,
// and recovers with since (PROTOCOL.md §6).
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		// Large messages and a short queue, so that the kernel's socket
		// buffers (megabytes on loopback) fill soon enough.
		const n, size = 304, 60000
		tp = tp.nodes(t, "-max-text", fmt.Sprint(size), "-queue-size", "32")
		room := fresh("room")
		su := fresh("slow")
		slow, err := dial(t, tp.a, su, dialOptions{token: token(t, su), netDial: smallReceiveBuffer, noReader: true})
		if err != nil {
			t.Fatal(err)
		}
		// The join by hand: the slow client reads nothing once joined.
		if err := slow.conn.WriteMessage(ws.Text, []byte(fmt.Sprintf(`{"type":"join","room":%q,"ref":"j"}`, room))); err != nil {
			t.Fatal(err)
		}
		fast := connect(t, tp.a, fresh("fast"))
		fast.join(room)
		pub := connect(t, tp.b, fresh("pub"))
		pub.join(room)
		time.Sleep(200 * time.Millisecond) // the slow client's join is served
		// Published in batches that the fast member reads before the next,
		// so that it never lags by more than a batch: the slow client is
		// the only one that lets its queue fill.
		text := strings.Repeat("z", size)
		var all []string
		for i := 0; i < n; i += 8 {
			for k := i; k < i+8; k++ {
				pub.write(map[string]any{"type": "send", "room": room, "text": fmt.Sprint(k, text[:size-len(fmt.Sprint(k))]), "ref": fmt.Sprint("p", k)})
			}
			all = append(all, ids(fast.messagesIn(room, 8))...)
		}
		time.Sleep(500 * time.Millisecond)
		// The slow client reads at last: what was queued, then the close.
		slow.startReading()
		ce, _, ok := slow.closed(wait)
		if !ok {
			got := slices.DeleteFunc(slow.events(), func(e event) bool { return !isMessage(room)(e) })
			t.Fatalf("the slow client is still open after %d messages of %d bytes; it has read %d", n, len(text), len(got))
		}
		if ce.Code != ws.StatusTryAgainLater || !ce.Remote {
			t.Errorf("the slow client ended with %v, want close 1013", ce)
		}
		got := ids(slices.DeleteFunc(slow.events(), func(e event) bool { return !isMessage(room)(e) }))
		if len(got) == n {
			t.Fatalf("the slow client received every message")
		}
		if !slices.Equal(got, all[:len(got)]) {
			t.Errorf("the slow client received %d messages that are not the first of the room in order", len(got))
		}
		// It reconnects and recovers the rest with since.
		since := "0-0"
		if len(got) > 0 {
			since = got[len(got)-1]
		}
		again := connect(t, tp.b, su)
		j := again.joinSince(room, since)
		rest := ids(j.messages("history"))
		if len(got) == 0 {
			t.Logf("the slow client got no message before its close")
		} else if rec, _ := j.bool("recovered"); !rec {
			t.Errorf("recovered false after a 1013")
		}
		if !slices.Equal(rest, all[len(got):]) {
			t.Errorf("rejoined with since: %d messages, want the %d missed", len(rest), n-len(got))
		}
	})
}
