package protocol_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chatd/chatd/internal/protocol"
)

// commandSeeds are one of every command and of the usual mistakes.
var commandSeeds = []string{
	`{"type":"join","room":"lobby","ref":"1"}`,
	`{"type":"join","room":"lobby","since":"1700000000000-3"}`,
	`{"type":"leave","room":"lobby"}`,
	`{"type":"send","room":"lobby","text":"hi","cid":"c1"}`,
	`{"type":"history","room":"lobby","before":"5-0","limit":10}`,
	`{"type":"typing","room":"lobby"}`,
	`{"type":"refresh","token":"a.b.c"}`,
	`{"type":"ping","ref":"p"}`,
	`{"type":"shout"}`,
	`{"type":"send","room":"a b","text":""}`,
	`{"type":"history","room":"x","limit":1e400}`,
	`{"type":"join","room":"x","since":"99999999999999999999-0"}`,
	`{"ref":"\ud800","type":"ping"}`,
	`[{"type":"ping"}]`,
	`{"type":"ping"`,
	`{"ty\u0070e":"ping","x":{"type":"join","a":[1,{"b":"}"}]},"ref":"\"]}"}`,
	` { "type" : "history" , "room" : "a" , "limit" : 7 } `,
	`{"type":"send","room":"r","text":"caf\u00e9 \ud83d\ude00","text":"last"}`,
	"{\"type\":\"send\",\"room\":\"r\",\"text\":\"\xff\"}",
	"\xff",
	``,
}

var errorCodes = map[string]bool{
	protocol.CodeBadRequest: true, protocol.CodeUnknownType: true, protocol.CodeTooLarge: true,
}

// FuzzParseCommand: any input is either a command that satisfies every
// rule of PROTOCOL.md §2–§3, or an error with a listed code; never a panic.
func FuzzParseCommand(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxText = 64
		cmd, err := protocol.ParseCommand(data, maxText)
		if len(cmd.Ref) > protocol.MaxRefLen {
			t.Fatalf("ref of %d bytes", len(cmd.Ref))
		}
		if err != nil {
			if !errorCodes[err.Code] || err.Message == "" {
				t.Fatalf("error %+v", err)
			}
			return
		}
		needRoom := true
		switch cmd.Type {
		case protocol.TypeSend:
			if cmd.Text == "" || len(cmd.Text) > maxText || !utf8.ValidString(cmd.Text) || len(cmd.CID) > protocol.MaxCIDLen {
				t.Fatalf("send accepted with text %q cid %q", cmd.Text, cmd.CID)
			}
		case protocol.TypeHistory:
			if cmd.Limit < 1 || cmd.Limit > protocol.MaxHistoryLimit {
				t.Fatalf("history limit %d", cmd.Limit)
			}
			if _, ok := protocol.ParseID(cmd.Before); cmd.Before != "" && !ok {
				t.Fatalf("before %q", cmd.Before)
			}
		case protocol.TypeJoin:
			if _, ok := protocol.ParseID(cmd.Since); cmd.Since != "" && !ok {
				t.Fatalf("since %q", cmd.Since)
			}
		case protocol.TypeLeave, protocol.TypeTyping:
		case protocol.TypeRefresh:
			needRoom = false
			if cmd.Token == "" {
				t.Fatal("refresh without token")
			}
		case protocol.TypePing:
			needRoom = false
		default:
			t.Fatalf("accepted type %q", cmd.Type)
		}
		if needRoom && !protocol.ValidRoom(cmd.Room) {
			t.Fatalf("%s accepted with room %q", cmd.Type, cmd.Room)
		}
		// What was accepted was a JSON object with an exact "type".
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			t.Fatalf("accepted %q, which is not a JSON object", data)
		}
		// Every field reads as encoding/json reads it (the parser scans the
		// object itself).
		for name, got := range map[string]string{"type": cmd.Type, "ref": cmd.Ref, "room": cmd.Room, "text": cmd.Text, "cid": cmd.CID, "since": cmd.Since, "before": cmd.Before, "token": cmd.Token} {
			raw, ok := obj[name]
			if got == "" && (!ok || string(raw) == "null") {
				continue
			}
			var want string
			if err := json.Unmarshal(raw, &want); err != nil && got != "" {
				t.Fatalf("%q: %s is %q, encoding/json: %v", data, name, got, err)
			}
			if want != got && (got != "" || cmd.Type == protocol.TypeSend && name == "text") {
				t.Fatalf("%q: %s is %q, encoding/json reads %q", data, name, got, want)
			}
		}
	})
}

// FuzzAppendString: the output is always valid JSON that decodes to the
// input, with invalid UTF-8 replaced by U+FFFD.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\x00", "é🙂\u2028", "\xff\xe2\x82", "</script>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := protocol.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, out, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); utf8.ValidString(s) && back != s || !utf8.ValidString(s) && utf8.RuneCountInString(back) < utf8.RuneCountInString(want) {
			t.Fatalf("AppendString(%q) decodes to %q", s, back)
		}
		if strings.ContainsAny(string(out), "\u2028\u2029") {
			t.Fatalf("AppendString(%q) = %s holds a raw line separator", s, out)
		}
	})
}

// FuzzParseID: an accepted id prints back to an id that parses to the
// same value and compares equal to it.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0-0", "1700000000000-5", "007-1", "18446744073709551615-1", "1-", "-1", "a-b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := protocol.ParseID(s)
		if !ok {
			return
		}
		again, ok := protocol.ParseID(id.String())
		if !ok || again != id || again.Compare(id) != 0 {
			t.Fatalf("ParseID(%q) = %v, which prints as %q", s, id, id.String())
		}
		if id.Next().Compare(id) != 1 && !(id.MS == 1<<64-1 && id.Seq == 1<<64-1) {
			t.Fatalf("%v.Next() is not after it", id)
		}
	})
}
