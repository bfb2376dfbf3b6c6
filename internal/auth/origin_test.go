package auth_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/auth"
)

func TestNewOriginPolicyErrors(t *testing.T) {
	t.Parallel()
	valid := []string{
		"https://chat.example.com",
		"HTTPS://Chat.Example.COM",
		"https://chat.example.com/",
		"http://localhost:8080",
		"https://chat.example.com:443",
		"https://*.example.com",
		"https://*.example.com:8443",
		"http://127.0.0.1:3000",
		"http://[::1]:8080",
		"capacitor://localhost",
		"chrome-extension://abcdefghijklmnop",
		"  https://padded.example.com  ",
		"*",
	}
	for _, e := range valid {
		if _, err := auth.NewOriginPolicy([]string{e}); err != nil {
			t.Errorf("NewOriginPolicy(%q): %v", e, err)
		}
	}
	if _, err := auth.NewOriginPolicy(nil); err != nil {
		t.Errorf("NewOriginPolicy(nil): %v", err)
	}
	invalid := []string{
		"",
		"chat.example.com",
		"//chat.example.com",
		"https://",
		"https://chat.example.com/path",
		"https://chat.example.com?x=1",
		"https://chat.example.com#f",
		"https://user@chat.example.com",
		"https://chat.example.com:",
		"https://chat.example.com:0",
		"https://chat.example.com:65536",
		"https://chat.example.com:http",
		"https://chat.example.com:-1",
		"https://chat..example.com",
		"https://.example.com",
		"https://chat.example.com.",
		"https://*",
		"https://*.",
		"https://a.*.example.com",
		"https://*example.com",
		"https://**.example.com",
		"*.example.com",
		"*://example.com",
		"https://*.[::1]",
		"https://[::1",
		"https://[::1]x",
		"https://[1.2.3.4]",
		"https://::1",
		"https://chät.example.com",
		"https://chat example.com",
		"1http://example.com",
		"null",
	}
	for _, e := range invalid {
		_, err := auth.NewOriginPolicy([]string{"https://ok.example.com", e})
		if err == nil {
			t.Errorf("NewOriginPolicy(%q) succeeded, want an error", e)
			continue
		}
		if !strings.Contains(err.Error(), "origin allow-list entry") {
			t.Errorf("NewOriginPolicy(%q) error %q does not name the entry", e, err)
		}
	}
}

func TestOriginPolicyAllow(t *testing.T) {
	t.Parallel()
	list := []string{
		"https://chat.example.com",
		"http://localhost:8080",
		"https://*.example.org",
		"https://*.apps.example.net:8443",
		"http://[::1]:3000",
		"capacitor://localhost",
	}
	tests := []struct {
		name    string
		allowed []string
		origins []string // each an Origin header line; nil means no header
		host    string
		want    bool
	}{
		// No Origin: native clients.
		{"no origin, default policy", nil, nil, "chat.example.com", true},
		{"no origin, list", list, nil, "chat.example.com", true},

		// Default: same host only.
		{"same host", nil, []string{"https://chat.example.com"}, "chat.example.com", true},
		{"same host, http", nil, []string{"http://chat.example.com"}, "chat.example.com", true},
		{"same host, case", nil, []string{"https://CHAT.example.com"}, "Chat.Example.com", true},
		{"same host, explicit default port in Host", nil, []string{"https://chat.example.com"}, "chat.example.com:443", true},
		{"same host and port", nil, []string{"http://localhost:8080"}, "localhost:8080", true},
		{"same host, other port", nil, []string{"http://localhost:3000"}, "localhost:8080", false},
		{"same host, origin port vs no port", nil, []string{"https://chat.example.com:8443"}, "chat.example.com", false},
		{"same host ipv6", nil, []string{"http://[::1]:8080"}, "[::1]:8080", true},
		{"same host ipv6 spelled differently", nil, []string{"http://[0:0::1]:8080"}, "[::1]:8080", true},
		{"other host", nil, []string{"https://evil.example"}, "chat.example.com", false},
		{"suffix is not same host", nil, []string{"https://chat.example.com.evil.example"}, "chat.example.com", false},
		{"subdomain is not same host", nil, []string{"https://a.chat.example.com"}, "chat.example.com", false},
		{"null, default policy", nil, []string{"null"}, "chat.example.com", false},
		{"empty origin header", nil, []string{""}, "chat.example.com", false},
		{"origin with path", nil, []string{"https://chat.example.com/x"}, "chat.example.com", false},
		{"garbage origin", nil, []string{"chat.example.com"}, "chat.example.com", false},
		{"empty list behaves as default", []string{}, []string{"https://chat.example.com"}, "chat.example.com", true},

		// Exact entries.
		{"exact", list, []string{"https://chat.example.com"}, "ws.example.com", true},
		{"exact, case", list, []string{"HTTPS://CHAT.EXAMPLE.COM"}, "ws.example.com", true},
		{"exact, default port spelled out", list, []string{"https://chat.example.com:443"}, "ws.example.com", true},
		{"exact, wrong scheme", list, []string{"http://chat.example.com"}, "ws.example.com", false},
		{"exact, wrong port", list, []string{"https://chat.example.com:8443"}, "ws.example.com", false},
		{"exact, subdomain not included", list, []string{"https://a.chat.example.com"}, "ws.example.com", false},
		{"exact with port", list, []string{"http://localhost:8080"}, "ws.example.com", true},
		{"exact with port, default port", list, []string{"http://localhost"}, "ws.example.com", false},
		{"exact ipv6", list, []string{"http://[::1]:3000"}, "ws.example.com", true},
		{"exact custom scheme", list, []string{"capacitor://localhost"}, "ws.example.com", true},
		{"list does not imply same host", list, []string{"https://ws.example.com"}, "ws.example.com", false},

		// Wildcards.
		{"wildcard one level", list, []string{"https://a.example.org"}, "ws.example.com", true},
		{"wildcard two levels", list, []string{"https://a.b.example.org"}, "ws.example.com", true},
		{"wildcard, default port spelled out", list, []string{"https://a.example.org:443"}, "ws.example.com", true},
		{"wildcard excludes the apex", list, []string{"https://example.org"}, "ws.example.com", false},
		{"wildcard needs a dot boundary", list, []string{"https://badexample.org"}, "ws.example.com", false},
		{"wildcard wrong scheme", list, []string{"http://a.example.org"}, "ws.example.com", false},
		{"wildcard wrong port", list, []string{"https://a.example.org:8443"}, "ws.example.com", false},
		{"wildcard suffix attack", list, []string{"https://a.example.org.evil.example"}, "ws.example.com", false},
		{"wildcard with port", list, []string{"https://x.apps.example.net:8443"}, "ws.example.com", true},
		{"wildcard with port, default port", list, []string{"https://x.apps.example.net"}, "ws.example.com", false},
		{"wildcard empty label", list, []string{"https://.example.org"}, "ws.example.com", false},
		{"null with list", list, []string{"null"}, "ws.example.com", false},

		// Any.
		{"any", []string{"*"}, []string{"https://evil.example"}, "chat.example.com", true},
		{"any, null", []string{"*"}, []string{"null"}, "chat.example.com", true},
		{"any, garbage", []string{"*"}, []string{"%%%"}, "chat.example.com", true},
		{"any among others", []string{"https://chat.example.com", "*"}, []string{"https://evil.example"}, "chat.example.com", true},

		// Several Origin lines are not something a browser sends.
		{"two origin headers", nil, []string{"https://chat.example.com", "https://chat.example.com"}, "chat.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := auth.NewOriginPolicy(tt.allowed)
			if err != nil {
				t.Fatalf("NewOriginPolicy: %v", err)
			}
			r := httptest.NewRequest("GET", "/ws", nil)
			r.Host = tt.host
			for _, o := range tt.origins {
				r.Header.Add("Origin", o)
			}
			if got := p.Allow(r); got != tt.want {
				t.Fatalf("Allow(Origin %q, Host %q) = %v, want %v", tt.origins, tt.host, got, tt.want)
			}
		})
	}
}

func TestNilOriginPolicyIsSameHost(t *testing.T) {
	t.Parallel()
	var p *auth.OriginPolicy
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Host = "chat.example.com"
	r.Header.Set("Origin", "https://chat.example.com")
	if !p.Allow(r) {
		t.Errorf("nil policy refused the same host")
	}
	r.Header.Set("Origin", "https://evil.example")
	if p.Allow(r) {
		t.Errorf("nil policy allowed another host")
	}
}
