package auth_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/auth"
)

func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	cfg := auth.Config{Secret: testKeys().secret, Issuer: "chatd-dev", Audience: "chatd", Now: fixedClock}
	s, err := auth.NewSigner(cfg)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	tests := []struct {
		name       string
		spec       auth.TokenSpec
		wantExpiry time.Time
		join       map[string]bool
	}{
		{
			name:       "no rooms claim: any room",
			spec:       auth.TokenSpec{Subject: "alice", Name: "Alice", TTL: time.Hour},
			wantExpiry: testNow.Add(time.Hour),
			join:       map[string]bool{"general": true, "x": true},
		},
		{
			name:       "empty rooms: no room",
			spec:       auth.TokenSpec{Subject: "bob", Rooms: []string{}, TTL: time.Minute},
			wantExpiry: testNow.Add(time.Minute),
			join:       map[string]bool{"general": false},
		},
		{
			name:       "patterns, admin, default ttl",
			spec:       auth.TokenSpec{Subject: "ops", Rooms: []string{"team-*", "general"}, Admin: true},
			wantExpiry: testNow.Add(auth.DefaultTTL),
			join:       map[string]bool{"general": true, "team-a": true, "random": false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := s.Sign(tt.spec)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			c, err := v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != tt.spec.Subject || c.Name != tt.spec.Name || c.Admin != tt.spec.Admin {
				t.Errorf("claims = %+v, want from %+v", *c, tt.spec)
			}
			if !c.Expiry.Equal(tt.wantExpiry) {
				t.Errorf("Expiry = %v, want %v", c.Expiry, tt.wantExpiry)
			}
			if (c.Rooms == nil) != (tt.spec.Rooms == nil) || !slices.Equal(c.Rooms, tt.spec.Rooms) {
				t.Errorf("Rooms = %#v, want %#v", c.Rooms, tt.spec.Rooms)
			}
			if c.Issuer != "chatd-dev" || !slices.Equal(c.Audience, []string{"chatd"}) {
				t.Errorf("iss/aud = %q/%q", c.Issuer, c.Audience)
			}
			for room, want := range tt.join {
				if got := c.MayJoin(room); got != want {
					t.Errorf("MayJoin(%q) = %v, want %v", room, got, want)
				}
			}
		})
	}
}

// TestSignerTokenIsPlainHS256 checks the token with the jwt library alone,
// so the Signer is not only compatible with our own Verifier.
func TestSignerTokenIsPlainHS256(t *testing.T) {
	t.Parallel()
	s, err := auth.NewSigner(auth.Config{Secret: testKeys().secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(auth.TokenSpec{Subject: "alice", Admin: true, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return testKeys().secret, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !parsed.Valid {
		t.Fatalf("jwt.Parse: %v", err)
	}
	if claims["scope"] != auth.AdminScope || claims["sub"] != "alice" {
		t.Errorf("claims = %v", claims)
	}
	if _, ok := claims["rooms"]; ok {
		t.Errorf("rooms claim present for nil Rooms: %v", claims["rooms"])
	}
	if _, ok := claims["iat"]; !ok {
		t.Errorf("no iat claim")
	}
}

func TestSignerErrors(t *testing.T) {
	t.Parallel()
	k := testKeys()
	if _, err := auth.NewSigner(auth.Config{PublicKeyPEM: k.rsaPEM}); err == nil || !strings.Contains(err.Error(), "only HS256") {
		t.Errorf("NewSigner(public key) error = %v", err)
	}
	if _, err := auth.NewSigner(auth.Config{Secret: []byte("short")}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("NewSigner(short secret) error = %v", err)
	}
	if _, err := auth.NewSigner(auth.Config{}); err == nil {
		t.Errorf("NewSigner(no secret) succeeded")
	}
	s, err := auth.NewSigner(auth.Config{Secret: k.secret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(auth.TokenSpec{TTL: time.Hour}); err == nil {
		t.Errorf("Sign without subject succeeded")
	}
	if _, err := s.Sign(auth.TokenSpec{Subject: "a", TTL: -time.Second}); err == nil {
		t.Errorf("Sign with negative ttl succeeded")
	}
}

func TestNewDevSecret(t *testing.T) {
	t.Parallel()
	a, err := auth.NewDevSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.NewDevSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != auth.MinSecretLen || bytes.Equal(a, b) {
		t.Fatalf("NewDevSecret: len %d, two calls equal: %v", len(a), bytes.Equal(a, b))
	}
	if _, err := auth.NewVerifier(auth.Config{Secret: a}); err != nil {
		t.Fatalf("dev secret refused by NewVerifier: %v", err)
	}
}
