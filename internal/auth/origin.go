package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// OriginPolicy decides which browser origins may open a WebSocket. Browsers
// send Origin on every WebSocket handshake and let any page connect
// anywhere, so this check is what stops another site's page from using a
// visitor's browser to talk to chatd. Clients that are not browsers send no
// Origin and are always let through; they are held back by the token.
//
// A nil *OriginPolicy behaves like NewOriginPolicy(nil): same host only.
type OriginPolicy struct {
	any      bool
	exact    map[string]bool // origin.key() of each exact entry
	wildcard []origin        // host is the suffix after "*." (e.g. "example.com")
}

// NewOriginPolicy builds a policy from allow-list entries:
//
//   - "https://chat.example.com" or "http://localhost:8080": one origin,
//     scheme, host and port compared case-insensitively, with the default
//     port of http and https filled in ("https://a.com:443" = "https://a.com");
//   - "https://*.example.com": any subdomain, at any depth, of example.com
//     with that scheme and port, but not example.com itself;
//   - "*": any origin, "null" included.
//
// A trailing "/" on an entry is ignored; any other path, a query, user
// info, or a '*' anywhere else is an error, as is a non-ASCII host (write
// IDNs in punycode, as browsers send them).
//
// With no entries, the policy allows an origin only when its host and port
// equal the request's Host; see Allow.
func NewOriginPolicy(allowed []string) (*OriginPolicy, error) {
	p := &OriginPolicy{exact: make(map[string]bool)}
	for _, entry := range allowed {
		e := strings.TrimSpace(entry)
		if e == "*" {
			p.any = true
			continue
		}
		o, wild, err := parseOrigin(strings.TrimSuffix(e, "/"), true)
		if err != nil {
			return nil, fmt.Errorf("auth: origin allow-list entry %q: %w", entry, err)
		}
		if wild {
			p.wildcard = append(p.wildcard, o)
		} else {
			p.exact[o.key()] = true
		}
	}
	return p, nil
}

// Allow reports whether r's Origin is acceptable:
//
//   - no Origin header: allowed (native apps and servers send none);
//   - "*" in the allow-list: allowed, whatever the Origin;
//   - "Origin: null" (sandboxed frames, file: pages), an empty or
//     unparsable Origin, or more than one Origin header: refused;
//   - empty allow-list: allowed when the origin's host and port equal
//     r.Host. The scheme is not compared, because TLS is often ended by a
//     proxy in front of chatd, so an https page legitimately reaches a
//     plain-http listener; behind such a proxy r.Host must be the public
//     host (forward the Host header), or configure the list explicitly;
//   - otherwise: allowed when an exact or wildcard entry matches.
func (p *OriginPolicy) Allow(r *http.Request) bool {
	vals := r.Header.Values("Origin")
	if len(vals) == 0 {
		return true
	}
	if p != nil && p.any {
		return true
	}
	if len(vals) > 1 {
		return false
	}
	o, _, err := parseOrigin(vals[0], false)
	if err != nil {
		return false
	}
	if p == nil || (len(p.exact) == 0 && len(p.wildcard) == 0) {
		return sameHost(o, r.Host)
	}
	if p.exact[o.key()] {
		return true
	}
	for _, w := range p.wildcard {
		// The byte before the suffix must be '.', and something must come
		// before it: "a.example.com" and "a.b.example.com" match,
		// "example.com" and "badexample.com" do not.
		if o.scheme == w.scheme && o.port == w.port &&
			len(o.host) > len(w.host)+1 &&
			strings.HasSuffix(o.host, w.host) &&
			o.host[len(o.host)-len(w.host)-1] == '.' {
			return true
		}
	}
	return false
}

// origin is a parsed, normalised origin: lower-case scheme and host, an IPv6
// host without brackets in canonical form, and the port as a decimal string
// with the scheme's default filled in ("" when the scheme has none).
type origin struct {
	scheme, host, port string
}

func (o origin) key() string {
	host := o.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if o.port == "" {
		return o.scheme + "://" + host
	}
	return o.scheme + "://" + host + ":" + o.port
}

// parseOrigin parses the serialisation browsers send (RFC 6454 §6.2):
// scheme "://" host [":" port], nothing else. With allowWildcard, the host
// may start with "*." and wild reports it; o.host is then the suffix.
// Written by hand rather than with net/url so that exactly this form is
// accepted, for allow-list entries and request headers alike.
func parseOrigin(s string, allowWildcard bool) (o origin, wild bool, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return origin{}, false, errors.New("want scheme://host[:port]")
	}
	scheme = strings.ToLower(scheme)
	if !validScheme(scheme) {
		return origin{}, false, errors.New("invalid scheme")
	}
	if strings.ContainsAny(rest, "/?#@\\") {
		return origin{}, false, errors.New("an origin has no path, query or user info")
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return origin{}, false, err
	}
	if port == "" {
		port = defaultPort(scheme)
	}
	if allowWildcard {
		host, wild = strings.CutPrefix(host, "*.")
	}
	host, err = normaliseHost(host)
	if err != nil {
		return origin{}, false, err
	}
	if wild && strings.Contains(host, ":") {
		return origin{}, false, errors.New("a wildcard applies to host names, not IP addresses")
	}
	return origin{scheme: scheme, host: host, port: port}, wild, nil
}

// validScheme follows RFC 3986 §3.1: a letter, then letters, digits, "+",
// "-" or ".". Schemes other than http and https are allowed so that
// packaged apps (capacitor://, chrome-extension://) can be listed.
func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port", and
// returns the port in canonical decimal ("" when absent).
func splitHostPort(hp string) (host, port string, err error) {
	var rest string
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", errors.New("unclosed '[' in host")
		}
		host, rest = hp[:end+1], hp[end+1:]
		if rest != "" && rest[0] != ':' {
			return "", "", errors.New("unexpected text after IPv6 address")
		}
	} else {
		i := strings.IndexByte(hp, ':')
		if i < 0 {
			return hp, "", nil
		}
		host, rest = hp[:i], hp[i:]
	}
	if rest == "" {
		return host, "", nil
	}
	n, err := strconv.Atoi(rest[1:])
	if err != nil || n < 1 || n > 65535 || rest[1] == '+' || rest[1] == '-' {
		return "", "", errors.New("invalid port")
	}
	return host, strconv.Itoa(n), nil
}

// normaliseHost lower-cases a DNS name, or canonicalises a bracketed IPv6
// address (returned without brackets). Only ASCII letters, digits, '-' and
// '_' are allowed in labels.
func normaliseHost(h string) (string, error) {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", errors.New("invalid IPv6 address")
		}
		return a.String(), nil
	}
	h = strings.ToLower(h)
	if h == "" || len(h) > 253 {
		return "", errors.New("invalid host")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("invalid host: empty or over-long label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				if c == '*' {
					return "", errors.New("'*' is only allowed as the whole leftmost label (https://*.example.com)")
				}
				return "", errors.New("invalid character in host (IDNs must be written in punycode)")
			}
		}
	}
	return h, nil
}

// sameHost compares o with the request's Host header, filling in the
// default port of o's scheme when Host has none.
func sameHost(o origin, reqHost string) bool {
	host, port, err := splitHostPort(reqHost)
	if err != nil {
		return false
	}
	if host, err = normaliseHost(host); err != nil {
		return false
	}
	if port == "" {
		port = defaultPort(o.scheme)
	}
	return host == o.host && port == o.port
}
