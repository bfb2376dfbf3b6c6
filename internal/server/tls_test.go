package server_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/server"
	"github.com/chatd/chatd/internal/ws"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// startTLSServer serves cfg over TLS, with a new self-signed certificate,
// on a free loopback port. cancel starts the drain; done gives what Serve
// returned.
func startTLSServer(t *testing.T, cfg server.Config) (addr string, pool *x509.CertPool, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	certFile, keyFile, pool := selfSigned(t)
	srv, err := server.New(cfg, server.Deps{Broker: hub.NewMemoryBroker(hub.RetentionConfig{}), Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, certFile, keyFile) }()
	return ln.Addr().String(), pool, cancel, served
}

// TestTLS: with a certificate and key, Serve speaks https:// and wss://
// directly, over HTTP/1.1 only (a WebSocket upgrade needs it), and drains
// as usual.
func TestTLS(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.Auth.Secret = testSecret
	addr, pool, cancel, done := startTLSServer(t, cfg)

	client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
		t.Errorf("https /healthz: %d over %s, want 200 over HTTP/1.1", resp.StatusCode, resp.Proto)
	}

	signer, err := auth.NewSigner(auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := signer.Sign(auth.TokenSpec{Subject: "alice"})
	dctx, dcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer dcancel()
	conn, err := ws.Dial(dctx, "wss://"+addr+"/ws", &ws.DialOptions{TLSConfig: &tls.Config{RootCAs: pool}, Subprotocols: []string{"chat", "access_token." + tok}})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	c := newClient(t, "alice", conn, true)
	c.expect("welcome")
	c.join("secure")
	c.post("secure", "over TLS")

	// A plain-text client gets no WebSocket.
	if _, err := ws.Dial(dctx, "ws://"+addr+"/ws", &ws.DialOptions{Subprotocols: []string{"chat", "access_token." + tok}}); err == nil {
		t.Error("a ws:// dial to the TLS port succeeded")
	}

	cancel()
	c.waitFor("draining", nil)
	c.expectClose(ws.StatusGoingAway)
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestHandlerPanic: a panic in an HTTP handler is a logged 500 with the
// JSON error body, and the server carries on.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	web := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("test: handler panics")
		}
		_, _ = w.Write([]byte("ok"))
	})
	logs := &syncBuffer{}
	ts := startServer(t, fastConfig(), serverOpts{web: web, logs: logs})
	resp, body := ts.get(t, "/boom")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("/boom: %d %s", resp.StatusCode, body)
	}
	checkErrorBody(t, resp, body, "internal")
	if resp, _ := ts.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("after the panic: /healthz %d", resp.StatusCode)
	}
	ts.dial(t, "alice")
	if !strings.Contains(logs.String(), "handler panicked") {
		t.Error("the panic is not logged")
	}
}

// TestTLSErrorsAreJSON: over chatd's own TLS, the answers to requests
// net/http cannot parse are JSON errors, as on plain HTTP, and a client
// speaking plain HTTP to the TLS port is told so in a JSON error too.
func TestTLSErrorsAreJSON(t *testing.T) {
	t.Parallel()
	addr, pool, cancel, done := startTLSServer(t, fastConfig())
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	cases := []struct {
		name       string
		tls        bool
		request    string
		status     int
		code, text string
	}{
		{"malformed request line", true, "GARBAGE\r\n\r\n", 400, "bad_request", "malformed HTTP request"},
		{"malformed header", true, "GET /ws HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400, "bad_request", "malformed HTTP request"},
		{"unsupported version", true, "GET /ws HTTP/9.9\r\nHost: a\r\n\r\n", 505, "http_version_not_supported", "unsupported protocol version"},
		{"headers too large", true, "GET /ws HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 1<<21) + "\r\n\r\n", 431, "too_large", "request headers too large"},
		{"plain HTTP to the TLS port", false, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request", "this port speaks TLS: use https:// or wss://"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c net.Conn
			var err error
			if tc.tls {
				c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
			} else {
				c, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitTimeout))
			// The server may answer, and close, before it read it all.
			go func() { _, _ = c.Write([]byte(tc.request)) }()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			defer resp.Body.Close()
			var body struct{ Error, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("%d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" || body.Error != tc.code || body.Message != tc.text {
				t.Errorf("got %d %s %+v, want %d application/json {%s %s}", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.code, tc.text)
			}
		})
	}
}

// TestTLSBadCertificate: Serve says which files it could not load.
func TestTLSBadCertificate(t *testing.T) {
	t.Parallel()
	srv, err := server.New(fastConfig(), server.Deps{Broker: hub.NewMemoryBroker(hub.RetentionConfig{}), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "not-a-cert.pem")
	if err := os.WriteFile(bad, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(context.Background(), ln, bad, bad)
	if err == nil || !strings.Contains(err.Error(), "load TLS certificate "+bad) {
		t.Errorf("Serve with a bad certificate: %v, want an error naming %s", err, bad)
	}
}
