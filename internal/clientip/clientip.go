// Package clientip finds the address of the client behind an HTTP request,
// for the per-IP upgrade limit (PROTOCOL.md §1 admission) and for logs.
//
// X-Forwarded-For is written by whoever sends the request, so it is only
// believed as far as it was written by proxies we trust: each proxy appends
// the address of its peer, so reading from the right and stopping at the
// first address that is not a trusted proxy yields the last hop nobody
// could forge. Anything left of that is the client's own claim and ignored.
// A request whose peer (RemoteAddr) is not trusted has its header ignored
// entirely.
//
// Addresses are normalised so that one client has one key: IPv4-mapped IPv6
// (::ffff:a.b.c.d, what a dual-stack listener reports) becomes IPv4, and
// ports and IPv6 zones are dropped.
package clientip

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds client addresses given the proxies trusted to report them.
// It is immutable and safe for concurrent use. A nil *Resolver trusts no
// proxy.
type Resolver struct {
	trusted []netip.Prefix
}

// NewResolver returns a Resolver that trusts the proxies in trusted, each an
// IP address ("10.0.0.7", "::1") or a CIDR prefix ("10.0.0.0/8",
// "2001:db8::/32"); surrounding spaces are ignored. Host bits set in a
// prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8), as net.ParseCIDR does.
// IPv4-mapped entries are taken as IPv4 ("::ffff:10.0.0.0/104" is
// 10.0.0.0/8), because client addresses are unmapped before matching.
//
// An empty or nil list trusts nobody: X-Forwarded-For is then never used.
func NewResolver(trusted []string) (*Resolver, error) {
	r := &Resolver{trusted: make([]netip.Prefix, 0, len(trusted))}
	for i, s := range trusted {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("clientip: trusted proxy %d (%q): %w", i+1, s, err)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty entry")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not a CIDR prefix like 10.0.0.0/8 or 2001:db8::/32")
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
	}
	a = normalize(a)
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusted reports whether a is the address of a trusted proxy. Servers may
// use it to decide whether to believe other forwarded headers, such as
// X-Forwarded-Proto.
func (r *Resolver) Trusted(a netip.Addr) bool {
	if r == nil {
		return false
	}
	a = normalize(a)
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that sent req.
//
// It is the peer's address (req.RemoteAddr), unless the peer is a trusted
// proxy: then X-Forwarded-For (all such headers, in order, as one list) is
// read from the right, skipping trusted proxies, and the first address that
// is not one is returned. If every address is trusted, the leftmost is
// returned. An entry that is not an address ("unknown", an obfuscated
// identifier, garbage) ends the walk, and the last address read before it
// is returned: nothing left of a malformed entry can be trusted to have been
// written by our proxies.
//
// The result is the zero Addr only when RemoteAddr itself is not an address
// (a Unix socket listener, a hand-made request); callers must handle that.
func (r *Resolver) ClientIP(req *http.Request) netip.Addr {
	peer, ok := parseHost(req.RemoteAddr)
	if !ok {
		return netip.Addr{}
	}
	if !r.Trusted(peer) {
		return peer
	}
	last := peer
	xff := req.Header.Values("X-Forwarded-For")
	// Walk the values right to left, and each value's entries right to
	// left, without splitting: the header is the client's and can be long.
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for {
			j := strings.LastIndexByte(v, ',')
			a, ok := parseHost(v[j+1:])
			if !ok {
				return last
			}
			if !r.Trusted(a) {
				return a
			}
			last = a
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
	return last
}

// parseHost parses an address as found in RemoteAddr or an
// X-Forwarded-For entry: "1.2.3.4", "1.2.3.4:80", "2001:db8::1",
// "[2001:db8::1]", "[2001:db8::1]:443", with optional zone and surrounding
// spaces, and normalises it.
func parseHost(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	var (
		a   netip.Addr
		err error
	)
	// Pick the parser from the form instead of trying them in turn: a
	// failed parse allocates its error, and "ip:port" is the common case.
	switch {
	case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
		if a, err = netip.ParseAddr(s[1 : len(s)-1]); err == nil && !a.Is6() {
			return netip.Addr{}, false // brackets are for IPv6 only
		}
	case s != "" && s[0] == '[', strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return normalize(a), true
}

// normalize gives one client one form: IPv4-mapped IPv6 becomes IPv4 and
// the zone goes (it names an interface of the host that saw the address and
// means nothing to the limiter or in XFF).
func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
