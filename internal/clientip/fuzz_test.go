package clientip_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/clientip"
)

// FuzzClientIP feeds arbitrary peers and X-Forwarded-For headers. Beyond not
// panicking, the result must be normalised, and the header must never matter
// when the peer is not a trusted proxy (the anti-spoofing rule).
func FuzzClientIP(f *testing.F) {
	for _, s := range [][3]string{
		{"10.0.0.4:80", "198.51.100.9, 10.0.0.2", ""},
		{"203.0.113.5:4711", "1.2.3.4", "10.0.0.1"},
		{"[::1]:80", "[2001:db8::1]:443", "::ffff:10.0.0.2"},
		{"[fe80::1%eth0]:80", "fe80::2%eth0, unknown", ","},
		{"[::ffff:10.0.0.1]:1", ",,,", " \t "},
		{"@", "1.2.3.4", ""},
		{"10.0.0.4", "[1.2.3.4]:80, 1.2.3.4:99999", "garbage"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	r, err := clientip.NewResolver([]string{"10.0.0.0/8", "::1", "2001:db8::/48", "fe80::/10"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string) {
		base := r.ClientIP(request(remote))
		got := r.ClientIP(request(remote, xff1, xff2))
		if got.IsValid() != base.IsValid() {
			t.Fatalf("with XFF valid=%v, without valid=%v", got.IsValid(), base.IsValid())
		}
		if !got.IsValid() {
			return
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("result %v is not normalised", got)
		}
		if !r.Trusted(base) && got != base {
			t.Fatalf("untrusted peer %v: XFF %q %q changed the result to %v", base, xff1, xff2, got)
		}
		if want := refClientIP(r, remote, xff1, xff2); got != want {
			t.Fatalf("ClientIP(%q, %q, %q) = %v, reference model says %v", remote, xff1, xff2, got, want)
		}
	})
}

// refClientIP is the rule of ClientIP written the obvious way (split the
// joined header, try each parser in turn), to check the allocation-free
// walk against.
func refClientIP(r *clientip.Resolver, remote string, xff ...string) netip.Addr {
	parse := func(s string) (netip.Addr, bool) {
		s = strings.Trim(s, " \t")
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap().WithZone(""), true
		}
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().WithZone(""), true
		}
		if inner, ok := strings.CutPrefix(s, "["); ok {
			if inner, ok = strings.CutSuffix(inner, "]"); ok {
				if a, err := netip.ParseAddr(inner); err == nil && a.Is6() {
					return a.Unmap().WithZone(""), true
				}
			}
		}
		return netip.Addr{}, false
	}
	peer, ok := parse(remote)
	if !ok {
		return netip.Addr{}
	}
	if !r.Trusted(peer) {
		return peer
	}
	var entries []string
	for _, v := range xff {
		entries = append(entries, strings.Split(v, ",")...)
	}
	last := peer
	for i := len(entries) - 1; i >= 0; i-- {
		a, ok := parse(entries[i])
		if !ok {
			return last
		}
		if !r.Trusted(a) {
			return a
		}
		last = a
	}
	return last
}

// FuzzNewResolver checks that any configuration either fails with a
// clientip error or yields a resolver that trusts what the entry names.
func FuzzNewResolver(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/8", "192.168.1.1", "::1", "2001:db8::/32", "::ffff:10.0.0.0/104",
		"fe80::1%eth0", "10.1.2.3/8", " 10.0.0.1 ", "", "10.0.0.0/33", "proxy", "1.2.3.4:80",
		"::ffff:0:0/96", "0.0.0.0/0", "::/0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		r, err := clientip.NewResolver([]string{entry})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "clientip: trusted proxy 1 ") {
				t.Fatalf("error %q lacks the package prefix and position", err)
			}
			return
		}
		s := strings.TrimSpace(entry)
		var a netip.Addr
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				t.Fatalf("%q accepted but not a prefix: %v", entry, err)
			}
			a = p.Addr()
		} else if a, err = netip.ParseAddr(s); err != nil {
			t.Fatalf("%q accepted but not an address: %v", entry, err)
		}
		// The network address of the entry is always inside it, also in
		// its IPv4-mapped spelling and with a zone. (A mapped prefix
		// shorter than /96 spans more than IPv4 and stays IPv6, so its
		// unmapped addresses are not covered: documented.)
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4In6() && p.Bits() < 96 {
			return
		}
		if !r.Trusted(a) || !r.Trusted(a.Unmap()) {
			t.Fatalf("%q accepted but %v is not trusted", entry, a)
		}
		if a.Is6() && !a.Is4In6() && !r.Trusted(a.WithZone("z")) {
			t.Fatalf("%q accepted but %v with a zone is not trusted", entry, a)
		}
	})
}
