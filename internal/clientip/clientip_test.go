package clientip_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/clientip"
)

var trusted = []string{"10.0.0.0/8", "192.168.1.1", "2001:db8:aaaa::/48", "::1", "::ffff:172.16.0.0/108"}

func newResolver(t testing.TB, trusted []string) *clientip.Resolver {
	t.Helper()
	r, err := clientip.NewResolver(trusted)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func request(remote string, xff ...string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/ws", nil)
	req.RemoteAddr = remote
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	return req
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	r := newResolver(t, trusted)
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string // "" for the zero Addr
	}{
		// No proxy.
		{"direct IPv4", "203.0.113.5:4711", nil, "203.0.113.5"},
		{"direct IPv6", "[2001:db8:1::5]:4711", nil, "2001:db8:1::5"},
		{"RemoteAddr without port", "203.0.113.5", nil, "203.0.113.5"},
		{"RemoteAddr IPv6 in brackets without port", "[2001:db8:1::5]", nil, "2001:db8:1::5"},
		{"RemoteAddr IPv4-mapped", "[::ffff:203.0.113.5]:4711", nil, "203.0.113.5"},
		{"RemoteAddr with zone", "[fe80::1%eth0]:4711", nil, "fe80::1"},
		{"RemoteAddr unix socket", "@", nil, ""},
		{"RemoteAddr empty", "", []string{"1.2.3.4"}, ""},

		// Spoofing from untrusted peers: the header is ignored.
		{"untrusted peer spoofs", "203.0.113.5:4711", []string{"1.2.3.4"}, "203.0.113.5"},
		{"untrusted peer spoofs a trusted address", "203.0.113.5:4711", []string{"10.0.0.1"}, "203.0.113.5"},
		{"untrusted peer, many headers", "203.0.113.5:1", []string{"1.1.1.1", "10.0.0.2, 10.0.0.3"}, "203.0.113.5"},
		{"untrusted peer next to a trusted one", "192.168.1.2:1", []string{"1.2.3.4"}, "192.168.1.2"},

		// One trusted proxy.
		{"trusted proxy", "10.1.2.3:80", []string{"198.51.100.9"}, "198.51.100.9"},
		{"trusted proxy, client-sent prefix ignored", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.9"}, "198.51.100.9"},
		{"trusted proxy, client claims to be a proxy", "10.1.2.3:80", []string{"10.9.9.9, 198.51.100.9"}, "198.51.100.9"},
		{"trusted proxy, no header", "10.1.2.3:80", nil, "10.1.2.3"},
		{"trusted proxy, empty header", "10.1.2.3:80", []string{""}, "10.1.2.3"},
		{"trusted proxy over IPv6 loopback", "[::1]:80", []string{"2001:db8:1::7"}, "2001:db8:1::7"},
		{"trusted single address", "192.168.1.1:80", []string{"198.51.100.9"}, "198.51.100.9"},
		{"trusted IPv4-mapped peer", "[::ffff:10.0.0.1]:80", []string{"198.51.100.9"}, "198.51.100.9"},
		{"trusted via IPv4-mapped config entry", "172.16.3.4:80", []string{"198.51.100.9"}, "198.51.100.9"},

		// Chains of proxies.
		{"chain", "10.0.0.4:80", []string{"198.51.100.9, 10.0.0.2, 10.0.0.3"}, "198.51.100.9"},
		{"chain over IPv6", "[2001:db8:aaaa::1]:80", []string{"2001:db8:bbbb::9, 2001:db8:aaaa:1::2"}, "2001:db8:bbbb::9"},
		{"chain with spoofed prefix", "10.0.0.4:80", []string{"1.1.1.1, 2.2.2.2, 198.51.100.9, 10.0.0.2"}, "198.51.100.9"},
		{"chain, all trusted: leftmost", "10.0.0.4:80", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"chain across headers", "10.0.0.4:80", []string{"198.51.100.9", "10.0.0.2"}, "198.51.100.9"},
		{"chain across headers with spoofed first header", "10.0.0.4:80", []string{"6.6.6.6", "198.51.100.9, 10.0.0.2"}, "198.51.100.9"},
		{"chain across headers, all trusted", "10.0.0.4:80", []string{"10.0.0.1", "10.0.0.2"}, "10.0.0.1"},

		// Formats of entries.
		{"spaces and tabs", "10.0.0.4:80", []string{" 198.51.100.9 ,\t10.0.0.2\t"}, "198.51.100.9"},
		{"entry with port", "10.0.0.4:80", []string{"198.51.100.9:5555"}, "198.51.100.9"},
		{"IPv6 entry with port", "10.0.0.4:80", []string{"[2001:db8:1::9]:5555"}, "2001:db8:1::9"},
		{"IPv6 entry in brackets", "10.0.0.4:80", []string{"[2001:db8:1::9]"}, "2001:db8:1::9"},
		{"IPv4-mapped entry", "10.0.0.4:80", []string{"::ffff:198.51.100.9"}, "198.51.100.9"},
		{"IPv4-mapped trusted entry is skipped", "10.0.0.4:80", []string{"198.51.100.9, ::ffff:10.0.0.2"}, "198.51.100.9"},
		{"zoned entry", "10.0.0.4:80", []string{"fe80::9%eth0"}, "fe80::9"},
		{"zoned entry with port", "10.0.0.4:80", []string{"[fe80::9%eth0]:80"}, "fe80::9"},
		{"IPv6 entry with a port but no brackets is IPv6", "10.0.0.4:80", []string{"2001:db8:1::9:80"}, "2001:db8:1::9:80"},

		// Malformed entries end the walk at the last address read.
		{"malformed rightmost", "10.0.0.4:80", []string{"198.51.100.9, garbage"}, "10.0.0.4"},
		{"malformed behind a trusted hop", "10.0.0.4:80", []string{"198.51.100.9, garbage, 10.0.0.2"}, "10.0.0.2"},
		{"unknown", "10.0.0.4:80", []string{"unknown"}, "10.0.0.4"},
		{"obfuscated", "10.0.0.4:80", []string{"_hidden, 10.0.0.2"}, "10.0.0.2"},
		{"empty entry", "10.0.0.4:80", []string{"198.51.100.9,,10.0.0.2"}, "10.0.0.2"},
		{"trailing comma", "10.0.0.4:80", []string{"198.51.100.9,"}, "10.0.0.4"},
		{"malformed left of the client is never reached", "10.0.0.4:80", []string{"garbage, 198.51.100.9"}, "198.51.100.9"},
		{"bracketed IPv4", "10.0.0.4:80", []string{"[198.51.100.9]"}, "10.0.0.4"},
		{"bad port", "10.0.0.4:80", []string{"198.51.100.9:99999"}, "10.0.0.4"},
		{"hostname", "10.0.0.4:80", []string{"example.com"}, "10.0.0.4"},
		{"malformed header before a good one", "10.0.0.4:80", []string{"garbage", "198.51.100.9"}, "198.51.100.9"},
		{"malformed header after trusted hops", "10.0.0.4:80", []string{"198.51.100.9", "garbage", "10.0.0.2"}, "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := r.ClientIP(request(tt.remote, tt.xff...))
			var want netip.Addr
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got != want {
				t.Fatalf("ClientIP(RemoteAddr %q, XFF %q) = %v, want %v", tt.remote, tt.xff, got, want)
			}
		})
	}
}

func TestClientIPNoTrustedProxies(t *testing.T) {
	t.Parallel()
	for _, r := range []*clientip.Resolver{nil, newResolver(t, nil), newResolver(t, []string{})} {
		got := r.ClientIP(request("10.0.0.4:80", "198.51.100.9"))
		if want := netip.MustParseAddr("10.0.0.4"); got != want {
			t.Fatalf("ClientIP = %v, want %v", got, want)
		}
	}
}

// A proxy that is trusted must not make an attacker's long header costly:
// the walk allocates nothing.
func TestClientIPAllocs(t *testing.T) {
	r := newResolver(t, trusted)
	req := request("10.0.0.4:80", strings.Repeat("10.0.0.1, ", 1000)+"198.51.100.9, 10.0.0.2", "10.0.0.3")
	if n := testing.AllocsPerRun(100, func() { r.ClientIP(req) }); n != 0 {
		t.Fatalf("ClientIP: %v allocs/op, want 0", n)
	}
}

func TestNewResolver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []string
		wantErr string // substring; "" for success
		trusted []string
		other   []string
	}{
		{name: "IPv4 address", entries: []string{"10.0.0.7"}, trusted: []string{"10.0.0.7"}, other: []string{"10.0.0.8"}},
		{name: "IPv4 prefix", entries: []string{"10.0.0.0/8"}, trusted: []string{"10.255.0.1", "::ffff:10.1.1.1"}, other: []string{"11.0.0.1"}},
		{name: "IPv6 address", entries: []string{"::1"}, trusted: []string{"::1"}, other: []string{"::2", "127.0.0.1"}},
		{name: "IPv6 prefix", entries: []string{"2001:db8::/32"}, trusted: []string{"2001:db8:ffff::1"}, other: []string{"2001:db9::1"}},
		{name: "host bits are cleared", entries: []string{"10.1.2.3/8"}, trusted: []string{"10.200.0.1"}},
		{name: "spaces are trimmed", entries: []string{" 10.0.0.0/8 ", "\t::1"}, trusted: []string{"10.0.0.1", "::1"}},
		{name: "IPv4-mapped address", entries: []string{"::ffff:10.0.0.7"}, trusted: []string{"10.0.0.7"}},
		{name: "IPv4-mapped prefix", entries: []string{"::ffff:10.0.0.0/104"}, trusted: []string{"10.9.9.9"}, other: []string{"11.0.0.1"}},
		{name: "zoned address", entries: []string{"fe80::1%eth0"}, trusted: []string{"fe80::1", "fe80::1%eth1"}},
		{name: "all of IPv4", entries: []string{"0.0.0.0/0"}, trusted: []string{"1.2.3.4"}, other: []string{"2001:db8::1"}},
		{name: "empty entry", entries: []string{"10.0.0.1", ""}, wantErr: `clientip: trusted proxy 2 (""): empty entry`},
		{name: "blank entry", entries: []string{"  "}, wantErr: "empty entry"},
		{name: "hostname", entries: []string{"proxy.internal"}, wantErr: `clientip: trusted proxy 1 ("proxy.internal"): not an IP address or CIDR prefix`},
		{name: "prefix too long", entries: []string{"10.0.0.0/33"}, wantErr: "not a CIDR prefix"},
		{name: "IPv6 prefix too long", entries: []string{"::/129"}, wantErr: "not a CIDR prefix"},
		{name: "prefix without bits", entries: []string{"10.0.0.0/"}, wantErr: "not a CIDR prefix"},
		{name: "address with port", entries: []string{"10.0.0.1:80"}, wantErr: "not an IP address"},
		{name: "list in one entry", entries: []string{"10.0.0.1,10.0.0.2"}, wantErr: "not an IP address"},
		{name: "zoned prefix", entries: []string{"fe80::/10%eth0"}, wantErr: "not a CIDR prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := clientip.NewResolver(tt.entries)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.trusted {
				if !r.Trusted(netip.MustParseAddr(s)) {
					t.Errorf("Trusted(%s) = false", s)
				}
			}
			for _, s := range tt.other {
				if r.Trusted(netip.MustParseAddr(s)) {
					t.Errorf("Trusted(%s) = true", s)
				}
			}
		})
	}
}

func BenchmarkClientIP(b *testing.B) {
	r := newResolver(b, trusted)
	req := request("10.0.0.4:80", "6.6.6.6, 198.51.100.9, 10.0.0.2")
	b.ReportAllocs()
	for b.Loop() {
		r.ClientIP(req)
	}
}
