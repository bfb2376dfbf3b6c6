package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for every parser: the frame reader (server and client
// side), the handshake checks, the permessage-deflate negotiation, the
// decompressor and the UTF-8 validator. `make fuzz` runs each briefly.

// readStream feeds stream to a Conn as its peer's bytes, in writes of chop
// bytes (at least 1), over a net.Pipe whose other end also drains what the
// Conn writes (pongs, close frames). It returns the messages read and the
// error that ended reading.
func readStream(t *testing.T, stream []byte, chop int, server bool, dp *deflateParams) ([][]byte, error) {
	local, peer := net.Pipe()
	opts := Options{ReadLimit: 1 << 16, CloseTimeout: time.Second}
	c := newConn(local, server, nil, opts.withDefaults(), "", dp)
	go func() {
		// The peer: write the stream, then hang up. Writes fail once the
		// Conn gave up and closed its end.
		for len(stream) > 0 {
			n := min(chop, len(stream))
			if _, err := peer.Write(stream[:n]); err != nil {
				break
			}
			stream = stream[n:]
		}
		peer.Close()
	}()
	go io.Copy(io.Discard, peer) // what the Conn sends; ends when local closes
	var msgs [][]byte
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var p []byte
			_, p, err = c.ReadMessage(nil)
			if err != nil {
				return
			}
			msgs = append(msgs, p)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.CloseNow()
		t.Fatal("ReadMessage hangs")
	}
	c.CloseNow()
	return msgs, err
}

// checkReadEnd asserts what every end of reading must be: a *CloseError
// whose code is one the peer sent or one we fail with.
func checkReadEnd(t *testing.T, err error) {
	var ce *CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("reading ended with %T %v, not a *CloseError", err, err)
	}
	switch c := ce.Code; {
	case c == StatusProtocolError, c == StatusInvalidPayload, c == StatusMessageTooBig,
		c == StatusAbnormalClosure, c == StatusNoStatusReceived:
	case ce.Remote && validWireCode(c):
	default:
		t.Fatalf("reading ended with code %d (%v)", c, err)
	}
}

// fuzzSeeds are interesting peer streams: valid frames, fragments,
// controls in between, and the malformed cases of the conformance suite.
func fuzzSeeds(masked bool) [][]byte {
	frames := []rawFrame{
		fText("Hello"), fBin([]byte{0, 1, 2}), fPing("p"), fPong("q"), fClose(1000, "bye"), fClose(0, ""),
		{fin: true, op: opTxt, payload: bytes.Repeat([]byte("x"), 200)},
		{fin: true, op: opBin, payload: make([]byte, 70000)},
		{fin: true, op: 3}, {fin: true, op: opPng, payload: make([]byte, 126)},
		{fin: false, op: opPng}, fText("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
		fCloseRaw([]byte{3}), fClose(1005, ""), fClose(4000, "\xff"),
		{fin: true, op: opBin, lenCode: 127, length: 1 << 63},
		{fin: true, op: opBin, lenCode: 126, length: 5, payload: []byte("abcde")},
		fText("x").withRSV(4), fText("x").withRSV(2),
	}
	var seeds [][]byte
	for _, f := range frames {
		f.unmasked = !masked
		seeds = append(seeds, f.encode())
	}
	fragmented := []rawFrame{frag(opTxt, false, []byte("frag")), fPing("in between"), frag(opCont, false, []byte("ment")), frag(opCont, true, []byte("ed"))}
	bad := []rawFrame{frag(opCont, true, []byte("no start")), frag(opTxt, false, []byte("a")), fText("b")}
	var compressed bytes.Buffer
	fw, _ := flate.NewWriter(&compressed, flate.BestSpeed)
	fw.Write(pattern(3000))
	fw.Flush()
	z := compressed.Bytes()[:compressed.Len()-4]
	deflated := []rawFrame{{op: opTxt, rsv: 4, payload: z[:20]}, fPing("x"), frag(opCont, true, z[20:])}
	for _, set := range [][]rawFrame{fragmented, bad, deflated} {
		for i := range set {
			set[i].unmasked = !masked
		}
		seeds = append(seeds, encodeAll(set...))
	}
	return seeds
}

func fuzzDeflateParams(mode byte) *deflateParams {
	switch mode % 3 {
	case 1:
		return &deflateParams{serverNoContextTakeover: true, clientNoContextTakeover: true}
	case 2:
		return &deflateParams{clientNoContextTakeover: true} // a client reading a server with takeover
	}
	return nil
}

// FuzzReadServer: arbitrary bytes from a client never make a server Conn
// panic or hang; reading ends with a close code.
func FuzzReadServer(f *testing.F) {
	for _, s := range fuzzSeeds(true) {
		f.Add(s, byte(7), byte(1))
		f.Add(s, byte(1), byte(0))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chop, mode byte) {
		msgs, err := readStream(t, stream, int(chop)+1, true, fuzzDeflateParams(mode))
		checkReadEnd(t, err)
		_ = msgs
	})
}

// FuzzReadClient: the same for a client Conn reading a server's bytes.
func FuzzReadClient(f *testing.F) {
	for _, s := range fuzzSeeds(false) {
		f.Add(s, byte(5), byte(2))
		f.Add(s, byte(200), byte(1))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chop, mode byte) {
		_, err := readStream(t, stream, int(chop)+1, false, fuzzDeflateParams(mode))
		checkReadEnd(t, err)
	})
}

// FuzzInflate: any payload sent as one compressed message is either the
// message compress/flate makes of it, or a close with 1007 (bad data) or
// 1009 (too big); never a panic, a hang or different bytes.
func FuzzInflate(f *testing.F) {
	var b bytes.Buffer
	for _, p := range [][]byte{nil, []byte("hello"), pattern(5000), make([]byte, 100000)} {
		b.Reset()
		fw, _ := flate.NewWriter(&b, flate.BestSpeed)
		fw.Write(p)
		fw.Flush()
		f.Add(bytes.Clone(b.Bytes()[:b.Len()-4]), byte(0))
		fw.Close()
		f.Add(bytes.Clone(b.Bytes()), byte(9))
	}
	f.Add([]byte{0xff, 0xff, 0xff}, byte(0))
	f.Add([]byte{0x00, 0x05, 0x00, 0x00, 0x00, 'a'}, byte(0))
	f.Fuzz(func(t *testing.T, payload []byte, split byte) {
		// The payload as two fragments, the first compressed frame
		// carrying RSV1.
		cut := min(int(split), len(payload))
		stream := encodeAll(
			rawFrame{op: opBin, rsv: 4, payload: payload[:cut]},
			frag(opCont, true, payload[cut:]),
		)
		dp := &deflateParams{serverNoContextTakeover: true, clientNoContextTakeover: true}
		msgs, err := readStream(t, stream, 4096, true, dp)
		checkReadEnd(t, err)
		want, refErr := io.ReadAll(io.LimitReader(flate.NewReader(io.MultiReader(bytes.NewReader(payload), strings.NewReader(deflateTail))), 1<<16+1))
		switch {
		case len(msgs) == 1:
			if refErr != nil && len(payload) > 0 {
				// compress/flate refuses what we took: only acceptable
				// when it is data after a final block we stopped at.
				t.Logf("accepted a payload compress/flate refuses (%v)", refErr)
			}
			if refErr == nil && !bytes.Equal(msgs[0], want) {
				t.Fatalf("inflated %d bytes, compress/flate %d", len(msgs[0]), len(want))
			}
		case len(msgs) == 0:
			if c := CloseStatus(err); c != StatusInvalidPayload && c != StatusMessageTooBig {
				t.Fatalf("refused with %v", err)
			}
			if c := CloseStatus(err); c == StatusInvalidPayload && refErr == nil && len(want) <= 1<<16 {
				// Valid DEFLATE that we refused: only data after the
				// final block is refused on purpose.
				if !bytes.Contains([]byte(err.Error()), []byte("after the end")) {
					t.Fatalf("refused valid compressed data: %v", err)
				}
			}
		default:
			t.Fatalf("%d messages from one", len(msgs))
		}
	})
}

// FuzzCheckRequest: fuzzed handshake headers never panic Accept's checks;
// whatever passes them has a valid key, an offered subprotocol, and an
// extension answer that our own client accepts.
func FuzzCheckRequest(f *testing.F) {
	f.Add("GET", "Upgrade", "websocket", "13", rfcKey, "", "chat", "permessage-deflate; client_max_window_bits")
	f.Add("GET", "keep-alive, Upgrade", "WebSocket", "13", rfcKey, "http://example.com", "a, chat", `permessage-deflate; server_max_window_bits="10", x`)
	f.Add("POST", "Upgrade", "websocket", "8", "short", "null", "", "permessage-deflate; server_max_window_bits")
	f.Add("GET", "upgrade", "websocket", " 13 ", "AAAAAAAAAAAAAAAAAAAAAA==", "http://evil", ",,", `x; a="b,c", permessage-deflate;;`)
	f.Fuzz(func(t *testing.T, method, connection, upgrade, version, key, origin, protocol, extensions string) {
		r, err := http.NewRequest(http.MethodGet, "http://example.com/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Method = method
		for name, v := range map[string]string{
			"Connection": connection, "Upgrade": upgrade, "Sec-WebSocket-Version": version,
			"Sec-WebSocket-Key": key, "Origin": origin, "Sec-WebSocket-Protocol": protocol,
			"Sec-WebSocket-Extensions": extensions,
		} {
			if v != "" {
				r.Header.Set(name, v)
			}
		}
		opts := &AcceptOptions{Subprotocols: []string{"chat", "a"}, Compression: true}
		sub, dp, ext, herr := checkUpgrade(r, opts)
		if herr != nil {
			if herr.Status < 400 || herr.Status > 499 || herr.Message == "" {
				t.Fatalf("refusal %d %q", herr.Status, herr.Message)
			}
			if sub != "" || dp != nil || ext != "" {
				t.Fatal("a refusal negotiated something")
			}
			return
		}
		if method != http.MethodGet || !validKey(key) {
			t.Fatalf("accepted method %q key %q", method, key)
		}
		if sub != "" && !strings.Contains(protocol, sub) {
			t.Fatalf("chose %q from %q", sub, protocol)
		}
		if (dp == nil) != (ext == "") {
			t.Fatalf("params %v with answer %q", dp, ext)
		}
		if dp != nil {
			cp, present, err := acceptDeflateResponse([]string{ext})
			if err != nil || !present || cp != *dp {
				t.Fatalf("answer %q to %q does not read back: %v", ext, extensions, err)
			}
		}
		if CheckRequest(r) != nil {
			t.Fatal("CheckRequest refuses what Accept takes")
		}
	})
}

// FuzzDeflateNegotiation: offers (server side) and answers (client side)
// never panic, and what either accepts is within RFC 7692's ranges.
func FuzzDeflateNegotiation(f *testing.F) {
	for _, o := range deflateOffers() {
		f.Add(strings.Join(o, ", "))
	}
	for _, s := range []string{
		"", ",", ";", `"`, `permessage-deflate; a="`, `permessage-deflate; server_max_window_bits="\9"`,
		"permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
		"permessage-deflate; server_max_window_bits=+9", "x-webkit-deflate-frame; no_context_takeover",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		inRange := func(bits int) bool { return bits == 0 || bits >= 8 && bits <= 15 }
		if p, resp, ok := negotiateDeflate([]string{header}); ok {
			if !strings.Contains(strings.ToLower(header), extensionDeflate) {
				t.Fatalf("accepted %q", header)
			}
			if !inRange(p.serverMaxWindowBits) || !p.serverNoContextTakeover || !p.clientNoContextTakeover {
				t.Fatalf("agreed %+v", p)
			}
			if !strings.HasPrefix(resp, extensionDeflate) || strings.ContainsAny(resp, "\r\n\"") {
				t.Fatalf("answer %q", resp)
			}
		} else if resp != "" {
			t.Fatalf("declined with answer %q", resp)
		}
		p, present, err := acceptDeflateResponse([]string{header})
		if err == nil && present {
			if !inRange(p.serverMaxWindowBits) || p.clientMaxWindowBits != 0 {
				t.Fatalf("client accepted %+v from %q", p, header)
			}
		}
		if err != nil && present {
			t.Fatal("error with present")
		}
	})
}

// FuzzUTF8 compares the incremental validator, fed in three pieces, with
// utf8.Valid.
func FuzzUTF8(f *testing.F) {
	for _, s := range []string{"", "κόσμε", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xc2", "🙂🙂", "\xe0\x80\xaf"} {
		f.Add([]byte(s), byte(1), byte(3))
	}
	f.Fuzz(func(t *testing.T, p []byte, a, b byte) {
		i, j := min(int(a), len(p)), min(int(b), len(p))
		if i > j {
			i, j = j, i
		}
		var v utf8Validator
		got := v.write(p[:i]) && v.write(p[i:j]) && v.write(p[j:]) && v.complete()
		if got != utf8.Valid(p) {
			t.Fatalf("%q split at %d,%d: %v, utf8.Valid %v", p, i, j, got, !got)
		}
	})
}

// FuzzDialResponse: whatever a server answers to Dial's handshake, Dial
// returns a connection or an error, never a panic or a hang; it accepts
// only a 101 with the right key and what it offered. In the answer,
// "{accept}" stands for the right Sec-WebSocket-Accept value, so that the
// fuzzer gets past that check.
func FuzzDialResponse(f *testing.F) {
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
	for _, s := range []string{
		ok + "\r\n",
		ok + "Sec-WebSocket-Protocol: chat\r\n\r\n",
		ok + "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n",
		ok + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n",
		ok + "Sec-WebSocket-Protocol: a, b\r\n\r\n\x81\x05hello",
		"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"garbage\r\n\r\n",
		ok + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		local, peer := net.Pipe()
		defer local.Close()
		go func() {
			defer peer.Close()
			r, err := http.ReadRequest(bufio.NewReader(peer))
			if err != nil {
				return
			}
			resp := strings.ReplaceAll(answer, "{accept}", AcceptKey(r.Header.Get("Sec-WebSocket-Key")))
			peer.SetWriteDeadline(time.Now().Add(5 * time.Second))
			peer.Write([]byte(resp))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, _ := url.Parse("ws://example.com/")
		opts := &DialOptions{Subprotocols: []string{"chat"}, Compression: true}
		done := make(chan struct{})
		var c *Conn
		var err error
		go func() {
			defer close(done)
			c, err = handshake(ctx, local, u, false, opts)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("handshake hangs")
		}
		if err != nil {
			return
		}
		if !strings.HasPrefix(answer, "HTTP/1.") || strings.HasPrefix(answer, "HTTP/1.0") || !strings.Contains(answer, " 101") {
			t.Fatalf("accepted %q", answer)
		}
		if sp := c.Subprotocol(); sp != "" && sp != "chat" {
			t.Fatalf("subprotocol %q accepted", sp)
		}
		c.CloseNow()
	})
}

// FuzzDialResponseHead: whatever the bytes, a head the fast path of
// dialresp.go reads whole is one http.ReadResponse reads too, up to the
// same byte, into the same status and the same values of the headers
// Dial checks; complete lines it waits behind are ones net/http waits
// behind too (it runs out of bytes on them, it does not refuse them); and
// Dial's reading, fast path and all, answers as net/http's alone does,
// errors and *DialError included. Heads that carry rfcAccept get past
// the accept check; mode picks the client's offers.
func FuzzDialResponseHead(f *testing.F) {
	var heads []string
	for _, tc := range fastHeads {
		heads = append(heads, tc.head)
	}
	heads = append(append(heads, declinedHeads...), moreHeads...)
	for i, head := range heads {
		h := []byte(withAccept(head, rfcAccept))
		f.Add(h, byte(i))
		f.Add(append(h, frameAfter...), byte(i+1))
	}
	f.Fuzz(func(t *testing.T, resp []byte, mode byte) {
		var h respHead
		switch parseResponseHead(resp, &h) {
		case headDone:
			r := bytes.NewReader(resp)
			br := bufio.NewReader(r)
			hr, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
			if err != nil {
				t.Fatalf("fast path read %q, net/http refuses it: %v", resp, err)
			}
			if n := len(resp) - br.Buffered() - r.Len(); n != h.size {
				t.Fatalf("%q: head of %d bytes, net/http read %d", resp, h.size, n)
			}
			if hr.StatusCode != http.StatusSwitchingProtocols || hr.Proto != "HTTP/1.1" {
				t.Fatalf("%q: net/http reads %d %s", resp, hr.StatusCode, hr.Proto)
			}
			var exts []string
			for _, e := range h.exts[:h.nexts] {
				exts = append(exts, string(e))
			}
			accepts, protocols := hr.Header.Values("Sec-WebSocket-Accept"), hr.Header.Values("Sec-WebSocket-Protocol")
			if headerHasToken(hr.Header, "Upgrade", "websocket") != h.upgrade ||
				headerHasToken(hr.Header, "Connection", "upgrade") != h.connection ||
				len(accepts) != h.accepts || h.accepts > 0 && accepts[0] != string(h.accept) ||
				len(protocols) != h.protocols || h.protocols > 0 && protocols[0] != string(h.protocol) ||
				!slices.Equal(hr.Header.Values("Sec-WebSocket-Extensions"), exts) {
				t.Fatalf("%q:\n fast path %+v\n net/http  %q", resp, h, hr.Header)
			}
		case headMore:
			lines := resp[:bytes.LastIndexByte(resp, '\n')+1]
			_, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(lines)), &http.Request{Method: http.MethodGet})
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("fast path waits behind %q, net/http reads it: %v", lines, err)
			}
		}
		compareWithNetHTTP(t, resp, &respOptions[int(mode)%len(respOptions)])
	})
}
