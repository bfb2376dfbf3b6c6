package ws

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// In the heads below, "{accept}" stands for the Sec-WebSocket-Accept
// value of the key the client sent (rfcAccept in the unit tests).

const (
	chatd101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
	plain101   = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
	deflateExt = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
)

func withAccept(head, accept string) string { return strings.ReplaceAll(head, "{accept}", accept) }

// fastHeads are plain 101 heads parseResponseHead reads whole, with what
// it finds in them.
var fastHeads = []struct {
	head                         string
	upgrade, connection          bool
	accepts, protocols           int
	accept, protocol, extsJoined string
}{
	{chatd101, true, true, 1, 1, "{accept}", "chat", ""},
	{plain101 + "\r\n", true, true, 1, 0, "{accept}", "", ""},
	{plain101 + deflateExt + "\r\n", true, true, 1, 0, "{accept}", "", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
	{"HTTP/1.1 101\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\nsec-websocket-accept:{accept}\r\n\r\n", true, true, 1, 0, "{accept}", "", ""},
	{"HTTP/1.1 101 \r\nUpgrade: h2c ,\t websocket \t\r\nConnection:upgrade\r\nSec-WebSocket-Accept: \t{accept} \r\nSec-WebSocket-Protocol:  chat \r\n\r\n", true, true, 1, 1, "{accept}", "chat", ""},
	{"HTTP/1.1 101 Switching Protocols\r\nServer: x/1.0\r\nDate: Mon, 01 Jan 2026 00:00:00 GMT\r\nX-Empty:\r\nPragma: no-cache\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n", true, true, 1, 0, "{accept}", "", ""},
	// Parsed whole, refused by the checks (and then by net/http).
	{"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n", false, true, 1, 0, "{accept}", "", ""},
	{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket2\r\nConnection: keep-alive, websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n", false, false, 1, 0, "{accept}", "", ""},
	{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true, true, 0, 0, "", "", ""},
	{plain101 + "Sec-WebSocket-Accept: x\r\n\r\n", true, true, 2, 0, "{accept}", "", ""},
	{plain101 + "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n", true, true, 1, 2, "{accept}", "chat", ""},
	{plain101 + "Sec-WebSocket-Protocol: chat, other\r\n\r\n", true, true, 1, 1, "{accept}", "chat, other", ""},
	{plain101 + "Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: x-foo\r\n\r\n", true, true, 1, 0, "{accept}", "", "permessage-deflate|x-foo"},
}

// declinedHeads are heads parseResponseHead leaves to net/http as soon as
// it has seen their first odd line.
var declinedHeads = []string{
	"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nno entry\n",
	"HTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
	"HTTP/2 101\r\n\r\n",
	"http/1.1 101 Switching Protocols\r\n\r\n",
	"HTTP/1.1 1010 X\r\n\r\n",
	"HTTP/1.1  101 Switching Protocols\r\n\r\n",
	"HTTP/1.1 101\tSwitching Protocols\r\n\r\n",
	"HTTP/1.1 101 Switching\x00Protocols\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\n" + "Upgrade: websocket\n\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n folded\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\n Upgrade: websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\n\tUpgrade: websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade : websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\n: websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUp(grade: websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgr\xc3\xa4de: websocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\x00\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websoc\xe2\x84\xaaet\r\n\r\n", // a Kelvin sign, which strings.EqualFold folds to k
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web\rsocket\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\x7f\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: \x0bv\r\n\r\n",
	plain101 + "Content-Length: 0\r\n\r\n",
	plain101 + "content-length: x\r\n\r\n",
	plain101 + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	plain101 + "Trailer: X\r\n\r\n",
	plain101 + strings.Repeat("Sec-WebSocket-Extensions: permessage-deflate\r\n", maxFastExtensions+1) + "\r\n",
	"SSH-2.0-OpenSSH_9.6\r\n",
	"\r\n",
}

// moreHeads are beginnings of heads that are plain as far as they go.
var moreHeads = []string{
	"",
	"HTTP/1.1 1",
	"HTTP/1.0 403 Forbidden", // no line yet: net/http waits for it too
	"HTTP/1.1 101 Switching Protocols\r",
	"HTTP/1.1 101 Switching Protocols\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs\x00",
	plain101,
	plain101 + "\r",
}

// frameAfter is what chatd sends behind its 101: the welcome, in the
// same write.
var frameAfter = rawFrame{fin: true, op: opTxt, unmasked: true, payload: []byte(`{"type":"welcome","user":"u1","name":"u1","node":"n1","conn":"c1","heartbeat":30}`)}.encode()

// TestParseResponseHead: plain 101 heads are read whole, the bytes behind
// them left; any other head is declined at its first odd line; an
// unfinished plain head waits for more.
func TestParseResponseHead(t *testing.T) {
	t.Parallel()
	for _, tc := range fastHeads {
		head := withAccept(tc.head, rfcAccept)
		var h respHead
		if st := parseResponseHead(append([]byte(head), frameAfter...), &h); st != headDone {
			t.Errorf("%q: state %d, want done", head, st)
			continue
		}
		var exts []string
		for _, e := range h.exts[:h.nexts] {
			exts = append(exts, string(e))
		}
		if h.size != len(head) || h.upgrade != tc.upgrade || h.connection != tc.connection ||
			h.accepts != tc.accepts || string(h.accept) != withAccept(tc.accept, rfcAccept) ||
			h.protocols != tc.protocols || string(h.protocol) != tc.protocol || strings.Join(exts, "|") != tc.extsJoined {
			t.Errorf("%q: got size %d, upgrade %v, connection %v, accepts %d %q, protocols %d %q, extensions %q",
				head, h.size, h.upgrade, h.connection, h.accepts, h.accept, h.protocols, h.protocol, exts)
		}
	}
	for _, head := range declinedHeads {
		var h respHead
		if st := parseResponseHead([]byte(withAccept(head, rfcAccept)), &h); st != headDecline {
			t.Errorf("%q: state %d, want declined", head, st)
		}
	}
	for _, head := range moreHeads {
		var h respHead
		if st := parseResponseHead([]byte(withAccept(head, rfcAccept)), &h); st != headMore {
			t.Errorf("%q: state %d, want more", head, st)
		}
	}
}

// TestRespHeadCheck: the fast path's checks pass only the answers
// readResponseNetHTTP accepts, with the same results.
func TestRespHeadCheck(t *testing.T) {
	t.Parallel()
	chat := DialOptions{Subprotocols: []string{"other", "chat"}}
	deflate := DialOptions{Compression: true}
	tests := []struct {
		name string
		head string
		opts DialOptions
		ok   bool
	}{
		{"chatd", chatd101, chat, true},
		{"chatd, deflate", plain101 + "Sec-WebSocket-Protocol: chat\r\n" + deflateExt + "\r\n", DialOptions{Subprotocols: []string{"chat"}, Compression: true}, true},
		{"no subprotocol chosen", plain101 + "\r\n", chat, true},
		{"deflate declined", plain101 + "\r\n", deflate, true},
		{"deflate with takeover", plain101 + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n", deflate, true},
		{"odd case and spacing", fastHeads[3].head, DialOptions{}, true},
		{"wrong accept", strings.Replace(chatd101, "{accept}", AcceptKey("AAAAAAAAAAAAAAAAAAAAAA=="), 1), chat, false},
		{"accept with a byte more", strings.Replace(chatd101, "{accept}", "{accept}x", 1), chat, false},
		{"no accept", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", DialOptions{}, false},
		{"second accept wrong", plain101 + "Sec-WebSocket-Accept: x\r\n\r\n", DialOptions{}, true}, // Header.Get takes the first
		{"no Upgrade", fastHeads[6].head, DialOptions{}, false},
		{"no upgrade tokens", fastHeads[7].head, DialOptions{}, false},
		{"subprotocol not offered", chatd101, DialOptions{Subprotocols: []string{"Chat"}}, false},
		{"subprotocol, none offered", chatd101, DialOptions{}, false},
		{"two subprotocol lines", fastHeads[10].head, chat, false},
		{"subprotocol list", fastHeads[11].head, chat, false},
		{"extension not offered", plain101 + deflateExt + "\r\n", DialOptions{}, false},
		{"unknown extension", fastHeads[12].head, deflate, false},
		{"deflate parameter not offered", plain101 + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n", deflate, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			head := []byte(withAccept(tc.head, rfcAccept))
			var h respHead
			if st := parseResponseHead(head, &h); st != headDone {
				t.Fatalf("not parsed: state %d", st)
			}
			sp, dp, ok := h.check(rfcKey, &tc.opts)
			if ok != tc.ok {
				t.Fatalf("check: %v, want %v", ok, tc.ok)
			}
			u, _ := url.Parse("ws://example.com/")
			wsp, wdp, err := readResponseNetHTTP(bufio.NewReader(bytes.NewReader(head)), u, rfcKey, &tc.opts)
			if (err == nil) != tc.ok {
				t.Fatalf("net/http's reading: %v, the fast check: %v", err, ok)
			}
			if ok && (sp != wsp || !reflect.DeepEqual(dp, wdp)) {
				t.Fatalf("fast: %q %+v; net/http: %q %+v", sp, dp, wsp, wdp)
			}
		})
	}
}

// compareWithNetHTTP fails the test unless readHandshakeResponse (fast
// path and all) and readResponseNetHTTP give the same result for resp:
// the same subprotocol and deflate parameters, or the same error, with a
// Response of the same status, header and body; and leave the same bytes
// unread.
func compareWithNetHTTP(t *testing.T, resp []byte, opts *DialOptions) {
	t.Helper()
	u, _ := url.Parse("ws://example.com/")
	type result struct {
		sp   string
		dp   *deflateParams
		err  string
		resp *http.Response
		body string
		left int
	}
	read := func(f func(*bufio.Reader, *url.URL, string, *DialOptions) (string, *deflateParams, error)) result {
		r := bytes.NewReader(resp)
		br := bufio.NewReaderSize(r, 1024) // Dial's size
		sp, dp, err := f(br, u, rfcKey, opts)
		res := result{sp: sp, dp: dp, left: br.Buffered() + r.Len()}
		if err != nil {
			res.err = err.Error()
			if de, ok := errors.AsType[*DialError](err); ok && de.Response != nil {
				b, _ := io.ReadAll(de.Response.Body)
				res.body = string(b)
				res.resp = de.Response
				res.resp.Body = nil
			}
		}
		return res
	}
	got, want := read(readHandshakeResponse), read(readResponseNetHTTP)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q with %+v:\n got  %+v\n want %+v", resp, *opts, got, want)
	}
}

// respOptions are the client's offers the heads are tried with.
var respOptions = []DialOptions{
	{},
	{Subprotocols: []string{"chat"}},
	{Compression: true},
	{Subprotocols: []string{"a", "chat"}, Compression: true},
}

// TestReadHandshakeResponseLikeNetHTTP: for every head of the tables,
// whole or cut short, with or without a frame behind it, Dial's reading
// gives what net/http's alone gives: the same results, the same errors,
// the same *DialError.
func TestReadHandshakeResponseLikeNetHTTP(t *testing.T) {
	t.Parallel()
	var heads []string
	for _, tc := range fastHeads {
		heads = append(heads, tc.head)
	}
	heads = append(append(heads, declinedHeads...), moreHeads...)
	for _, head := range heads {
		for _, opts := range respOptions {
			for _, accept := range []string{rfcAccept, AcceptKey("AAAAAAAAAAAAAAAAAAAAAA==")} {
				h := []byte(withAccept(head, accept))
				compareWithNetHTTP(t, h, &opts)
				compareWithNetHTTP(t, append(h, frameAfter...), &opts)
				compareWithNetHTTP(t, h[:len(h)/2], &opts)
			}
		}
	}
}

// TestPeekResponseHead: the head is found however the bytes arrive, one
// at a time included, and nothing is consumed; a head larger than the
// buffer is left to net/http, which reads it.
func TestPeekResponseHead(t *testing.T) {
	t.Parallel()
	head := withAccept(chatd101, rfcAccept)
	resp := append([]byte(head), frameAfter...)
	br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(resp)), 1024)
	var h respHead
	if !peekResponseHead(br, &h) || h.size != len(head) {
		t.Fatalf("peek one byte at a time: size %d, want %d", h.size, len(head))
	}
	if b, _ := br.Peek(len(head)); string(b) != head {
		t.Fatalf("consumed: %q", b)
	}

	long := plain101 + "X-Padding: " + strings.Repeat("p", 1100) + "\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
	resp = append([]byte(withAccept(long, rfcAccept)), frameAfter...)
	br = bufio.NewReaderSize(bytes.NewReader(resp), 1024)
	if peekResponseHead(br, &h) {
		t.Fatal("a head larger than the buffer found")
	}
	u, _ := url.Parse("ws://example.com/")
	sp, _, err := readHandshakeResponse(br, u, rfcKey, &DialOptions{Subprotocols: []string{"chat"}})
	if err != nil || sp != "chat" {
		t.Fatalf("long head: %q, %v", sp, err)
	}
	if rest, _ := io.ReadAll(br); !bytes.Equal(rest, frameAfter) {
		t.Fatalf("after the long head: %q", rest)
	}
}

// TestDialResponseHeads: Dial against a TCP server answering with each
// kind of head: plain ones, with the first frame behind them or in
// pieces, take the fast path; odd ones net/http's; a server that keeps
// the connection open after a head that net/http reads or refuses on its
// own does not make Dial wait; and refusals are the same *DialError
// either way.
func TestDialResponseHeads(t *testing.T) {
	t.Parallel()
	chat := DialOptions{Subprotocols: []string{"chat"}}
	tests := []struct {
		name    string
		opts    DialOptions
		pieces  []string // written one after the other; the last is followed by frameAfter
		wantErr string   // "" means success; else the whole error text
		header  string   // a header of the refused Response, "Name: value"
	}{
		{"chatd", chat, []string{chatd101}, "", ""},
		{"in pieces", chat, []string{"HTTP/1.1 101 Swi", "tching Protocols\r\nUpgrade: websocket\r", "\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n", "\r", "\n"}, "", ""},
		{"deflate", DialOptions{Compression: true}, []string{plain101 + deflateExt + "\r\n"}, "", ""},
		{"bare LFs", chat, []string{"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: {accept}\nSec-WebSocket-Protocol: chat\n\n"}, "", ""},
		{"folded line", chat, []string{plain101 + "X-Folded: a\r\n b\r\nSec-WebSocket-Protocol: chat\r\n\r\n"}, "", ""},
		{"long head", chat, []string{plain101 + "X-Padding: " + strings.Repeat("p", 2000) + "\r\n\r\n"}, "", ""},
		{"malformed line", chat, []string{"HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\n"}, "ws: dial: read handshake response: malformed MIME header: missing colon: \"Upgrade websocket\"", ""},
		{"wrong accept", chat, []string{strings.Replace(chatd101, "{accept}", rfcAccept, 1)}, "ws: dial: wrong Sec-WebSocket-Accept", "Sec-WebSocket-Accept: " + rfcAccept},
		{"no Upgrade", chat, []string{strings.Replace(chatd101, "Upgrade: websocket\r\n", "", 1)}, "ws: dial: response lacks Upgrade: websocket and Connection: Upgrade", "Connection: Upgrade"},
		{"subprotocol not offered", DialOptions{Subprotocols: []string{"other"}}, []string{chatd101}, `ws: dial: server chose a subprotocol that was not offered: "chat"`, "Sec-WebSocket-Protocol: chat"},
		{"extension not offered", DialOptions{}, []string{plain101 + deflateExt + "\r\n"}, "ws: dial: server accepted an extension that was not offered", "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{"unknown extension", DialOptions{Compression: true}, []string{plain101 + "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n"}, "ws: dial: ws: server accepted an extension that was not offered: x-webkit-deflate-frame", "Sec-WebSocket-Extensions: x-webkit-deflate-frame"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := handshakeServer(t, func(nc net.Conn, r *http.Request) {
				accept := AcceptKey(r.Header.Get("Sec-WebSocket-Key"))
				for i, p := range tc.pieces {
					b := []byte(withAccept(p, accept))
					if i == len(tc.pieces)-1 {
						b = append(b, frameAfter...)
					}
					if _, err := nc.Write(b); err != nil {
						return
					}
				}
				io.Copy(io.Discard, nc) // the connection stays open until the client leaves
			})
			// Generous: only a Dial that waits for bytes that never come
			// gets near it.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := Dial(ctx, "ws://"+addr+"/", &tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.CloseNow()
				if want := tc.opts.Subprotocols; len(want) > 0 && strings.Contains(tc.pieces[0], "Protocol: chat") && c.Subprotocol() != "chat" {
					t.Errorf("subprotocol %q", c.Subprotocol())
				}
				if c.Compressed() != strings.Contains(tc.pieces[0], "permessage-deflate") {
					t.Errorf("compressed %v", c.Compressed())
				}
				typ, p, err := c.ReadMessage(nil)
				if err != nil || typ != Text || !bytes.Equal(p, frameAfter[2:]) {
					t.Fatalf("first message %d %q, %v; want the frame sent with the 101", typ, p, err)
				}
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatalf("Dial succeeded, want %q", tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Fatalf("err %q, want %q", err, tc.wantErr)
			}
			if tc.header == "" {
				return
			}
			de, ok := errors.AsType[*DialError](err)
			if !ok || de.Response == nil {
				t.Fatalf("err %T %v, want a *DialError with the Response", err, err)
			}
			name, value, _ := strings.Cut(tc.header, ": ")
			if de.Response.StatusCode != http.StatusSwitchingProtocols || de.Response.Proto != "HTTP/1.1" || de.Response.Header.Get(name) != value {
				t.Fatalf("Response %d %s, %s: %q; want 101, %q", de.Response.StatusCode, de.Response.Proto, name, de.Response.Header.Get(name), value)
			}
		})
	}
}
