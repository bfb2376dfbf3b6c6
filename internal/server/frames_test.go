package server_test

import (
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/ws"
)

// TestBinaryMessageCloses1003 (PROTOCOL.md §2).
func TestBinaryMessageCloses1003(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	c := ts.dial(t, "alice")
	if err := c.conn.WriteMessage(ws.Binary, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectClose(ws.StatusUnsupportedData)
}

// TestReadLimitCloses1009: a message over the read limit closes with 1009,
// one at the limit is served.
func TestReadLimitCloses1009(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.ReadLimit = 2048
	cfg.MaxText = 1024
	ts := startServer(t, cfg)
	c := ts.dial(t, "alice")
	// Exactly at the limit: answered (too_large, the text is over MaxText).
	at := `{"type":"send","room":"r","ref":"x","text":"` + strings.Repeat("a", 2048-len(`{"type":"send","room":"r","ref":"x","text":""}`)) + `"}`
	if len(at) != 2048 {
		t.Fatalf("message is %d bytes", len(at))
	}
	c.sendRaw(at)
	if m := c.next(); m.str("code") != "too_large" || m.str("ref") != "x" {
		t.Errorf("message at the read limit: %v, want error too_large", m)
	}
	c.sendRaw(at + " ")
	c.expectClose(ws.StatusMessageTooBig)
}

// TestErrorCodes sends one command per row and checks the error code and
// that the ref is copied into the reply (PROTOCOL.md §2-§4).
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig(), serverOpts{broker: func(b hub.Broker) hub.Broker { return failingBroker{Broker: b} }})
	c := ts.dial(t, "alice")
	c.join("lobby")
	c.sync() // the own presence
	long := strings.Repeat("x", 65)
	tests := []struct {
		name string
		raw  string // sent as is; the ref, when there is one, is "r1"
		code string
		ref  bool // the reply must carry ref r1
	}{
		{"invalid JSON", `{"type":"ping","ref":"r1"`, "bad_request", false},
		{"invalid JSON, ref readable", `{"type":"ping","ref":"r1","x":}`, "bad_request", false},
		{"array", `[{"type":"ping"}]`, "bad_request", false},
		{"string", `"ping"`, "bad_request", false},
		{"number", `42`, "bad_request", false},
		{"null", `null`, "bad_request", false},
		{"empty object", `{}`, "bad_request", false},
		{"no type", `{"ref":"r1","room":"lobby"}`, "bad_request", true},
		{"type not a string", `{"type":1,"ref":"r1"}`, "bad_request", true},
		{"empty type", `{"type":"","ref":"r1"}`, "bad_request", true},
		{"unknown type", `{"type":"shout","ref":"r1"}`, "unknown_type", true},
		{"type is case-sensitive", `{"type":"PING","ref":"r1"}`, "unknown_type", true},
		{"join without room", `{"type":"join","ref":"r1"}`, "bad_request", true},
		{"join room not a string", `{"type":"join","ref":"r1","room":5}`, "bad_request", true},
		{"join empty room", `{"type":"join","ref":"r1","room":""}`, "bad_request", true},
		{"join room with space", `{"type":"join","ref":"r1","room":"a b"}`, "bad_request", true},
		{"join room with slash", `{"type":"join","ref":"r1","room":"a/b"}`, "bad_request", true},
		{"join room non-ASCII", `{"type":"join","ref":"r1","room":"café"}`, "bad_request", true},
		{"join room 65 bytes", `{"type":"join","ref":"r1","room":"` + long + `"}`, "bad_request", true},
		{"join bad since", `{"type":"join","ref":"r1","room":"lobby","since":"yesterday"}`, "bad_request", true},
		{"join since without sequence", `{"type":"join","ref":"r1","room":"lobby","since":"1700000000000"}`, "bad_request", true},
		{"join since negative", `{"type":"join","ref":"r1","room":"lobby","since":"-1-0"}`, "bad_request", true},
		{"join since number", `{"type":"join","ref":"r1","room":"lobby","since":17}`, "bad_request", true},
		{"leave without room", `{"type":"leave","ref":"r1"}`, "bad_request", true},
		{"send without room", `{"type":"send","ref":"r1","text":"hi"}`, "bad_request", true},
		{"send without text", `{"type":"send","ref":"r1","room":"lobby"}`, "bad_request", true},
		{"send empty text", `{"type":"send","ref":"r1","room":"lobby","text":""}`, "bad_request", true},
		{"send text not a string", `{"type":"send","ref":"r1","room":"lobby","text":["hi"]}`, "bad_request", true},
		{"send cid 65 bytes", `{"type":"send","ref":"r1","room":"lobby","text":"hi","cid":"` + long + `"}`, "bad_request", true},
		{"send text over max", `{"type":"send","ref":"r1","room":"lobby","text":"` + strings.Repeat("é", 2049) + `"}`, "too_large", true},
		{"history without room", `{"type":"history","ref":"r1"}`, "bad_request", true},
		{"history bad before", `{"type":"history","ref":"r1","room":"lobby","before":"x-1"}`, "bad_request", true},
		{"history limit 0", `{"type":"history","ref":"r1","room":"lobby","limit":0}`, "bad_request", true},
		{"history limit 101", `{"type":"history","ref":"r1","room":"lobby","limit":101}`, "bad_request", true},
		{"history limit -1", `{"type":"history","ref":"r1","room":"lobby","limit":-1}`, "bad_request", true},
		{"history limit 1.5", `{"type":"history","ref":"r1","room":"lobby","limit":1.5}`, "bad_request", true},
		{"history limit string", `{"type":"history","ref":"r1","room":"lobby","limit":"x"}`, "bad_request", true},
		{"history limit numeric string", `{"type":"history","ref":"r1","room":"lobby","limit":"10"}`, "bad_request", true},
		{"typing without room", `{"type":"typing","ref":"r1"}`, "bad_request", true},
		{"refresh without token", `{"type":"refresh","ref":"r1"}`, "bad_request", true},
		{"refresh with a bad token", `{"type":"refresh","ref":"r1","token":"x.y.z"}`, "forbidden", true},
		{"ref 65 bytes", `{"type":"ping","ref":"` + long + `"}`, "bad_request", false},
		{"ref not a string", `{"type":"ping","ref":7}`, "bad_request", false},
		{"send not joined", `{"type":"send","ref":"r1","room":"elsewhere","text":"hi"}`, "not_joined", true},
		{"typing not joined", `{"type":"typing","ref":"r1","room":"elsewhere"}`, "not_joined", true},
		{"leave not joined", `{"type":"leave","ref":"r1","room":"elsewhere"}`, "not_joined", true},
		{"history broker error", `{"type":"history","ref":"r1","room":"nohist"}`, "internal", true},
		{"join broker error", `{"type":"join","ref":"r1","room":"nohist"}`, "internal", true},
	}
	for _, tc := range tests {
		c.sendRaw(tc.raw)
		m := c.next()
		if m.typ() != "error" || m.str("code") != tc.code {
			t.Errorf("%s: got %v, want error %s", tc.name, m, tc.code)
			continue
		}
		if m.str("message") == "" {
			t.Errorf("%s: error without message: %v", tc.name, m)
		}
		if tc.ref && m.str("ref") != "r1" {
			t.Errorf("%s: ref %q, want r1", tc.name, m.str("ref"))
		}
		if !tc.ref && m.has("ref") && m.str("ref") != "r1" {
			t.Errorf("%s: ref %q in the reply", tc.name, m.str("ref"))
		}
		if m.has("retry_ms") {
			t.Errorf("%s: retry_ms on a %s error", tc.name, tc.code)
		}
	}
	// The connection survived all of it.
	if m := c.roundTrip(map[string]any{"type": "ping"}); m.typ() != "pong" {
		t.Fatalf("ping after the errors: %v", m)
	}

	// unavailable and internal from the broker on publish.
	c.join("down-1")
	c.join("broken-1")
	if m := c.roundTrip(map[string]any{"type": "send", "room": "down-1", "text": "hi"}); m.str("code") != "unavailable" {
		t.Errorf("publish to a broker that is down: %v, want error unavailable", m)
	}
	if m := c.roundTrip(map[string]any{"type": "send", "room": "broken-1", "text": "hi"}); m.str("code") != "internal" {
		t.Errorf("publish to a broken broker: %v, want error internal", m)
	}
}

// TestRefIsCopied: every reply to a command carries its ref, and replies
// to commands without a ref carry none.
func TestRefIsCopied(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	c := ts.dial(t, "alice")
	cmds := []map[string]any{
		{"type": "join", "room": "lobby"},
		{"type": "send", "room": "lobby", "text": "hi"},
		{"type": "history", "room": "lobby"},
		{"type": "refresh", "token": ts.token(t, "alice")},
		{"type": "ping"},
		{"type": "leave", "room": "lobby"},
	}
	want := []string{"joined", "sent", "history", "refreshed", "pong", "left"}
	for i, cmd := range cmds {
		m := c.roundTrip(cmd)
		if m.typ() != want[i] {
			t.Errorf("%v: %v, want %s", cmd, m, want[i])
		}
	}
	// Unicode and JSON escapes in the ref come back as sent.
	ref := "é\"\\/\u2028<>"
	c.sync()
	c.send(map[string]any{"type": "ping", "ref": ref})
	if m := c.expect("pong"); m.str("ref") != ref {
		t.Errorf("ref %q came back as %q", ref, m.str("ref"))
	}
	c.send(map[string]any{"type": "ping"})
	if m := c.expect("pong"); m.has("ref") {
		t.Errorf("pong to a ping without ref: %v", m)
	}
	c.send(map[string]any{"type": "join", "room": "r2"})
	if m := c.waitFor("joined", nil); m.has("ref") {
		t.Errorf("joined to a join without ref: %v", m)
	}
	c.send(map[string]any{"type": "shout"})
	if m := c.waitFor("error", nil); m.has("ref") {
		t.Errorf("error to a command without ref: %v", m)
	}
}
