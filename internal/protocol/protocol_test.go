package protocol_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chatd/chatd/internal/protocol"
)

func TestValidRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		room string
		ok   bool
	}{
		{"lobby", true},
		{"a", true},
		{"A-Z_0.9:x", true},
		{strings.Repeat("r", 64), true},
		{strings.Repeat("r", 65), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"café", false},
		{"room\x00", false},
		{"*", false},
		{"#general", false},
	}
	for _, tc := range tests {
		if got := protocol.ValidRoom(tc.room); got != tc.ok {
			t.Errorf("ValidRoom(%q) = %v, want %v", tc.room, got, tc.ok)
		}
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		id protocol.ID
		ok bool
	}{
		{"0-0", protocol.ID{}, true},
		{"1700000000000-0", protocol.ID{MS: 1700000000000}, true},
		{"1700000000000-42", protocol.ID{MS: 1700000000000, Seq: 42}, true},
		{"18446744073709551615-18446744073709551615", protocol.ID{MS: 1<<64 - 1, Seq: 1<<64 - 1}, true},
		{"18446744073709551616-0", protocol.ID{}, false}, // overflows uint64
		{"1700000000000", protocol.ID{}, false},
		{"1700000000000-", protocol.ID{}, false},
		{"-1", protocol.ID{}, false},
		{"-1-0", protocol.ID{}, false},
		{"1-2-3", protocol.ID{}, false},
		{"1-+2", protocol.ID{}, false},
		{" 1-2", protocol.ID{}, false},
		{"1-2 ", protocol.ID{}, false},
		{"0x1-2", protocol.ID{}, false},
		{"1.5-2", protocol.ID{}, false},
		{"١-٢", protocol.ID{}, false}, // Arabic-Indic digits are not digits here
		{"", protocol.ID{}, false},
		{"$", protocol.ID{}, false},
		{"*", protocol.ID{}, false},
	}
	for _, tc := range tests {
		id, ok := protocol.ParseID(tc.in)
		if ok != tc.ok || id != tc.id {
			t.Errorf("ParseID(%q) = %v, %v; want %v, %v", tc.in, id, ok, tc.id, tc.ok)
		}
		if ok && strings.TrimLeft(tc.in, "0") == strings.TrimLeft(id.String(), "0") && id.String() != tc.in {
			t.Errorf("ParseID(%q).String() = %q", tc.in, id.String())
		}
	}
}

func TestIDCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0},
		{"1-0", "1-1", -1},
		{"1-1", "1-0", 1},
		{"9-5", "10-0", -1}, // numerically, not as strings
		{"9-10", "9-9", 1},  // the sequence too
		{"10-0", "9-99", 1}, // the milliseconds first
		{"007-1", "7-1", 0}, // leading zeros do not matter
		{"0-0", "0-1", -1},
		{"18446744073709551615-0", "18446744073709551614-18446744073709551615", 1},
	}
	for _, tc := range tests {
		a, ok1 := protocol.ParseID(tc.a)
		b, ok2 := protocol.ParseID(tc.b)
		if !ok1 || !ok2 {
			t.Fatalf("ParseID(%q, %q) failed", tc.a, tc.b)
		}
		if got := a.Compare(b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := b.Compare(a); got != -tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestIDNext(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want protocol.ID }{
		{protocol.ID{}, protocol.ID{Seq: 1}},
		{protocol.ID{MS: 5, Seq: 7}, protocol.ID{MS: 5, Seq: 8}},
		{protocol.ID{MS: 5, Seq: 1<<64 - 1}, protocol.ID{MS: 6}},
	}
	for _, tc := range tests {
		if got := tc.in.Next(); got != tc.want || got.Compare(tc.in) != 1 {
			t.Errorf("%v.Next() = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !(protocol.ID{}).IsZero() || (protocol.ID{Seq: 1}).IsZero() {
		t.Error("IsZero is wrong")
	}
	if s := (protocol.ID{MS: 1700000000000, Seq: 3}).String(); s != "1700000000000-3" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseCommand(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 65)
	max64 := strings.Repeat("x", 64)
	tests := []struct {
		name string
		in   string
		want protocol.Command
		code string // "" when valid
	}{
		{"join", `{"type":"join","room":"lobby","ref":"1"}`, protocol.Command{Type: "join", Room: "lobby", Ref: "1"}, ""},
		{"join since", `{"type":"join","room":"lobby","since":"17-3"}`, protocol.Command{Type: "join", Room: "lobby", Since: "17-3"}, ""},
		{"join since null", `{"type":"join","room":"lobby","since":null}`, protocol.Command{Type: "join", Room: "lobby"}, ""},
		{"leave", `{"type":"leave","room":"lobby"}`, protocol.Command{Type: "leave", Room: "lobby"}, ""},
		{"send", `{"type":"send","room":"lobby","text":"hi \u00e9","cid":"c1"}`, protocol.Command{Type: "send", Room: "lobby", Text: "hi é", CID: "c1"}, ""},
		{"send cid 64", `{"type":"send","room":"lobby","text":"hi","cid":"` + max64 + `"}`, protocol.Command{Type: "send", Room: "lobby", Text: "hi", CID: max64}, ""},
		{"send text at max", `{"type":"send","room":"r","text":"` + strings.Repeat("é", 5) + `"}`, protocol.Command{Type: "send", Room: "r", Text: strings.Repeat("é", 5)}, ""},
		{"history", `{"type":"history","room":"lobby"}`, protocol.Command{Type: "history", Room: "lobby", Limit: 50}, ""},
		{"history paged", `{"type":"history","room":"lobby","before":"5-0","limit":100}`, protocol.Command{Type: "history", Room: "lobby", Before: "5-0", Limit: 100}, ""},
		{"history limit 1", `{"type":"history","room":"lobby","limit":1}`, protocol.Command{Type: "history", Room: "lobby", Limit: 1}, ""},
		{"history limit 1e1", `{"type":"history","room":"lobby","limit":1e1}`, protocol.Command{}, "bad_request"},
		{"history limit null", `{"type":"history","room":"lobby","limit":null}`, protocol.Command{Type: "history", Room: "lobby", Limit: 50}, ""},
		{"typing", `{"type":"typing","room":"lobby"}`, protocol.Command{Type: "typing", Room: "lobby"}, ""},
		{"refresh", `{"type":"refresh","token":"a.b.c"}`, protocol.Command{Type: "refresh", Token: "a.b.c"}, ""},
		{"ping", `{"type":"ping","ref":"` + max64 + `"}`, protocol.Command{Type: "ping", Ref: max64}, ""},
		{"whitespace around", " \n{\"type\":\"ping\"}\t", protocol.Command{Type: "ping"}, ""},
		{"unknown fields ignored", `{"type":"ping","extra":{"a":[1,2]}}`, protocol.Command{Type: "ping"}, ""},
		{"fields of other commands ignored", `{"type":"ping","room":"a b","limit":"x"}`, protocol.Command{Type: "ping"}, ""},

		{"empty", ``, protocol.Command{}, "bad_request"},
		{"array", `[]`, protocol.Command{}, "bad_request"},
		{"null", `null`, protocol.Command{}, "bad_request"},
		{"truncated", `{"type":"ping"`, protocol.Command{}, "bad_request"},
		{"trailing garbage", `{"type":"ping"} x`, protocol.Command{}, "bad_request"},
		{"two objects", `{"type":"ping"}{"type":"ping"}`, protocol.Command{}, "bad_request"},
		{"no type", `{"ref":"r"}`, protocol.Command{Ref: "r"}, "bad_request"},
		{"type null", `{"type":null,"ref":"r"}`, protocol.Command{Ref: "r"}, "bad_request"},
		{"type number", `{"type":1,"ref":"r"}`, protocol.Command{Ref: "r"}, "bad_request"},
		{"unknown type", `{"type":"shout","ref":"r"}`, protocol.Command{Type: "shout", Ref: "r"}, "unknown_type"},
		{"escaped field name", `{"ty\u0070e":"join","r\u006fom":"lob\u0062y"}`, protocol.Command{Type: "join", Room: "lobby"}, ""},
		{"nested values skipped", `{"x":{"type":"shout","y":["}",{"z":"\"{"}]},"type":"ping","ref":"\"}"}`, protocol.Command{Type: "ping", Ref: `"}`}, ""},
		{"spaces everywhere", " { \"type\" :\t\"history\" ,\n\"room\" : \"a\" , \"limit\" : 7 } ", protocol.Command{Type: "history", Room: "a", Limit: 7}, ""},
		{"escapes in text", `{"type":"send","room":"r","text":"caf\u00e9\n\ud83d\ude00"}`, protocol.Command{Type: "send", Room: "r", Text: "café\n😀"}, ""},
		{"invalid UTF-8 in text", "{\"type\":\"send\",\"room\":\"r\",\"text\":\"a\xffb\"}", protocol.Command{Type: "send", Room: "r", Text: "a\ufffdb"}, ""},
		{"limit negative zero", `{"type":"history","room":"a","limit":-0}`, protocol.Command{Type: "history", Room: "a"}, "bad_request"},
		{"field name case", `{"Type":"ping","ref":"r"}`, protocol.Command{Ref: "r"}, "bad_request"},
		{"field name case, room", `{"type":"join","Room":"lobby"}`, protocol.Command{Type: "join"}, "bad_request"},
		{"repeated field, last wins", `{"type":"shout","type":"ping"}`, protocol.Command{Type: "ping"}, ""},
		{"type case", `{"type":"Join","ref":"r","room":"x"}`, protocol.Command{Type: "Join", Ref: "r"}, "unknown_type"},
		{"ref too long", `{"type":"ping","ref":"` + long + `"}`, protocol.Command{}, "bad_request"},
		{"ref number", `{"type":"ping","ref":1}`, protocol.Command{}, "bad_request"},
		{"join no room", `{"type":"join","ref":"r"}`, protocol.Command{Type: "join", Ref: "r"}, "bad_request"},
		{"join bad room", `{"type":"join","room":"a b"}`, protocol.Command{Type: "join"}, "bad_request"},
		{"join bad since", `{"type":"join","room":"a","since":"now"}`, protocol.Command{Type: "join", Room: "a"}, "bad_request"},
		{"send no text", `{"type":"send","room":"a"}`, protocol.Command{Type: "send", Room: "a"}, "bad_request"},
		{"send text too long", `{"type":"send","room":"a","text":"` + strings.Repeat("é", 6) + `"}`, protocol.Command{Type: "send", Room: "a"}, "too_large"},
		{"send lone surrogate", `{"type":"send","room":"a","text":"\ud800"}`, protocol.Command{Type: "send", Room: "a", Text: "\ufffd"}, ""},
		{"send cid too long", `{"type":"send","room":"a","text":"x","cid":"` + long + `"}`, protocol.Command{Type: "send", Room: "a", Text: "x"}, "bad_request"},
		{"history limit 0", `{"type":"history","room":"a","limit":0}`, protocol.Command{Type: "history", Room: "a"}, "bad_request"},
		{"history limit 101", `{"type":"history","room":"a","limit":101}`, protocol.Command{Type: "history", Room: "a"}, "bad_request"},
		{"history bad before", `{"type":"history","room":"a","before":"x"}`, protocol.Command{Type: "history", Room: "a"}, "bad_request"},
		{"refresh empty token", `{"type":"refresh","token":""}`, protocol.Command{Type: "refresh"}, "bad_request"},
	}
	for _, tc := range tests {
		cmd, err := protocol.ParseCommand([]byte(tc.in), 10)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%s: error %v", tc.name, err)
		case tc.code != "" && err == nil:
			t.Errorf("%s: parsed as %+v, want error %s", tc.name, cmd, tc.code)
		case err != nil && err.Code != tc.code:
			t.Errorf("%s: error %v, want %s", tc.name, err, tc.code)
		case err != nil && err.Message == "":
			t.Errorf("%s: error without message", tc.name)
		}
		if err == nil && !reflect.DeepEqual(cmd, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, cmd, tc.want)
		}
		if err != nil && cmd.Ref != tc.want.Ref {
			t.Errorf("%s: ref %q on the error, want %q", tc.name, cmd.Ref, tc.want.Ref)
		}
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`quote " backslash \ slash /`, `"quote \" backslash \\ slash /"`},
		{"\n\r\t\x00\x1f\x7f", `"\n\r\t\u0000\u001f` + "\x7f" + `"`},
		{"<b>&</b>", `"<b>&</b>"`},
		{"é🙂", `"é🙂"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"bad \xff byte", `"bad \ufffd byte"`},
		{"\xe2\x82", `"\ufffd\ufffd"`},
	}
	for _, tc := range tests {
		got := string(protocol.AppendString([]byte("x"), tc.in))
		if got != "x"+tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got[1:], tc.want)
		}
		var back string
		if err := json.Unmarshal([]byte(got[1:]), &back); err != nil {
			t.Errorf("AppendString(%q) = %s is not JSON: %v", tc.in, got[1:], err)
		}
		if utf8.ValidString(tc.in) && back != tc.in {
			t.Errorf("AppendString(%q) decodes to %q", tc.in, back)
		}
	}
}

// TestEncoders checks every server event of PROTOCOL.md §4 byte for byte:
// field names, optional fields left out, and the order of the fields.
func TestEncoders(t *testing.T) {
	t.Parallel()
	m := protocol.Message{Room: "lobby", ID: "17-1", From: "alice", Name: "Alice", Text: "hi \"you\"", TS: 17, CID: "c1"}
	plain := protocol.Message{Room: "lobby", ID: "17-2", From: "bob", Name: "Bob", Text: "yo", TS: 17}
	members := []protocol.Member{{User: "alice", Name: "Alice"}, {User: "bob", Name: "Bob"}}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"welcome", protocol.AppendWelcome(nil, "alice", "Alice", "node-1", "node-1-a", 25),
			`{"type":"welcome","user":"alice","name":"Alice","node":"node-1","conn":"node-1-a","heartbeat":25}`},
		{"joined", protocol.AppendJoined(nil, "r1", "lobby", members, []protocol.Message{m, plain}, true),
			`{"type":"joined","ref":"r1","room":"lobby","members":[{"user":"alice","name":"Alice"},{"user":"bob","name":"Bob"}],"history":[` +
				`{"type":"message","room":"lobby","id":"17-1","from":"alice","name":"Alice","text":"hi \"you\"","ts":17,"cid":"c1"},` +
				`{"type":"message","room":"lobby","id":"17-2","from":"bob","name":"Bob","text":"yo","ts":17}],"recovered":true}`},
		{"joined empty, no ref", protocol.AppendJoined(nil, "", "lobby", nil, nil, false),
			`{"type":"joined","room":"lobby","members":[],"history":[],"recovered":false}`},
		{"left", protocol.AppendLeft(nil, "r2", "lobby"), `{"type":"left","ref":"r2","room":"lobby"}`},
		{"left without ref", protocol.AppendLeft(nil, "", "lobby"), `{"type":"left","room":"lobby"}`},
		{"sent", protocol.AppendSent(nil, "r3", "lobby", "17-1", 17), `{"type":"sent","ref":"r3","room":"lobby","id":"17-1","ts":17}`},
		{"message", protocol.AppendMessage(nil, &m), `{"type":"message","room":"lobby","id":"17-1","from":"alice","name":"Alice","text":"hi \"you\"","ts":17,"cid":"c1"}`},
		{"message without cid", protocol.AppendMessage(nil, &plain), `{"type":"message","room":"lobby","id":"17-2","from":"bob","name":"Bob","text":"yo","ts":17}`},
		{"history", protocol.AppendHistory(nil, "r4", "lobby", []protocol.Message{plain}, true),
			`{"type":"history","ref":"r4","room":"lobby","messages":[{"type":"message","room":"lobby","id":"17-2","from":"bob","name":"Bob","text":"yo","ts":17}],"more":true}`},
		{"history empty", protocol.AppendHistory(nil, "", "lobby", nil, false), `{"type":"history","room":"lobby","messages":[],"more":false}`},
		{"presence", protocol.AppendPresence(nil, "lobby", "bob", "Bob", protocol.PresenceLeave), `{"type":"presence","room":"lobby","user":"bob","name":"Bob","state":"leave"}`},
		{"typing", protocol.AppendTyping(nil, "lobby", "bob", "Bob"), `{"type":"typing","room":"lobby","user":"bob","name":"Bob"}`},
		{"refreshed", protocol.AppendRefreshed(nil, "r5", 1700000000), `{"type":"refreshed","ref":"r5","exp":1700000000}`},
		{"pong", protocol.AppendPong(nil, "r6"), `{"type":"pong","ref":"r6"}`},
		{"pong without ref", protocol.AppendPong(nil, ""), `{"type":"pong"}`},
		{"draining", protocol.AppendDraining(nil, 1234), `{"type":"draining","reconnect_ms":1234}`},
		{"error", protocol.AppendError(nil, "r7", protocol.Errorf(protocol.CodeNotJoined, "not in this room")),
			`{"type":"error","ref":"r7","code":"not_joined","message":"not in this room"}`},
		{"error rate_limited", protocol.AppendError(nil, "", &protocol.Error{Code: protocol.CodeRateLimited, Message: "slow down", RetryMS: 250}),
			`{"type":"error","code":"rate_limited","message":"slow down","retry_ms":250}`},
	}
	for _, tc := range tests {
		if string(tc.got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
		if !json.Valid(tc.got) {
			t.Errorf("%s: not valid JSON", tc.name)
		}
	}
	// Appending keeps what dst held.
	if got := string(protocol.AppendPong([]byte("x"), "")); got != `x{"type":"pong"}` {
		t.Errorf("AppendPong on a prefix: %s", got)
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	if got := protocol.Errorf(protocol.CodeBadRequest, "missing room").Error(); got != "bad_request: missing room" {
		t.Errorf("Error() = %q", got)
	}
}
