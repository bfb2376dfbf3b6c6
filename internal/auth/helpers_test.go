package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed clock of every verifier built by the tests, so that
// expiry cases do not depend on how fast the test runs.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return testNow }

// keys holds real key pairs, generated once per test binary because RSA key
// generation is slow under -race.
type keys struct {
	secret, otherSecret []byte

	rsa, otherRSA *rsa.PrivateKey
	ec, otherEC   *ecdsa.PrivateKey
	ec384         *ecdsa.PrivateKey
	ed, otherEd   ed25519.PrivateKey

	rsaPEM, rsaPKCS1PEM, ecPEM, edPEM []byte
}

var testKeys = sync.OnceValue(func() *keys {
	k := &keys{
		secret:      []byte("0123456789abcdef0123456789abcdef"),
		otherSecret: []byte("fedcba9876543210fedcba9876543210"),
	}
	k.rsa = must(rsa.GenerateKey(rand.Reader, 2048))
	k.otherRSA = must(rsa.GenerateKey(rand.Reader, 2048))
	k.ec = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	k.otherEC = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	k.ec384 = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	_, k.ed = must2(ed25519.GenerateKey(rand.Reader))
	_, k.otherEd = must2(ed25519.GenerateKey(rand.Reader))

	k.rsaPEM = pkixPEM(&k.rsa.PublicKey)
	k.rsaPKCS1PEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	k.ecPEM = pkixPEM(&k.ec.PublicKey)
	k.edPEM = pkixPEM(k.ed.Public())
	return k
})

func pkixPEM(pub any) []byte {
	der := must(x509.MarshalPKIXPublicKey(pub))
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// validClaims returns claims that every test verifier accepts at testNow.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice",
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

// sign makes a token with the jwt library, the way an identity provider
// would.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing %s test token: %v", method.Alg(), err)
	}
	return tok
}

// signWithHeader is sign with extra header fields.
func signWithHeader(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s test token: %v", method.Alg(), err)
	}
	return s
}
