package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// certCommand writes a self-signed certificate and its key, in one PEM
// file (the form HAProxy wants; chatd's -tls-cert and -tls-key may both
// point at it), for local clusters: chatd cert -host localhost -out x.pem.
func certCommand(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("chatd cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("host", "localhost", "comma-separated host names and IPs the certificate is for")
	out := fs.String("out", "localhost.pem", "file to write (certificate and key)")
	days := fs.Int("days", 365, "validity in days")
	mode := fs.String("mode", "0600", "file mode, octal; a balancer running as another user than this command (as in docker-compose.yml) needs 0644")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	perm, err := strconv.ParseUint(*mode, 8, 32)
	if err != nil || perm > 0o777 {
		fmt.Fprintf(stderr, "chatd cert: -mode %q is not an octal file mode such as 0600 or 0644\n", *mode)
		return 2
	}
	if *days < 1 {
		fmt.Fprintf(stderr, "chatd cert: -days must be at least 1\n")
		return 2
	}
	pemBytes, err := selfSigned(splitList(*hosts), time.Duration(*days)*24*time.Hour)
	if err != nil {
		fmt.Fprintf(stderr, "chatd cert: %v\n", err)
		return 1
	}
	if err := os.WriteFile(*out, pemBytes, os.FileMode(perm)); err != nil {
		fmt.Fprintf(stderr, "chatd cert: %v\n", err)
		return 1
	}
	// WriteFile applies the mode (less the umask) only to a new file.
	if err := os.Chmod(*out, os.FileMode(perm)); err != nil {
		fmt.Fprintf(stderr, "chatd cert: %v\n", err)
		return 1
	}
	return 0
}

func selfSigned(hosts []string, validity time.Duration) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"chatd local cluster"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...), nil
}

// insecureLocalTransport is for the healthcheck only: it talks to this
// machine's own chatd, whose certificate may be self-signed.
func insecureLocalTransport() http.RoundTripper {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback healthcheck
}
