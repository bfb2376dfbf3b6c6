package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/server"
)

const testSecret = "chatd-test-secret-0123456789abcdef"

// env is a fake environment for parseConfig and run.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// TestConfigDefaults: no flag and no variable gives the documented
// defaults: the server's, a dev-mode server on :8080.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(nil, env{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != ":8080" || cfg.historySize != 1000 || cfg.historyTTL != 24*time.Hour || cfg.logLevel != "info" || cfg.logFormat != "auto" || cfg.redisURL != "" {
		t.Errorf("defaults: %+v", cfg)
	}
	s := cfg.srv
	if len(s.Auth.Secret) != 0 || len(s.Auth.PublicKeyPEM) != 0 {
		t.Error("a key is configured by default; dev mode expected")
	}
	if s.NodeID == "" || len(s.NodeID) > 64 || strings.ContainsAny(s.NodeID, " .{}") {
		t.Errorf("default node id %q", s.NodeID)
	}
	d := server.Defaults
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Heartbeat", s.Heartbeat, d.Heartbeat}, {"PongTimeout", s.PongTimeout, d.PongTimeout},
		{"WriteTimeout", s.WriteTimeout, d.WriteTimeout}, {"ReadLimit", s.ReadLimit, d.ReadLimit},
		{"MaxText", s.MaxText, d.MaxText}, {"HistoryLimit", s.HistoryLimit, d.HistoryLimit},
		{"QueueSize", s.QueueSize, d.QueueSize}, {"MaxRooms", s.MaxRooms, d.MaxRooms},
		{"SendRate", s.SendRate, d.SendRate}, {"SendBurst", s.SendBurst, d.SendBurst},
		{"UserRate", s.UserRate, d.UserRate}, {"UserBurst", s.UserBurst, d.UserBurst},
		{"CommandRate", s.CommandRate, d.CommandRate}, {"CommandBurst", s.CommandBurst, d.CommandBurst},
		{"AbuseStrikes", s.AbuseStrikes, d.AbuseStrikes}, {"AbuseWindow", s.AbuseWindow, d.AbuseWindow},
		{"UpgradeRate", s.UpgradeRate, d.UpgradeRate}, {"UpgradeBurst", s.UpgradeBurst, d.UpgradeBurst},
		{"DrainWindow", s.DrainWindow, d.DrainWindow}, {"DrainTimeout", s.DrainTimeout, d.DrainTimeout},
		{"Compression", s.Compression, true}, {"MaxConns", s.MaxConns, int64(0)},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
}

// writePublicKey writes an Ed25519 public key PEM and returns its path.
func writePublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// settingCase sets one flag to a value that is not its default and says
// where it must show up in the configuration.
type settingCase struct {
	flag, value string
	check       func(c *config) bool
}

func settingCases(t *testing.T) []settingCase {
	pubKey := writePublicKey(t)
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, []byte("placeholder"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []settingCase{
		{"addr", "127.0.0.1:9999", func(c *config) bool { return c.addr == "127.0.0.1:9999" }},
		{"node-id", "node-7", func(c *config) bool { return c.srv.NodeID == "node-7" }},
		{"redis", "redis://127.0.0.1:6379/0", func(c *config) bool { return c.redisURL == "redis://127.0.0.1:6379/0" }},
		{"redis-cluster", "true", func(c *config) bool { return c.redisCluster }},
		{"tls-cert", certFile, func(c *config) bool { return c.tlsCert == certFile }},
		{"tls-key", certFile, func(c *config) bool { return c.tlsKey == certFile }},
		{"log-level", "debug", func(c *config) bool { return c.logLevel == "debug" }},
		{"log-format", "json", func(c *config) bool { return c.logFormat == "json" }},
		{"pprof", "127.0.0.1:6060", func(c *config) bool { return c.pprofAddr == "127.0.0.1:6060" }},
		{"jwt-secret", testSecret, func(c *config) bool { return string(c.srv.Auth.Secret) == testSecret }},
		{"jwt-public-key", pubKey, func(c *config) bool { return bytes.Contains(c.srv.Auth.PublicKeyPEM, []byte("PUBLIC KEY")) }},
		{"dev-tokens", "true", func(c *config) bool { return c.srv.DevTokens }},
		{"jwt-issuer", "https://id.example.com", func(c *config) bool { return c.srv.Auth.Issuer == "https://id.example.com" }},
		{"jwt-audience", "chatd", func(c *config) bool { return c.srv.Auth.Audience == "chatd" }},
		{"allowed-origins", "https://a.example.com, https://*.example.org", func(c *config) bool {
			return reflect.DeepEqual(c.srv.AllowedOrigins, []string{"https://a.example.com", "https://*.example.org"})
		}},
		{"trusted-proxies", "10.0.0.0/8,192.0.2.1", func(c *config) bool {
			return reflect.DeepEqual(c.srv.TrustedProxies, []string{"10.0.0.0/8", "192.0.2.1"})
		}},
		{"heartbeat", "30s", func(c *config) bool { return c.srv.Heartbeat == 30*time.Second }},
		{"pong-timeout", "3s", func(c *config) bool { return c.srv.PongTimeout == 3*time.Second }},
		{"write-timeout", "2s", func(c *config) bool { return c.srv.WriteTimeout == 2*time.Second }},
		{"history-size", "50", func(c *config) bool { return c.historySize == 50 }},
		{"history-ttl", "1h", func(c *config) bool { return c.historyTTL == time.Hour }},
		{"history-limit", "20", func(c *config) bool { return c.srv.HistoryLimit == 20 }},
		{"read-limit", "131072", func(c *config) bool { return c.srv.ReadLimit == 131072 }},
		{"max-text", "1000", func(c *config) bool { return c.srv.MaxText == 1000 }},
		{"queue-size", "64", func(c *config) bool { return c.srv.QueueSize == 64 }},
		{"max-rooms", "10", func(c *config) bool { return c.srv.MaxRooms == 10 }},
		{"compression", "false", func(c *config) bool { return !c.srv.Compression }},
		{"io-uring", "false", func(c *config) bool { return !c.ioUring }},
		{"send-rate", "2.5", func(c *config) bool { return c.srv.SendRate == 2.5 }},
		{"send-burst", "5", func(c *config) bool { return c.srv.SendBurst == 5 }},
		{"user-rate", "4", func(c *config) bool { return c.srv.UserRate == 4 }},
		{"user-burst", "8", func(c *config) bool { return c.srv.UserBurst == 8 }},
		{"command-rate", "9", func(c *config) bool { return c.srv.CommandRate == 9 }},
		{"command-burst", "11", func(c *config) bool { return c.srv.CommandBurst == 11 }},
		{"abuse-strikes", "7", func(c *config) bool { return c.srv.AbuseStrikes == 7 }},
		{"abuse-window", "1m", func(c *config) bool { return c.srv.AbuseWindow == time.Minute }},
		{"upgrade-rate", "3", func(c *config) bool { return c.srv.UpgradeRate == 3 }},
		{"upgrade-burst", "6", func(c *config) bool { return c.srv.UpgradeBurst == 6 }},
		{"max-conns", "1000", func(c *config) bool { return c.srv.MaxConns == 1000 }},
		{"drain-window", "2s", func(c *config) bool { return c.srv.DrainWindow == 2*time.Second }},
		{"drain-timeout", "40s", func(c *config) bool { return c.srv.DrainTimeout == 40*time.Second }},
	}
}

// TestEverySetting: every flag, given on the command line or as its
// CHATD_* variable, reaches the configuration; a flag wins over the
// variable.
func TestEverySetting(t *testing.T) {
	t.Parallel()
	cases := settingCases(t)
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.flag] = true
	}
	newFlagSet(&config{}, io.Discard).VisitAll(func(f *flag.Flag) {
		if !covered[f.Name] {
			t.Errorf("-%s has no case in settingCases", f.Name)
		}
	})
	// Settings that must come in pairs or exclude each other.
	base := func(flagName string) env {
		e := env{}
		switch flagName {
		case "tls-cert":
			e["CHATD_TLS_KEY"] = cases[5].value
		case "tls-key":
			e["CHATD_TLS_CERT"] = cases[4].value
		case "redis-cluster":
			e["CHATD_REDIS_URL"] = "redis://127.0.0.1:6379"
		}
		return e
	}
	for _, tc := range cases {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			e := base(tc.flag)
			e[flagEnv(tc.flag)] = tc.value
			cfg, err := parseConfig(nil, e.get, io.Discard)
			if err != nil {
				t.Fatalf("%s=%s: %v", flagEnv(tc.flag), tc.value, err)
			}
			if !tc.check(cfg) {
				t.Errorf("%s=%s did not reach the configuration", flagEnv(tc.flag), tc.value)
			}
			e = base(tc.flag)
			cfg, err = parseConfig([]string{"-" + tc.flag + "=" + tc.value}, e.get, io.Discard)
			if err != nil {
				t.Fatalf("-%s=%s: %v", tc.flag, tc.value, err)
			}
			if !tc.check(cfg) {
				t.Errorf("-%s=%s did not reach the configuration", tc.flag, tc.value)
			}
		})
	}
	// The command line wins; the environment fills in the rest.
	cfg, err := parseConfig([]string{"-addr", "127.0.0.1:1", "--send-rate", "3"}, env{"CHATD_ADDR": "127.0.0.1:2", "CHATD_SEND_BURST": "9"}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != "127.0.0.1:1" || cfg.srv.SendRate != 3 || cfg.srv.SendBurst != 9 {
		t.Errorf("flag over variable: addr %s, send rate %v, send burst %d", cfg.addr, cfg.srv.SendRate, cfg.srv.SendBurst)
	}
}

// TestInvalidConfig: each invalid configuration makes chatd exit 2 at
// start with one line on stderr that names the setting and says how to
// fix it.
func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	badPEM := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(badPEM, []byte("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub := writePublicKey(t)
	tests := []struct {
		name string
		args []string
		env  env
		want []string // substrings of the one line
	}{
		{"duration syntax", nil, env{"CHATD_HEARTBEAT": "often"}, []string{"CHATD_HEARTBEAT", "duration like"}},
		{"duration flag syntax", []string{"-pong-timeout", "5"}, nil, []string{"-pong-timeout", "duration like"}},
		{"number syntax", nil, env{"CHATD_SEND_RATE": "fast"}, []string{"CHATD_SEND_RATE", "a number"}},
		{"integer syntax", []string{"-queue-size=1.5"}, nil, []string{"-queue-size", "whole number"}},
		{"bool syntax", nil, env{"CHATD_COMPRESSION": "maybe"}, []string{"CHATD_COMPRESSION", "true or false"}},
		{"unknown flag", []string{"-heartbeet", "1s"}, nil, []string{"unknown flag -heartbeet", "chatd -h"}},
		{"flag without value", []string{"-addr"}, nil, []string{"-addr needs a value"}},
		{"stray argument", []string{"serve"}, nil, []string{`unexpected argument "serve"`}},
		{"heartbeat too short", nil, env{"CHATD_HEARTBEAT": "100ms"}, []string{"-heartbeat (CHATD_HEARTBEAT)", "at least 1s"}},
		{"heartbeat fraction", []string{"-heartbeat", "2500ms"}, nil, []string{"CHATD_HEARTBEAT", "whole number of seconds"}},
		{"pong timeout", nil, env{"CHATD_PONG_TIMEOUT": "1ms"}, []string{"CHATD_PONG_TIMEOUT", "at least 100ms"}},
		{"queue size", nil, env{"CHATD_QUEUE_SIZE": "2"}, []string{"CHATD_QUEUE_SIZE", "at least 8"}},
		{"max text over read limit", nil, env{"CHATD_MAX_TEXT": "100000"}, []string{"CHATD_MAX_TEXT", "read limit"}},
		{"history limit", nil, env{"CHATD_HISTORY_LIMIT": "500"}, []string{"CHATD_HISTORY_LIMIT", "between 1 and 100"}},
		{"history size", nil, env{"CHATD_HISTORY_SIZE": "0"}, []string{"CHATD_HISTORY_SIZE", "at least 1"}},
		{"history ttl", nil, env{"CHATD_HISTORY_TTL": "10ms"}, []string{"CHATD_HISTORY_TTL", "at least 1s"}},
		{"negative rate", nil, env{"CHATD_USER_RATE": "-1"}, []string{"CHATD_USER_RATE", "positive"}},
		{"zero burst", nil, env{"CHATD_SEND_BURST": "0"}, []string{"CHATD_SEND_BURST", "at least 1"}},
		{"drain timeout shorter than window", nil, env{"CHATD_DRAIN_TIMEOUT": "1s"}, []string{"CHATD_DRAIN_TIMEOUT", "drain window"}},
		{"max conns", nil, env{"CHATD_MAX_CONNS": "-5"}, []string{"CHATD_MAX_CONNS", "0 (automatic) or more"}},
		{"short secret", nil, env{"CHATD_JWT_SECRET": "hunter2"}, []string{"CHATD_JWT_SECRET", "at least 32", "openssl rand"}},
		{"PEM as secret", nil, env{"CHATD_JWT_SECRET": "-----BEGIN PUBLIC KEY-----" + strings.Repeat("A", 40)}, []string{"CHATD_JWT_SECRET", "PEM"}},
		{"secret and key", nil, env{"CHATD_JWT_SECRET": testSecret, "CHATD_JWT_PUBLIC_KEY": pub}, []string{"CHATD_JWT_SECRET", "CHATD_JWT_PUBLIC_KEY", "not both"}},
		{"dev tokens with a public key", nil, env{"CHATD_JWT_PUBLIC_KEY": pub, "CHATD_DEV_TOKENS": "true"}, []string{"-dev-tokens (CHATD_DEV_TOKENS)", "cannot sign"}},
		{"key file missing", nil, env{"CHATD_JWT_PUBLIC_KEY": "/nonexistent/key.pem"}, []string{"CHATD_JWT_PUBLIC_KEY", "no such file"}},
		{"key file not a key", nil, env{"CHATD_JWT_PUBLIC_KEY": badPEM}, []string{"CHATD_JWT_PUBLIC_KEY"}},
		{"origin with a path", nil, env{"CHATD_ALLOWED_ORIGINS": "https://chat.example.com/app"}, []string{"CHATD_ALLOWED_ORIGINS", "https://*.example.com"}},
		{"proxy not an address", nil, env{"CHATD_TRUSTED_PROXIES": "proxy.local"}, []string{"CHATD_TRUSTED_PROXIES", "CIDR"}},
		{"tls cert without key", []string{"-tls-cert", pub}, nil, []string{"CHATD_TLS_CERT", "CHATD_TLS_KEY", "together"}},
		{"tls files missing", nil, env{"CHATD_TLS_CERT": "/nonexistent/c.pem", "CHATD_TLS_KEY": "/nonexistent/k.pem"}, []string{"CHATD_TLS_CERT", "no such file"}},
		{"log level", nil, env{"CHATD_LOG_LEVEL": "loud"}, []string{"CHATD_LOG_LEVEL", "debug, info, warn or error"}},
		{"log format", []string{"-log-format", "xml"}, nil, []string{"CHATD_LOG_FORMAT", "auto, json or console"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if tc.env == nil {
				tc.env = env{}
			}
			code := run(tc.args, tc.env.get, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
				t.Errorf("stderr is not one line: %q", line)
			}
			if !strings.HasPrefix(line, "chatd: invalid configuration: ") {
				t.Errorf("stderr %q", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not say %q", line, w)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// TestHelp: chatd -h documents every setting with its variable and
// default, on stdout, and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{arg}, env{}.get, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit status %d", arg, code)
		}
		help := stdout.String()
		if stderr.Len() != 0 {
			t.Errorf("%s: stderr %q", arg, stderr.String())
		}
		for _, sub := range []string{"chatd token", "chatd cert", "chatd healthcheck", "chatd version", "CHATD_"} {
			if !strings.Contains(help, sub) {
				t.Errorf("%s does not mention %q", arg, sub)
			}
		}
		newFlagSet(&config{}, io.Discard).VisitAll(func(f *flag.Flag) {
			entry := "  -" + f.Name + "  [" + flagEnv(f.Name) + "]\n    \t" + f.Usage
			if d := flagDefault(f); d != "" {
				entry += " (default " + d + ")"
			}
			if !strings.Contains(help, entry+"\n") {
				t.Errorf("%s lacks %q", arg, entry)
			}
		})
	}
}
