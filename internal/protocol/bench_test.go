package protocol_test

import (
	"strconv"
	"testing"

	"github.com/chatd/chatd/internal/protocol"
)

func BenchmarkParseCommandSend(b *testing.B) {
	data := []byte(`{"type":"send","room":"lobby","text":"hello, this is a fairly ordinary chat message","cid":"c-123","ref":"42"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := protocol.ParseCommand(data, protocol.DefaultMaxText); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCommandPing(b *testing.B) {
	data := []byte(`{"type":"ping","ref":"42"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.ParseCommand(data, protocol.DefaultMaxText); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendMessage is the encoding done once per room delivery.
func BenchmarkAppendMessage(b *testing.B) {
	m := protocol.Message{Room: "lobby", ID: "1700000000000-12", From: "alice", Name: "Alice", Text: "hello, this is a fairly ordinary chat message with an émoji 🙂", TS: 1700000000000, CID: "c-123"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendMessage(buf[:0], &m)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAppendJoined is a joined with 50 messages of history.
func BenchmarkAppendJoined(b *testing.B) {
	var msgs []protocol.Message
	for i := range 50 {
		msgs = append(msgs, protocol.Message{Room: "lobby", ID: "1700000000000-" + strconv.Itoa(i), From: "alice", Name: "Alice", Text: "message number " + strconv.Itoa(i), TS: 1700000000000})
	}
	members := []protocol.Member{{User: "alice", Name: "Alice"}, {User: "bob", Name: "Bob"}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendJoined(buf[:0], "r", "lobby", members, msgs, true)
	}
	b.SetBytes(int64(len(buf)))
}
