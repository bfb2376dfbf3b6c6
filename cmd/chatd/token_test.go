package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/auth"
)

// TestTokenCommand: chatd token prints one token that a server with the
// same secret (and issuer and audience) accepts, with the claims asked for.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	verifier := func(iss, aud string) *auth.Verifier {
		v, err := auth.NewVerifier(auth.Config{Secret: []byte(testSecret), Issuer: iss, Audience: aud})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		args  []string
		env   env
		v     *auth.Verifier
		check func(c *auth.Claims) bool
	}{
		{"the issue's example", []string{"--sub", "alice", "--name", "Alice", "--ttl", "1h"}, env{"CHATD_JWT_SECRET": testSecret}, verifier("", ""), func(c *auth.Claims) bool {
			return c.Subject == "alice" && c.Name == "Alice" && c.Rooms == nil && !c.Admin && time.Until(c.Expiry) > 59*time.Minute && time.Until(c.Expiry) <= time.Hour
		}},
		{"rooms and admin", []string{"-sub", "svc", "-rooms", "lobby, team-*", "-admin", "-ttl", "10m"}, env{"CHATD_JWT_SECRET": testSecret}, verifier("", ""), func(c *auth.Claims) bool {
			return c.Subject == "svc" && slices.Equal(c.Rooms, []string{"lobby", "team-*"}) && c.Admin && time.Until(c.Expiry) <= 10*time.Minute
		}},
		{"issuer and audience from the environment", []string{"-sub", "bob"}, env{"CHATD_JWT_SECRET": testSecret, "CHATD_JWT_ISSUER": "https://id.example.com", "CHATD_JWT_AUDIENCE": "chatd"}, verifier("https://id.example.com", "chatd"), func(c *auth.Claims) bool {
			return c.Subject == "bob" && c.Issuer == "https://id.example.com" && slices.Contains(c.Audience, "chatd")
		}},
		{"secret as a flag", []string{"-sub", "carol", "-jwt-secret", testSecret}, env{}, verifier("", ""), func(c *auth.Claims) bool { return c.Subject == "carol" }},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"token"}, tc.args...), tc.env.get, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit status %d: %s", tc.name, code, stderr.String())
			continue
		}
		out := stdout.String()
		if strings.Count(out, "\n") != 1 || strings.Count(out, ".") != 2 {
			t.Errorf("%s: stdout %q is not one token", tc.name, out)
			continue
		}
		claims, err := tc.v.Verify(strings.TrimSpace(out))
		if err != nil {
			t.Errorf("%s: the token is refused: %v", tc.name, err)
			continue
		}
		if !tc.check(claims) {
			t.Errorf("%s: claims %+v", tc.name, claims)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		env  env
		code int
		want string
	}{
		{"no sub", []string{"-name", "x"}, env{"CHATD_JWT_SECRET": testSecret}, 2, "-sub is required"},
		{"no secret", []string{"-sub", "alice"}, env{}, 2, "CHATD_JWT_SECRET"},
		{"short secret", []string{"-sub", "alice"}, env{"CHATD_JWT_SECRET": "short"}, 2, "at least 32"},
		{"negative ttl", []string{"-sub", "alice", "-ttl", "-1h"}, env{"CHATD_JWT_SECRET": testSecret}, 2, "not positive"},
		{"bad ttl", []string{"-sub", "alice", "-ttl", "soon"}, env{"CHATD_JWT_SECRET": testSecret}, 2, "-ttl"},
		{"help", []string{"-h"}, env{}, 0, "-sub"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"token"}, tc.args...), tc.env.get, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String()+stdout.String(), tc.want) {
			t.Errorf("%s: exit status %d, output %q; want %d and %q", tc.name, code, stderr.String()+stdout.String(), tc.code, tc.want)
		}
		if tc.code != 0 && stdout.Len() != 0 {
			t.Errorf("%s: printed %q on stdout", tc.name, stdout.String())
		}
	}
}
