package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ws"
)

// tokenSource gives the token a connection presents for user sub.
type tokenSource interface {
	token(ctx context.Context, sub string) (string, error)
}

// signerTokens signs HS256 tokens locally with the server's secret, once
// per user: the churn scenario connects the same users over and over, and
// signing on every connection would be CPU taken from the server being
// measured. A token outlives the run (see newTokenSource).
type signerTokens struct {
	signer *auth.Signer
	ttl    time.Duration
	signed *sync.Map // user → token
}

func (s signerTokens) token(_ context.Context, sub string) (string, error) {
	if tok, ok := s.signed.Load(sub); ok {
		return tok.(string), nil
	}
	tok, err := s.signer.Sign(auth.TokenSpec{Subject: sub, TTL: s.ttl})
	if err != nil {
		return "", err
	}
	s.signed.Store(sub, tok)
	return tok, nil
}

// devTokens fetches tokens from POST /api/dev/token of a dev-mode server.
// The server makes the name the user id.
type devTokens struct {
	url    string
	client *http.Client
}

func (d devTokens) token(ctx context.Context, sub string) (string, error) {
	body, _ := json.Marshal(map[string]string{"name": sub})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dev token: %s: %s (is the server in dev mode, with no CHATD_JWT_SECRET?)", resp.Status, strings.TrimSpace(string(data)))
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("dev token: unexpected answer %.100q", data)
	}
	return out.Token, nil
}

func newTokenSource(cfg *config) (tokenSource, error) {
	switch {
	case cfg.tokenURL != "":
		return devTokens{url: cfg.tokenURL, client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		}}, nil
	case cfg.secret != "":
		signer, err := auth.NewSigner(auth.Config{Secret: []byte(cfg.secret), Issuer: cfg.issuer, Audience: cfg.audience})
		if err != nil {
			return nil, fmt.Errorf("-secret: %w", err)
		}
		// Long enough that no token expires (close 4001) during the run.
		ttl := max(time.Hour, 2*cfg.duration+10*time.Minute)
		return signerTokens{signer: signer, ttl: ttl, signed: &sync.Map{}}, nil
	}
	return nil, errors.New("no way to get tokens: give -secret (or set CHATD_JWT_SECRET) with the server's HS256 secret, or -token-url http://HOST:PORT/api/dev/token for a dev-mode server")
}

// connector opens chat connections: it spreads them over the node URLs
// and the local source addresses, and presents a token for each.
type connector struct {
	urls    []string
	tokens  tokenSource
	hdrMu   sync.RWMutex
	headers map[string]http.Header // user → Authorization, see authHeader
	dialers []func(ctx context.Context, network, addr string) (net.Conn, error)
	opts    ws.Options
	deflate bool
	timeout time.Duration // dial, upgrade, welcome and joins
}

func newConnector(cfg *config, tokens tokenSource) (*connector, error) {
	c := &connector{urls: cfg.urls, tokens: tokens, headers: map[string]http.Header{}, deflate: cfg.compression, timeout: cfg.connectTimeout}
	c.opts = ws.Options{ReadLimit: 16 << 20, CloseTimeout: 5 * time.Second}
	// No TCP keepalive (KeepAlive -1): chatd pings every connection, and
	// turning the kernel's probes on costs four system calls per dial,
	// which on one machine take CPU from the server being measured.
	for _, ip := range cfg.srcIPs {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Control: bindAddressNoPort, KeepAlive: -1}
		local, _ := netip.AddrFromSlice(ip.To4())
		c.dialers = append(c.dialers, dialDirect(d, netip.AddrPortFrom(local, 0)))
	}
	if len(c.dialers) == 0 {
		c.dialers = append(c.dialers, dialDirect(&net.Dialer{KeepAlive: -1}, netip.AddrPort{}))
	}
	return c, nil
}

// dialDirect dials with d, from local (an unspecified address for any):
// an address that is an IP and port goes straight to Dialer.DialTCP,
// without the name resolution and the dial racing that DialContext goes
// through for every connection, which in a churn run is CPU taken from the
// server being measured. Host names go through DialContext.
func dialDirect(d *net.Dialer, local netip.AddrPort) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		remote, err := netip.ParseAddrPort(addr)
		if err != nil || network != "tcp" {
			return d.DialContext(ctx, network, addr)
		}
		if !local.IsValid() || local.Addr().Is4() != remote.Addr().Is4() {
			return d.DialContext(ctx, network, addr)
		}
		return d.DialTCP(ctx, network, local, remote)
	}
}

// dial opens connection number i to node URL urlIdx as user sub and reads
// the welcome. The source address is chosen by i. The whole handshake is
// bounded by the connect timeout.
func (cn *connector) dial(ctx context.Context, i, urlIdx int, sub string) (*ws.Conn, error) {
	if !cn.bounds(ctx) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cn.timeout)
		defer cancel()
	}
	hdr, err := cn.authHeader(ctx, sub)
	if err != nil {
		return nil, &failure{kind: "token", err: err}
	}
	opts := &ws.DialOptions{
		Options:        cn.opts,
		Header:         hdr,
		Subprotocols:   []string{"chat"},
		Compression:    cn.deflate,
		NetDialContext: cn.dialers[i%len(cn.dialers)],
	}
	c, err := ws.Dial(ctx, cn.urls[urlIdx%len(cn.urls)], opts)
	if err != nil {
		return nil, &failure{kind: classifyDial(err), err: err}
	}
	return c, nil
}

// authHeader returns the header that presents sub's token, made once per
// user like the token itself (churn connects the same users over and over)
// and shared by their dials, which only read it.
func (cn *connector) authHeader(ctx context.Context, sub string) (http.Header, error) {
	cn.hdrMu.RLock()
	h, ok := cn.headers[sub]
	cn.hdrMu.RUnlock()
	if ok {
		return h, nil
	}
	tok, err := cn.tokens.token(ctx, sub)
	if err != nil {
		return nil, err
	}
	h = http.Header{"Authorization": {"Bearer " + tok}}
	cn.hdrMu.Lock()
	cn.headers[sub] = h
	cn.hdrMu.Unlock()
	return h, nil
}

// bounds reports whether ctx ends within the connect timeout anyway, so
// that the connect steps need no timer of their own: churn bounds each
// cycle, and two timers per cycle are CPU taken from the server.
func (cn *connector) bounds(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return ok && time.Until(deadline) <= cn.timeout
}

// await reads from c until an event of type want arrives (skipping
// presence, typing and messages) and returns it. An `error` event or a
// closed connection is a failure. ReadMessage has no deadline: the caller
// bounds the wait by closing c (a timer or context.AfterFunc).
func await(c *ws.Conn, buf []byte, want string) ([]byte, error) {
	for {
		_, data, err := c.ReadMessage(buf[:0])
		if err != nil {
			return data, &failure{kind: classifyRead(err), err: err}
		}
		buf = data
		typ := eventType(data)
		switch typ {
		case want:
			return data, nil
		case "error":
			code, _ := field(data, "code")
			return data, &failure{kind: "error_" + string(code), err: fmt.Errorf("%s while waiting for %s: %s", code, want, data)}
		}
	}
}

// connectJoin dials and joins rooms, waiting for every `joined`. A
// failure is a *failure; the connection is closed then.
func (cn *connector) connectJoin(ctx context.Context, i, urlIdx int, sub string, rooms []string) (*ws.Conn, error) {
	c, err := cn.dial(ctx, i, urlIdx, sub)
	if err != nil {
		return nil, err
	}
	// ReadMessage has no deadline: a timer closes the connection instead,
	// unless ctx ends sooner anyway (a churn cycle's bound).
	var timedOut bool
	var mu sync.Mutex
	timer := (*time.Timer)(nil)
	if !cn.bounds(ctx) {
		timer = time.AfterFunc(cn.timeout, func() {
			mu.Lock()
			timedOut = true
			mu.Unlock()
			_ = c.CloseNow()
		})
	}
	stopTimer := func() bool { return timer == nil || timer.Stop() }
	stop := context.AfterFunc(ctx, func() { _ = c.CloseNow() })
	fail := func(err error, what string) (*ws.Conn, error) {
		stopTimer()
		stop()
		_ = c.CloseNow()
		mu.Lock()
		defer mu.Unlock()
		if timedOut {
			return nil, &failure{kind: "timeout_" + what, err: fmt.Errorf("no %s within %v", what, cn.timeout)}
		}
		if ctx.Err() != nil {
			return nil, &failure{kind: "cancelled", err: ctx.Err()}
		}
		return nil, err
	}
	buf := make([]byte, 0, 512)
	if _, err := await(c, buf, "welcome"); err != nil {
		return fail(err, "welcome")
	}
	var cmd []byte
	for k, room := range rooms {
		cmd = appendJoin(cmd[:0], room, "j"+strconv.Itoa(k))
		if err := c.WriteMessage(ws.Text, cmd); err != nil {
			return fail(&failure{kind: classifyRead(err), err: err}, "joined")
		}
	}
	for range rooms {
		if _, err := await(c, buf, "joined"); err != nil {
			return fail(err, "joined")
		}
	}
	if !stopTimer() || !stop() {
		return fail(errors.New("cancelled"), "joined")
	}
	return c, nil
}

// Commands, encoded by hand like the server's events.

func appendJoin(b []byte, room, ref string) []byte {
	b = append(b, `{"type":"join","ref":`...)
	b = protocol.AppendString(b, ref)
	b = append(b, `,"room":`...)
	b = protocol.AppendString(b, room)
	return append(b, '}')
}

func appendLeave(b []byte, room, ref string) []byte {
	b = append(b, `{"type":"leave","ref":`...)
	b = protocol.AppendString(b, ref)
	b = append(b, `,"room":`...)
	b = protocol.AppendString(b, room)
	return append(b, '}')
}

// Reading events. chatd writes "type" first and never escapes the fields
// read here (room names, ids, error codes and the bench's own texts are
// plain ASCII), so a scan finds them without decoding the whole object;
// an event from another server that puts "type" elsewhere is decoded.

const typePrefix = `{"type":"`

func eventType(data []byte) string {
	if bytes.HasPrefix(data, []byte(typePrefix)) {
		rest := data[len(typePrefix):]
		if end := bytes.IndexByte(rest, '"'); end >= 0 {
			return eventName(rest[:end])
		}
	}
	var v struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(data, &v)
	return v.Type
}

// eventName returns the type as a constant string, without allocating,
// for the types chatd sends.
func eventName(b []byte) string {
	for _, t := range [...]string{"message", "presence", "typing", "welcome", "joined", "left", "sent", "error", "pong", "history", "refreshed", "draining"} {
		if string(b) == t {
			return t
		}
	}
	return string(b)
}

// field returns the raw value of the string field key ("key":"value"),
// without unescaping.
func field(data []byte, key string) ([]byte, bool) {
	var pat [80]byte
	p := append(pat[:0], '"')
	p = append(p, key...)
	p = append(p, '"', ':', '"')
	i := bytes.Index(data, p)
	if i < 0 {
		return nil, false
	}
	rest := data[i+len(p):]
	for j := 0; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			return rest[:j], true
		}
	}
	return nil, false
}

// numField returns the integer field key ("key":123).
func numField(data []byte, key string) (int64, bool) {
	var pat [80]byte
	p := append(pat[:0], '"')
	p = append(p, key...)
	p = append(p, '"', ':')
	i := bytes.Index(data, p)
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(p):]
	j := 0
	for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || rest[j] == '-') {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}

// Failures.

// failure is an error with the kind it is counted under.
type failure struct {
	kind string
	err  error
}

func (f *failure) Error() string { return f.kind + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func kindOf(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.kind
	}
	return "other"
}

// classifyDial names a failed dial: the HTTP status the upgrade was
// refused with, or the network error.
func classifyDial(err error) string {
	var de *ws.DialError
	if errors.As(err, &de) && de.Response != nil && de.Response.StatusCode != http.StatusSwitchingProtocols {
		return "http_" + strconv.Itoa(de.Response.StatusCode)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect_refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no_local_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "conn_reset"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout_upgrade"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	if de != nil {
		return "bad_handshake"
	}
	return "dial_error"
}

// classifyRead names how an established connection ended: the close code.
func classifyRead(err error) string {
	if code := ws.CloseStatus(err); code != 0 {
		return "close_" + strconv.Itoa(int(code))
	}
	if errors.Is(err, ws.ErrClosed) {
		return "closed"
	}
	return "conn_error"
}

// failures counts failures by kind, keeping the first error of each as an
// example. It is safe for concurrent use.
type failures struct {
	mu     sync.Mutex
	counts map[string]*failureCount
	total  *atomicCounter // also counted here, for the progress line
}

type failureCount struct {
	Count   int64  `json:"count"`
	Example string `json:"example"`
}

func newFailures(total *atomicCounter) *failures {
	return &failures{counts: map[string]*failureCount{}, total: total}
}

func (f *failures) add(err error) { f.addKind(kindOf(err), err) }

func (f *failures) addKind(kind string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc := f.counts[kind]
	if fc == nil {
		msg := ""
		if err != nil {
			msg = err.Error()
			if len(msg) > 300 {
				msg = msg[:300] + "..."
			}
		}
		fc = &failureCount{Example: msg}
		f.counts[kind] = fc
	}
	fc.Count++
	if f.total != nil {
		f.total.add(0, 1)
	}
}

func (f *failures) snapshot() map[string]failureCount {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]failureCount, len(f.counts))
	for k, v := range f.counts {
		out[k] = *v
	}
	return out
}

func (f *failures) count(kind string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fc := f.counts[kind]; fc != nil {
		return fc.Count
	}
	return 0
}

// isLoopbackURL reports whether a ws URL's host is a loopback address,
// which is when connections can come from 127.0.0.x source addresses.
func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

// cachedTokens gets one token per user and reuses it, for churn, whose
// workers reconnect as the same user again and again.
type cachedTokens struct {
	src tokenSource
	m   sync.Map // sub → string
}

func (c *cachedTokens) token(ctx context.Context, sub string) (string, error) {
	if t, ok := c.m.Load(sub); ok {
		return t.(string), nil
	}
	t, err := c.src.token(ctx, sub)
	if err != nil {
		return "", err
	}
	c.m.Store(sub, t)
	return t, nil
}
