package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AcceptOptions configure Accept. A nil *AcceptOptions means all defaults.
type AcceptOptions struct {
	Options

	// Subprotocols are the subprotocols the server speaks, in order of
	// preference; the first one the client offered is chosen. None is
	// chosen unless the client offered it.
	Subprotocols []string
	// SelectSubprotocol, when set, replaces Subprotocols: it receives the
	// client's offer and returns the one to answer, or "" for none. An
	// answer the client did not offer is ignored.
	SelectSubprotocol func(offered []string) string
	// CheckOrigin decides whether the request's Origin is allowed. When
	// nil, a request without Origin is allowed, and one with Origin only
	// when its host equals the request's Host.
	CheckOrigin func(r *http.Request) bool
	// Compression enables permessage-deflate when the client offers it.
	Compression bool
	// ResponseHeader is added to the 101 response (e.g. Set-Cookie). The
	// handshake's own headers (Upgrade, Connection, Sec-WebSocket-*) in it
	// are ignored: they come from the negotiation.
	ResponseHeader http.Header
	// Reject writes the HTTP error response for a refused handshake. When
	// nil, a plain-text error is written.
	Reject func(w http.ResponseWriter, r *http.Request, err *HandshakeError)
}

// HandshakeError is a refused upgrade request: Status is the HTTP status
// answered (400, 403, 405 or 426).
type HandshakeError struct {
	Status  int
	Message string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("ws: handshake refused (%d): %s", e.Status, e.Message)
}

// acceptGUID is the fixed string of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	return string(appendAcceptKey(nil, key))
}

// appendAcceptKey appends AcceptKey(key) to dst; for a valid key (24
// bytes) it allocates nothing but dst's growth.
func appendAcceptKey(dst []byte, key string) []byte {
	var buf [24 + len(acceptGUID)]byte
	h := sha1.Sum(append(append(buf[:0], key...), acceptGUID...))
	return base64.StdEncoding.AppendEncode(dst, h[:])
}

// The request headers the handshake reads, in the canonical form of
// net/textproto, which http.Header's keys have: indexing the map with
// them skips the canonicalisation that Header.Get and Header.Values make
// of their argument on every call ("Sec-WebSocket-Key" is not canonical).
const (
	hdrConnection = "Connection"
	hdrUpgrade    = "Upgrade"
	hdrVersion    = "Sec-Websocket-Version"
	hdrKey        = "Sec-Websocket-Key"
	hdrProtocol   = "Sec-Websocket-Protocol"
	hdrExtensions = "Sec-Websocket-Extensions"
	hdrOrigin     = "Origin"
)

// Accept upgrades an HTTP request to a WebSocket connection. On a refused
// handshake it writes the error response (see AcceptOptions.Reject) and
// returns a *HandshakeError; after a failure past the handshake checks
// (hijacking, writing the response), the connection is closed.
func Accept(w http.ResponseWriter, r *http.Request, opts *AcceptOptions) (*Conn, error) {
	return AcceptGreeting(w, r, opts, nil)
}

// AcceptGreeting is Accept for a server that speaks first: greeting, when
// not empty, is the connection's first message, a text message in one
// frame, sent in the same write as the 101 response. The client gets both
// in one TCP segment and usually one read, and the server saves a write.
// Nothing can come before it, and it is never compressed (an uncompressed
// message is always allowed under permessage-deflate, RFC 7692 §6), so it
// does not depend on the negotiation. greeting must be valid UTF-8; it is
// not kept.
func AcceptGreeting(w http.ResponseWriter, r *http.Request, opts *AcceptOptions, greeting []byte) (*Conn, error) {
	if opts == nil {
		opts = &AcceptOptions{}
	}
	subprotocol, dp, extResp, herr := checkUpgrade(r, opts)
	if herr != nil {
		if herr.Status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		if herr.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodGet)
		}
		if opts.Reject != nil {
			opts.Reject(w, r, herr)
		} else {
			http.Error(w, herr.Message, herr.Status)
		}
		return nil, herr
	}

	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "websocket upgrade is not supported on this connection", http.StatusInternalServerError)
		return nil, fmt.Errorf("ws: hijack: %w", err)
	}
	// The http.Server may have set deadlines for the request; a WebSocket
	// lives by its own.
	_ = nc.SetDeadline(time.Time{})

	var buffered []byte
	if n := brw.Reader.Buffered(); n > 0 {
		// The client may have sent frames right behind its request.
		buffered, _ = brw.Reader.Peek(n)
	}

	// Built in a pooled buffer: the response and the greeting are copied
	// into the socket by the write and not kept.
	bp := getWriteBuffer()
	resp := append(*bp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	// checkUpgrade made sure there is exactly one, valid.
	resp = appendAcceptKey(resp, strings.TrimSpace(r.Header[hdrKey][0]))
	if subprotocol != "" {
		resp = append(resp, "\r\nSec-WebSocket-Protocol: "...)
		resp = append(resp, subprotocol...)
	}
	if extResp != "" {
		resp = append(resp, "\r\nSec-WebSocket-Extensions: "...)
		resp = append(resp, extResp...)
	}
	for k, vs := range opts.ResponseHeader {
		if !isToken(k) {
			continue // not a header name: it could inject lines
		}
		if _, ok := handshakeResponseHeaders[http.CanonicalHeaderKey(k)]; ok {
			continue // written above, from the negotiation
		}
		for _, v := range vs {
			resp = append(resp, "\r\n"...)
			resp = append(resp, k...)
			resp = append(resp, ": "...)
			resp = append(resp, strings.NewReplacer("\r", "", "\n", "").Replace(v)...)
		}
	}
	resp = append(resp, "\r\n\r\n"...)
	if len(greeting) > 0 {
		// A server's frame, unmasked (RFC 6455 §5.1), FIN set, RSV1
		// clear: uncompressed.
		resp = appendHeader(resp, true, false, opText, len(greeting), false, 0)
		resp = append(resp, greeting...)
	}
	// Written by the connection's own write, which writes what the socket
	// takes at once without a deadline (a new connection's socket
	// normally takes it all) and waits, within WriteTimeout, only for the rest. The
	// keepalive starts once the response is out: no ping can precede it.
	o := opts.withDefaults()
	ping := o.PingInterval
	o.PingInterval = 0
	c := newConn(nc, true, buffered, o, subprotocol, dp)
	c.writeMu.Lock()
	err = c.netWriteLocked(resp) // on failure, the connection is closed
	c.writeMu.Unlock()
	if cap(resp) == cap(*bp) {
		*bp = resp // not one grown for a large greeting: that one is dropped
	}
	putWriteBuffer(bp)
	if err != nil {
		return nil, fmt.Errorf("ws: write handshake response: %w", err)
	}
	if ping > 0 {
		o.PingInterval = ping
		c.opts = internOptions(o)
		startKeepalive(c, ping, o.PongTimeout)
	}
	return c, nil
}

// handshakeResponseHeaders are the 101 response's own headers, which
// AcceptOptions.ResponseHeader cannot add to or contradict.
var handshakeResponseHeaders = map[string]struct{}{
	"Upgrade": {}, "Connection": {}, "Sec-Websocket-Accept": {},
	"Sec-Websocket-Protocol": {}, "Sec-Websocket-Extensions": {},
}

// checkUpgrade validates an upgrade request (RFC 6455 §4.2.1) and
// negotiates the subprotocol and extensions.
func checkUpgrade(r *http.Request, opts *AcceptOptions) (subprotocol string, dp *deflateParams, extResp string, herr *HandshakeError) {
	refuse := func(status int, msg string) (string, *deflateParams, string, *HandshakeError) {
		return "", nil, "", &HandshakeError{Status: status, Message: msg}
	}
	if r.Method != http.MethodGet {
		return refuse(http.StatusMethodNotAllowed, "a WebSocket handshake must use GET")
	}
	if !r.ProtoAtLeast(1, 1) {
		// §4.2.1: "An HTTP/1.1 or higher GET request".
		return refuse(http.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1")
	}
	if !headerHasToken(r.Header, hdrConnection, "upgrade") {
		return refuse(http.StatusBadRequest, `the Connection header must contain "Upgrade"`)
	}
	if !headerHasToken(r.Header, hdrUpgrade, "websocket") {
		return refuse(http.StatusBadRequest, `the Upgrade header must contain "websocket"`)
	}
	if v := r.Header[hdrVersion]; len(v) != 1 || strings.TrimSpace(v[0]) != "13" {
		return refuse(http.StatusUpgradeRequired, "only WebSocket version 13 is supported")
	}
	keys := r.Header[hdrKey]
	if len(keys) != 1 || !validKey(keys[0]) {
		return refuse(http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64")
	}
	checkOrigin := opts.CheckOrigin
	if checkOrigin == nil {
		checkOrigin = SameOrigin
	}
	if !checkOrigin(r) {
		return refuse(http.StatusForbidden, "origin not allowed")
	}
	if opts.SelectSubprotocol != nil {
		subprotocol = selectSubprotocol(headerTokens(r.Header, hdrProtocol), opts)
	} else {
		// The same choice as selectSubprotocol's, without collecting
		// the offer.
		for _, s := range opts.Subprotocols {
			if s != "" && headerHasExactToken(r.Header, hdrProtocol, s) {
				subprotocol = s
				break
			}
		}
	}
	if opts.Compression {
		if p, resp, ok := negotiateDeflate(r.Header[hdrExtensions]); ok {
			dp, extResp = &p, resp
		}
	}
	return subprotocol, dp, extResp, nil
}

func selectSubprotocol(offered []string, opts *AcceptOptions) string {
	if len(offered) == 0 {
		return ""
	}
	if opts.SelectSubprotocol != nil {
		choice := opts.SelectSubprotocol(offered)
		for _, o := range offered {
			if o == choice {
				return choice
			}
		}
		return ""
	}
	for _, s := range opts.Subprotocols {
		for _, o := range offered {
			if o == s {
				return s
			}
		}
	}
	return ""
}

// SameOrigin allows requests without an Origin header (not from a
// browser) and those whose Origin host equals the request's Host.
func SameOrigin(r *http.Request) bool {
	origin := r.Header.Get(hdrOrigin)
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// strictBase64 is standard base64 that refuses non-zero padding bits, as
// a key must be the encoding of 16 bytes exactly.
var strictBase64 = base64.StdEncoding.Strict()

func validKey(k string) bool {
	k = strings.TrimSpace(k)
	if len(k) != 24 {
		return false
	}
	var b [18]byte // 24 base64 characters decode to at most 18 bytes
	n, err := strictBase64.Decode(b[:], []byte(k))
	return err == nil && n == 16
}

// headerTokens returns the comma-separated elements of every value of the
// header (name in canonical form), trimmed, without empty ones.
func headerTokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h[name] {
		for part := range strings.SplitSeq(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// headerHasExactToken reports whether the comma-separated list in the
// header (name in canonical form) contains token, compared exactly, as
// subprotocols are (RFC 6455 §4.2.2: "the value chosen MUST be derived
// from the client's handshake").
func headerHasExactToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for part := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(part) == token {
				return true
			}
		}
	}
	return false
}

// headerHasToken reports whether the comma-separated list in the header
// (name in canonical form) contains token, compared case-insensitively
// (RFC 6455 §4.2.1).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
