package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/auth"
)

// verifierFor builds the verifier for one of the four key kinds.
func verifierFor(t testing.TB, kind string, mod func(*auth.Config)) *auth.Verifier {
	t.Helper()
	k := testKeys()
	cfg := auth.Config{Now: fixedClock}
	switch kind {
	case "HS256":
		cfg.Secret = k.secret
	case "RS256":
		cfg.PublicKeyPEM = k.rsaPEM
	case "ES256":
		cfg.PublicKeyPEM = k.ecPEM
	case "EdDSA":
		cfg.PublicKeyPEM = k.edPEM
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier(%s): %v", kind, err)
	}
	return v
}

func TestVerifyAcceptsEachAlgorithmWithItsKey(t *testing.T) {
	t.Parallel()
	k := testKeys()
	tests := []struct {
		kind   string
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", jwt.SigningMethodHS256, k.secret},
		{"RS256", jwt.SigningMethodRS256, k.rsa},
		{"ES256", jwt.SigningMethodES256, k.ec},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			t.Parallel()
			v := verifierFor(t, tt.kind, nil)
			if got := v.Algorithm(); got != tt.kind {
				t.Errorf("Algorithm() = %q, want %q", got, tt.kind)
			}
			claims := validClaims()
			claims["name"] = "Alice"
			claims["rooms"] = []string{"general", "team-*"}
			claims["scope"] = "chat:read chat:admin"
			claims["iss"] = "idp"
			claims["aud"] = []string{"chatd", "other"}
			c, err := v.Verify(sign(t, tt.method, tt.key, claims))
			if err != nil {
				t.Fatalf("Verify: %v (reason %s)", err, auth.Reason(err))
			}
			want := auth.Claims{
				Subject:  "alice",
				Name:     "Alice",
				Rooms:    []string{"general", "team-*"},
				Expiry:   testNow.Add(time.Hour),
				Admin:    true,
				Issuer:   "idp",
				Audience: []string{"chatd", "other"},
			}
			if c.Subject != want.Subject || c.Name != want.Name || !c.Expiry.Equal(want.Expiry) ||
				c.Admin != want.Admin || c.Issuer != want.Issuer ||
				!slices.Equal(c.Rooms, want.Rooms) || !slices.Equal(c.Audience, want.Audience) {
				t.Errorf("claims = %+v, want %+v", *c, want)
			}
		})
	}
}

func TestVerifyPKCS1RSAKey(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v, err := auth.NewVerifier(auth.Config{PublicKeyPEM: k.rsaPKCS1PEM, Now: fixedClock})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, validClaims())); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// TestVerifyAlgorithmPinning signs the same claims every way we can and
// checks each configured verifier accepts exactly its own algorithm with its
// own key: another algorithm is bad_alg, another key is bad_signature.
func TestVerifyAlgorithmPinning(t *testing.T) {
	t.Parallel()
	k := testKeys()
	type signer struct {
		name   string
		method jwt.SigningMethod
		key    any
		owner  string // the verifier kind whose key this is, "" for none
	}
	signers := []signer{
		{"HS256/secret", jwt.SigningMethodHS256, k.secret, "HS256"},
		{"HS256/other-secret", jwt.SigningMethodHS256, k.otherSecret, ""},
		{"HS384/secret", jwt.SigningMethodHS384, k.secret, ""},
		{"HS512/secret", jwt.SigningMethodHS512, k.secret, ""},
		{"RS256/rsa", jwt.SigningMethodRS256, k.rsa, "RS256"},
		{"RS256/other-rsa", jwt.SigningMethodRS256, k.otherRSA, ""},
		{"RS384/rsa", jwt.SigningMethodRS384, k.rsa, ""},
		{"RS512/rsa", jwt.SigningMethodRS512, k.rsa, ""},
		{"PS256/rsa", jwt.SigningMethodPS256, k.rsa, ""},
		{"ES256/ec", jwt.SigningMethodES256, k.ec, "ES256"},
		{"ES256/other-ec", jwt.SigningMethodES256, k.otherEC, ""},
		{"ES384/p384", jwt.SigningMethodES384, k.ec384, ""},
		{"EdDSA/ed", jwt.SigningMethodEdDSA, k.ed, "EdDSA"},
		{"EdDSA/other-ed", jwt.SigningMethodEdDSA, k.otherEd, ""},
		// The classic confusion attack: the public key, which is public,
		// used as an HMAC secret.
		{"HS256/rsa-public-pem", jwt.SigningMethodHS256, k.rsaPEM, ""},
		{"HS256/rsa-pkcs1-pem", jwt.SigningMethodHS256, k.rsaPKCS1PEM, ""},
		{"HS256/rsa-public-der", jwt.SigningMethodHS256, must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)), ""},
		{"HS256/ec-public-pem", jwt.SigningMethodHS256, k.ecPEM, ""},
		{"HS256/ed-public-pem", jwt.SigningMethodHS256, k.edPEM, ""},
		{"HS256/ed-public-raw", jwt.SigningMethodHS256, []byte(k.ed.Public().(ed25519.PublicKey)), ""},
		{"none", jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ""},
	}
	for _, kind := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
		v := verifierFor(t, kind, nil)
		for _, s := range signers {
			t.Run(kind+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				_, err := v.Verify(sign(t, s.method, s.key, validClaims()))
				var want string
				switch {
				case s.method.Alg() != kind:
					want = "bad_alg"
				case s.owner != kind:
					want = "bad_signature"
				}
				if got := auth.Reason(err); got != want {
					t.Fatalf("Reason = %q, want %q (err: %v)", got, want, err)
				}
			})
		}
	}
}

// TestVerifyRefusesHandmadeAlgHeaders covers headers no library would emit.
func TestVerifyRefusesHandmadeAlgHeaders(t *testing.T) {
	t.Parallel()
	k := testKeys()
	payload := b64(`{"sub":"alice","exp":` + fmt.Sprint(testNow.Add(time.Hour).Unix()) + `}`)
	good := sign(t, jwt.SigningMethodHS256, k.secret, validClaims())
	goodSig := good[strings.LastIndexByte(good, '.')+1:]
	tests := []struct {
		name, header, sig, want string
	}{
		{"none empty sig", `{"alg":"none","typ":"JWT"}`, "", "bad_alg"},
		{"none with real sig", `{"alg":"none"}`, goodSig, "bad_alg"},
		{"NONE", `{"alg":"NONE"}`, "", "bad_alg"},
		{"None", `{"alg":"None"}`, "", "bad_alg"},
		{"lower-case hs256", `{"alg":"hs256"}`, goodSig, "bad_alg"},
		{"no alg", `{"typ":"JWT"}`, goodSig, "bad_alg"},
		{"alg not a string", `{"alg":256}`, goodSig, "bad_alg"},
		{"empty alg", `{"alg":""}`, goodSig, "bad_alg"},
		{"header not JSON", `alg=HS256`, goodSig, "malformed"},
		{"header not an object", `["HS256"]`, goodSig, "malformed"},
	}
	for _, kind := range []string{"HS256", "RS256"} {
		v := verifierFor(t, kind, nil)
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := v.Verify(b64(tt.header) + "." + payload + "." + tt.sig)
				if got := auth.Reason(err); got != tt.want {
					t.Fatalf("Reason = %q, want %q (err: %v)", got, tt.want, err)
				}
			})
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifyClaims(t *testing.T) {
	t.Parallel()
	k := testKeys()
	hour := testNow.Add(time.Hour).Unix()
	tests := []struct {
		name   string
		claims jwt.MapClaims
		leeway time.Duration
		want   string // Reason; "" means accepted
		check  func(t *testing.T, c *auth.Claims)
	}{
		{name: "valid", claims: jwt.MapClaims{"sub": "alice", "exp": hour}},
		{name: "expired beyond leeway", claims: jwt.MapClaims{"sub": "alice", "exp": testNow.Add(-time.Minute).Unix()}, want: "expired"},
		{name: "expired 6s ago, default leeway 5s", claims: jwt.MapClaims{"sub": "alice", "exp": testNow.Add(-6 * time.Second).Unix()}, want: "expired"},
		{
			name: "expired 3s ago, within default leeway", claims: jwt.MapClaims{"sub": "alice", "exp": testNow.Add(-3 * time.Second).Unix()},
			check: func(t *testing.T, c *auth.Claims) {
				if !c.Expiry.Before(testNow) {
					t.Errorf("Expiry = %v, want the token's exp, before %v", c.Expiry, testNow)
				}
			},
		},
		{name: "expired 50s ago, leeway 1m", claims: jwt.MapClaims{"sub": "alice", "exp": testNow.Add(-50 * time.Second).Unix()}, leeway: time.Minute},
		{name: "expired 1s ago, negative leeway means none", claims: jwt.MapClaims{"sub": "alice", "exp": testNow.Add(-time.Second).Unix()}, leeway: -1, want: "expired"},
		{name: "expires now, no leeway", claims: jwt.MapClaims{"sub": "alice", "exp": testNow.Unix()}, leeway: -1, want: "expired"},
		{name: "nbf in the future", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "nbf": testNow.Add(time.Minute).Unix()}, want: "not_yet_valid"},
		{name: "nbf within leeway", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "nbf": testNow.Add(3 * time.Second).Unix()}},
		{name: "missing exp", claims: jwt.MapClaims{"sub": "alice"}, want: "no_expiry"},
		{name: "exp null", claims: jwt.MapClaims{"sub": "alice", "exp": nil}, want: "no_expiry"},
		{name: "exp a string", claims: jwt.MapClaims{"sub": "alice", "exp": "tomorrow"}, want: "malformed"},
		{name: "fractional exp", claims: jwt.MapClaims{"sub": "alice", "exp": float64(hour) + 0.5}},
		{name: "missing sub", claims: jwt.MapClaims{"exp": hour}, want: "no_subject"},
		{name: "empty sub", claims: jwt.MapClaims{"sub": "", "exp": hour}, want: "no_subject"},
		{name: "sub a number", claims: jwt.MapClaims{"sub": 42, "exp": hour}, want: "malformed"},
		{name: "missing sub and exp", claims: jwt.MapClaims{"name": "x"}, want: "no_subject"},
		{name: "missing sub, expired", claims: jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix()}, want: "no_subject"},
		{name: "name a number", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "name": 1}, want: "malformed"},
		{
			name: "rooms absent means any room", claims: jwt.MapClaims{"sub": "alice", "exp": hour},
			check: func(t *testing.T, c *auth.Claims) {
				if c.Rooms != nil || !c.MayJoin("anything") {
					t.Errorf("Rooms = %#v, MayJoin = %v; want nil, true", c.Rooms, c.MayJoin("anything"))
				}
			},
		},
		{
			name: "rooms empty means no room", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "rooms": []string{}},
			check: func(t *testing.T, c *auth.Claims) {
				if c.Rooms == nil || len(c.Rooms) != 0 || c.MayJoin("general") {
					t.Errorf("Rooms = %#v, MayJoin = %v; want empty non-nil, false", c.Rooms, c.MayJoin("general"))
				}
			},
		},
		{
			name: "rooms list", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "rooms": []string{"team-*"}},
			check: func(t *testing.T, c *auth.Claims) {
				if !c.MayJoin("team-a") || c.MayJoin("general") {
					t.Errorf("MayJoin(team-a) = %v, MayJoin(general) = %v", c.MayJoin("team-a"), c.MayJoin("general"))
				}
			},
		},
		{name: "rooms null", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "rooms": nil}, want: "malformed"},
		{name: "rooms a string", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "rooms": "general"}, want: "malformed"},
		{name: "rooms with a number", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "rooms": []any{"a", 1}}, want: "malformed"},
		{name: "scope admin", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "scope": "chat:admin"}, check: wantAdmin(true)},
		{name: "scope admin among others", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "scope": "openid  chat:admin\tprofile"}, check: wantAdmin(true)},
		{name: "scope without admin", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "scope": "chat:read chat:administrator"}, check: wantAdmin(false)},
		{name: "scope absent", claims: jwt.MapClaims{"sub": "alice", "exp": hour}, check: wantAdmin(false)},
		{name: "scope as array is ignored", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "scope": []string{"chat:admin"}}, check: wantAdmin(false)},
		{name: "admin boolean is ignored", claims: jwt.MapClaims{"sub": "alice", "exp": hour, "admin": true, "scp": []string{"chat:admin"}}, check: wantAdmin(false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := verifierFor(t, "HS256", func(c *auth.Config) { c.Leeway = tt.leeway })
			c, err := v.Verify(sign(t, jwt.SigningMethodHS256, k.secret, tt.claims))
			if got := auth.Reason(err); got != tt.want {
				t.Fatalf("Reason = %q, want %q (err: %v)", got, tt.want, err)
			}
			if err != nil {
				if c != nil {
					t.Errorf("Verify returned claims with an error")
				}
				return
			}
			if c.Subject != "alice" {
				t.Errorf("Subject = %q", c.Subject)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func wantAdmin(want bool) func(*testing.T, *auth.Claims) {
	return func(t *testing.T, c *auth.Claims) {
		t.Helper()
		if c.Admin != want {
			t.Errorf("Admin = %v, want %v", c.Admin, want)
		}
	}
}

func TestVerifyMissingSubAndExpReportsBoth(t *testing.T) {
	t.Parallel()
	v := verifierFor(t, "HS256", nil)
	_, err := v.Verify(sign(t, jwt.SigningMethodHS256, testKeys().secret, jwt.MapClaims{"name": "x"}))
	if !errors.Is(err, auth.ErrNoSubject) || !errors.Is(err, auth.ErrNoExpiry) {
		t.Fatalf("err = %v, want both ErrNoSubject and ErrNoExpiry", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error message spans lines: %q", err)
	}
}

func TestVerifyIssuerAudience(t *testing.T) {
	t.Parallel()
	k := testKeys()
	hour := testNow.Add(time.Hour).Unix()
	configured := func(c *auth.Config) { c.Issuer, c.Audience = "https://idp.example.com", "chatd" }
	tests := []struct {
		name   string
		mod    func(*auth.Config)
		claims jwt.MapClaims
		want   string
	}{
		{"match", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com", "aud": "chatd"}, ""},
		{"aud list contains", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com", "aud": []string{"api", "chatd"}}, ""},
		{"iss mismatch", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://evil.example.com", "aud": "chatd"}, "bad_issuer"},
		{"iss case differs", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://IDP.example.com", "aud": "chatd"}, "bad_issuer"},
		{"iss missing", configured, jwt.MapClaims{"sub": "a", "exp": hour, "aud": "chatd"}, "bad_issuer"},
		{"aud mismatch", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com", "aud": "other"}, "bad_audience"},
		{"aud list without ours", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com", "aud": []string{"x", "y"}}, "bad_audience"},
		{"aud missing", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com"}, "bad_audience"},
		{"aud empty string", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com", "aud": ""}, "bad_audience"},
		{"aud not strings", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "https://idp.example.com", "aud": []any{1}}, "malformed"},
		{"both wrong: issuer reported", configured, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "x", "aud": "y"}, "bad_issuer"},
		{"wrong issuer and expired: issuer reported", configured, jwt.MapClaims{"sub": "a", "exp": testNow.Add(-time.Hour).Unix(), "iss": "x", "aud": "chatd"}, "bad_issuer"},
		{"not configured: any iss and aud", nil, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "whoever", "aud": "whatever"}, ""},
		{"not configured: none given", nil, jwt.MapClaims{"sub": "a", "exp": hour}, ""},
		{"only issuer configured", func(c *auth.Config) { c.Issuer = "i" }, jwt.MapClaims{"sub": "a", "exp": hour, "iss": "i", "aud": "anything"}, ""},
		{"only audience configured", func(c *auth.Config) { c.Audience = "chatd" }, jwt.MapClaims{"sub": "a", "exp": hour, "aud": "chatd"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := verifierFor(t, "HS256", tt.mod)
			_, err := v.Verify(sign(t, jwt.SigningMethodHS256, k.secret, tt.claims))
			if got := auth.Reason(err); got != tt.want {
				t.Fatalf("Reason = %q, want %q (err: %v)", got, tt.want, err)
			}
		})
	}
}

func TestVerifyMalformedAndTampered(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v := verifierFor(t, "HS256", nil)
	good := sign(t, jwt.SigningMethodHS256, k.secret, validClaims())
	parts := strings.Split(good, ".")
	otherPayload := b64(`{"sub":"mallory","exp":` + fmt.Sprint(testNow.Add(time.Hour).Unix()) + `}`)
	tests := []struct {
		name, token, want string
	}{
		{"empty", "", "missing"},
		{"one segment", "abc", "malformed"},
		{"two segments", parts[0] + "." + parts[1], "malformed"},
		{"four segments", good + ".x", "malformed"},
		{"bad base64 header", "!!!." + parts[1] + "." + parts[2], "malformed"},
		{"bad base64 payload", parts[0] + ".%%%." + parts[2], "malformed"},
		{"bad base64 signature", parts[0] + "." + parts[1] + ".***", "malformed"},
		{"payload not JSON", parts[0] + "." + b64("hello") + "." + parts[2], "malformed"},
		{"too long", parts[0] + "." + strings.Repeat("A", 9000) + "." + parts[2], "malformed"},
		{"bearer prefix left on", "Bearer " + good, "malformed"},
		{"crit header", signWithHeader(t, jwt.SigningMethodHS256, k.secret, validClaims(), map[string]any{"crit": []string{"exp"}}), "malformed"},
		{"payload swapped", parts[0] + "." + otherPayload + "." + parts[2], "bad_signature"},
		{"signature truncated", good[:len(good)-3], "bad_signature"},
		{"signature not base64url-aligned", good[:len(good)-2], "malformed"},
		{"signature empty", parts[0] + "." + parts[1] + ".", "bad_signature"},
		{"valid", good, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(tt.token)
			if got := auth.Reason(err); got != tt.want {
				t.Fatalf("Reason = %q, want %q (err: %v)", got, tt.want, err)
			}
		})
	}
}

// TestVerifyErrorsNeverContainToken: error messages are logged, tokens are
// credentials.
func TestVerifyErrorsNeverContainToken(t *testing.T) {
	t.Parallel()
	k := testKeys()
	hmacV := verifierFor(t, "HS256", func(c *auth.Config) { c.Issuer, c.Audience = "i", "a" })
	rsaV := verifierFor(t, "RS256", nil)
	secretish := "s3cr3t-VALUE-that-must-not-leak"
	tokens := []string{
		sign(t, jwt.SigningMethodHS256, k.otherSecret, jwt.MapClaims{"sub": secretish, "exp": 1}),
		sign(t, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"sub": secretish, "exp": 1}),
		sign(t, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"sub": 1, "exp": secretish}),
		sign(t, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"sub": "a", "exp": 1, "rooms": secretish}),
		sign(t, jwt.SigningMethodHS256, k.rsaPEM, validClaims()),
		b64(`{"alg":"`+secretish+`"}`) + "." + b64(`{"sub":"`+secretish+`"}`) + ".c2lnbmF0dXJl",
		b64(`{"alg":"HS256"}`) + "." + b64(`{"sub":"`+secretish+`x`) + ".c2lnbmF0dXJl",
		b64(`{"alg":"HS256","x":"`+secretish) + "." + b64(`{}`) + ".c2lnbmF0dXJl",
		secretish + "." + secretish + "." + secretish,
	}
	for i, tok := range tokens {
		for _, v := range []*auth.Verifier{hmacV, rsaV} {
			_, err := v.Verify(tok)
			if err == nil {
				t.Fatalf("token %d verified", i)
			}
			msg := err.Error()
			for _, part := range append(strings.Split(tok, "."), tok) {
				if len(part) >= 8 && strings.Contains(msg, part) {
					t.Errorf("token %d: error %q contains token text %q", i, msg, part)
				}
			}
			// The unverified payload is attacker-controlled: not quoted either.
			if v == rsaV && strings.Contains(msg, secretish) {
				t.Errorf("token %d: error %q quotes unverified claims", i, msg)
			}
		}
	}
}

func TestNewVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsa1024 := must(rsa.GenerateKey(rand.Reader, 1024))
	ec384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	rsaPrivPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.rsa)})
	pkcs8PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(k.ed))})
	tests := []struct {
		name    string
		cfg     auth.Config
		wantErr string // substring; "" means success
	}{
		{"secret 32 bytes", auth.Config{Secret: make([]byte, 32)}, ""},
		{"secret 31 bytes", auth.Config{Secret: make([]byte, 31)}, "at least 32"},
		{"secret 1 byte", auth.Config{Secret: []byte("x")}, "at least 32"},
		{"secret is a PEM key", auth.Config{Secret: k.rsaPEM}, "looks like a PEM key"},
		{"nothing configured", auth.Config{}, "no key configured"},
		{"both configured", auth.Config{Secret: k.secret, PublicKeyPEM: k.rsaPEM}, "not both"},
		{"rsa pkix", auth.Config{PublicKeyPEM: k.rsaPEM}, ""},
		{"rsa pkcs1", auth.Config{PublicKeyPEM: k.rsaPKCS1PEM}, ""},
		{"ec p256", auth.Config{PublicKeyPEM: k.ecPEM}, ""},
		{"ed25519", auth.Config{PublicKeyPEM: k.edPEM}, ""},
		{"not PEM", auth.Config{PublicKeyPEM: []byte("hello world")}, "no PEM block"},
		{"PEM with garbage DER", auth.Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("garbage")})}, "public key:"},
		{"PKCS1 with garbage DER", auth.Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: []byte("garbage")})}, "public key:"},
		{"certificate block", auth.Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")})}, "unsupported PEM block"},
		{"rsa private key", auth.Config{PublicKeyPEM: rsaPrivPEM}, "private key"},
		{"pkcs8 private key", auth.Config{PublicKeyPEM: pkcs8PEM}, "private key"},
		{"two blocks", auth.Config{PublicKeyPEM: append(slices.Clone(k.rsaPEM), k.ecPEM...)}, "after the first PEM block"},
		{"trailing newlines ok", auth.Config{PublicKeyPEM: append(slices.Clone(k.edPEM), "\n\n"...)}, ""},
		{"rsa 1024", auth.Config{PublicKeyPEM: pkixPEM(&rsa1024.PublicKey)}, "1024 bits"},
		{"ec p384", auth.Config{PublicKeyPEM: pkixPEM(&ec384.PublicKey)}, "P-384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := auth.NewVerifier(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewVerifier error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestVerifierKeepsItsOwnSecret: the caller may reuse its buffer.
func TestVerifierKeepsItsOwnSecret(t *testing.T) {
	t.Parallel()
	secret := slices.Clone(testKeys().secret)
	v, err := auth.NewVerifier(auth.Config{Secret: secret, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, slices.Clone(secret), validClaims())
	clear(secret)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("Verify after the caller cleared its secret: %v", err)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("something else"), "invalid"},
		{auth.ErrMissing, "missing"},
		{fmt.Errorf("context: %w", auth.ErrExpired), "expired"},
		{fmt.Errorf("%w: detail", auth.ErrBadAlg), "bad_alg"},
		{errors.Join(auth.ErrExpired, auth.ErrBadIssuer), "bad_issuer"},
		{auth.ErrMalformed, "malformed"},
		{auth.ErrBadSignature, "bad_signature"},
		{auth.ErrNotYetValid, "not_yet_valid"},
		{auth.ErrBadAudience, "bad_audience"},
		{auth.ErrNoSubject, "no_subject"},
		{auth.ErrNoExpiry, "no_expiry"},
	}
	for _, tt := range tests {
		if got := auth.Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestVerifyUsesRealClockByDefault(t *testing.T) {
	t.Parallel()
	k := testKeys()
	v, err := auth.NewVerifier(auth.Config{Secret: k.secret})
	if err != nil {
		t.Fatal(err)
	}
	// validClaims expire an hour after testNow, which is long past.
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, k.secret, validClaims())); auth.Reason(err) != "expired" {
		t.Fatalf("Reason = %q, want expired (err: %v)", auth.Reason(err), err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"sub": "a", "exp": time.Now().Add(time.Minute).Unix()})); err != nil {
		t.Fatalf("Verify fresh token: %v", err)
	}
}

// TestVerifyAgain: a token presented again is accepted again with the same
// claims, and is still refused once it expires, or before its nbf, by the
// same rules as the first time; a token that differs by one byte is not
// taken for it.
func TestVerifyAgain(t *testing.T) {
	t.Parallel()
	k := testKeys()
	var now time.Time
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	setNow := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	setNow(testNow)
	v, err := auth.NewVerifier(auth.Config{Secret: k.secret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	exp := testNow.Add(time.Hour)
	nbf := testNow.Add(-time.Minute)
	tok := sign(t, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"sub": "alice", "name": "Alice", "rooms": []string{"a*"}, "exp": exp.Unix(), "nbf": nbf.Unix()})
	first, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		again, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if again == first || again.Subject != "alice" || again.Name != "Alice" || !again.Expiry.Equal(first.Expiry) || !slices.Equal(again.Rooms, []string{"a*"}) {
			t.Fatalf("again: %+v (first %+v), want equal claims in a struct of its own", again, first)
		}
	}
	// The signature's first character changed (its last may carry
	// unused bits).
	dot := strings.LastIndexByte(tok, '.')
	flip := byte('A')
	if tok[dot+1] == 'A' {
		flip = 'B'
	}
	tampered := tok[:dot+1] + string(flip) + tok[dot+2:]
	if _, err := v.Verify(tampered); auth.Reason(err) != "bad_signature" && auth.Reason(err) != "malformed" {
		t.Fatalf("a tampered copy: %v", err)
	}
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{exp.Add(auth.DefaultLeeway - time.Second), ""},
		{exp.Add(auth.DefaultLeeway), "expired"},
		{exp.Add(time.Hour), "expired"},
		{testNow, ""},
		{nbf.Add(-auth.DefaultLeeway), ""},
		{nbf.Add(-auth.DefaultLeeway - time.Second), "not_yet_valid"},
		{testNow, ""},
	} {
		setNow(tc.at)
		if _, err := v.Verify(tok); auth.Reason(err) != tc.want {
			t.Errorf("at %v: %v, want %q", tc.at, err, tc.want)
		}
	}
}

// BenchmarkVerify: an HS256 token seen for the first time (signature and
// JSON decoding), and one presented again (a reconnect).
func BenchmarkVerify(b *testing.B) {
	k := testKeys()
	v, err := auth.NewVerifier(auth.Config{Secret: k.secret, Now: fixedClock})
	if err != nil {
		b.Fatal(err)
	}
	claims := func(i int) jwt.MapClaims {
		return jwt.MapClaims{"sub": fmt.Sprintf("user-%d", i), "name": "A User", "exp": testNow.Add(time.Hour).Unix()}
	}
	b.Run("first", func(b *testing.B) {
		toks := make([]string, 32768) // far more than the verifier remembers
		for i := range toks {
			toks[i] = sign(b, jwt.SigningMethodHS256, k.secret, claims(i))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.Verify(toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("again", func(b *testing.B) {
		tok := sign(b, jwt.SigningMethodHS256, k.secret, claims(-1))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
