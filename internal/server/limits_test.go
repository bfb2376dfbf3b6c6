package server_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/ws"
)

// rawConn is a WebSocket client written by hand on a TCP connection, for
// what internal/ws would not do: never answer pings, read frames one by
// one.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw completes the handshake for user and returns the connection.
func (ts *testServer) dialRaw(t *testing.T, user string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + ts.Addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\n" +
		"Sec-WebSocket-Protocol: chat\r\nAuthorization: Bearer " + ts.token(t, user) + "\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawConn{t: t, nc: nc, br: br}
}

// readFrame reads one frame; err is io.EOF (or a reset) when the server
// closed the TCP connection.
func (r *rawConn) readFrame(timeout time.Duration) (op byte, payload []byte, err error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// writeFrame sends one masked frame.
func (r *rawConn) writeFrame(op byte, payload []byte) {
	r.t.Helper()
	if len(payload) > 125 {
		r.t.Fatal("rawConn only writes short frames")
	}
	b := []byte{0x80 | op, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, c := range payload {
		b = append(b, c^b[2+i%4])
	}
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// TestHeartbeat: the server pings every heartbeat; any frame answers; a
// client that stops answering is closed after the pong timeout (§6).
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Heartbeat = time.Second
	cfg.PongTimeout = 500 * time.Millisecond
	ts := startServer(t, cfg)

	// A client that answers with an application message (not a pong)
	// stays connected over several heartbeats.
	r := ts.dialRaw(t, "alice")
	op, p, err := r.readFrame(waitTimeout)
	if err != nil || op != 1 || !strings.Contains(string(p), `"welcome"`) || !strings.Contains(string(p), `"heartbeat":1`) {
		t.Fatalf("first frame: op %d %q %v, want welcome with heartbeat 1", op, p, err)
	}
	start := time.Now()
	pings := 0
	for pings < 3 {
		op, _, err := r.readFrame(waitTimeout)
		if err != nil {
			t.Fatalf("after %d pings: %v", pings, err)
		}
		if op == 9 {
			pings++
			r.writeFrame(1, []byte(`{"type":"ping"}`))
		}
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("3 pings in %v: not every heartbeat (1s)", d)
	}

	// Then it stops answering: closed within the pong timeout of the next
	// ping (a generous bound: the heartbeat plus the timeout plus slack).
	stopped := time.Now()
	for {
		op, _, err := r.readFrame(waitTimeout)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("still open %v after it stopped answering", time.Since(stopped))
			}
			break // EOF or reset: closed
		}
		if op == 8 {
			continue // a close frame is fine too
		}
	}
	if d := time.Since(stopped); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("closed %v after the client stopped answering, want about heartbeat+pong timeout (1.5s)", d)
	}
}

// TestSilentClientClosed: a client that completes the handshake and then
// never reads nor writes is closed after heartbeat + pong timeout.
func TestSilentClientClosed(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Heartbeat = time.Second
	cfg.PongTimeout = 500 * time.Millisecond
	ts := startServer(t, cfg)
	ts.dialRaw(t, "mute")
	eventually(t, waitTimeout, func() bool { return ts.metric(t, "chatd_connections") == 0 })
}

// TestRateLimits: per connection and per user, with retry_ms; far over
// the limit, 1008 (§6).
func TestRateLimits(t *testing.T) {
	t.Parallel()
	t.Run("connection", func(t *testing.T) {
		t.Parallel()
		cfg := fastConfig()
		cfg.SendRate, cfg.SendBurst = 0.5, 3
		ts := startServer(t, cfg)
		c := ts.dial(t, "alice")
		c.join("r")
		for i := range 3 {
			c.post("r", strconv.Itoa(i))
		}
		m := c.roundTrip(map[string]any{"type": "send", "room": "r", "text": "too many"})
		if m.typ() != "error" || m.str("code") != "rate_limited" || m.num("retry_ms") <= 0 || m.num("retry_ms") > 2000 {
			t.Fatalf("fourth send: %v, want rate_limited with retry_ms in (0, 2000]", m)
		}
		// Other commands are not sends: still served.
		if m := c.roundTrip(map[string]any{"type": "ping"}); m.typ() != "pong" {
			t.Errorf("ping while send-limited: %v", m)
		}
		// Another connection of another user is not limited.
		d := ts.dial(t, "dave")
		d.join("r")
		d.post("r", "fine")
	})
	t.Run("retry_ms admits", func(t *testing.T) {
		// retry_ms is rounded up: waiting exactly that long is enough,
		// with an interval that is not whole milliseconds (333.3 ms).
		t.Parallel()
		cfg := fastConfig()
		cfg.SendRate, cfg.SendBurst = 3, 1
		ts := startServer(t, cfg)
		c := ts.dial(t, "alice")
		c.join("r")
		for i := range 3 {
			c.post("r", "first "+strconv.Itoa(i))
			m := c.roundTrip(map[string]any{"type": "send", "room": "r", "text": "too soon"})
			if m.str("code") != "rate_limited" || m.num("retry_ms") <= 0 || m.num("retry_ms") > 334 {
				t.Fatalf("second send at once: %v, want rate_limited with retry_ms in (0, 334]", m)
			}
			time.Sleep(time.Duration(m.num("retry_ms")) * time.Millisecond)
			if m := c.roundTrip(map[string]any{"type": "send", "room": "r", "text": "after retry_ms"}); m.typ() != "sent" {
				t.Fatalf("send after waiting retry_ms: %v", m)
			}
			time.Sleep(350 * time.Millisecond) // a full bucket again
		}
	})
	t.Run("user", func(t *testing.T) {
		t.Parallel()
		cfg := fastConfig()
		cfg.UserRate, cfg.UserBurst = 0.5, 4
		ts := startServer(t, cfg)
		a1 := ts.dial(t, "alice")
		a2 := ts.dial(t, "alice")
		a1.join("r")
		a2.join("r")
		a1.post("r", "1")
		a1.post("r", "2")
		a2.post("r", "3")
		a2.post("r", "4")
		for _, c := range []*client{a1, a2} {
			m := c.roundTrip(map[string]any{"type": "send", "room": "r", "text": "5"})
			if m.str("code") != "rate_limited" || m.num("retry_ms") <= 0 {
				t.Errorf("%s: %v, want rate_limited across alice's connections", c.name, m)
			}
		}
		b := ts.dial(t, "bob")
		b.join("r")
		b.post("r", "bob is not limited")
	})
	t.Run("commands", func(t *testing.T) {
		t.Parallel()
		cfg := fastConfig()
		cfg.CommandRate, cfg.CommandBurst = 0.5, 5
		ts := startServer(t, cfg)
		c := ts.dial(t, "alice")
		for range 5 {
			c.roundTrip(map[string]any{"type": "ping"})
		}
		m := c.roundTrip(map[string]any{"type": "ping"})
		if m.typ() != "error" || m.str("code") != "rate_limited" || m.num("retry_ms") <= 0 {
			t.Errorf("sixth command: %v, want rate_limited with its ref", m)
		}
	})
	t.Run("abuse", func(t *testing.T) {
		t.Parallel()
		cfg := fastConfig()
		cfg.SendRate, cfg.SendBurst = 0.5, 1
		cfg.AbuseStrikes, cfg.AbuseWindow = 5, 10*time.Second
		ts := startServer(t, cfg)
		c := ts.dial(t, "alice")
		c.join("r")
		c.sync()
		for range 10 {
			// The server may close before the last ones are written.
			if err := c.conn.WriteMessage(ws.Text, []byte(`{"type":"send","room":"r","text":"spam"}`)); err != nil {
				break
			}
		}
		rest := c.expectClose(ws.StatusPolicyViolation)
		limited := 0
		for _, m := range rest {
			if m.str("code") == "rate_limited" {
				limited++
			}
		}
		if limited == 0 {
			t.Errorf("closed without rate_limited errors first: %v", rest)
		}
	})
}

// TestTooManyRooms: a connection may be in MaxRooms rooms.
func TestTooManyRooms(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.MaxRooms = 2
	ts := startServer(t, cfg)
	c := ts.dial(t, "alice")
	c.join("a")
	c.join("b")
	c.join("a") // joining again is not another room
	if m := c.roundTrip(map[string]any{"type": "join", "room": "c"}); m.str("code") != "bad_request" {
		t.Errorf("third room: %v, want bad_request", m)
	}
	c.roundTrip(map[string]any{"type": "leave", "room": "a"})
	c.join("c")
}

// TestSlowConsumer: a client that never reads is closed with 1013 once its
// queue is full, while a fast consumer in the same room receives every
// message and is not slowed; typing and presence are dropped first (§6).
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.QueueSize = 16
	cfg.WriteTimeout = 5 * time.Second
	ts := startServer(t, cfg, serverOpts{sndBuf: 4096})

	fast := ts.dial(t, "fast")
	fast.join("room")
	slow := ts.dialWith(t, "slow", dialOpts{header: http.Header{"Authorization": {"Bearer " + ts.token(t, "slow")}}, noRead: true, rcvBuf: 4096})
	slow.send(map[string]any{"type": "join", "room": "room"})
	typist := ts.dial(t, "typist")
	typist.join("room")
	fast.sync()

	// Typing and presence events alone never close the slow client: they
	// are dropped. (A node relays one typing a second per user, so the
	// flood is of presence: the typist leaving and joining again.)
	for range 100 {
		typist.send(map[string]any{"type": "typing", "room": "room"})
		typist.send(map[string]any{"type": "leave", "room": "room"})
		typist.send(map[string]any{"type": "join", "room": "room"})
	}
	typist.sync()
	eventually(t, waitTimeout, func() bool { return ts.metric(t, "chatd_queue_drops_total") > 0 })
	if n := ts.metric(t, "chatd_slow_consumers_total"); n != 0 {
		t.Fatalf("typing closed a slow consumer")
	}
	// The typist leaves: with a queue of 16, a reader that the scheduler
	// holds back during a burst would be a slow consumer too, and only
	// the slow client may be closed below.
	if m := typist.roundTrip(map[string]any{"type": "leave", "room": "room"}); m.typ() != "left" {
		t.Fatalf("typist leave: %v", m)
	}

	// Messages do, once the queue is full.
	text := strings.Repeat("x", 1000)
	sent, got := 0, 0
	for ts.metric(t, "chatd_slow_consumers_total") < 1 {
		for range 20 {
			fast.send(map[string]any{"type": "send", "room": "room", "text": strconv.Itoa(sent) + text})
			sent++
		}
		for _, m := range fast.sync() {
			if m.typ() == "message" {
				if !strings.HasPrefix(m.str("text"), strconv.Itoa(got)+"x") {
					t.Fatalf("fast consumer: message %d is %.10q", got, m.str("text"))
				}
				got++
			}
		}
		if sent > 5000 {
			t.Fatal("the slow consumer was never closed")
		}
	}
	// The fast consumer got every message, in order.
	if got != sent {
		t.Errorf("fast consumer got %d of %d messages", got, sent)
	}
	// The slow client now reads: what was written, then close 1013.
	slow.startReading()
	slow.expectClose(ws.StatusTryAgainLater)
}

// TestTokenExpiry: the connection is closed with 4001 at exp.
func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	tok := ts.sign(t, auth.TokenSpec{Subject: "alice", TTL: 2 * time.Second})
	start := time.Now()
	c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
	c.expect("welcome")
	c.expectClose(4001)
	// At exp, not exp plus the 5 s verification leeway; the bound leaves
	// room for a loaded machine.
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("closed %v after connecting with a 2s token", d)
	}
}

// TestRefresh: refreshed with exp (Unix seconds) extends the 4001 expiry;
// a token for another sub closes with 4003 (§3, §6).
func TestRefresh(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	// exp has whole seconds: a 3 s token expires 2 to 3 s from now.
	short := ts.sign(t, auth.TokenSpec{Subject: "alice", TTL: 3 * time.Second})
	shortExp := time.Now().Add(3 * time.Second).Unix()
	c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + short}}})
	c.expect("welcome")
	longer := ts.sign(t, auth.TokenSpec{Subject: "alice", TTL: 6 * time.Second})
	exp := time.Now().Add(6 * time.Second).Unix()
	m := c.roundTrip(map[string]any{"type": "refresh", "token": longer})
	if m.typ() != "refreshed" || m.num("exp") < exp-1 || m.num("exp") > exp {
		t.Fatalf("refresh: %v, want refreshed with exp %d", m, exp)
	}
	// Past the first token's expiry (nothing to await: the point is that
	// nothing happens), still open.
	time.Sleep(time.Until(time.Unix(shortExp, 0).Add(500 * time.Millisecond)))
	if m := c.roundTrip(map[string]any{"type": "ping"}); m.typ() != "pong" {
		t.Fatalf("after the first token expired: %v", m)
	}
	c.expectClose(4001)
	if late := time.Since(time.Unix(m.num("exp"), 0)); late > 4*time.Second || late < -time.Second {
		t.Errorf("closed %v after the refreshed exp", late)
	}

	d := ts.dial(t, "dave")
	d.send(map[string]any{"type": "refresh", "token": ts.token(t, "mallory")})
	d.expectClose(4003)
}

// TestPipelining: a client that sends many commands before reading any
// reply is slowed down, not closed as a slow consumer, and gets every
// reply in order, even with a queue far smaller than its burst.
func TestPipelining(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.QueueSize = 8
	ts := startServer(t, cfg, serverOpts{sndBuf: 4096})
	c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + ts.token(t, "alice")}}, noRead: true, rcvBuf: 4096})
	const n = 500
	pad := strings.Repeat("p", 60)
	for i := range n {
		c.sendRaw(`{"type":"ping","ref":"` + pad + strconv.Itoa(i) + `"}`)
	}
	c.startReading()
	c.expect("welcome")
	for i := range n {
		if m := c.expect("pong"); m.str("ref") != pad+strconv.Itoa(i) {
			t.Fatalf("pong %d has ref %q", i, m.str("ref"))
		}
	}
	if got := ts.metric(t, "chatd_slow_consumers_total"); got > 0 {
		t.Errorf("%v slow consumers, want none", got)
	}
}
