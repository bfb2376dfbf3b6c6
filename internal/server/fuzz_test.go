package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/ws"
)

// serverCloseCodes are the close codes of PROTOCOL.md §6, less 1011,
// which only a bug in chatd causes (a panic while serving a command).
var serverCloseCodes = map[ws.StatusCode]bool{
	1000: true, 1001: true, 1002: true, 1003: true, 1007: true, 1008: true,
	1009: true, 1013: true, 4001: true, 4003: true,
}

// FuzzSession feeds arbitrary commands to a live session: each input is
// split at newlines into up to 8 text messages sent on a fresh
// connection, followed by a ping. Whatever they are, every reply must be
// a valid event of PROTOCOL.md §4 (the client checks each one), the
// session must answer the ping or close with a listed code, and the
// server must never panic.
func FuzzSession(f *testing.F) {
	cfg := fastConfig()
	cfg.UpgradeRate, cfg.UpgradeBurst = 1e9, 1<<20
	cfg.MaxRooms = 8
	cfg.ReadLimit = 4096
	cfg.MaxText = 1024
	ts := startServer(f, cfg, serverOpts{quiet: true})
	token := ts.token(f, "fuzzer")
	other := ts.token(f, "mallory")
	narrow := ts.sign(f, auth.TokenSpec{Subject: "fuzzer", Rooms: []string{"a*"}})
	seeds := []string{
		`{"type":"ping","ref":"1"}`,
		`{"type":"join","room":"lobby","ref":"j"}` + "\n" + `{"type":"send","room":"lobby","text":"hi","cid":"c"}` + "\n" + `{"type":"send","room":"lobby","text":"hi","cid":"c"}`,
		`{"type":"join","room":"lobby"}` + "\n" + `{"type":"typing","room":"lobby"}` + "\n" + `{"type":"leave","room":"lobby"}`,
		`{"type":"join","room":"lobby","since":"0-0"}` + "\n" + `{"type":"history","room":"lobby","before":"99999999999999-0","limit":100}`,
		`{"type":"refresh","token":"` + token + `"}`,
		`{"type":"join","room":"b"}` + "\n" + `{"type":"refresh","token":"` + narrow + `"}`,
		`{"type":"refresh","token":"` + other + `"}`,
		`{"type":"send","room":"nowhere","text":"x"}`,
		`{"type":"history","room":"x","limit":0}`,
		`{"type":"shout","ref":"` + strings.Repeat("r", 64) + `"}`,
		`{"type":"send","room":"lobby","text":"` + strings.Repeat("é", 600) + `"}`,
		`[1,2,3]`,
		`{"type":"join"` + "\n" + `null` + "\n" + `"x"`,
		"\xff\xfe",
		``,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		cmds := strings.SplitN(input, "\n", 9)
		if len(cmds) > 8 {
			cmds = cmds[:8]
		}
		c := ts.dialWith(t, "fuzzer", dialOpts{header: http.Header{"Authorization": {"Bearer " + token}}})
		c.expect("welcome")
		for _, cmd := range cmds {
			if err := c.conn.WriteMessage(ws.Text, []byte(cmd)); err != nil {
				break // closed by the server already; checked below
			}
		}
		_ = c.conn.WriteMessage(ws.Text, []byte(`{"type":"ping","ref":"fuzz-end"}`))
		deadline := time.Now().Add(waitTimeout)
		for {
			m, ok := c.nextWithin(time.Until(deadline))
			if !ok {
				select {
				case <-c.done:
				default:
					t.Fatalf("no pong and no close within %v", waitTimeout)
				}
				code := ws.CloseStatus(c.err)
				if !serverCloseCodes[code] {
					t.Fatalf("connection ended with %v (%v)", code, c.err)
				}
				return
			}
			if m.typ() == "pong" && m.str("ref") == "fuzz-end" {
				return
			}
			if m.typ() == "error" && m.str("code") == "internal" {
				t.Fatalf("internal error: %v", m)
			}
		}
	})
}

// TestFuzzSessionEvents checks the fuzz harness itself: a schema
// violation would be reported.
func TestFuzzSessionEvents(t *testing.T) {
	t.Parallel()
	bad := []string{
		`{"type":"pong","extra":1}`,
		`{"type":"message","room":"r","id":"x","from":"a","name":"A","text":"t","ts":1}`,
		`{"type":"error","code":"teapot","message":"m"}`,
		`{"type":"error","code":"rate_limited","message":"m"}`,
		`{"type":"error","code":"bad_request","message":"m","retry_ms":5}`,
		`{"type":"joined","room":"r","members":[{"user":"a"}],"history":[],"recovered":false}`,
		`{"type":"presence","room":"r","user":"a","name":"A","state":"away"}`,
		`{"type":"welcome","user":"a","name":"A","node":"n","conn":"c","heartbeat":"25"}`,
		`{"type":"sent","ref":"","room":"r","id":"1-1","ts":1}`,
		`{"type":"history","room":"r","messages":[{"type":"typing","room":"r","user":"a","name":"A"}],"more":false}`,
		`{"type":"nope"}`,
	}
	for _, s := range bad {
		var m msg
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		if checkEvent(m) == nil {
			t.Errorf("checkEvent accepts %s", s)
		}
	}
	good := `{"type":"joined","ref":"x","room":"r","members":[{"user":"a","name":"A"}],"history":[{"type":"message","room":"r","id":"1-1","from":"a","name":"A","text":"t","ts":1,"cid":"c"}],"recovered":true}`
	var m msg
	_ = json.Unmarshal([]byte(good), &m)
	if err := checkEvent(m); err != nil {
		t.Errorf("checkEvent refuses %s: %v", good, err)
	}
}
