package conformance_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenRow is one token offered at the upgrade: accepted (101, welcome
// with user and name), or refused with 401 whose message names reason
// (docs/protocol.md §1 Tokens).
type tokenRow struct {
	name   string
	token  func(t *testing.T, user string) string
	reason string // empty: accepted, unless refused
	refuse bool   // refused, whatever the reason given
}

// checkTokenRows offers each row's token to n in the Authorization header.
func checkTokenRows(t *testing.T, n *node, rows []tokenRow) {
	t.Helper()
	for _, row := range rows {
		t.Run(n.id+"/"+row.name, func(t *testing.T) {
			user := fresh("tok")
			tok := row.token(t, user)
			resp, body, rc := roundTrip(t, n, upgrade(n, tok))
			if row.reason == "" && !row.refuse {
				if resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("refused: %s %s", resp.Status, body)
				}
				op, p, err := rc.readFrame(wait)
				if err != nil || op != opText {
					t.Fatalf("first frame: %d %q %v", op, p, err)
				}
				e, err := decodeEvent(p)
				if err != nil {
					t.Fatal(err)
				}
				want := displayName(user)
				if e.typ() != "welcome" || e.str("user") != user || e.str("name") != want || e.str("node") != n.id {
					t.Errorf("welcome %s, want user %q, name %q, node %q", e, user, want, n.id)
				}
				return
			}
			checkRefusal(t, resp, body, 401, "unauthorized")
			if v := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(v, "Bearer") || !strings.Contains(v, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q, want Bearer with error=\"invalid_token\"", v)
			}
			if !strings.Contains(string(body), row.reason) {
				t.Errorf("body %s does not name the reason %q", body, row.reason)
			}
		})
	}
}

// with returns a token of user's valid claims changed by mod, signed HS256.
func with(mod func(c jwt.MapClaims)) func(t *testing.T, user string) string {
	return func(t *testing.T, user string) string {
		c := claims(user)
		mod(c)
		return sign(t, c)
	}
}

// signed returns a token of user's valid claims signed with m and key.
func signed(m jwt.SigningMethod, key any) func(t *testing.T, user string) string {
	return func(t *testing.T, user string) string { return signWith(t, m, key, claims(user)) }
}

func unsigned(t *testing.T, user string) string {
	return signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(user))
}

// keys are generated once: RSA keys are slow to make under -race.
var keys = struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	other *ecdsa.PrivateKey
}{}

func init() {
	var err error
	if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if keys.other, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, keys.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
}

// TestTokenClaims checks the claims and algorithms of PROTOCOL.md §1 on
// nodes configured with an HS256 secret.
func TestTokenClaims(t *testing.T) {
	t.Parallel()
	now := time.Now().Unix()
	rows := []tokenRow{
		{name: "valid", token: func(t *testing.T, u string) string { return token(t, u) }},
		{name: "iss and aud ignored when not configured", token: with(func(c jwt.MapClaims) { c["iss"] = "anyone"; c["aud"] = []string{"x", "y"} })},
		{name: "nbf in the past", token: with(func(c jwt.MapClaims) { c["nbf"] = now - 60 })},
		{name: "nbf within the leeway", token: with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Unix() + 2 })},
		{name: "rooms a list", token: with(func(c jwt.MapClaims) { c["rooms"] = []string{"a", "b-*"} })},
		{name: "rooms empty", token: with(func(c jwt.MapClaims) { c["rooms"] = []string{} })},

		{name: "expired", token: with(func(c jwt.MapClaims) { c["exp"] = now - 60 }), reason: "expired"},
		{name: "no exp", token: with(func(c jwt.MapClaims) { delete(c, "exp") }), reason: "no_expiry"},
		{name: "exp a string", refuse: true, token: with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })},
		{name: "no sub", token: with(func(c jwt.MapClaims) { delete(c, "sub") }), reason: "no_subject"},
		{name: "empty sub", token: with(func(c jwt.MapClaims) { c["sub"] = "" }), reason: "no_subject"},
		{name: "sub a number", refuse: true, token: with(func(c jwt.MapClaims) { c["sub"] = 42 })},
		{name: "nbf in the future", token: with(func(c jwt.MapClaims) { c["nbf"] = now + 60 }), reason: "not_yet_valid"},
		{name: "rooms a string", refuse: true, token: with(func(c jwt.MapClaims) { c["rooms"] = "lobby" })},
		{name: "rooms null", refuse: true, token: with(func(c jwt.MapClaims) { c["rooms"] = nil })},
		{name: "rooms of numbers", refuse: true, token: with(func(c jwt.MapClaims) { c["rooms"] = []int{1} })},
		{name: "alg none", token: unsigned, reason: "bad_alg"},
		{name: "HS384 with the secret", token: signed(jwt.SigningMethodHS384, []byte(secret)), reason: "bad_alg"},
		{name: "HS512 with the secret", token: signed(jwt.SigningMethodHS512, []byte(secret)), reason: "bad_alg"},
		{name: "RS256", token: signed(jwt.SigningMethodRS256, keys.rsa), reason: "bad_alg"},
		{name: "ES256", token: signed(jwt.SigningMethodES256, keys.ec), reason: "bad_alg"},
		{name: "EdDSA", token: signed(jwt.SigningMethodEdDSA, keys.ed), reason: "bad_alg"},
		{name: "HS256 with another secret", token: signed(jwt.SigningMethodHS256, []byte(strings.Repeat("k", 40))), reason: "bad_signature"},
		{name: "signature cut", token: func(t *testing.T, u string) string { s := token(t, u); return s[:len(s)-4] }, reason: "bad_signature"},
		{name: "not a JWT", token: func(*testing.T, string) string { return "not-a-jwt" }, reason: "malformed"},
		{name: "two parts", token: func(t *testing.T, u string) string { s := token(t, u); return s[:strings.LastIndex(s, ".")] }, reason: "malformed"},
	}
	forEach(t, func(t *testing.T, tp *topology) {
		for _, n := range tp.each() {
			checkTokenRows(t, n, rows)
			t.Run(n.id+"/no name: the name is sub", func(t *testing.T) {
				user := fresh("tok")
				c, err := dial(t, n, user, dialOptions{token: with(func(c jwt.MapClaims) { delete(c, "name") })(t, user)})
				if err != nil {
					t.Fatal(err)
				}
				if c.welcome.str("name") != user {
					t.Errorf("welcome %s: name is not the sub %q (docs/protocol.md §1)", c.welcome, user)
				}
			})
			t.Run(n.id+"/welcome", func(t *testing.T) {
				user := fresh("tok")
				c1, c2 := connect(t, n, user), connect(t, n, user)
				for _, c := range []*client{c1, c2} {
					w := c.welcome
					if w.str("user") != user || w.str("name") != displayName(user) || w.str("node") != n.id || w.str("conn") == "" {
						t.Errorf("welcome %s: want user %q, name %q, node %q, a conn", w, user, displayName(user), n.id)
					}
					if hb, ok := w.int("heartbeat"); !ok || hb != 25 {
						t.Errorf("welcome %s: heartbeat is not 25, the default (PROTOCOL.md §6)", w)
					}
				}
				if c1.welcome.str("conn") == c2.welcome.str("conn") {
					t.Errorf("two connections with the same conn %q", c1.welcome.str("conn"))
				}
			})
		}
	})
}

// TestIssuerAudience checks iss and aud on nodes configured with them.
func TestIssuerAudience(t *testing.T) {
	t.Parallel()
	const iss, aud = "https://id.example.com", "chatd-conformance"
	rows := []tokenRow{
		{name: "iss and aud", token: with(func(c jwt.MapClaims) { c["iss"] = iss; c["aud"] = aud })},
		{name: "aud a list holding it", token: with(func(c jwt.MapClaims) { c["iss"] = iss; c["aud"] = []string{"other", aud} })},
		{name: "no iss", token: with(func(c jwt.MapClaims) { c["aud"] = aud }), reason: "bad_issuer"},
		{name: "another iss", token: with(func(c jwt.MapClaims) { c["iss"] = iss + "/x"; c["aud"] = aud }), reason: "bad_issuer"},
		{name: "no aud", token: with(func(c jwt.MapClaims) { c["iss"] = iss }), reason: "bad_audience"},
		{name: "another aud", token: with(func(c jwt.MapClaims) { c["iss"] = iss; c["aud"] = "other" }), reason: "bad_audience"},
		{name: "aud a list without it", token: with(func(c jwt.MapClaims) { c["iss"] = iss; c["aud"] = []string{"a", "b"} }), reason: "bad_audience"},
	}
	forEach(t, func(t *testing.T, tp *topology) {
		tp = tp.nodes(t, "-jwt-issuer", iss, "-jwt-audience", aud)
		for _, n := range tp.each() {
			checkTokenRows(t, n, rows)
		}
	})
}

// TestPublicKeyAlgorithms checks RS256, ES256 and EdDSA with a public key
// configured instead of the secret: the algorithm follows from the key, so
// another algorithm, alg none, and an HS256 token "signed" with the public
// key are refused (PROTOCOL.md §1 Algorithms).
func TestPublicKeyAlgorithms(t *testing.T) {
	t.Parallel()
	type alg struct {
		name   string
		public crypto.PublicKey
		good   func(t *testing.T, user string) string
		others map[string]func(t *testing.T, user string) string
	}
	algs := []alg{
		{"RS256", &keys.rsa.PublicKey, signed(jwt.SigningMethodRS256, keys.rsa), map[string]func(*testing.T, string) string{
			"RS512": signed(jwt.SigningMethodRS512, keys.rsa),
			"PS256": signed(jwt.SigningMethodPS256, keys.rsa),
			"ES256": signed(jwt.SigningMethodES256, keys.ec),
		}},
		{"ES256", &keys.ec.PublicKey, signed(jwt.SigningMethodES256, keys.ec), map[string]func(*testing.T, string) string{
			"RS256": signed(jwt.SigningMethodRS256, keys.rsa),
			"EdDSA": signed(jwt.SigningMethodEdDSA, keys.ed),
		}},
		{"EdDSA", keys.ed.Public(), signed(jwt.SigningMethodEdDSA, keys.ed), map[string]func(*testing.T, string) string{
			"ES256": signed(jwt.SigningMethodES256, keys.ec),
		}},
	}
	forEach(t, func(t *testing.T, tp *topology) {
		for _, a := range algs {
			t.Run(a.name, func(t *testing.T) {
				der, err := x509.MarshalPKIXPublicKey(a.public)
				if err != nil {
					t.Fatal(err)
				}
				pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
				file := filepath.Join(t.TempDir(), "key.pem")
				if err := os.WriteFile(file, pemBytes, 0o644); err != nil {
					t.Fatal(err)
				}
				// The public key replaces the secret of the base flags.
				ktp := tp.nodes(t, "-jwt-public-key", file)
				rows := []tokenRow{
					{name: a.name, token: a.good},
					{name: "HS256 signed with the public key", token: signed(jwt.SigningMethodHS256, pemBytes), reason: "bad_alg"},
					{name: "HS256 signed with the DER key", token: signed(jwt.SigningMethodHS256, der), reason: "bad_alg"},
					{name: "HS256 with the secret", token: signed(jwt.SigningMethodHS256, []byte(secret)), reason: "bad_alg"},
					{name: "alg none", token: unsigned, reason: "bad_alg"},
				}
				for name, tok := range a.others {
					rows = append(rows, tokenRow{name: name, token: tok, reason: "bad_alg"})
				}
				if a.name == "ES256" {
					rows = append(rows, tokenRow{name: "ES256 with another key", token: signed(jwt.SigningMethodES256, keys.other), reason: "bad_signature"})
				}
				for _, n := range ktp.each() {
					checkTokenRows(t, n, rows)
				}
			})
		}
	})
}
