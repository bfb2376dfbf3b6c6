package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AdminScope is the scope that grants the server-side publish API. It is read
// from the standard OAuth "scope" claim (RFC 8693 §4.2: a single string of
// space-separated scopes), so that tokens minted by an ordinary OAuth
// authorization server work without a chatd-specific claim. Other shapes are
// deliberately not honoured: a "scope" that is not a string, an "scp" array,
// or a boolean "admin" claim never grant it (the token is still accepted,
// just without admin rights), so a privilege can only come from one place.
const AdminScope = "chat:admin"

// DefaultLeeway is the clock skew tolerated on "exp" and "nbf" when
// Config.Leeway is zero.
const DefaultLeeway = 5 * time.Second

// MinSecretLen is the shortest HS256 secret NewVerifier and NewSigner accept:
// 32 bytes, the output size of SHA-256 (RFC 7518 §3.2 requires a key at least
// as long as the hash). Shorter secrets are guessable offline from any one
// token.
const MinSecretLen = 32

// maxTokenLen bounds the work an unauthenticated client can make us do before
// the signature is checked. Real tokens are a few hundred bytes; a long list
// of room patterns still fits comfortably.
const maxTokenLen = 8 << 10

// Config selects the key tokens are verified with, and the claim checks.
// Exactly one of Secret and PublicKeyPEM must be set.
type Config struct {
	// Secret is the HS256 shared secret, at least MinSecretLen bytes. With
	// it, only HS256 tokens are accepted.
	Secret []byte

	// PublicKeyPEM is a PEM public key ("PUBLIC KEY", or "RSA PUBLIC KEY"
	// for PKCS #1). Its type fixes the one algorithm accepted: RSA (at
	// least 2048 bits) means RS256, ECDSA on P-256 means ES256, Ed25519
	// means EdDSA.
	PublicKeyPEM []byte

	// Issuer, when set, must equal the token's "iss".
	Issuer string

	// Audience, when set, must be one of the token's "aud" values.
	Audience string

	// Leeway is the clock skew tolerated on "exp" and "nbf". Zero means
	// DefaultLeeway; a negative value means none.
	Leeway time.Duration

	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Claims is what a verified token says about its holder.
type Claims struct {
	// Subject is the "sub" claim, the user id; never empty.
	Subject string
	// Name is the "name" claim, the display name; may be empty.
	Name string
	// Rooms holds the "rooms" patterns. nil means the claim was absent and
	// any room may be joined; a non-nil empty slice means no room may.
	// Use MayJoin rather than reading it directly.
	Rooms []string
	// Expiry is the "exp" claim as given. A token accepted within the
	// leeway has an Expiry slightly in the past.
	Expiry time.Time
	// Admin is true when the "scope" claim contains AdminScope.
	Admin bool
	// Issuer is the "iss" claim; may be empty when no issuer is configured.
	Issuer string
	// Audience is the "aud" claim; may be empty when no audience is
	// configured.
	Audience []string
}

// Errors returned by Verify, each wrapped with detail. Test with errors.Is,
// or label with Reason.
var (
	ErrMissing      = errors.New("auth: no token")
	ErrMalformed    = errors.New("auth: malformed token")
	ErrBadAlg       = errors.New("auth: signing algorithm not accepted")
	ErrBadSignature = errors.New("auth: invalid token signature")
	ErrExpired      = errors.New("auth: token expired")
	ErrNotYetValid  = errors.New("auth: token not valid yet")
	ErrBadIssuer    = errors.New("auth: token issuer not accepted")
	ErrBadAudience  = errors.New("auth: token audience not accepted")
	ErrNoSubject    = errors.New("auth: token has no subject")
	ErrNoExpiry     = errors.New("auth: token has no expiry")
)

// reasons is ordered: when an error wraps several sentinels, the first wins.
var reasons = []struct {
	err   error
	label string
}{
	{ErrMissing, "missing"},
	{ErrMalformed, "malformed"},
	{ErrBadAlg, "bad_alg"},
	{ErrBadSignature, "bad_signature"},
	{ErrNoSubject, "no_subject"},
	{ErrNoExpiry, "no_expiry"},
	{ErrBadIssuer, "bad_issuer"},
	{ErrBadAudience, "bad_audience"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
}

// Reason returns a short, stable label for an error from Verify, for logs and
// metrics: "missing", "malformed", "bad_alg", "bad_signature", "no_subject",
// "no_expiry", "bad_issuer", "bad_audience", "expired" or "not_yet_valid".
// It returns "" for nil and "invalid" for any other error.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "invalid"
}

// Verifier checks tokens against one key. It is safe for concurrent use.
type Verifier struct {
	alg      string
	key      any
	issuer   string
	audience string
	parser   *jwt.Parser
	leeway   time.Duration
	now      func() time.Time
	cache    verifiedCache
}

// verifiedCache remembers the claims of recently verified tokens, so that
// a token presented again (a client reconnecting, another tab, a mobile
// app coming back) costs a map lookup instead of a signature check and a
// JSON decoding. The same bytes verified once verify again: the key is
// fixed for the Verifier's life and claims do not change, except that time
// passes, so "exp" and "nbf" are checked again on every use (a token
// outside its window takes the full path, which says why it is refused).
// Only tokens of at most maxCachedToken bytes are kept, at most
// maxCachedTokens of them.
type verifiedCache struct {
	mu sync.Mutex
	m  map[string]cachedClaims
}

type cachedClaims struct {
	claims    Claims
	notBefore time.Time // zero when the token has no "nbf"
}

const (
	maxCachedTokens = 4096
	maxCachedToken  = 1 << 10
)

func (vc *verifiedCache) get(token string) (cachedClaims, bool) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	cc, ok := vc.m[token]
	return cc, ok
}

func (vc *verifiedCache) put(token string, cc cachedClaims) {
	if len(token) > maxCachedToken {
		return
	}
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.m == nil {
		vc.m = make(map[string]cachedClaims)
	}
	if len(vc.m) >= maxCachedTokens {
		for k := range vc.m { // map order: a random entry goes
			delete(vc.m, k)
			break
		}
	}
	vc.m[token] = cc
}

func (vc *verifiedCache) drop(token string) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	delete(vc.m, token)
}

// NewVerifier returns a Verifier for cfg, or an error saying what is wrong
// with the configuration.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{issuer: cfg.Issuer, audience: cfg.Audience}
	switch {
	case len(cfg.Secret) > 0 && len(cfg.PublicKeyPEM) > 0:
		// Accepting both would reopen algorithm confusion: the token's
		// header would pick the key.
		return nil, errors.New("auth: configure either a secret or a public key, not both")
	case len(cfg.Secret) > 0:
		if err := checkSecret(cfg.Secret); err != nil {
			return nil, err
		}
		v.alg = jwt.SigningMethodHS256.Alg()
		// A copy, so the caller reusing its buffer cannot change our key.
		v.key = bytes.Clone(cfg.Secret)
	case len(cfg.PublicKeyPEM) > 0:
		alg, key, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		v.alg, v.key = alg, key
	default:
		return nil, errors.New("auth: no key configured: set a secret (HS256) or a PEM public key")
	}

	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	v.leeway, v.now = leeway, cfg.Now
	if v.now == nil {
		v.now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// checkSecret refuses HS256 secrets that are too short or that are plainly a
// PEM key: an operator pasting the public key as the "secret" would make the
// server accept HS256 tokens anyone holding the public key can forge.
func checkSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("auth: HS256 secret is %d bytes, need at least %d (generate one with crypto/rand)", len(secret), MinSecretLen)
	}
	if bytes.Contains(secret, []byte("-----BEGIN ")) {
		return errors.New("auth: HS256 secret looks like a PEM key; configure a public key as the public key, not as the secret")
	}
	return nil
}

// Algorithm returns the one JWS algorithm this Verifier accepts: "HS256",
// "RS256", "ES256" or "EdDSA".
func (v *Verifier) Algorithm() string { return v.alg }

// tokenClaims is the JSON shape of a token's payload.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  string     `json:"name,omitempty"`
	Rooms roomsClaim `json:"rooms"`
	Scope scopeClaim `json:"scope"`
}

// roomsClaim keeps "absent" apart from "empty": UnmarshalJSON only runs when
// the key is present.
type roomsClaim struct {
	present bool
	list    []string
}

// errRoomsType is matched by Verify to name the faulty claim.
var errRoomsType = errors.New("rooms claim must be a list of strings")

func (r *roomsClaim) UnmarshalJSON(b []byte) error {
	// null is refused rather than read as "absent": absent grants every
	// room, and a token that says null probably did not mean that.
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return errRoomsType
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errRoomsType
	}
	if list == nil {
		list = []string{}
	}
	r.present, r.list = true, list
	return nil
}

// scopeClaim records whether "scope" grants AdminScope. Any shape other than
// a string is ignored rather than refused: the token is still a valid login,
// it just confers no admin rights (see AdminScope).
type scopeClaim struct {
	admin bool
}

func (s *scopeClaim) UnmarshalJSON(b []byte) error {
	var str string
	if json.Unmarshal(b, &str) != nil {
		return nil
	}
	for _, f := range strings.Fields(str) {
		if f == AdminScope {
			s.admin = true
		}
	}
	return nil
}

// Validate is called by the jwt parser after the signature is checked, with
// the registered-claim checks, so every claim problem is reported together.
func (c *tokenClaims) Validate() error {
	if c.Subject == "" {
		return ErrNoSubject
	}
	return nil
}

// errCritHeader refuses tokens that demand extensions we do not implement.
var errCritHeader = errors.New("token has a crit header")

// Verify checks token's signature and claims and returns its claims. Errors
// wrap one of the Err* sentinels (see Reason) and never contain the token.
// A token verified recently is recognised (see verifiedCache): only its
// times are checked again. The returned claims' slices are shared with
// that cache and must not be modified.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	if len(token) > maxTokenLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(token), maxTokenLen)
	}
	if cc, ok := v.cache.get(token); ok {
		now := v.now()
		// The parser's own rules: valid before exp+leeway, and from
		// nbf-leeway on.
		if now.Before(cc.claims.Expiry.Add(v.leeway)) && (cc.notBefore.IsZero() || !now.Before(cc.notBefore.Add(-v.leeway))) {
			c := cc.claims // a copy: the caller's to keep
			return &c, nil
		}
		v.cache.drop(token)
	}
	tc := &tokenClaims{}
	parsed, err := v.parser.ParseWithClaims(token, tc, v.keyFunc)
	if err != nil {
		return nil, v.classify(parsed, tc, err)
	}
	if !parsed.Valid || tc.ExpiresAt == nil || tc.Subject == "" {
		// Unreachable with jwt/v5, which reports every failure as an
		// error and runs our Validate; kept so that a library change
		// cannot let a token through.
		return nil, errors.New("auth: token not accepted")
	}
	c := &Claims{
		Subject:  tc.Subject,
		Name:     tc.Name,
		Expiry:   tc.ExpiresAt.Time,
		Admin:    tc.Scope.admin,
		Issuer:   tc.Issuer,
		Audience: []string(tc.Audience),
	}
	if tc.Rooms.present {
		c.Rooms = tc.Rooms.list
	}
	cc := cachedClaims{claims: *c}
	if tc.NotBefore != nil {
		cc.notBefore = tc.NotBefore.Time
	}
	v.cache.put(token, cc)
	return c, nil
}

// keyFunc hands the parser our one key. The parser has already refused any
// alg other than v.alg (WithValidMethods); the type switch in each jwt
// signing method refuses a key of the wrong type as a second line.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	// RFC 7515 §4.1.11: a recipient must refuse a token whose "crit" names
	// extensions it does not understand, and we understand none.
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritHeader
	}
	return v.key, nil
}

// classify turns a jwt/v5 error into one of ours. It deliberately drops the
// library's message text: some of it quotes decoded token content.
func (v *Verifier) classify(t *jwt.Token, tc *tokenClaims, err error) error {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, errRoomsType):
		return fmt.Errorf("%w: %v", ErrMalformed, errRoomsType)
	case errors.As(err, &typeErr) && typeErr.Field != "":
		// Field is a path in our struct ("RegisteredClaims.sub"), never
		// token text; the last element is the claim name.
		field := typeErr.Field[strings.LastIndexByte(typeErr.Field, '.')+1:]
		return fmt.Errorf("%w: claim %q has the wrong type", ErrMalformed, field)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: not a well-formed JWS compact token", ErrMalformed)
	case errors.Is(err, errCritHeader):
		return fmt.Errorf("%w: %v", ErrMalformed, errCritHeader)
	case t == nil || t.Method == nil:
		// The header decoded but its "alg" is missing or unknown.
		return fmt.Errorf("%w: alg missing or unknown, want %s", ErrBadAlg, v.alg)
	case t.Method.Alg() != v.alg:
		// Alg() is one of the library's registered names, so it is safe
		// to print; the raw header value is not.
		return fmt.Errorf("%w: got %s, want %s", ErrBadAlg, t.Method.Alg(), v.alg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrBadSignature
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		return fmt.Errorf("%w: token unverifiable", ErrBadSignature)
	}

	// The signature is good, so claim values are the issuer's words and
	// may be quoted. Report every problem, most specific first (see
	// reasons for the order Reason applies).
	var errs []error
	if tc.Subject == "" {
		errs = append(errs, ErrNoSubject)
	}
	if tc.ExpiresAt == nil {
		errs = append(errs, ErrNoExpiry)
	}
	if v.issuer != "" && tc.Issuer != v.issuer {
		errs = append(errs, fmt.Errorf("%w: got %q, want %q", ErrBadIssuer, tc.Issuer, v.issuer))
	}
	if v.audience != "" && !slices.Contains(tc.Audience, v.audience) {
		errs = append(errs, fmt.Errorf("%w: got %q, want %q", ErrBadAudience, []string(tc.Audience), v.audience))
	}
	if errors.Is(err, jwt.ErrTokenExpired) {
		errs = append(errs, fmt.Errorf("%w: at %s", ErrExpired, tc.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if errors.Is(err, jwt.ErrTokenNotValidYet) {
		errs = append(errs, fmt.Errorf("%w: not before %s", ErrNotYetValid, tc.NotBefore.UTC().Format(time.RFC3339)))
	}
	if len(errs) == 0 {
		// A claim check we do not map (a future library check). Refuse,
		// labelled "invalid" by Reason.
		return errors.New("auth: token claims not accepted")
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return joinedError(errs)
}

// joinedError is errors.Join on one line, because these messages go to logs.
type joinedError []error

func (e joinedError) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
		if i > 0 {
			msgs[i] = strings.TrimPrefix(msgs[i], "auth: ")
		}
	}
	return strings.Join(msgs, "; ")
}

func (e joinedError) Unwrap() []error { return e }
