package ws

import (
	"bufio"
	"bytes"
)

// Dial's fast path for the server's answer to the opening handshake.
//
// http.ReadResponse builds a textproto reader, a header map with a string
// for every name and value and a Response, all of it dropped once Dial
// has checked five headers: a noticeable part of a client's CPU when it
// connects and leaves again at once (chatbench's churn). The answer a
// WebSocket server sends is nearly always the same plain head, so Dial
// first peeks at it in its bufio.Reader and, when it is that plain head,
// takes from it only what the checks of RFC 6455 §4.1 look at, without
// a map. When the head is any other, or a check fails, nothing has been
// consumed, and http.ReadResponse reads the very same bytes as it always
// did: every error, and every *DialError with its Response, is the one
// it gives. FuzzDialResponseHead checks that whatever the fast path
// accepts, net/http reads into the same status and the same values.

// maxFastExtensions is how many Sec-WebSocket-Extensions lines the fast
// path keeps; a server sends one (or none). More go to net/http.
const maxFastExtensions = 4

// respHead is what parseResponseHead found in a plain 101 head: the
// values are pieces of the head, trimmed of spaces and tabs as
// net/textproto trims them.
type respHead struct {
	size       int  // of the head, blank line included
	upgrade    bool // an Upgrade line lists "websocket"
	connection bool // a Connection line lists "upgrade"
	accepts    int  // Sec-WebSocket-Accept lines
	accept     []byte
	protocols  int // Sec-WebSocket-Protocol lines
	protocol   []byte
	nexts      int // Sec-WebSocket-Extensions lines
	exts       [maxFastExtensions][]byte
}

// headState is parseResponseHead's verdict on the bytes it was given.
type headState int

const (
	headMore    headState = iota // plain so far, but the blank line has not come
	headDone                     // a whole plain 101 head
	headDecline                  // not a plain 101 head: for net/http
)

const statusLine101 = "HTTP/1.1 101"

// parseResponseHead parses buf, the first bytes of a server's answer, if
// it begins with a plain 101 head: the line "HTTP/1.1 101" with an
// optional reason phrase, then lines "Name: value" ended by CRLF whose
// names are tokens and whose values hold visible ASCII, spaces and tabs
// only (no obs-fold, no bare LF, no bytes net/textproto might read
// otherwise), none of them about a body (Content-Length,
// Transfer-Encoding, Trailer), then CRLF. Only complete lines are judged:
// headMore means every complete line so far is plain, so that net/http,
// which judges a line once it has all of it, would be waiting for more
// too. Bytes after the head are left alone.
func parseResponseHead(buf []byte, h *respHead) headState {
	*h = respHead{}
	eol := bytes.IndexByte(buf, '\n')
	if eol < 0 {
		return headMore
	}
	if eol < len(statusLine101)+1 || buf[eol-1] != '\r' || string(buf[:len(statusLine101)]) != statusLine101 {
		return headDecline
	}
	// After the code, nothing or a space and the reason phrase: "HTTP/1.1
	// 101\tx" is a code of "101\tx" to net/http, and malformed.
	if reason := buf[len(statusLine101) : eol-1]; len(reason) > 0 && (reason[0] != ' ' || !plainValue(reason)) {
		return headDecline
	}
	for off := eol + 1; ; {
		i := bytes.IndexByte(buf[off:], '\n')
		if i < 0 {
			return headMore
		}
		if i == 0 || buf[off+i-1] != '\r' {
			return headDecline // a bare LF
		}
		line := buf[off : off+i-1]
		off += i + 1
		if len(line) == 0 {
			h.size = off
			return headDone
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return headDecline // no name, or a folded line (leading space or tab)
		}
		name, value := line[:colon], line[colon+1:]
		for _, c := range name {
			if !tokenByte[c] {
				return headDecline
			}
		}
		if !plainValue(value) {
			return headDecline
		}
		value = trimSpaceTab(value)
		// Names compare as net/textproto's canonical forms do: token
		// bytes, equal but for the case of ASCII letters.
		switch {
		case equalFoldASCII(name, "Upgrade"):
			h.upgrade = h.upgrade || listHasToken(value, "websocket")
		case equalFoldASCII(name, "Connection"):
			h.connection = h.connection || listHasToken(value, "upgrade")
		case equalFoldASCII(name, "Sec-WebSocket-Accept"):
			if h.accepts == 0 {
				h.accept = value // Header.Get's: the first
			}
			h.accepts++
		case equalFoldASCII(name, "Sec-WebSocket-Protocol"):
			if h.protocols == 0 {
				h.protocol = value
			}
			h.protocols++
		case equalFoldASCII(name, "Sec-WebSocket-Extensions"):
			if h.nexts == len(h.exts) {
				return headDecline
			}
			h.exts[h.nexts] = value
			h.nexts++
		case equalFoldASCII(name, "Content-Length"), equalFoldASCII(name, "Transfer-Encoding"), equalFoldASCII(name, "Trailer"):
			// net/http judges these (a 101 has no body, but a bad
			// Content-Length is still an error): leave it all to it.
			return headDecline
		}
	}
}

// peekResponseHead waits in br for a plain 101 head (see
// parseResponseHead) without consuming anything, and reports whether one
// came. It stops as soon as the bytes cannot be one, or fill br's buffer,
// or a read fails: then http.ReadResponse reads what br holds and gets
// the same error again from the connection (a closed connection, an
// expired deadline, a failed TLS connection keep failing).
func peekResponseHead(br *bufio.Reader, h *respHead) bool {
	for n := 1; ; n = br.Buffered() + 1 {
		if _, err := br.Peek(n); err != nil {
			return false
		}
		buf, _ := br.Peek(br.Buffered())
		switch parseResponseHead(buf, h) {
		case headDone:
			return true
		case headDecline:
			return false
		}
		if br.Buffered() == br.Size() {
			return false
		}
	}
}

// check makes the checks of readHandshakeResponse on h, with the results
// it would have, and reports whether all pass; a failing one is left to
// net/http's reading, to fail there with its *DialError. The subprotocol
// returned is the offered string itself, so that nothing is copied.
func (h *respHead) check(key string, opts *DialOptions) (subprotocol string, dp *deflateParams, ok bool) {
	if !h.upgrade || !h.connection || h.accepts == 0 {
		return "", nil, false
	}
	var buf [28]byte // base64 of a SHA-1
	if string(h.accept) != string(appendAcceptKey(buf[:0], key)) {
		return "", nil, false
	}
	switch h.protocols {
	case 0:
	case 1:
		for _, s := range opts.Subprotocols {
			if string(h.protocol) == s {
				subprotocol = s
				break
			}
		}
		if subprotocol == "" {
			return "", nil, false
		}
	default:
		return "", nil, false
	}
	if h.nexts > 0 {
		if !opts.Compression {
			return "", nil, false
		}
		var vals [maxFastExtensions]string
		for i, v := range h.exts[:h.nexts] {
			vals[i] = string(v)
		}
		p, present, err := acceptDeflateResponse(vals[:h.nexts])
		if err != nil {
			return "", nil, false
		}
		if present {
			dp = &p
		}
	}
	return subprotocol, dp, true
}

// plainValue reports whether b holds only visible ASCII, spaces and tabs:
// bytes net/textproto keeps as they are, and on which strings.TrimSpace
// and strings.EqualFold (used on net/http's values) act as the ASCII
// trimming and folding here do.
func plainValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' || c >= 0x7f) && c != '\t' {
			return false
		}
	}
	return true
}

func trimSpaceTab(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// listHasToken is headerHasToken for one value: whether the comma
// separated list holds token, compared case-insensitively (RFC 6455
// §4.1). token is lower case.
func listHasToken(list []byte, token string) bool {
	for len(list) > 0 {
		part := list
		if i := bytes.IndexByte(list, ','); i >= 0 {
			part, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		if equalFoldASCII(trimSpaceTab(part), token) {
			return true
		}
	}
	return false
}

// equalFoldASCII reports whether b and s are equal but for the case of
// ASCII letters.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		d := s[i]
		if c == d {
			continue
		}
		if c|0x20 != d|0x20 || c|0x20 < 'a' || c|0x20 > 'z' {
			return false
		}
	}
	return true
}
