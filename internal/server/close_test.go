package server_test

import (
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/ws"
)

// writeRawFrame sends one frame with the first byte b0 as given (FIN,
// RSV bits, opcode), masked unless unmasked is set.
func (r *rawConn) writeRawFrame(b0 byte, payload []byte, unmasked bool) {
	r.t.Helper()
	if len(payload) > 125 {
		r.t.Fatal("rawConn only writes short frames")
	}
	if unmasked {
		if _, err := r.nc.Write(append([]byte{b0, byte(len(payload))}, payload...)); err != nil {
			r.t.Fatal(err)
		}
		return
	}
	b := []byte{b0, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, c := range payload {
		b = append(b, c^b[2+i%4])
	}
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// closeCode reads frames until the server's close frame and returns its
// code; 0 when the connection ended without one.
func (r *rawConn) closeCode() ws.StatusCode {
	r.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		op, p, err := r.readFrame(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("no close frame within %v", waitTimeout)
			}
			return 0
		}
		if op == 8 {
			if len(p) < 2 {
				return ws.StatusNoStatusReceived
			}
			return ws.StatusCode(binary.BigEndian.Uint16(p))
		}
	}
	r.t.Fatalf("no close frame within %v", waitTimeout)
	return 0
}

// TestCloseCodes: every close code of PROTOCOL.md §6 that a client can
// cause, on a raw connection that sees the server's close frame itself.
func TestCloseCodes(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.ReadLimit = 1024
	cfg.MaxText = 512
	ts := startServer(t, cfg)
	closeFrame := func(code ws.StatusCode) []byte {
		return binary.BigEndian.AppendUint16(nil, uint16(code))
	}
	tests := []struct {
		name string
		send func(r *rawConn)
		want ws.StatusCode
	}{
		// 1000: the server answers a client's normal close with 1000.
		{"client closes normally", func(r *rawConn) { r.writeRawFrame(0x88, closeFrame(1000), false) }, 1000},
		{"client goes away", func(r *rawConn) { r.writeRawFrame(0x88, closeFrame(1001), false) }, 1001},
		// 1002: violations of RFC 6455 §5.
		{"unmasked frame", func(r *rawConn) { r.writeRawFrame(0x81, []byte(`{"type":"ping"}`), true) }, 1002},
		{"reserved opcode", func(r *rawConn) { r.writeRawFrame(0x83, nil, false) }, 1002},
		{"RSV2 set", func(r *rawConn) { r.writeRawFrame(0xA1, []byte(`{}`), false) }, 1002},
		{"continuation without a start", func(r *rawConn) { r.writeRawFrame(0x80, []byte(`{}`), false) }, 1002},
		{"fragmented ping", func(r *rawConn) { r.writeRawFrame(0x09, nil, false) }, 1002},
		{"close code 1005 on the wire", func(r *rawConn) { r.writeRawFrame(0x88, closeFrame(1005), false) }, 1002},
		// 1003: binary messages are not part of the protocol.
		{"binary message", func(r *rawConn) { r.writeRawFrame(0x82, []byte(`{"type":"ping"}`), false) }, 1003},
		// 1007: a text message that is not UTF-8.
		{"invalid UTF-8", func(r *rawConn) { r.writeRawFrame(0x81, []byte("{\"type\":\"ping\",\"ref\":\"\xff\"}"), false) }, 1007},
		{"truncated rune", func(r *rawConn) { r.writeRawFrame(0x81, []byte("\"\xe2\x82"), false) }, 1007},
		// 1009: over the read limit, announced in the header.
		{"message over the read limit", func(r *rawConn) {
			r.t.Helper()
			h := []byte{0x81, 0x80 | 126, 0, 0, 1, 2, 3, 4}
			binary.BigEndian.PutUint16(h[2:], 1025)
			if _, err := r.nc.Write(h); err != nil {
				r.t.Fatal(err)
			}
		}, 1009},
		// Fragments that add up to more than the limit.
		{"fragments over the read limit", func(r *rawConn) {
			r.writeRawFrame(0x01, make([]byte, 125), false)
			for range 8 {
				r.writeRawFrame(0x00, make([]byte, 125), false)
			}
			r.writeRawFrame(0x80, make([]byte, 125), false)
		}, 1009},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ts.dialRaw(t, "alice")
			if op, p, err := r.readFrame(waitTimeout); err != nil || op != 1 {
				t.Fatalf("welcome: op %d %q %v", op, p, err)
			}
			tc.send(r)
			if got := r.closeCode(); got != tc.want {
				t.Errorf("close code %v, want %v", got, tc.want)
			}
		})
	}
}

// TestInternalErrorCloses1011: a bug while serving a command (here a
// broker that panics) closes that connection with 1011; the node and
// the other connections carry on.
func TestInternalErrorCloses1011(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig(), serverOpts{broker: func(b hub.Broker) hub.Broker { return failingBroker{Broker: b} }})
	a := ts.dial(t, "alice")
	b := ts.dial(t, "bob")
	a.join("panic-room")
	b.join("lobby")
	a.send(map[string]any{"type": "send", "room": "panic-room", "text": "boom"})
	a.expectClose(ws.StatusInternalError)
	b.post("lobby", "still here")
	c := ts.dial(t, "carol")
	c.join("lobby")
	if n := ts.metric(t, `chatd_server_closes_total{code="1011",node="test"}`); n != 1 {
		t.Errorf("closes with 1011: %v, want 1", n)
	}
}

// TestShutdown: cancelling Serve's context sends every client draining
// with reconnect_ms spread over the drain window, then closes them with
// 1001, and Serve returns nil once they are gone.
func TestShutdown(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.DrainWindow = time.Second
	cfg.DrainTimeout = waitTimeout
	ts := startServer(t, cfg)
	const n = 30
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = ts.dial(t, "user"+strconv.Itoa(i))
		clients[i].join("lobby")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()

	var mu sync.Mutex
	delays := map[int64]int{}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			d := c.waitFor("draining", nil)
			ms := d.num("reconnect_ms")
			if ms < 0 || ms >= cfg.DrainWindow.Milliseconds() {
				t.Errorf("%s: reconnect_ms %d outside [0, %d)", c.name, ms, cfg.DrainWindow.Milliseconds())
			}
			// Until its own close, a client still gets the room's events:
			// here the presence of those closed in earlier batches.
			for _, m := range c.expectClose(ws.StatusGoingAway) {
				if m.typ() != "presence" || m.str("state") != "leave" {
					t.Errorf("%s: %v after draining", c.name, m)
				}
			}
			mu.Lock()
			delays[ms/100]++ // the drain window has 10 slices of 100 ms
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(delays) < 5 {
		t.Errorf("reconnect_ms fell into %d of 10 tenths of the drain window (%v), want them spread", len(delays), delays)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(2 * waitTimeout):
		t.Fatal("Serve did not return")
	}
	// The listener is closed.
	if _, err := net.DialTimeout("tcp", ts.Addr, time.Second); err == nil {
		t.Error("the listener still accepts after shutdown")
	}
}

// TestShutdownDrainTimeout: a client that never answers the close is
// dropped when the drain timeout ends, and Serve still returns.
func TestShutdownDrainTimeout(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.DrainWindow = 100 * time.Millisecond
	cfg.DrainTimeout = 500 * time.Millisecond
	ts := startServer(t, cfg)
	r := ts.dialRaw(t, "mute") // never answers anything
	// The session is registered once welcome is sent.
	if op, p, err := r.readFrame(waitTimeout); err != nil || op != 1 || !strings.Contains(string(p), `"welcome"`) {
		t.Fatalf("first frame: op %d %q %v, want welcome", op, p, err)
	}
	start := time.Now()
	if err := ts.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > waitTimeout {
		t.Errorf("Serve returned %v after the drain started", d)
	}
	if n := ts.Server.Connections(); n != 0 {
		t.Errorf("%d connections left after Serve returned", n)
	}
	// The raw client saw draining, then its connection ended.
	var sawDraining bool
	for {
		op, p, err := r.readFrame(waitTimeout)
		if err != nil {
			break
		}
		if op == 1 && strings.Contains(string(p), `"draining"`) {
			sawDraining = true
		}
	}
	if !sawDraining {
		t.Error("no draining before the drop")
	}
}

// TestFragmentedCommand: a command may be fragmented on the wire, with
// control frames between the fragments (PROTOCOL.md §2, RFC 6455 §5.4).
func TestFragmentedCommand(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	r := ts.dialRaw(t, "alice")
	if op, _, err := r.readFrame(waitTimeout); err != nil || op != 1 {
		t.Fatalf("welcome: op %d %v", op, err)
	}
	r.writeRawFrame(0x01, []byte(`{"type":`), false) // text, not final
	r.writeRawFrame(0x89, []byte("hb"), false)       // a ping in between
	r.writeRawFrame(0x00, []byte(`"ping","re`), false)
	r.writeRawFrame(0x80, []byte(`f":"frag"}`), false) // final continuation
	var gotPong, gotReply bool
	for !gotReply {
		op, p, err := r.readFrame(waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		switch op {
		case 0xA:
			gotPong = string(p) == "hb"
		case 1:
			if string(p) != `{"type":"pong","ref":"frag"}` {
				t.Fatalf("reply %s", p)
			}
			gotReply = true
		}
	}
	if !gotPong {
		t.Error("the ping between the fragments was not answered first")
	}
}
