package auth

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTTL is the lifetime of a token signed with a zero TokenSpec.TTL.
const DefaultTTL = time.Hour

// NewDevSecret returns MinSecretLen random bytes, for a development server
// that has no configured secret. Tokens signed with it die with the process,
// which is what a dev secret should do.
func NewDevSecret() ([]byte, error) {
	secret := make([]byte, MinSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("auth: dev secret: %w", err)
	}
	return secret, nil
}

// TokenSpec describes a token to sign.
type TokenSpec struct {
	// Subject becomes "sub", the user id; required.
	Subject string
	// Name becomes "name"; omitted when empty.
	Name string
	// Rooms becomes "rooms". nil omits the claim (any room); a non-nil
	// empty slice signs "rooms": [] (no room).
	Rooms []string
	// Admin adds "scope": "chat:admin".
	Admin bool
	// TTL is how long the token is valid from now. Zero means DefaultTTL.
	TTL time.Duration
}

// Signer mints HS256 tokens that a Verifier built from the same Config
// accepts. It exists for development (the "chatd token" command and the dev
// token endpoint) and tests; production tokens come from the identity
// provider. It is safe for concurrent use.
type Signer struct {
	secret   []byte
	issuer   string
	audience string
	now      func() time.Time
}

// NewSigner returns a Signer for cfg, which must hold an HS256 secret. Issuer
// and Audience, when set, are written into every token so the matching
// Verifier accepts them; Leeway is ignored.
func NewSigner(cfg Config) (*Signer, error) {
	if len(cfg.PublicKeyPEM) > 0 {
		return nil, errors.New("auth: signer: only HS256 is supported; a public key cannot sign")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("auth: signer: no secret configured")
	}
	if err := checkSecret(cfg.Secret); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Signer{
		secret:   bytes.Clone(cfg.Secret),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		now:      now,
	}, nil
}

// signedClaims is the payload the Signer writes. Rooms is a pointer so that
// nil omits the claim while a pointer to an empty slice writes [].
type signedClaims struct {
	jwt.RegisteredClaims
	Name  string    `json:"name,omitempty"`
	Rooms *[]string `json:"rooms,omitempty"`
	Scope string    `json:"scope,omitempty"`
}

// Sign returns a compact HS256 JWT for spec.
func (s *Signer) Sign(spec TokenSpec) (string, error) {
	if spec.Subject == "" {
		return "", errors.New("auth: sign: subject is required")
	}
	ttl := spec.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 {
		return "", fmt.Errorf("auth: sign: ttl %s is negative", spec.TTL)
	}
	now := s.now()
	c := signedClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   spec.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Name: spec.Name,
	}
	if s.audience != "" {
		c.Audience = jwt.ClaimStrings{s.audience}
	}
	if spec.Rooms != nil {
		rooms := spec.Rooms
		c.Rooms = &rooms
	}
	if spec.Admin {
		c.Scope = AdminScope
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return tok, nil
}
