package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/ws"
)

// upgradeRequest is a valid upgrade request for ts with a token in the
// Authorization header; a test breaks one part of it.
func upgradeRequest(t *testing.T, ts *testServer, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.HTTP+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "chat")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// checkErrorBody checks PROTOCOL.md §1: every HTTP error body is
// {"error":"<code>","message":"<human text>"}.
func checkErrorBody(t *testing.T, resp *http.Response, body []byte, wantCode string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	code, _ := e["error"].(string)
	message, _ := e["message"].(string)
	if code == "" || message == "" || len(e) != 2 {
		t.Errorf("body %s, want exactly a non-empty error and message", body)
	}
	if wantCode != "" && code != wantCode {
		t.Errorf("error %q, want %q", code, wantCode)
	}
}

// TestHandshakeRejections covers the "on failure" column of PROTOCOL.md §1
// for the request itself, the origin, the token and the subprotocol.
func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	good := ts.token(t, "alice")
	other, err := auth.NewSigner(auth.Config{Secret: []byte("another-secret-of-32-bytes-or-more!!")})
	if err != nil {
		t.Fatal(err)
	}
	badSig, _ := other.Sign(auth.TokenSpec{Subject: "alice", TTL: time.Hour})
	expired := ts.sign(t, auth.TokenSpec{Subject: "alice", TTL: time.Nanosecond})
	expiredLong := signHS256(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()})
	noExp := signHS256(t, jwt.MapClaims{"sub": "alice"})
	noSub := signHS256(t, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(testSecret)
	algNone, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	_ = expired

	tests := []struct {
		name       string
		modify     func(r *http.Request)
		status     int
		code       string
		wantHeader map[string]string
	}{
		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, 400, "bad_request", nil},
		{"PUT", func(r *http.Request) { r.Method = http.MethodPut }, 400, "bad_request", nil},
		{"no Upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 400, "bad_request", nil},
		{"Upgrade not websocket", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 400, "bad_request", nil},
		{"no Connection", func(r *http.Request) { r.Header.Del("Connection") }, 400, "bad_request", nil},
		{"Connection keep-alive only", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 400, "bad_request", nil},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400, "bad_request", nil},
		{"key not base64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "not base64 at all!!!!!!!") }, 400, "bad_request", nil},
		{"key 15 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA") }, 400, "bad_request", nil},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426, "", map[string]string{"Sec-WebSocket-Version": "13"}},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, 426, "", map[string]string{"Sec-WebSocket-Version": "13"}},
		{"foreign origin", func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }, 403, "forbidden", nil},
		{"origin same host other port", func(r *http.Request) { r.Header.Set("Origin", "http://127.0.0.1:1") }, 403, "forbidden", nil},
		{"origin null", func(r *http.Request) { r.Header.Set("Origin", "null") }, 403, "forbidden", nil},
		{"no token", func(r *http.Request) { r.Header.Del("Authorization") }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"Basic auth", func(r *http.Request) { r.Header.Set("Authorization", "Basic YWxpY2U6cHc=") }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"garbage token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer not.a.jwt") }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"wrong secret", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+badSig) }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"expired", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+expiredLong) }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"no exp", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+noExp) }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"no sub", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+noSub) }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"alg HS512", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+hs512) }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"alg none", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+algNone) }, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"bad token in query", func(r *http.Request) {
			r.Header.Del("Authorization")
			r.URL.RawQuery = "access_token=" + url.QueryEscape(badSig)
		}, 401, "unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"no subprotocol", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Protocol") }, 400, "bad_request", nil},
		{"other subprotocol", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "superchat, chat2") }, 400, "bad_request", nil},
		{"only the token subprotocol", func(r *http.Request) {
			r.Header.Del("Authorization")
			r.Header.Set("Sec-WebSocket-Protocol", "access_token."+good)
		}, 400, "bad_request", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := upgradeRequest(t, ts, good)
			tc.modify(req)
			resp, body := httpDo(t, req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			checkErrorBody(t, resp, body, tc.code)
			for k, v := range tc.wantHeader {
				got := resp.Header.Get(k)
				if k == "WWW-Authenticate" {
					// RFC 6750 §3: the Bearer scheme, optionally with
					// parameters.
					if got != v && !strings.HasPrefix(got, v+" ") {
						t.Errorf("%s: %q, want the %s scheme", k, got, v)
					}
					continue
				}
				if got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func signHS256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenSources connects with the token in each of the three places of
// PROTOCOL.md §1; the answered subprotocol is exactly "chat".
func TestTokenSources(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	tok := ts.token(t, "alice")
	tests := []struct {
		name string
		o    dialOpts
	}{
		{"Authorization header", dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}}},
		{"Authorization lower-case scheme", dialOpts{header: http.Header{"Authorization": {"bearer " + tok}}}},
		{"subprotocol after chat", dialOpts{subprotocols: []string{"chat", "access_token." + tok}}},
		{"subprotocol before chat", dialOpts{subprotocols: []string{"access_token." + tok, "chat"}}},
		{"query parameter", dialOpts{query: "?access_token=" + url.QueryEscape(tok)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ts.dialWith(t, "alice", tc.o)
			if got := c.conn.Subprotocol(); got != "chat" {
				t.Errorf("Sec-WebSocket-Protocol answered %q, want exactly chat", got)
			}
			w := c.expect("welcome")
			if w.str("user") != "alice" || w.str("name") != "Alice" {
				t.Errorf("welcome %v, want user alice, name Alice", w)
			}
		})
	}
}

// TestOriginAllowList checks exact and wildcard entries, and that a
// request without Origin is always allowed.
func TestOriginAllowList(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.AllowedOrigins = []string{"https://chat.example.com", "https://*.example.org"}
	ts := startServer(t, cfg)
	def := startServer(t, fastConfig())
	tests := []struct {
		ts     *testServer
		origin string
		ok     bool
	}{
		{ts, "", true},
		{ts, "https://chat.example.com", true},
		{ts, "https://CHAT.example.com:443", true},
		{ts, "http://chat.example.com", false},
		{ts, "https://evil.example.com", false},
		{ts, "https://a.example.org", true},
		{ts, "https://a.b.example.org", true},
		{ts, "https://example.org", false},
		{ts, "https://badexample.org", false},
		{ts, "http://" + ts.Addr, false}, // with a list, the own host is not implied
		{def, "", true},
		{def, "http://" + def.Addr, true},
		{def, "https://" + def.Addr, true}, // TLS may end at a proxy: the scheme is not compared
		{def, "http://chat.example.com", false},
	}
	for _, tc := range tests {
		h := http.Header{"Authorization": {"Bearer " + tc.ts.token(t, "alice")}}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		conn, err := tc.ts.tryDial(dialOpts{header: h})
		if tc.ok {
			if err != nil {
				t.Errorf("origin %q: %v, want accepted", tc.origin, err)
				continue
			}
			_ = conn.CloseNow()
			continue
		}
		if status := dialStatus(err); status != http.StatusForbidden {
			t.Errorf("origin %q: %v, want 403", tc.origin, err)
		}
	}
}

// dialStatus returns the HTTP status of a refused dial, 0 otherwise.
func dialStatus(err error) int {
	var de *ws.DialError
	if errors.As(err, &de) && de.Response != nil {
		return de.Response.StatusCode
	}
	return 0
}

// TestPublicKeyAlgorithms: RS256, ES256 and EdDSA verify with a configured
// public key; HS256 tokens are then refused.
func TestPublicKeyAlgorithms(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		alg    jwt.SigningMethod
		public any
		key    crypto.Signer
	}{
		{jwt.SigningMethodRS256, &rsaKey.PublicKey, rsaKey},
		{jwt.SigningMethodES256, &ecKey.PublicKey, ecKey},
		{jwt.SigningMethodEdDSA, edPub, edKey},
	}
	for _, tc := range tests {
		t.Run(tc.alg.Alg(), func(t *testing.T) {
			t.Parallel()
			der, err := x509.MarshalPKIXPublicKey(tc.public)
			if err != nil {
				t.Fatal(err)
			}
			cfg := fastConfig()
			cfg.Auth.PublicKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			cfg.Auth.Issuer = "https://id.example.com"
			ts := startServer(t, cfg)
			claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iss": "https://id.example.com"}
			tok, err := jwt.NewWithClaims(tc.alg, claims).SignedString(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
			c.expect("welcome")

			claims["iss"] = "https://other.example.com"
			wrongIss, _ := jwt.NewWithClaims(tc.alg, claims).SignedString(tc.key)
			hs, _ := ts.Signer.Sign(auth.TokenSpec{Subject: "alice"})
			for name, bad := range map[string]string{"HS256": hs, "wrong iss": wrongIss} {
				_, err := ts.tryDial(dialOpts{header: http.Header{"Authorization": {"Bearer " + bad}}})
				if status := dialStatus(err); status != http.StatusUnauthorized {
					t.Errorf("%s token: %v, want 401", name, err)
				}
			}
		})
	}
}

// TestUpgradeRateLimit: over the per-IP upgrade rate, 429 with Retry-After.
func TestUpgradeRateLimit(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.UpgradeRate = 0.01
	cfg.UpgradeBurst = 2
	ts := startServer(t, cfg)
	tok := ts.token(t, "alice")
	for i := 0; i < 2; i++ {
		ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
	}
	resp, body := httpDo(t, upgradeRequest(t, ts, tok))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third upgrade: %d %s, want 429", resp.StatusCode, body)
	}
	checkErrorBody(t, resp, body, "rate_limited")
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
}

// TestConnectionCap: past MaxConns, 503 with Retry-After; a slot freed is
// usable again.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.MaxConns = 2
	ts := startServer(t, cfg)
	a := ts.dial(t, "alice")
	ts.dial(t, "bob")
	resp, body := httpDo(t, upgradeRequest(t, ts, ts.token(t, "carol")))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %d %s, want 503", resp.StatusCode, body)
	}
	checkErrorBody(t, resp, body, "")
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	_ = a.conn.Close(ws.StatusNormalClosure, "")
	eventually(t, waitTimeout, func() bool {
		conn, err := ts.tryDial(dialOpts{header: http.Header{"Authorization": {"Bearer " + ts.token(t, "carol")}}})
		if err != nil {
			return false
		}
		_ = conn.CloseNow()
		return true
	})
}

// TestCompression: permessage-deflate is negotiated when offered and
// enabled, and declined (never an error) otherwise.
func TestCompression(t *testing.T) {
	t.Parallel()
	on := startServer(t, fastConfig())
	cfg := fastConfig()
	cfg.Compression = false
	off := startServer(t, cfg)
	for _, tc := range []struct {
		ts    *testServer
		offer bool
		want  bool
	}{{on, true, true}, {on, false, false}, {off, true, false}} {
		c := tc.ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + tc.ts.token(t, "alice")}}, compression: tc.offer})
		if got := c.conn.Compressed(); got != tc.want {
			t.Errorf("offered %v: compressed %v, want %v", tc.offer, got, tc.want)
		}
		c.expect("welcome")
		// A long message goes through compressed both ways.
		c.join("zip")
		text := strings.Repeat("compressible text ", 200)
		c.post("zip", text)
		if m := c.waitFor("message", nil); m.str("text") != text {
			t.Errorf("message text garbled")
		}
	}
}

// TestRoomsClaim: a token's rooms patterns restrict join and history.
func TestRoomsClaim(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	tok := ts.sign(t, auth.TokenSpec{Subject: "alice", Rooms: []string{"lobby", "team-*"}})
	c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
	c.expect("welcome")
	c.join("lobby")
	c.join("team-red")
	for _, cmd := range []map[string]any{
		{"type": "join", "room": "random"},
		{"type": "join", "room": "lobby2"},
		{"type": "history", "room": "random"},
	} {
		m := c.roundTrip(cmd)
		if m.typ() != "error" || m.str("code") != "forbidden" {
			t.Errorf("%v: %v, want error forbidden", cmd, m)
		}
	}
	none := ts.sign(t, auth.TokenSpec{Subject: "bob", Rooms: []string{}})
	b := ts.dialWith(t, "bob", dialOpts{header: http.Header{"Authorization": {"Bearer " + none}}})
	b.expect("welcome")
	if m := b.roundTrip(map[string]any{"type": "join", "room": "lobby"}); m.str("code") != "forbidden" {
		t.Errorf("rooms: [] joined lobby: %v", m)
	}
}
