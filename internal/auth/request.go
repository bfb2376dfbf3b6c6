package auth

import (
	"net/http"
	"strings"
)

// Where TokenFromRequest found the token; stable, for logs and metrics.
const (
	SourceHeader      = "header"      // Authorization: Bearer <jwt>
	SourceSubprotocol = "subprotocol" // Sec-WebSocket-Protocol: chat, access_token.<jwt>
	SourceQuery       = "query"       // ?access_token=<jwt>
)

// subprotocolTokenPrefix marks the offered subprotocol that carries the
// token. Browsers cannot set headers on a WebSocket, and the subprotocol list
// keeps the token out of URLs and access logs (PROTOCOL.md §1).
const subprotocolTokenPrefix = "access_token."

// TokenFromRequest returns the token a client presented and where it was
// found, or ("", "") when there is none. Sources are tried in order: the
// Authorization header (scheme "Bearer", any case), an "access_token.<jwt>"
// entry in Sec-WebSocket-Protocol, then the access_token query parameter.
// The first source holding a non-empty token wins; the others are not looked
// at, so a request carrying two different tokens is judged by the first.
//
// The token is not checked here; pass it to Verifier.Verify.
func TokenFromRequest(r *http.Request) (token string, source string) {
	for _, v := range r.Header.Values("Authorization") {
		if tok := bearerToken(v); tok != "" {
			return tok, SourceHeader
		}
	}
	for e := subprotocols(r); ; {
		p, more := e.next()
		if !more {
			break
		}
		if tok, ok := strings.CutPrefix(p, subprotocolTokenPrefix); ok && tok != "" {
			return tok, SourceSubprotocol
		}
	}
	if r.URL != nil {
		if tok := r.URL.Query().Get("access_token"); tok != "" {
			return tok, SourceQuery
		}
	}
	return "", ""
}

// bearerToken returns the credentials of an Authorization value with the
// Bearer scheme (RFC 6750 §2.1; schemes are case-insensitive, RFC 9110
// §11.1), or "" for any other scheme.
func bearerToken(v string) string {
	v = strings.TrimSpace(v)
	i := strings.IndexAny(v, " \t")
	if i < 0 || !strings.EqualFold(v[:i], "Bearer") {
		return ""
	}
	return strings.TrimSpace(v[i:])
}

// OfferedSubprotocols returns the subprotocols the client offered, in order,
// without the access_token.* entry, so the server can check that "chat" was
// offered and can never echo the token back in its response.
func OfferedSubprotocols(r *http.Request) []string {
	var out []string
	for e := subprotocols(r); ; {
		p, more := e.next()
		if !more {
			return out
		}
		if !strings.HasPrefix(p, subprotocolTokenPrefix) {
			out = append(out, p)
		}
	}
}

// OffersSubprotocol reports whether OfferedSubprotocols(r) holds name,
// without collecting them.
func OffersSubprotocol(r *http.Request, name string) bool {
	for e := subprotocols(r); ; {
		p, more := e.next()
		if !more {
			return false
		}
		if p == name && !strings.HasPrefix(p, subprotocolTokenPrefix) {
			return true
		}
	}
}

// subprotocolHeader is Sec-WebSocket-Protocol in the canonical form
// http.Header keys have: looked up as it is, where Header.Values would
// allocate its canonical form on every call.
const subprotocolHeader = "Sec-Websocket-Protocol"

// subprotocolEntries walks the entries of every Sec-WebSocket-Protocol
// header: the field is a comma-separated list that may also be sent as
// several header lines (RFC 6455 §11.3.4, RFC 9110 §5.3), with optional
// whitespace around entries. Empty entries are skipped. A plain loop: an
// iterator's closures would be allocated on every upgrade.
type subprotocolEntries struct {
	lines []string
	rest  string // of the current line
}

func subprotocols(r *http.Request) subprotocolEntries {
	return subprotocolEntries{lines: r.Header[subprotocolHeader]}
}

// next returns the next entry; ok is false after the last.
func (e *subprotocolEntries) next() (p string, ok bool) {
	for {
		for e.rest == "" {
			if len(e.lines) == 0 {
				return "", false
			}
			e.rest, e.lines = e.lines[0], e.lines[1:]
		}
		p, e.rest, _ = strings.Cut(e.rest, ",")
		if p = strings.Trim(p, " \t"); p != "" {
			return p, true
		}
	}
}
