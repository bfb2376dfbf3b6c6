package server_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/auth"
)

// TestAudience: with an audience configured, a token must name it.
func TestAudience(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Auth.Audience = "chatd"
	cfg.Auth.Issuer = "https://id.example.com"
	ts := startServer(t, cfg)
	claims := func(aud any, iss string) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iss": iss}
		if aud != nil {
			c["aud"] = aud
		}
		return c
	}
	tests := []struct {
		name   string
		claims jwt.MapClaims
		ok     bool
	}{
		{"aud and iss", claims("chatd", "https://id.example.com"), true},
		{"aud in a list", claims([]string{"other", "chatd"}, "https://id.example.com"), true},
		{"no aud", claims(nil, "https://id.example.com"), false},
		{"other aud", claims("other", "https://id.example.com"), false},
		{"no iss", claims("chatd", ""), false},
		{"other iss", claims("chatd", "https://evil.example.com"), false},
	}
	for _, tc := range tests {
		tok := signHS256(t, tc.claims)
		_, err := ts.tryDial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case !tc.ok && dialStatus(err) != http.StatusUnauthorized:
			t.Errorf("%s: %v, want 401", tc.name, err)
		}
	}
	// The signer of the test server writes both claims.
	ts.dial(t, "alice")
}

// TestAlgorithmConfusion: with an RSA public key configured, a token
// "signed" with HS256 using the public key's PEM as the secret (the
// classic confusion attack), or with alg none, is refused.
func TestAlgorithmConfusion(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	cfg := fastConfig()
	cfg.Auth.PublicKeyPEM = pub
	ts := startServer(t, cfg)
	claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	good, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(pub)
	confusedDER, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(der)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	ps256, _ := jwt.NewWithClaims(jwt.SigningMethodPS256, claims).SignedString(key)
	// An RS256 header on a token whose signature was stripped.
	stripped := good[:strings.LastIndexByte(good, '.')+1]

	c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + good}}})
	c.expect("welcome")
	for name, tok := range map[string]string{"HS256 with the PEM": confused, "HS256 with the DER": confusedDER, "alg none": none, "PS256": ps256, "no signature": stripped} {
		_, err := ts.tryDial(dialOpts{header: http.Header{"Authorization": {"Bearer " + tok}}})
		if dialStatus(err) != http.StatusUnauthorized {
			t.Errorf("%s: %v, want 401", name, err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTokensNeverLogged: a token, good or bad, in the query, the header
// or the subprotocol never appears in the logs, not even at debug level,
// while every refusal is logged with its reason.
func TestTokensNeverLogged(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	ts := startServer(t, fastConfig(), serverOpts{logs: logs})
	good := ts.token(t, "alice")
	other, _ := auth.NewSigner(auth.Config{Secret: []byte("another-secret-of-32-bytes-or-more!!")})
	bad, _ := other.Sign(auth.TokenSpec{Subject: "mallory", TTL: time.Hour})

	c := ts.dialWith(t, "alice", dialOpts{query: "?access_token=" + url.QueryEscape(good)})
	c.expect("welcome")
	c.join("lobby")
	c.roundTrip(map[string]any{"type": "refresh", "token": ts.token(t, "alice")})
	c.roundTrip(map[string]any{"type": "refresh", "token": bad})
	ts.dialWith(t, "alice", dialOpts{subprotocols: []string{"chat", "access_token." + good}}).expect("welcome")
	for _, o := range []dialOpts{
		{query: "?access_token=" + url.QueryEscape(bad)},
		{header: http.Header{"Authorization": {"Bearer " + bad}}},
		{subprotocols: []string{"chat", "access_token." + bad}},
	} {
		if _, err := ts.tryDial(o); dialStatus(err) != http.StatusUnauthorized {
			t.Fatalf("bad token: %v, want 401", err)
		}
	}
	_ = c.conn.CloseNow()
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	// A JWT's parts are each long enough to be recognisable on their own.
	for _, tok := range []string{good, bad} {
		for _, part := range strings.Split(tok, ".") {
			if strings.Contains(out, part) {
				t.Errorf("the logs contain part of a token: %.20s...", part)
			}
		}
	}
	if !strings.Contains(out, `"auth_reason":"bad_signature"`) || strings.Count(out, "upgrade refused") < 3 {
		t.Errorf("the refusals are not logged with their reason:\n%s", out)
	}
	if strings.Contains(out, "access_token=") {
		t.Error("the logs contain a query string with access_token")
	}
}

// TestTrustedProxies: the per-IP upgrade limit applies to the address in
// X-Forwarded-For only when the request comes from a trusted proxy.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.UpgradeRate, cfg.UpgradeBurst = 0.01, 1
	proxied := cfg
	proxied.TrustedProxies = []string{"127.0.0.0/8"}
	tests := []struct {
		name string
		cfg  func() *testServer
		// the X-Forwarded-For of three upgrades, and which succeed
		xff []string
		ok  []bool
	}{
		{"trusted", func() *testServer { return startServer(t, proxied) }, []string{"203.0.113.1", "203.0.113.1", "203.0.113.2"}, []bool{true, false, true}},
		{"trusted, chain", func() *testServer { return startServer(t, proxied) }, []string{"198.51.100.9, 203.0.113.1", "198.51.100.7, 203.0.113.1", "203.0.113.2"}, []bool{true, false, true}},
		{"not trusted", func() *testServer { return startServer(t, cfg) }, []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"}, []bool{true, false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := tc.cfg()
			for i, xff := range tc.xff {
				h := http.Header{"Authorization": {"Bearer " + ts.token(t, "alice")}, "X-Forwarded-For": {xff}}
				conn, err := ts.tryDial(dialOpts{header: h})
				if err == nil {
					_ = conn.CloseNow()
				}
				if got := err == nil; got != tc.ok[i] {
					t.Errorf("upgrade %d (X-Forwarded-For %s): %v, want ok=%v", i, xff, err, tc.ok[i])
				}
				if err != nil && dialStatus(err) != http.StatusTooManyRequests {
					t.Errorf("upgrade %d: %v, want 429", i, err)
				}
			}
		})
	}
}

// TestRefreshNarrowsRooms: a refreshed token whose rooms claim no longer
// allows a joined room makes the connection leave it (left without ref,
// before refreshed), and the room cannot be joined again.
func TestRefreshNarrowsRooms(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig())
	c := ts.dialWith(t, "alice", dialOpts{header: http.Header{"Authorization": {"Bearer " + ts.sign(t, auth.TokenSpec{Subject: "alice"})}}})
	c.expect("welcome")
	c.join("team-a")
	c.join("team-b")
	c.sync()
	b := ts.dial(t, "bob")
	b.join("team-b")
	b.sync()
	c.waitFor("presence", func(m msg) bool { return m.str("user") == "bob" })

	narrower := ts.sign(t, auth.TokenSpec{Subject: "alice", Rooms: []string{"team-a"}})
	c.send(map[string]any{"type": "refresh", "token": narrower, "ref": "r"})
	if m := c.expect("left"); m.str("room") != "team-b" || m.has("ref") {
		t.Errorf("got %v, want left team-b without ref", m)
	}
	if m := c.expect("refreshed"); m.str("ref") != "r" {
		t.Errorf("got %v, want refreshed", m)
	}
	if p := b.expect("presence"); p.str("user") != "alice" || p.str("state") != "leave" {
		t.Errorf("bob got %v, want alice's presence leave", p)
	}
	if m := c.roundTrip(map[string]any{"type": "join", "room": "team-b"}); m.str("code") != "forbidden" {
		t.Errorf("join team-b after the refresh: %v, want forbidden", m)
	}
	if m := c.roundTrip(map[string]any{"type": "send", "room": "team-a", "text": "still in a"}); m.typ() != "sent" {
		t.Errorf("send to team-a: %v", m)
	}
	// A refresh token that is not valid is refused with forbidden; the
	// connection keeps its current token.
	expired := signHS256(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()})
	if m := c.roundTrip(map[string]any{"type": "refresh", "token": expired}); m.typ() != "error" || m.str("code") != "forbidden" || !strings.Contains(m.str("message"), "expired") {
		t.Errorf("refresh with an expired token: %v, want error forbidden", m)
	}
	if m := c.roundTrip(map[string]any{"type": "ping"}); m.typ() != "pong" {
		t.Errorf("after a refused refresh: %v", m)
	}
}
