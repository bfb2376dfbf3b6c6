package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA modulus accepted. NIST SP 800-131A
// disallowed 1024-bit RSA signatures in 2013; an issuer still using one
// should be told at startup, not trusted.
const minRSABits = 2048

// parsePublicKey decodes a PEM public key and returns it with the one
// algorithm it may verify. The algorithm is derived from the key, never from
// a token, so a token cannot ask for its signature to be checked some other
// way.
func parsePublicKey(pemBytes []byte) (alg string, key any, err error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return "", nil, errors.New("auth: public key: no PEM block found (expected -----BEGIN PUBLIC KEY-----)")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		// A second block is most likely a certificate chain or a key pair
		// pasted together; guessing which one was meant is not our job.
		return "", nil, errors.New("auth: public key: data after the first PEM block; give exactly one public key")
	}

	var pub any
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return "", nil, fmt.Errorf("auth: public key: %w", err)
		}
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return "", nil, fmt.Errorf("auth: public key: %w", err)
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return "", nil, fmt.Errorf("auth: public key: got a %s; configure the public key, the private key belongs to the token issuer only", block.Type)
		}
		return "", nil, fmt.Errorf("auth: public key: unsupported PEM block %q, want PUBLIC KEY or RSA PUBLIC KEY", block.Type)
	}

	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return "", nil, fmt.Errorf("auth: public key: RSA key is %d bits, need at least %d", bits, minRSABits)
		}
		return jwt.SigningMethodRS256.Alg(), k, nil
	case *ecdsa.PublicKey:
		// ES256 is defined on P-256 only (RFC 7518 §3.4); ES384 and ES512
		// are not part of the protocol.
		if k.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("auth: public key: ECDSA curve %s not supported, want P-256 (ES256)", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256.Alg(), k, nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), k, nil
	default:
		return "", nil, fmt.Errorf("auth: public key: unsupported key type %T, want RSA, ECDSA P-256 or Ed25519", pub)
	}
}
