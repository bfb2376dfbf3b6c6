package redisbroker

import (
	"testing"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
)

func TestPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	msgs := []protocol.Message{
		{ID: "1-0", From: "ann", Name: "Ann", Text: "hello", CID: "c1"},
		{ID: "1700000000000-12", From: "", Name: "", Text: "", CID: ""},
		{ID: "5-5", From: "a:b", Name: "12:x", Text: "m1:x\x00\n✓", CID: "1:"},
	}
	for _, m := range msgs {
		p, err := decodePayload(encodeMessage(m))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		id, _ := protocol.ParseID(m.ID)
		m.TS = int64(id.MS)
		if p.kind != kindMessage || p.msg != m || p.id != id {
			t.Fatalf("round trip of %+v gave %+v", m, p.msg)
		}
	}
	evs := []hub.Event{
		{Kind: hub.EventTyping, User: "ann", Name: "Ann"},
		{Kind: hub.EventPresence, User: "bob", Name: "B:1", State: protocol.PresenceLeave},
	}
	for _, ev := range evs {
		p, err := decodePayload(encodeEvent(ev))
		if err != nil || p.kind != kindEvent || p.event != ev {
			t.Fatalf("round trip of %+v gave %+v, %v", ev, p.event, err)
		}
	}
	if p, err := decodePayload(encodeProbe("42")); err != nil || p.kind != kindProbe || p.token != "42" {
		t.Fatalf("probe: %+v, %v", p, err)
	}
}

func TestPayloadMalformed(t *testing.T) {
	t.Parallel()
	bad := []string{
		"", "x", "m", "m3:1-0", "m3:1-03:ann", "m3:1-00:0:0:0:0:extra",
		"m3:abc0:0:0:0:", "m-1:x0:0:0:0:", "m99999999999:x", "m3:1-00:0:0:5:ab",
		"e1:x0:0:0:", "e1:p0:0:", "p", "p2:1", "m 3:1-00:0:0:0:", "m12345678901:",
	}
	for _, s := range bad {
		if _, err := decodePayload(s); err == nil {
			t.Errorf("%q decoded without an error", s)
		}
	}
}

// FuzzPayload: decoding never panics, and what decodes re-encodes to
// the same bytes.
func FuzzPayload(f *testing.F) {
	f.Add(encodeMessage(protocol.Message{ID: "1-2", From: "ann", Name: "Ann", Text: "hi", CID: "c"}))
	f.Add(encodeEvent(hub.Event{Kind: hub.EventPresence, User: "u", Name: "n", State: "join"}))
	f.Add(encodeProbe("7"))
	f.Add("m3:1-00:0:0:0:")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decodePayload(s)
		if err != nil {
			return
		}
		var again string
		switch p.kind {
		case kindMessage:
			again = encodeMessage(p.msg)
		case kindEvent:
			again = encodeEvent(p.event)
		case kindProbe:
			again = encodeProbe(p.token)
		}
		if p2, err := decodePayload(again); err != nil || p2 != p {
			t.Fatalf("%q decoded to %+v, re-encoded %q decoded to %+v, %v", s, p, again, p2, err)
		}
	})
}

func TestKeys(t *testing.T) {
	t.Parallel()
	k := roomKeys("chatd:", "lobby")
	for _, key := range []string{k.stream, k.meta, k.presence, k.entries, k.channel, k.cidKey("ann", "c1")} {
		if slotOf(key) != slotOf("{lobby}") {
			t.Errorf("%s is not in the room's slot", key)
		}
	}
	if k.cidKey("an", "nk1") == k.cidKey("ann", "k1") {
		t.Error("cid keys of (an, nk1) and (ann, k1) collide")
	}
	if r, ok := roomOfChannel("chatd:", k.channel); !ok || r != "lobby" {
		t.Errorf("roomOfChannel(%q) = %q, %v", k.channel, r, ok)
	}
	// Known slots from the Redis Cluster specification's CRC16 example.
	if got := slotOf("123456789"); got != 0x31C3%16384 {
		t.Errorf("slot of 123456789 = %d, want %d", got, 0x31C3%16384)
	}
	if slotOf("{user1000}.following") != slotOf("{user1000}.followers") {
		t.Error("hash tags not honoured")
	}
}
