package server

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"

	"github.com/chatd/chatd/internal/ws"
)

// parseUpgradeHead parses head, the head of a connection's first request
// as peekHead returns it (up to and including the blank line) and
// isUpgradeHead accepts, when it has the plain form WebSocket clients
// send: "GET /ws[?query] HTTP/1.1", then lines "Name: value" ended by
// CRLF, whose names are tokens and whose values hold visible ASCII,
// spaces and tabs only; no folded line, no body (Content-Length,
// Transfer-Encoding, Trailer), no Pragma, at most one Host. It returns
// the request http.ReadRequest returns for the same bytes, and whether
// head has a Host line (see checkHost). Any other head gets ok false and
// is read by http.ReadRequest, as every head was before: so the fast path
// accepts nothing net/http refuses, and hands the handler the very same
// request (FuzzParseUpgradeHead compares the two on every head it
// accepts). It costs a fraction of ReadRequest's time and allocations.
func parseUpgradeHead(head []byte) (req *http.Request, hasHost, ok bool) {
	const prefix, suffix = "GET ", " HTTP/1.1\r\n"
	eol := bytes.IndexByte(head, '\n') + 1
	if eol < len(prefix)+len("/ws")+len(suffix) || !bytes.HasPrefix(head, []byte(prefix)) || !bytes.HasSuffix(head[:eol], []byte(suffix)) {
		return nil, false, false
	}
	target := head[len(prefix) : eol-len(suffix)]
	// The path is /ws, with an optional query of visible ASCII, which
	// url.ParseRequestURI keeps as it is. An empty query ("/ws?") is left
	// to net/http (URL.ForceQuery).
	if len(target) < 3 || string(target[:3]) != "/ws" || len(target) > 3 && (target[3] != '?' || len(target) == 4) {
		return nil, false, false
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, false, false
		}
	}

	// The names of the usual headers are constants, other names strings
	// of their own; the target and every value are pieces of one string
	// (the token in it is remembered by the verifier: with it, about the
	// same bytes as a string of its own for every value).
	type field struct {
		name   string
		v0, v1 int // the value, in head
	}
	var buf [12]field
	fields := buf[:0]
	hosts, size := 0, len(target)
	for off := eol; ; {
		i := bytes.IndexByte(head[off:], '\n')
		if i < 1 || head[off+i-1] != '\r' {
			return nil, false, false // no CRLF, or a bare LF
		}
		line := head[off : off+i-1]
		if len(line) == 0 {
			if off+i+1 != len(head) {
				return nil, false, false // bytes after the blank line
			}
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false, false // no name, or a folded line (leading space or tab)
		}
		for _, c := range line[:colon] {
			if !ws.TokenByte(c) {
				return nil, false, false
			}
		}
		v0, v1 := colon+1, len(line)
		for _, c := range line[v0:] {
			if (c < ' ' || c >= 0x7f) && c != '\t' {
				return nil, false, false
			}
		}
		for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
			v1--
		}
		name := canonicalName(line[:colon])
		switch name {
		case "Host":
			hosts++
		case "Content-Length", "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false, false
		}
		fields = append(fields, field{name: name, v0: off + v0, v1: off + v1})
		size += v1 - v0
		off += i + 1
	}
	if hosts > 1 {
		return nil, false, false // "too many Host headers", says net/http
	}

	var sb strings.Builder
	sb.Grow(size)
	sb.Write(target)
	for _, f := range fields {
		sb.Write(head[f.v0:f.v1])
	}
	s := sb.String()
	uri, pos := s[:len(target)], len(target)
	ur := new(upgradeRequest)
	h := make(http.Header, len(fields)-hosts)
	var values []string
	if len(fields) <= len(ur.values) {
		values = ur.values[:len(fields)]
	} else {
		values = make([]string, len(fields))
	}
	host := ""
	for i, f := range fields {
		v := s[pos : pos+f.v1-f.v0]
		pos += len(v)
		if f.name == "Host" {
			host = v // in Request.Host only, as ReadRequest does
			continue
		}
		if vv, dup := h[f.name]; dup {
			h[f.name] = append(vv, v)
			continue
		}
		values[i] = v
		h[f.name] = values[i : i+1 : i+1]
	}
	u := &ur.url
	u.Path = "/ws"
	if len(uri) > 3 {
		u.RawQuery = uri[4:]
	}
	req = &ur.req
	*req = http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: uri,
		Close:      hasCloseToken(h["Connection"]),
	}
	return req, hosts == 1, true
}

// upgradeRequest is the request parseUpgradeHead returns, its URL and
// (usually) the backing array of its header values, allocated at once.
type upgradeRequest struct {
	req    http.Request
	url    url.URL
	values [12]string // as many as parseUpgradeHead's fields buffer
}

// canonicalName returns the canonical form of a header name (made of
// token bytes), as net/textproto makes it: a constant for the headers
// WebSocket clients send, a new string for others.
func canonicalName(b []byte) string {
	var buf [64]byte
	if len(b) > len(buf) {
		return http.CanonicalHeaderKey(string(b))
	}
	c := buf[:len(b)]
	upper := true
	for i, x := range b {
		switch {
		case upper && 'a' <= x && x <= 'z':
			x -= 'a' - 'A'
		case !upper && 'A' <= x && x <= 'Z':
			x += 'a' - 'A'
		}
		c[i] = x
		upper = x == '-'
	}
	switch string(c) {
	case "Host":
		return "Host"
	case "Upgrade":
		return "Upgrade"
	case "Connection":
		return "Connection"
	case "Sec-Websocket-Key":
		return "Sec-Websocket-Key"
	case "Sec-Websocket-Version":
		return "Sec-Websocket-Version"
	case "Sec-Websocket-Protocol":
		return "Sec-Websocket-Protocol"
	case "Sec-Websocket-Extensions":
		return "Sec-Websocket-Extensions"
	case "Authorization":
		return "Authorization"
	case "Origin":
		return "Origin"
	case "User-Agent":
		return "User-Agent"
	case "X-Forwarded-For":
		return "X-Forwarded-For"
	case "Cookie":
		return "Cookie"
	case "Cache-Control":
		return "Cache-Control"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Accept-Language":
		return "Accept-Language"
	}
	return string(c)
}

// hasCloseToken reports whether the Connection values list "close": the
// Request.Close net/http sets for HTTP/1.1.
func hasCloseToken(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(part, " \t"), "close") {
				return true
			}
		}
	}
	return false
}
