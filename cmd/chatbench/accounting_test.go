package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/protocol"
)

func id(ms, seq uint64) protocol.ID { return protocol.ID{MS: ms, Seq: seq} }

// TestTrackObserve feeds one connection's view of a room a sequence of
// ids and checks what is counted as new, duplicate and out of order.
func TestTrackObserve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name           string
		ids            []protocol.ID
		got, dups, ooo int64
	}{
		{"in order", []protocol.ID{id(1, 0), id(1, 1), id(2, 0), id(10, 5)}, 4, 0, 0},
		{"numeric, not text, order", []protocol.ID{id(9, 0), id(10, 0), id(100, 2), id(100, 10)}, 4, 0, 0},
		{"repeated last", []protocol.ID{id(1, 0), id(1, 1), id(1, 1)}, 2, 1, 0},
		{"repeated older", []protocol.ID{id(1, 0), id(1, 1), id(1, 2), id(1, 0)}, 3, 1, 0},
		{"swapped pair", []protocol.ID{id(1, 0), id(1, 2), id(1, 1), id(1, 3)}, 4, 0, 1},
		{"late one, then it again", []protocol.ID{id(1, 0), id(1, 2), id(1, 1), id(1, 1)}, 3, 1, 1},
		{"a gap is not disorder", []protocol.ID{id(1, 0), id(5, 0)}, 2, 0, 0},
		{"first id ever", []protocol.ID{id(0, 1)}, 1, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &track{}
			for _, v := range tc.ids {
				tr.observe(v)
			}
			if tr.got.Load() != tc.got || tr.dups.Load() != tc.dups || tr.ooo.Load() != tc.ooo {
				t.Errorf("got %d dups %d ooo %d, want %d %d %d", tr.got.Load(), tr.dups.Load(), tr.ooo.Load(), tc.got, tc.dups, tc.ooo)
			}
		})
	}
}

// TestTrackRecentWindow: a repeat within the last recentIDs ids is a
// duplicate; further back it can no longer be told apart and counts as
// out of order (documented in docs/chatbench.md).
func TestTrackRecentWindow(t *testing.T) {
	t.Parallel()
	tr := &track{}
	for s := range uint64(recentIDs + 10) {
		tr.observe(id(1, s))
	}
	tr.observe(id(1, 20)) // within the window
	tr.observe(id(1, 2))  // beyond it
	if tr.dups.Load() != 1 || tr.ooo.Load() != 1 || tr.got.Load() != recentIDs+11 {
		t.Errorf("got %d dups %d ooo %d", tr.got.Load(), tr.dups.Load(), tr.ooo.Load())
	}
}

func TestAccount(t *testing.T) {
	t.Parallel()
	mk := func(room int, got, dups, ooo int64) *track {
		tr := &track{room: room}
		tr.got.Store(got)
		tr.dups.Store(dups)
		tr.ooo.Store(ooo)
		return tr
	}
	cases := []struct {
		name   string
		tracks []*track
		sent   []int64
		want   tally
	}{
		{"nothing", nil, []int64{0}, tally{}},
		{"all delivered", []*track{mk(0, 10, 0, 0), mk(0, 10, 0, 0), mk(1, 5, 0, 0)}, []int64{10, 5},
			tally{Expected: 25, Delivered: 25}},
		{"one member lost two", []*track{mk(0, 10, 0, 0), mk(0, 8, 0, 0), mk(1, 5, 0, 0)}, []int64{10, 5},
			tally{Expected: 25, Delivered: 23, Lost: 2, MembersWithLoss: 1, RoomsWithLoss: 1}},
		// Member A's surplus must not hide member B's loss.
		{"loss and surplus in one room", []*track{mk(0, 11, 0, 0), mk(0, 9, 0, 0)}, []int64{10},
			tally{Expected: 20, Delivered: 20, Lost: 1, Extra: 1, MembersWithLoss: 1, RoomsWithLoss: 1}},
		{"losses in two rooms", []*track{mk(0, 0, 0, 0), mk(1, 4, 0, 0), mk(2, 3, 0, 0)}, []int64{1, 5, 3},
			tally{Expected: 9, Delivered: 7, Lost: 2, MembersWithLoss: 2, RoomsWithLoss: 2}},
		{"duplicates and disorder add up", []*track{mk(0, 10, 2, 1), mk(0, 10, 0, 3)}, []int64{10},
			tally{Expected: 20, Delivered: 20, Duplicates: 2, OutOfOrder: 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := account(tc.tracks, tc.sent); got != tc.want {
				t.Errorf("account = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestSendText: the text appendSend writes is valid JSON in a valid send
// command, padded to size, and carries the send time.
func TestSendText(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 10, 30, 31, 32, 200, 4000} {
		cmd := appendSend(nil, "bench-1", 3, 42, 1234567890123, size)
		var v struct {
			Type, Ref, Room, Text string
		}
		if err := json.Unmarshal(cmd, &v); err != nil {
			t.Fatalf("size %d: %s: %v", size, cmd, err)
		}
		if v.Type != "send" || v.Ref != "42" || v.Room != "bench-1" || !strings.HasPrefix(v.Text, "b:3:42:1234567890123") {
			t.Errorf("size %d: %+v", size, v)
		}
		if size > len("b:3:42:1234567890123")+1 && len(v.Text) != size {
			t.Errorf("size %d: text is %d bytes", size, len(v.Text))
		}
		if _, perr := protocol.ParseCommand(cmd, protocol.DefaultMaxText); perr != nil {
			t.Errorf("size %d: chatd would refuse it: %v", size, perr)
		}
		ns, ok := parseSendTime([]byte(v.Text))
		if !ok || ns != 1234567890123 {
			t.Errorf("size %d: parseSendTime(%q) = %d, %v", size, v.Text, ns, ok)
		}
	}
	for _, bad := range []string{"", "hello", "b:", "b:1:2", "b:1:2:", "b:1:2:x", "b:1:2:12345678901234567890", "c:1:2:3"} {
		if ns, ok := parseSendTime([]byte(bad)); ok {
			t.Errorf("parseSendTime(%q) = %d, true", bad, ns)
		}
	}
}

// TestEventFields reads events as chatd encodes them.
func TestEventFields(t *testing.T) {
	t.Parallel()
	msg := protocol.AppendMessage(nil, &protocol.Message{Room: "bench-0", ID: "1700000000000-7", From: "u\"id\":\"x", Name: "n", Text: "b:0:1:99", TS: 1700000000000, CID: "c1"})
	if eventType(msg) != "message" {
		t.Errorf("type %q", eventType(msg))
	}
	for key, want := range map[string]string{"room": "bench-0", "id": "1700000000000-7", "text": "b:0:1:99", "cid": "c1"} {
		if got, ok := field(msg, key); !ok || string(got) != want {
			t.Errorf("field %s = %q, %v; want %q (event %s)", key, got, ok, want, msg)
		}
	}
	if ts, ok := numField(msg, "ts"); !ok || ts != 1700000000000 {
		t.Errorf("ts %d %v", ts, ok)
	}
	rl := protocol.AppendError(nil, "5", &protocol.Error{Code: protocol.CodeRateLimited, Message: "slow down", RetryMS: 250})
	if eventType(rl) != "error" {
		t.Errorf("type %q", eventType(rl))
	}
	if code, _ := field(rl, "code"); string(code) != "rate_limited" {
		t.Errorf("code %q", code)
	}
	if ms, ok := numField(rl, "retry_ms"); !ok || ms != 250 {
		t.Errorf("retry_ms %d %v", ms, ok)
	}
	// Another server's order of fields still works.
	if typ := eventType([]byte(`{"room":"r","type":"joined"}`)); typ != "joined" {
		t.Errorf("type %q", typ)
	}
	for _, bad := range []string{``, `{`, `[]`, `{"type":`, `{"type":"`, `nonsense`} {
		_ = eventType([]byte(bad))
		if _, ok := field([]byte(bad), "type"); ok && bad != `{"type":"` {
			t.Errorf("field in %q", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	fields := func(utime, stime int) string {
		f := make([]string, 50)
		for i := range f {
			f[i] = "0"
		}
		f[11], f[12] = strconv.Itoa(utime), strconv.Itoa(stime)
		return strings.Join(f, " ")
	}
	cases := []struct {
		stat string
		cpu  float64
		ok   bool
	}{
		{"1234 (chatd) " + fields(150, 50), 2, true},
		{"1234 (a (weird) name) ) " + fields(1, 2), 0.03, true},
		{"1234 (chatd) S 1 2", 0, false},
		{"no parens at all", 0, false},
		{"1234 (chatd) " + strings.Replace(fields(0, 0), "0 0 0 0 0 0 0 0 0 0 0 0", "0 0 0 0 0 0 0 0 0 0 0 x", 1), 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		cpu, err := parseStatCPU([]byte(tc.stat))
		if (err == nil) != tc.ok || (tc.ok && cpu != tc.cpu) {
			t.Errorf("parseStatCPU(%.40q) = %v, %v; want %v ok=%v", tc.stat, cpu, err, tc.cpu, tc.ok)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	t.Parallel()
	p := procSet{pids: []int{os.Getpid()}}
	f := p.measureStart()
	// Use some CPU and memory between the samples.
	buf := make([][]byte, 0, 64)
	for range 64 {
		buf = append(buf, make([]byte, 64<<10))
	}
	f.finish(p)
	_ = buf
	if len(f.Errors) != 0 || len(f.PerPID) != 1 || f.RSSBeforeKiB <= 0 || f.RSSAfterKiB <= 0 || f.CPUSeconds < 0 {
		t.Errorf("%+v", f)
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Error("readProc of a process that cannot exist: no error")
	}
	var none procSet
	if none.measureStart() != nil {
		t.Error("no -pid: figures anyway")
	}
}

func TestFormatting(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 1.5: "1.5", 2.0004: "2", 0.0125: "0.013", 12345.6789: "12345.679"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
	for ns, want := range map[int64]string{0: "-", 1500: "2µs", 2_500_000: "2.50ms", 12_000_000_000: "12s"} {
		if got := fmtDur(ns); got != want {
			t.Errorf("fmtDur(%d) = %q, want %q", ns, got, want)
		}
	}
}

// TestProgressLine checks the progress line's content.
func TestProgressLine(t *testing.T) {
	t.Parallel()
	l := newLive("fanout")
	l.setPhase("publishing")
	l.conns.Add(12)
	l.published.add(0, 100)
	l.deliveries.add(3, 1200)
	l.lat.record(1, 3_000_000)
	l.errors.add(0, 2)
	line := l.line()
	for _, want := range []string{"publishing", "conns     12", "msgs/s", "deliveries/s", "p99 delivery 3.00ms", "errors 2"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q has no %q", line, want)
		}
	}
	c := newLive("churn")
	if line := c.line(); !strings.Contains(line, "cycles/s") || !strings.Contains(line, "p99 cycle -") || strings.Contains(line, "deliveries") {
		t.Errorf("churn progress line %q", line)
	}
	i := newLive("idle")
	i.opened.add(0, 5)
	if line := i.line(); !strings.Contains(line, "joined/s") || !strings.Contains(line, "p99 connect") || strings.Contains(line, "msgs/s") {
		t.Errorf("idle progress line %q", line)
	}
}

// Fuzz tests for the parsers of what the server sends: none may panic,
// and what they find must be in the input.

func FuzzEventFields(f *testing.F) {
	f.Add([]byte(`{"type":"message","room":"r","id":"1-2","from":"u","name":"n","text":"b:0:1:5","ts":5}`))
	f.Add([]byte(`{"type":"error","ref":"1","code":"rate_limited","message":"x","retry_ms":100}`))
	f.Add([]byte(`{"type":"sent","ref":"12","room":"r","id":"1-2","ts":-3}`))
	f.Add([]byte(`{"type":"x\"y","room":"a\\"}`))
	f.Add([]byte(`{"room":"r","type":"joined"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = eventType(data)
		for _, k := range []string{"room", "id", "text", "code", "ref", "type"} {
			if v, ok := field(data, k); ok && !strings.Contains(string(data), string(v)) {
				t.Fatalf("field %s = %q, not in the input", k, v)
			}
		}
		for _, k := range []string{"ts", "retry_ms"} {
			_, _ = numField(data, k)
		}
		if text, ok := field(data, "text"); ok {
			_, _ = parseSendTime(text)
		}
	})
}

func FuzzParseSendTime(f *testing.F) {
	f.Add(int64(0), 0, int64(1), 0)
	f.Add(int64(1234567890), 7, int64(99), 300)
	f.Fuzz(func(t *testing.T, ns int64, pub int, seq int64, size int) {
		if ns < 0 || pub < 0 || seq < 0 || size < 0 || size > 4000 {
			return
		}
		cmd := appendSend(nil, "r", pub, seq, ns, size)
		var v struct{ Text string }
		if err := json.Unmarshal(cmd, &v); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		got, ok := parseSendTime([]byte(v.Text))
		if !ok || got != ns {
			t.Fatalf("parseSendTime(%q) = %d, %v; want %d", v.Text, got, ok, ns)
		}
	})
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (chatd) S 0 1 1 0 -1 4194560 100 0 0 0 12 3 0 0 20 0 8 0 100 0 0"))
	f.Add([]byte("1 (a) b) c"))
	f.Fuzz(func(t *testing.T, stat []byte) {
		if cpu, err := parseStatCPU(stat); err == nil && cpu < 0 {
			t.Fatalf("negative CPU %v", cpu)
		}
	})
}
