package server_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/server"
)

// TestConfigValidate: every invalid setting is reported as a one-line
// *ConfigError naming its field, and New refuses it.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := server.Defaults
	valid.NodeID = "node-1"
	valid.Auth.Secret = testSecret
	if err := valid.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	tests := []struct {
		field  string
		change func(c *server.Config)
	}{
		{"NodeID", func(c *server.Config) { c.NodeID = "\x91" }},
		{"NodeID", func(c *server.Config) { c.NodeID = "node 1" }},
		{"Heartbeat", func(c *server.Config) { c.Heartbeat = 500 * time.Millisecond }},
		{"Heartbeat", func(c *server.Config) { c.Heartbeat = 1500 * time.Millisecond }},
		{"PongTimeout", func(c *server.Config) { c.PongTimeout = time.Millisecond }},
		{"WriteTimeout", func(c *server.Config) { c.WriteTimeout = -time.Second }},
		{"ReadLimit", func(c *server.Config) { c.ReadLimit = 100 }},
		{"MaxText", func(c *server.Config) { c.MaxText = 1 << 20 }},
		{"MaxText", func(c *server.Config) { c.MaxText = -1 }},
		{"HistoryLimit", func(c *server.Config) { c.HistoryLimit = 101 }},
		{"QueueSize", func(c *server.Config) { c.QueueSize = 4 }},
		{"MaxRooms", func(c *server.Config) { c.MaxRooms = -1 }},
		{"SendRate", func(c *server.Config) { c.SendRate = -1 }},
		{"UserBurst", func(c *server.Config) { c.UserBurst = -5 }},
		{"CommandRate", func(c *server.Config) { c.CommandRate = -0.5 }},
		{"UpgradeBurst", func(c *server.Config) { c.UpgradeBurst = -1 }},
		{"AbuseStrikes", func(c *server.Config) { c.AbuseStrikes = -1 }},
		{"AbuseWindow", func(c *server.Config) { c.AbuseWindow = -time.Second }},
		{"MaxConns", func(c *server.Config) { c.MaxConns = -1 }},
		{"DrainWindow", func(c *server.Config) { c.DrainWindow = -time.Second }},
		{"DrainTimeout", func(c *server.Config) { c.DrainTimeout = time.Second }},
		{"Auth.Secret", func(c *server.Config) { c.Auth.Secret = []byte("short") }},
		{"Auth.PublicKeyPEM", func(c *server.Config) { c.Auth.Secret = nil; c.Auth.PublicKeyPEM = []byte("not a key") }},
		{"DevTokens", func(c *server.Config) { c.Auth.Secret = nil; c.Auth.PublicKeyPEM = ed25519PEM(t); c.DevTokens = true }},
		{"AllowedOrigins", func(c *server.Config) { c.AllowedOrigins = []string{"chat.example.com/path"} }},
		{"TrustedProxies", func(c *server.Config) { c.TrustedProxies = []string{"10.0.0.0/99"} }},
	}
	withKey := valid
	withKey.Auth.Secret, withKey.Auth.PublicKeyPEM = nil, ed25519PEM(t)
	if err := withKey.Validate(); err != nil {
		t.Fatalf("a public key does not validate: %v", err)
	}
	for _, tc := range tests {
		cfg := valid
		tc.change(&cfg)
		err := cfg.Validate()
		var ce *server.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: Validate() = %v, want a *ConfigError for %s", tc.field, err, tc.field)
			continue
		}
		if strings.Contains(ce.Msg, "\n") || ce.Msg == "" {
			t.Errorf("%s: %q is not one line", tc.field, ce.Msg)
		}
	}
}

// ed25519PEM is a fresh Ed25519 public key in PEM.
func ed25519PEM(t testing.TB) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
