package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/protocol"
)

// TestProtocolDoc keeps docs/protocol.md consistent with the server: every
// JSON example is a valid command (protocol.ParseCommand accepts it) or a
// valid event (checkEvent, the schema every test holds the server to), and
// every event, command, error code and close code is documented.
func TestProtocolDoc(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	commands := map[string]bool{"join": true, "leave": true, "send": true, "history": true, "typing": true, "refresh": true, "ping": true}
	seen := map[string]bool{}
	blocks := strings.Split(string(doc), "```json\n")
	for _, block := range blocks[1:] {
		body, _, ok := strings.Cut(block, "```")
		if !ok {
			t.Fatalf("unterminated json block: %.40s", block)
		}
		dec := json.NewDecoder(strings.NewReader(body))
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("example is not JSON: %v\n%s", err, body)
			}
			var m msg
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("example is not an object: %s", raw)
			}
			typ := m.typ()
			switch {
			case commands[typ]:
				if _, perr := protocol.ParseCommand(raw, protocol.DefaultMaxText); perr != nil {
					t.Errorf("command example %s: %v", raw, perr)
				}
			case eventSchemas[typ] != nil:
				if err := checkEvent(m); err != nil {
					t.Errorf("event example %s: %v", raw, err)
				}
			case m.has("text") && !m.has("type"):
				// The publish API's body.
			default:
				t.Errorf("example of unknown kind: %s", raw)
			}
			seen[typ] = true
		}
	}
	for typ := range commands {
		if !seen[typ] {
			t.Errorf("no example of the command %q", typ)
		}
	}
	for typ := range eventSchemas {
		if !seen[typ] {
			t.Errorf("no example of the event %q", typ)
		}
	}
	for code := range errorCodes {
		if !bytes.Contains(doc, []byte("| `"+code+"` |")) {
			t.Errorf("error code %s is not in the table of errors", code)
		}
	}
	for _, code := range []string{"1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "1013", "4001", "4003"} {
		if !bytes.Contains(doc, []byte("| "+code+" |")) {
			t.Errorf("close code %s is not in the table of close codes", code)
		}
	}
}
