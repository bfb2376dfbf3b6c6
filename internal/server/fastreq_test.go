package server

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// chatbenchHead is the head chatd's own client sends.
const chatbenchHead = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyIiwiZXhwIjoxNzY0NTE2MDAwfQ.c2lnbmF0dXJl\r\n\r\n"

// browserHead is what a browser sends, token in the subprotocol.
const browserHead = "GET /ws?x=1 HTTP/1.1\r\nHost: chat.example:8080\r\nConnection: keep-alive, Upgrade\r\n" +
	"Pragma-Not: x\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nUpgrade: websocket\r\nOrigin: https://chat.example\r\n" +
	"Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
	"Sec-WebSocket-Protocol: chat, access_token.abc.def.ghi\r\n\r\n"

// checkLikeReadRequest fails the test unless http.ReadRequest reads head
// (all of it) into the request parseUpgradeHead made of it, and
// hasHostHeader agrees on the Host line.
func checkLikeReadRequest(t *testing.T, head []byte, got *http.Request, hasHost bool) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(head))
	want, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("parsed %q, which net/http refuses: %v", head, err)
	}
	if br.Buffered() != 0 {
		t.Fatalf("%q: net/http left %d bytes", head, br.Buffered())
	}
	if want.Body != http.NoBody || got.Body != http.NoBody {
		t.Fatalf("%q: bodies %v and %v", head, want.Body, got.Body)
	}
	want.Body, got.Body = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got  %#v\n want %#v\n URLs %#v, %#v", head, got, want, got.URL, want.URL)
	}
	if h := hasHostHeader(head); h != hasHost {
		t.Fatalf("%q: hasHost %v, hasHostHeader %v", head, hasHost, h)
	}
}

const up = "Upgrade: websocket\r\n"

// parsedHeads are heads parseUpgradeHead parses.
var parsedHeads = []string{
	chatbenchHead,
	browserHead,
	"GET /ws HTTP/1.1\r\n" + up + "\r\n", // no Host: checkHost refuses it later
	"GET /ws HTTP/1.1\r\nHost:\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nhost: a\r\nUPGRADE:websocket \t\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n" + up + "\r\n",
	"GET /ws?access_token=a.b.c&x=%zz#frag HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET /ws?a?b HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nX-Very-Long-Name-" + strings.Repeat("n", 80) + ": v\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nX: a:b: c\r\nEmpty:\r\n" + up + "\r\n",
}

// leftHeads are heads parseUpgradeHead leaves to net/http.
var leftHeads = []string{
	"GET HTTP/1.1\r\n",
	"GET /ws HTTP/1.0\r\nHost: a\r\n" + up + "\r\n",
	"GET /ws? HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET /wsx HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET /ws/ HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET /ws?\xff HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET  /ws HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"POST /ws HTTP/1.1\r\nHost: a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\n Host: a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost : a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHo(st: a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\n: a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost a\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\x00\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: \xc3\xa9\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\rb\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\nX: b\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n" + up + "\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\n" + up + "\r\nGET",
	"GET /ws HTTP/1.1\r\nHost: a\r\n" + up,
}

// TestParseUpgradeHead: the heads clients send are parsed, into the
// request net/http makes of them; every head outside the plain form is
// left to net/http.
func TestParseUpgradeHead(t *testing.T) {
	t.Parallel()
	for _, h := range parsedHeads {
		req, hasHost, ok := parseUpgradeHead([]byte(h))
		if !ok {
			t.Errorf("not parsed: %q", h)
			continue
		}
		checkLikeReadRequest(t, []byte(h), req, hasHost)
	}
	for _, h := range leftHeads {
		if _, _, ok := parseUpgradeHead([]byte(h)); ok {
			t.Errorf("parsed, not left to net/http: %q", h)
		}
	}
}

// FuzzParseUpgradeHead: whatever the bytes, parseUpgradeHead does not
// panic, and a head it parses is one net/http reads all of, into the
// same request.
func FuzzParseUpgradeHead(f *testing.F) {
	for _, h := range append(parsedHeads, leftHeads...) {
		f.Add([]byte(h))
	}
	f.Add([]byte("GET /ws?q HTTP/1.1\r\nHost: a\r\nConnection: close\r\nUpgrade: websocket\r\nA-B_c: \t x \t\r\n\r\n"))
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		req, hasHost, ok := parseUpgradeHead(head)
		if !ok {
			return
		}
		checkLikeReadRequest(t, head, req, hasHost)
	})
}

func BenchmarkParseUpgradeHead(b *testing.B) {
	head := []byte(chatbenchHead)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := parseUpgradeHead(head); !ok {
				b.Fatal("not parsed")
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		br := bufio.NewReaderSize(nil, 4096)
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(bytes.NewReader(head))
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}
