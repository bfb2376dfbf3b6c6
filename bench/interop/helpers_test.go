package interop

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// readLimit is set on every side: the largest message is 16 MiB.
const readLimit = 64 << 20

// sizes are the message sizes every pair exchanges, as text and as binary:
// the edges of the 7-bit, 16-bit and 64-bit length encodings, and large
// messages that span many reads (and many deflate blocks).
var sizes = []int{0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20}

type payloadKey struct {
	n    int
	text bool
}

var (
	payloadMu    sync.Mutex
	payloadCache = map[payloadKey][]byte{}
)

// payload returns a deterministic message of n bytes. Text is valid UTF-8
// with 1- to 4-byte characters; binary mixes random bytes, runs and
// repeats of earlier data, so that deflate finds back-references (also
// across messages, for context takeover) but cannot shrink it to nothing.
//
// Messages above 1 MiB are a 24 KiB block of that content repeated, each
// copy followed by its number: deflate codes them mostly as matches, which
// keeps the 16 MiB messages affordable under -race (where compress/flate
// runs about 20 times slower) while their bytes still differ from copy to
// copy. The slices are shared and must not be modified.
func payload(n int, text bool) []byte {
	payloadMu.Lock()
	defer payloadMu.Unlock()
	return payloadLocked(n, text)
}

func payloadLocked(n int, text bool) []byte {
	k := payloadKey{n, text}
	if b, ok := payloadCache[k]; ok {
		return b
	}
	var b []byte
	if n > 1<<20 {
		block := payloadLocked(24<<10, text)
		b = make([]byte, 0, n)
		for i := 0; ; i++ {
			mark := fmt.Sprintf("<%08d>", i)
			if len(b)+len(block)+len(mark) > n {
				break
			}
			b = append(append(b, block...), mark...)
		}
		b = append(b, generate(n-len(b), text)...)
	} else {
		b = generate(n, text)
	}
	payloadCache[k] = b
	return b
}

func generate(n int, text bool) []byte {
	var seed [32]byte
	copy(seed[:], fmt.Sprintf("chatd-interop-%d-%v", n, text))
	rng := rand.New(rand.NewChaCha8(seed))
	b := make([]byte, 0, n)
	if text {
		words := []string{"hello ", "chat ", "room ", "héllo ", "naïve ", "€uro ", "日本語 ", "Ωμέγα ", "𝄞 ", "🙂 ", "{\"t\":\"msg\"} "}
		for len(b) < n {
			w := words[rng.IntN(len(words))]
			if rng.IntN(4) == 0 {
				w = string(rune('a' + rng.IntN(26)))
			}
			if len(b)+len(w) > n {
				w = strings.Repeat("x", n-len(b))
			}
			b = append(b, w...)
		}
		return b
	}
	chunk := make([]byte, 256)
	for len(b) < n {
		switch m := min(n-len(b), len(chunk)); {
		case rng.IntN(3) == 0 && len(b) >= 1024:
			off := rng.IntN(len(b) - m)
			b = append(b, b[off:off+m]...)
		case rng.IntN(4) == 0:
			b = append(b, bytes.Repeat([]byte{byte(rng.Uint32())}, m)...)
		default:
			for i := range chunk[:m] {
				chunk[i] = byte(rng.Uint32())
			}
			b = append(b, chunk[:m]...)
		}
	}
	return b
}

// sameBytes fails the test with the first differing offset.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: got %d bytes, want %d; first difference at offset %d", what, len(got), len(want), i)
}

// msg is one received message, or the error that ended reading.
type msg struct {
	text bool
	data []byte
	err  error
}

// receive waits for the next message from a reader goroutine.
func receive(t *testing.T, ch <-chan msg, timeout time.Duration) msg {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("reader already ended")
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
	}
	panic("unreachable")
}

// exchange sends every size, as text and binary, through send and checks
// each echo that arrives on recv byte for byte.
func exchange(t *testing.T, send func(text bool, p []byte) error, recv <-chan msg) {
	t.Helper()
	for _, n := range sizes {
		for _, text := range []bool{true, false} {
			p := payload(n, text)
			what := fmt.Sprintf("%d-byte %s message", n, kind(text))
			if err := send(text, p); err != nil {
				t.Fatalf("send %s: %v", what, err)
			}
			m := receive(t, recv, 60*time.Second)
			if m.err != nil {
				t.Fatalf("echo of %s: %v", what, m.err)
			}
			if m.text != text {
				t.Fatalf("echo of %s came back as %s", what, kind(m.text))
			}
			sameBytes(t, "echo of "+what, m.data, p)
		}
	}
}

func kind(text bool) string {
	if text {
		return "text"
	}
	return "binary"
}

// event is what a server saw at the end of a connection.
type event struct {
	code   int
	reason string
	remote bool  // the peer started the close
	err    error // unexpected error, if any
	note   string
}

// serverLog collects what a test server observed.
type serverLog struct {
	mu     sync.Mutex
	pings  []string
	events chan event
}

func newServerLog() *serverLog { return &serverLog{events: make(chan event, 16)} }

func (l *serverLog) ping(p string) {
	l.mu.Lock()
	l.pings = append(l.pings, p)
	l.mu.Unlock()
}

func (l *serverLog) pingList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.pings...)
}

func (l *serverLog) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-l.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the server reported no end of connection within 10s")
	}
	panic("unreachable")
}

func countEmpty(list []string) int {
	n := 0
	for _, s := range list {
		if s == "" {
			n++
		}
	}
	return n
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// cmdClose asks a test server to start the closing handshake.
const cmdClose = "cmd:close"

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

// TestPayloads checks the generator itself: exact sizes, valid UTF-8 text.
func TestPayloads(t *testing.T) {
	for _, n := range sizes {
		for _, text := range []bool{true, false} {
			p := payload(n, text)
			if len(p) != n {
				t.Fatalf("%s payload of %d has %d bytes", kind(text), n, len(p))
			}
			if text && !utf8.Valid(p) {
				t.Fatalf("text payload of %d is not valid UTF-8", n)
			}
		}
	}
}
