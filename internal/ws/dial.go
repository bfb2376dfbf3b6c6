package ws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DialOptions configure Dial. A nil *DialOptions means all defaults.
type DialOptions struct {
	Options

	// Header is sent with the handshake request (Authorization, Origin,
	// Cookie...).
	Header http.Header
	// Subprotocols are offered in Sec-WebSocket-Protocol.
	Subprotocols []string
	// Compression offers permessage-deflate.
	Compression bool
	// TLSConfig is used for wss:// URLs.
	TLSConfig *tls.Config
	// NetDialContext dials the TCP connection; default net.Dialer. Load
	// tools use it to pick source addresses.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DialError is a handshake the server refused or answered wrongly. When the
// server answered with an HTTP status other than 101, Response holds it,
// with the start of its body readable.
type DialError struct {
	Response *http.Response
	Err      error
}

func (e *DialError) Error() string {
	if e.Response != nil && e.Response.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Sprintf("ws: dial: server answered %s: %v", e.Response.Status, e.Err)
	}
	return "ws: dial: " + e.Err.Error()
}

func (e *DialError) Unwrap() error { return e.Err }

// Dial opens a WebSocket connection to a ws:// or wss:// URL. ctx bounds
// the connection and the handshake; it has no effect on the connection
// afterwards. The server's answer is checked: the accept key, a
// subprotocol only from those offered, extensions only as offered.
func Dial(ctx context.Context, rawURL string, opts *DialOptions) (*Conn, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ws: dial: %w", err)
	}
	var secure bool
	switch u.Scheme {
	case "ws":
	case "wss":
		secure = true
	default:
		return nil, fmt.Errorf("ws: dial: URL scheme must be ws or wss, not %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("ws: dial: URL %q has no host", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	dial := opts.NetDialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ws: dial %s: %w", addr, err)
	}
	// Bound the handshake by ctx: cancelling unblocks the I/O below.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	c, err := handshake(ctx, nc, u, secure, opts)
	if !stop() || err != nil {
		_ = nc.Close()
		// The connection's deadline (ctx's) may fire just before ctx
		// itself: report a timeout of either as ctx's error too.
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		} else if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			err = errors.Join(context.DeadlineExceeded, err)
		}
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, nc net.Conn, u *url.URL, secure bool, opts *DialOptions) (*Conn, error) {
	if deadline, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(deadline)
	}
	if secure {
		cfg := opts.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		// HTTP/2 has no Upgrade: insist on HTTP/1.1.
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("ws: dial: TLS handshake: %w", err)
		}
		nc = tc
	}

	var keyBytes [16]byte
	_, _ = rand.Read(keyBytes[:])
	key := base64.StdEncoding.EncodeToString(keyBytes[:])

	req, err := buildHandshake(u, key, opts)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(req); err != nil {
		return nil, fmt.Errorf("ws: dial: send handshake: %w", err)
	}

	br := bufio.NewReaderSize(nc, 1024)
	subprotocol, dp, err := readHandshakeResponse(br, u, key, opts)
	if err != nil {
		return nil, err
	}
	// The server may have sent its first frames with the 101 (chatd's
	// welcome goes in the same write): they are the connection's.
	var buffered []byte
	if n := br.Buffered(); n > 0 {
		buffered, _ = br.Peek(n)
	}
	_ = nc.SetDeadline(time.Time{})
	return newConn(nc, false, buffered, opts.withDefaults(), subprotocol, dp), nil
}

// readHandshakeResponse reads the server's answer to the opening
// handshake sent with key from br, leaving what follows it in br, and
// checks it as RFC 6455 §4.1 asks of a client: status 101, HTTP/1.1 or
// later, Upgrade: websocket, Connection: Upgrade, the accept key of key,
// a subprotocol only from those offered, extensions only as offered. It
// returns the subprotocol and the permessage-deflate parameters agreed.
//
// The plain 101 head servers send is read by the fast path of
// dialresp.go, when its checks pass; anything else, and every failure, by
// readResponseNetHTTP, from the same bytes.
func readHandshakeResponse(br *bufio.Reader, u *url.URL, key string, opts *DialOptions) (subprotocol string, dp *deflateParams, err error) {
	var h respHead
	if peekResponseHead(br, &h) {
		if subprotocol, dp, ok := h.check(key, opts); ok {
			_, _ = br.Discard(h.size) // peeked: cannot fail
			return subprotocol, dp, nil
		}
	}
	return readResponseNetHTTP(br, u, key, opts)
}

// readResponseNetHTTP is readHandshakeResponse with http.ReadResponse:
// for any head, and for the errors (a *DialError holds the Response).
func readResponseNetHTTP(br *bufio.Reader, u *url.URL, key string, opts *DialOptions) (subprotocol string, dp *deflateParams, err error) {
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, URL: u})
	if err != nil {
		return "", nil, fmt.Errorf("ws: dial: read handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return "", nil, &DialError{Response: resp, Err: errors.New(strings.TrimSpace(string(body)))}
	}
	fail := func(msg string) (string, *deflateParams, error) {
		return "", nil, &DialError{Response: resp, Err: errors.New(msg)}
	}
	// HTTP/1.1, or a later 1.x: a text status line naming HTTP/2 or
	// later is no version's (those are binary), whatever net/http parses.
	if resp.ProtoMajor != 1 || resp.ProtoMinor < 1 {
		return fail("response is not HTTP/1.1: " + resp.Proto)
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fail("response lacks Upgrade: websocket and Connection: Upgrade")
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(key) {
		return fail("wrong Sec-WebSocket-Accept")
	}
	// §4.1: the server's subprotocol must be one of those offered; a list
	// or a repeated header is not an answer.
	if sp := resp.Header.Values("Sec-WebSocket-Protocol"); len(sp) > 0 {
		subprotocol = strings.TrimSpace(sp[0])
		if len(sp) > 1 || !contains(opts.Subprotocols, subprotocol) {
			return fail(fmt.Sprintf("server chose a subprotocol that was not offered: %q", strings.Join(sp, ", ")))
		}
	}
	if exts := resp.Header.Values("Sec-WebSocket-Extensions"); len(exts) > 0 {
		if !opts.Compression {
			return fail("server accepted an extension that was not offered")
		}
		p, present, err := acceptDeflateResponse(exts)
		if err != nil {
			return "", nil, &DialError{Response: resp, Err: err}
		}
		if present {
			dp = &p
		}
	}
	return subprotocol, dp, nil
}

// reservedDialHeaders are the handshake headers Dial writes itself; the
// caller sets them through DialOptions, not Header.
var reservedDialHeaders = map[string]string{
	"Upgrade":                  "",
	"Connection":               "",
	"Sec-Websocket-Key":        "",
	"Sec-Websocket-Version":    "",
	"Sec-Websocket-Accept":     "",
	"Sec-Websocket-Extensions": " (use Compression)",
	"Sec-Websocket-Protocol":   " (use Subprotocols)",
}

// buildHandshake builds the opening handshake of RFC 6455 §4.1. A Host
// in opts.Header replaces the URL's host, as http.Request.Host does.
func buildHandshake(u *url.URL, key string, opts *DialOptions) ([]byte, error) {
	host := u.Host
	if h := opts.Header.Get("Host"); h != "" {
		host = h
	}
	for _, p := range opts.Subprotocols {
		if !isToken(p) {
			return nil, fmt.Errorf("ws: dial: subprotocol %q is not a token", p)
		}
	}
	// Appended piece by piece: the request is one allocation (a token in
	// a header included), where formatting it cost one per piece.
	req := make([]byte, 0, 512)
	req = append(req, "GET "...)
	req = append(req, u.RequestURI()...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	req = append(req, key...)
	req = append(req, "\r\n"...)
	if len(opts.Subprotocols) > 0 {
		req = append(req, "Sec-WebSocket-Protocol: "...)
		for i, p := range opts.Subprotocols {
			if i > 0 {
				req = append(req, ", "...)
			}
			req = append(req, p...)
		}
		req = append(req, "\r\n"...)
	}
	if opts.Compression {
		req = append(req, "Sec-WebSocket-Extensions: "+clientDeflateOffer+"\r\n"...)
	}
	for k, vs := range opts.Header {
		ck := http.CanonicalHeaderKey(k)
		if ck == "Host" {
			continue
		}
		if why, ok := reservedDialHeaders[ck]; ok {
			return nil, fmt.Errorf("ws: dial: header %s is set by Dial%s", ck, why)
		}
		if !isToken(k) {
			return nil, fmt.Errorf("ws: dial: header name %q is not a token", k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				return nil, fmt.Errorf("ws: dial: header %s contains a line break", k)
			}
			req = append(req, k...)
			req = append(req, ": "...)
			req = append(req, v...)
			req = append(req, "\r\n"...)
		}
	}
	if strings.ContainsAny(host, "\r\n\x00 ") {
		return nil, fmt.Errorf("ws: dial: bad host %q", host)
	}
	return append(req, "\r\n"...), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
