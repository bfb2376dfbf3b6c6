package auth_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/auth"
)

// knownReasons is every label Verify's errors may carry. "invalid" is
// deliberately absent: reaching it means an unmapped failure.
var knownReasons = map[string]bool{
	"missing": true, "malformed": true, "bad_alg": true, "bad_signature": true,
	"expired": true, "not_yet_valid": true, "bad_issuer": true, "bad_audience": true,
	"no_subject": true, "no_expiry": true,
}

// FuzzVerify feeds arbitrary strings to verifiers of two key kinds: Verify
// must not panic, must accept only complete claims, must label every
// refusal, and must never echo the token.
func FuzzVerify(f *testing.F) {
	k := testKeys()
	hmacV := verifierFor(f, "HS256", func(c *auth.Config) { c.Issuer, c.Audience = "idp", "chatd" })
	edV := verifierFor(f, "EdDSA", nil)

	full := jwt.MapClaims{"sub": "alice", "exp": testNow.Add(time.Hour).Unix(), "iss": "idp", "aud": "chatd",
		"name": "Alice", "rooms": []string{"a*"}, "scope": "chat:admin"}
	seeds := []string{
		"", ".", "..", "a.b.c", "Bearer x.y.z",
		sign(f, jwt.SigningMethodHS256, k.secret, full),
		sign(f, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"sub": "alice"}),
		sign(f, jwt.SigningMethodHS256, k.secret, jwt.MapClaims{"exp": 1, "rooms": nil}),
		sign(f, jwt.SigningMethodHS256, k.edPEM, full),
		sign(f, jwt.SigningMethodEdDSA, k.ed, full),
		sign(f, jwt.SigningMethodRS256, k.rsa, full),
		sign(f, jwt.SigningMethodES256, k.ec, full),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, full),
		b64(`{"alg":"HS256","crit":["b64"]}`) + "." + b64(`{}`) + ".",
		b64(`{"alg":"EdDSA"}`) + "." + b64(`{"sub":"a","exp":1e300}`) + "." + b64(strings.Repeat("s", 64)),
		b64(`{"alg":"EdDSA"}`) + "." + b64(`{"sub":"a","exp":-1e300,"nbf":"x"}`) + ".",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		for _, v := range []*auth.Verifier{hmacV, edV} {
			c, err := v.Verify(tok)
			if err == nil {
				if c == nil || c.Subject == "" || c.Expiry.IsZero() {
					t.Fatalf("accepted incomplete claims %+v", c)
				}
				continue
			}
			if c != nil {
				t.Fatalf("claims returned with error %v", err)
			}
			if r := auth.Reason(err); !knownReasons[r] {
				t.Fatalf("unlabelled error (reason %q): %v", r, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Fatalf("multi-line error: %q", msg)
			}
			// Our messages contain no '.', so a token with one that shows up
			// in a message was copied there.
			if len(tok) >= 16 && strings.Contains(tok, ".") && strings.Contains(msg, tok) {
				t.Fatalf("error contains the token: %q", msg)
			}
		}
	})
}

// FuzzMatchRoom checks the hand-written matcher against a regexp built from
// the same pattern.
func FuzzMatchRoom(f *testing.F) {
	seeds := [][2]string{
		{"*", ""}, {"team-*", "team-a"}, {"a*b*c", "a-b-b-c"}, {"*a*a*", "banana"},
		{"**", "x"}, {"", ""}, {"a*", "b"}, {"*.*", "org.sales"}, {"é*", "été"},
		{"a*aaaa*b", "aaaaaaaaaaaaaaaaaaaaaaaa"}, {"*x", "xx"}, {"x*", "xx"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, room string) {
		c := &auth.Claims{Subject: "u", Rooms: []string{pattern}}
		got := c.MayJoin(room)
		// regexp matches runes, the matcher bytes; they agree on valid
		// UTF-8, which is all the oracle is asked about.
		if !utf8.ValidString(pattern) || !utf8.ValidString(room) {
			return
		}
		lits := strings.Split(pattern, "*")
		for i, l := range lits {
			lits[i] = regexp.QuoteMeta(l)
		}
		re := regexp.MustCompile(`\A` + strings.Join(lits, `(?s:.*)`) + `\z`)
		if want := re.MatchString(room); got != want {
			t.Fatalf("MayJoin pattern %q room %q = %v, regexp says %v", pattern, room, got, want)
		}
	})
}

// FuzzOriginAllow builds a one-entry policy from arbitrary text and checks:
// nothing panics, an accepted exact entry allows itself, a wildcard allows a
// subdomain but not the apex, and "*" allows anything.
func FuzzOriginAllow(f *testing.F) {
	seeds := [][3]string{
		{"https://chat.example.com", "https://chat.example.com", "chat.example.com"},
		{"https://*.example.com", "https://a.example.com", "example.com"},
		{"https://*.example.com:8443", "https://a.b.example.com:8443", "x"},
		{"http://[::1]:8080", "http://[::1]:8080", "[::1]:8080"},
		{"*", "null", ""},
		{"capacitor://localhost", "capacitor://localhost", "localhost"},
		{"HTTPS://X.COM:0443/", "https://x.com", "x.com:443"},
		{"https://a.com", "", "a.com"},
		{"https://[", "https://[::1", "[::1"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	def, err := auth.NewOriginPolicy(nil)
	if err != nil {
		f.Fatal(err)
	}
	req := func(origin, host string) *http.Request {
		return &http.Request{Host: host, Header: http.Header{"Origin": {origin}}}
	}
	f.Fuzz(func(t *testing.T, entry, origin, host string) {
		def.Allow(req(origin, host))
		if !def.Allow(&http.Request{Host: host, Header: http.Header{}}) {
			t.Fatalf("request without Origin refused")
		}
		p, err := auth.NewOriginPolicy([]string{entry})
		if err != nil {
			return
		}
		got := p.Allow(req(origin, host))
		e := strings.TrimSuffix(strings.TrimSpace(entry), "/")
		switch {
		case e == "*":
			if !got {
				t.Fatalf("policy * refused %q", origin)
			}
		case strings.Contains(e, "://*."):
			sub := strings.Replace(e, "://*.", "://sub.", 1)
			if !p.Allow(req(sub, host)) {
				t.Fatalf("wildcard %q refused subdomain %q", entry, sub)
			}
			apex := strings.Replace(e, "://*.", "://", 1)
			if p.Allow(req(apex, host)) {
				t.Fatalf("wildcard %q allowed apex %q", entry, apex)
			}
		default:
			if !p.Allow(req(e, host)) {
				t.Fatalf("entry %q refused itself", entry)
			}
		}
	})
}
