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
		if err == nil || ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
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

	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	req.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n")
	if len(opts.Subprotocols) > 0 {
		req.WriteString("Sec-WebSocket-Protocol: " + strings.Join(opts.Subprotocols, ", ") + "\r\n")
	}
	if opts.Compression {
		req.WriteString("Sec-WebSocket-Extensions: " + clientDeflateOffer + "\r\n")
	}
	for k, vs := range opts.Header {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n") {
				return nil, fmt.Errorf("ws: dial: header %q contains a line break", k)
			}
			req.WriteString(k + ": " + v + "\r\n")
		}
	}
	req.WriteString("\r\n")
	if _, err := nc.Write(req.Bytes()); err != nil {
		return nil, fmt.Errorf("ws: dial: send handshake: %w", err)
	}

	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, URL: u})
	if err != nil {
		return nil, fmt.Errorf("ws: dial: read handshake response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, &DialError{Response: resp, Err: errors.New(strings.TrimSpace(string(body)))}
	}
	fail := func(msg string) (*Conn, error) {
		return nil, &DialError{Response: resp, Err: errors.New(msg)}
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fail("response lacks Upgrade: websocket and Connection: Upgrade")
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(key) {
		return fail("wrong Sec-WebSocket-Accept")
	}
	subprotocol := resp.Header.Get("Sec-WebSocket-Protocol")
	if subprotocol != "" && !contains(opts.Subprotocols, subprotocol) {
		return fail("server chose a subprotocol that was not offered: " + subprotocol)
	}
	var dp *deflateParams
	if exts := resp.Header.Values("Sec-WebSocket-Extensions"); len(exts) > 0 {
		if !opts.Compression {
			return fail("server accepted an extension that was not offered")
		}
		p, present, err := acceptDeflateResponse(exts)
		if err != nil {
			return nil, &DialError{Response: resp, Err: err}
		}
		if present {
			dp = &p
		}
	}
	var buffered []byte
	if n := br.Buffered(); n > 0 {
		buffered, _ = br.Peek(n)
	}
	_ = nc.SetDeadline(time.Time{})
	return newConn(nc, false, buffered, opts.withDefaults(), subprotocol, dp), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
