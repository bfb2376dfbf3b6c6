package conformance_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// sampleAccept is Sec-WebSocket-Accept for sampleKey (RFC 6455 §1.3).
const sampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

// checkRefusal checks a refused upgrade: the status, and a JSON body
// {"error":code,"message":"..."} and nothing else (PROTOCOL.md §1).
func checkRefusal(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %s, want %d; body %s", resp.Status, status, body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("body %q is not a JSON object: %v", body, err)
		return
	}
	if len(m) != 2 {
		t.Errorf("body %s has other fields than error and message", body)
	}
	if got, _ := m["error"].(string); got != code {
		t.Errorf("body %s: error %q, want %q", body, m["error"], code)
	}
	if msg, ok := m["message"].(string); !ok || msg == "" {
		t.Errorf("body %s: message is not a non-empty string", body)
	}
}

// checkAccepted checks a 101 answer to a request with sampleKey: the
// headers of RFC 6455 §4.2.2 and the subprotocol exactly chat, then the
// welcome of user.
func checkAccepted(t *testing.T, resp *http.Response, body []byte, rc *rawConn, user string) {
	t.Helper()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("status %s, want 101; body %s", resp.Status, body)
		return
	}
	if v := resp.Header.Get("Upgrade"); !strings.EqualFold(v, "websocket") {
		t.Errorf("Upgrade: %q", v)
	}
	if v := resp.Header.Get("Connection"); !strings.Contains(strings.ToLower(v), "upgrade") {
		t.Errorf("Connection: %q", v)
	}
	if v := resp.Header.Get("Sec-WebSocket-Accept"); v != sampleAccept {
		t.Errorf("Sec-WebSocket-Accept: %q, want %q", v, sampleAccept)
	}
	if v := resp.Header.Values("Sec-WebSocket-Protocol"); !slices.Equal(v, []string{"chat"}) {
		t.Errorf("Sec-WebSocket-Protocol: %q, want exactly chat (PROTOCOL.md §1: never the token)", v)
	}
	op, p, err := rc.readFrame(wait)
	if err != nil || op != opText {
		t.Errorf("first frame: op %d %q %v", op, p, err)
		return
	}
	e, err := decodeEvent(p)
	if err != nil || e.typ() != "welcome" || e.str("user") != user {
		t.Errorf("first message %s, want the welcome of %s", p, user)
	}
}

// TestHandshake checks every rule of the upgrade (PROTOCOL.md §1 and the
// order of the checks in docs/protocol.md §1) with raw HTTP requests.
func TestHandshake(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		for _, n := range tp.each() {
			user := fresh("hs")
			tok := token(t, user)
			other := "http://127.0.0.1:1" // a port chatd does not listen on
			rows := []struct {
				name   string
				mod    func(r *request)
				status int
				code   string
				header [2]string // a header the refusal must carry
			}{
				{name: "valid", status: 101},
				{name: "bearer scheme in lower case", mod: func(r *request) { r.set("Authorization", "bearer "+tok) }, status: 101},
				{name: "Upgrade in another case", mod: func(r *request) { r.set("Upgrade", "WebSocket") }, status: 101},
				{name: "Connection with two tokens", mod: func(r *request) { r.set("Connection", "keep-alive, Upgrade") }, status: 101},
				{name: "chat beside other subprotocols", mod: func(r *request) { r.set("Sec-WebSocket-Protocol", "superchat, chat, v2.chat") }, status: 101},
				{name: "Origin of the node's own host", mod: func(r *request) { r.set("Origin", "http://"+n.addr) }, status: 101},
				{name: "Origin of the own host over https", mod: func(r *request) { r.set("Origin", "https://"+n.addr) }, status: 101},

				{name: "method POST", mod: func(r *request) { r.method = "POST"; r.set("Content-Length", "0") }, status: 400, code: "bad_request", header: [2]string{"Allow", "GET"}},
				{name: "method PUT", mod: func(r *request) { r.method = "PUT"; r.set("Content-Length", "0") }, status: 400, code: "bad_request", header: [2]string{"Allow", "GET"}},
				{name: "HTTP/1.0", mod: func(r *request) { r.proto = "HTTP/1.0" }, status: 400, code: "bad_request"},
				{name: "no Upgrade", mod: func(r *request) { r.set("Upgrade", "") }, status: 400, code: "bad_request"},
				{name: "Upgrade h2c", mod: func(r *request) { r.set("Upgrade", "h2c") }, status: 400, code: "bad_request"},
				{name: "no Connection", mod: func(r *request) { r.set("Connection", "") }, status: 400, code: "bad_request"},
				{name: "Connection keep-alive", mod: func(r *request) { r.set("Connection", "keep-alive") }, status: 400, code: "bad_request"},
				{name: "no Sec-WebSocket-Key", mod: func(r *request) { r.set("Sec-WebSocket-Key", "") }, status: 400, code: "bad_request"},
				{name: "key of 15 bytes", mod: func(r *request) { r.set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(make([]byte, 15))) }, status: 400, code: "bad_request"},
				{name: "key of 17 bytes", mod: func(r *request) { r.set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(make([]byte, 17))) }, status: 400, code: "bad_request"},
				{name: "key not base64", mod: func(r *request) { r.set("Sec-WebSocket-Key", "!!!!not*base64!!!!!!!==") }, status: 400, code: "bad_request"},
				{name: "version 8", mod: func(r *request) { r.set("Sec-WebSocket-Version", "8") }, status: 426, code: "upgrade_required", header: [2]string{"Sec-WebSocket-Version", "13"}},
				{name: "version 14", mod: func(r *request) { r.set("Sec-WebSocket-Version", "14") }, status: 426, code: "upgrade_required", header: [2]string{"Sec-WebSocket-Version", "13"}},
				{name: "no version", mod: func(r *request) { r.set("Sec-WebSocket-Version", "") }, status: 426, code: "upgrade_required", header: [2]string{"Sec-WebSocket-Version", "13"}},
				{name: "foreign Origin", mod: func(r *request) { r.set("Origin", "https://evil.example.com") }, status: 403, code: "forbidden"},
				{name: "Origin of the own host name on another port", mod: func(r *request) { r.set("Origin", other) }, status: 403, code: "forbidden"},
				{name: "Origin null", mod: func(r *request) { r.set("Origin", "null") }, status: 403, code: "forbidden"},
				{name: "no token", mod: func(r *request) { r.set("Authorization", "") }, status: 401, code: "unauthorized", header: [2]string{"WWW-Authenticate", "Bearer"}},
				{name: "invalid token", mod: func(r *request) { r.set("Authorization", "Bearer "+tok+"x") }, status: 401, code: "unauthorized", header: [2]string{"WWW-Authenticate", "Bearer"}},
				{name: "Authorization of another scheme", mod: func(r *request) { r.set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("a:b"))) }, status: 401, code: "unauthorized", header: [2]string{"WWW-Authenticate", "Bearer"}},
				{name: "chat not offered", mod: func(r *request) { r.set("Sec-WebSocket-Protocol", "") }, status: 400, code: "bad_request"},
				{name: "only another subprotocol", mod: func(r *request) { r.set("Sec-WebSocket-Protocol", "superchat") }, status: 400, code: "bad_request"},
				{name: "chat in another case", mod: func(r *request) { r.set("Sec-WebSocket-Protocol", "Chat") }, status: 400, code: "bad_request"},
				// The first failing check decides (docs/protocol.md §1).
				{name: "bad version before no token", mod: func(r *request) { r.set("Sec-WebSocket-Version", "8").set("Authorization", "") }, status: 426, code: "upgrade_required", header: [2]string{"Sec-WebSocket-Version", "13"}},
				{name: "foreign Origin before no token", mod: func(r *request) { r.set("Origin", "https://evil.example.com").set("Authorization", "") }, status: 403, code: "forbidden"},
				{name: "no token before chat not offered", mod: func(r *request) { r.set("Authorization", "").set("Sec-WebSocket-Protocol", "") }, status: 401, code: "unauthorized"},
			}
			for _, row := range rows {
				t.Run(n.id+"/"+row.name, func(t *testing.T) {
					r := upgrade(n, tok)
					if row.mod != nil {
						row.mod(r)
					}
					resp, body, rc := roundTrip(t, n, r)
					if row.status == 101 {
						checkAccepted(t, resp, body, rc, user)
						return
					}
					checkRefusal(t, resp, body, row.status, row.code)
					if h := row.header; h[0] != "" {
						if got := resp.Header.Get(h[0]); !strings.HasPrefix(got, h[1]) {
							t.Errorf("%s: %q, want %q", h[0], got, h[1])
						}
					}
				})
			}
		}
	})
}

// TestTokenPlacement checks the three places of the token, that the
// subprotocol answer is chat and never the token, and which placement wins
// when there are several (docs/protocol.md §1: header, subprotocol, query).
func TestTokenPlacement(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		u1, u2, u3 := fresh("tp"), fresh("tp"), fresh("tp")
		t1, t2, t3 := token(t, u1), token(t, u2), token(t, u3)
		n := tp.b
		rows := []struct {
			name   string
			mod    func(r *request)
			status int
			user   string
		}{
			{"header", func(r *request) { r.set("Authorization", "Bearer "+t1) }, 101, u1},
			{"subprotocol after chat", func(r *request) { r.set("Sec-WebSocket-Protocol", "chat, access_token."+t2) }, 101, u2},
			{"subprotocol before chat", func(r *request) { r.set("Sec-WebSocket-Protocol", "access_token."+t2+", chat") }, 101, u2},
			{"subprotocol in a header of its own", func(r *request) {
				r.headers = append(r.headers, [2]string{"Sec-WebSocket-Protocol", "access_token." + t2})
			}, 101, u2},
			{"query", func(r *request) { r.target = "/ws?access_token=" + url.QueryEscape(t3) }, 101, u3},
			{"header wins over subprotocol", func(r *request) {
				r.set("Authorization", "Bearer "+t1).set("Sec-WebSocket-Protocol", "chat, access_token."+t2)
			}, 101, u1},
			{"subprotocol wins over query", func(r *request) {
				r.set("Sec-WebSocket-Protocol", "chat, access_token."+t2)
				r.target = "/ws?access_token=" + t3
			}, 101, u2},
			{"header wins over query", func(r *request) { r.set("Authorization", "Bearer "+t1); r.target = "/ws?access_token=" + t3 }, 101, u1},
			{"an invalid header is not passed over for a valid query", func(r *request) {
				r.set("Authorization", "Bearer x"+t1)
				r.target = "/ws?access_token=" + t3
			}, 401, ""},
			{"an invalid subprotocol token", func(r *request) { r.set("Sec-WebSocket-Protocol", "chat, access_token.x"+t2) }, 401, ""},
			{"the token as the only subprotocol", func(r *request) { r.set("Sec-WebSocket-Protocol", "access_token."+t2) }, 400, ""},
		}
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				r := upgrade(n, "")
				row.mod(r)
				resp, body, rc := roundTrip(t, n, r)
				switch row.status {
				case 101:
					checkAccepted(t, resp, body, rc, row.user)
				case 401:
					checkRefusal(t, resp, body, 401, "unauthorized")
					if v := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(v, "Bearer") {
						t.Errorf("WWW-Authenticate %q", v)
					}
				default:
					checkRefusal(t, resp, body, row.status, "bad_request")
				}
			})
		}
		t.Run("ws client offering the token as a subprotocol", func(t *testing.T) {
			c, err := dial(t, tp.a, u2, dialOptions{token: t2, noHeader: true, subprotocols: []string{"chat", "access_token." + t2}})
			if err != nil {
				t.Fatal(err)
			}
			if c.welcome.str("user") != u2 {
				t.Errorf("welcome %s, want user %s", c.welcome, u2)
			}
		})
	})
}

// TestOriginAllowList checks a configured allow-list (docs/protocol.md §1
// Origins): exact entries, wildcards, no Origin, and the own host no longer
// implied.
func TestOriginAllowList(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		tp = tp.nodes(t, "-allowed-origins", "https://chat.example.com,https://*.example.org,http://localhost:3000")
		user := fresh("or")
		tok := token(t, user)
		for _, n := range tp.each() {
			rows := []struct {
				origin string
				ok     bool
			}{
				{"", true},
				{"https://chat.example.com", true},
				{"https://CHAT.example.com", true},
				{"https://chat.example.com:443", true},
				{"https://a.example.org", true},
				{"https://a.b.example.org", true},
				{"http://localhost:3000", true},
				{"http://chat.example.com", false},
				{"https://chat.example.com:8443", false},
				{"https://example.org", false},
				{"https://evil.com", false},
				{"http://localhost:3001", false},
				{"http://" + n.addr, false},
				{"null", false},
			}
			for _, row := range rows {
				t.Run(n.id+"/"+strconv.Quote(row.origin), func(t *testing.T) {
					r := upgrade(n, tok)
					if row.origin != "" {
						r.set("Origin", row.origin)
					}
					resp, body, rc := roundTrip(t, n, r)
					if row.ok {
						checkAccepted(t, resp, body, rc, user)
					} else {
						checkRefusal(t, resp, body, 403, "forbidden")
					}
				})
			}
		}
		t.Run("the entry * allows any origin, null included", func(t *testing.T) {
			stp := tp.nodes(t, "-allowed-origins", "*")
			for _, n := range stp.each() {
				for _, origin := range []string{"https://evil.example.com", "null", "http://" + n.addr} {
					r := upgrade(n, tok).set("Origin", origin)
					resp, body, rc := roundTrip(t, n, r)
					checkAccepted(t, resp, body, rc, user)
				}
			}
		})
	})
}

// TestMalformedHTTP checks that a request to /ws that is not even valid
// HTTP/1.1 is refused like any other failed upgrade: an HTTP error whose
// body is {"error","message"} (PROTOCOL.md §1: every HTTP error body is
// JSON).
func TestMalformedHTTP(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		n := tp.a
		tok := token(t, fresh("mh"))
		valid := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + sampleKey + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\nAuthorization: Bearer " + tok + "\r\n"
		rows := []struct{ name, req string }{
			{"a header line without a colon", "GET /ws HTTP/1.1\r\nHost: " + n.addr + "\r\n" + valid + "no colon here\r\n\r\n"},
			{"no Host", "GET /ws HTTP/1.1\r\n" + valid + "\r\n"},
			{"two Host headers", "GET /ws HTTP/1.1\r\nHost: " + n.addr + "\r\nHost: example.com\r\n" + valid + "\r\n"},
			{"a malformed Host", "GET /ws HTTP/1.1\r\nHost: a b\r\n" + valid + "\r\n"},
			{"a method that is not a token", "G(T /ws HTTP/1.1\r\nHost: " + n.addr + "\r\n" + valid + "\r\n"},
			{"HTTP/2.0 in the request line", "GET /ws HTTP/2.0\r\nHost: " + n.addr + "\r\n" + valid + "\r\n"},
			{"a request line of one word", "GARBAGE\r\n\r\n"},
			{"Content-Length not a number", "GET /ws HTTP/1.1\r\nHost: " + n.addr + "\r\n" + valid + "Content-Length: abc\r\n\r\n"},
			{"headers over 1 MiB", "GET /ws HTTP/1.1\r\nHost: " + n.addr + "\r\n" + valid + "X-Pad: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"},
		}
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				resp, body := rawExchange(t, n, []byte(row.req))
				if resp.StatusCode < 400 {
					t.Fatalf("status %s for a malformed request", resp.Status)
				}
				checkRefusal(t, resp, body, resp.StatusCode, jsonCode(body))
			})
		}
	})
}

// jsonCode returns the error code of a JSON error body, or "".
func jsonCode(body []byte) string {
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	s, _ := m["error"].(string)
	if s == "" {
		return "<a JSON error code>"
	}
	return s
}

// rawExchange writes req on a new TCP connection and reads one response.
func rawExchange(t *testing.T, n *node, req []byte) (*http.Response, []byte) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", n.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(wait))
	go func() { _, _ = nc.Write(req) }() // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body
}

// TestTokensNotLogged checks that no token reaches the node's log, in any
// placement, accepted or refused, even at debug level (PROTOCOL.md §1: the
// subprotocol keeps the token out of access logs; docs/protocol.md §1:
// chatd never logs the query parameter).
func TestTokensNotLogged(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		ltp := tp.nodes(t, "-log-level", "debug")
		var toks []string
		for _, n := range ltp.each() {
			for _, place := range []string{"header", "subprotocol", "query"} {
				for _, valid := range []bool{true, false} {
					user := fresh("log")
					tok := token(t, user)
					if !valid {
						tok = signWith(t, jwt.SigningMethodHS256, []byte(strings.Repeat("n", 40)), claims(user))
					}
					toks = append(toks, tok)
					r := upgrade(n, "")
					switch place {
					case "header":
						r.set("Authorization", "Bearer "+tok)
					case "subprotocol":
						r.set("Sec-WebSocket-Protocol", "chat, access_token."+tok)
					case "query":
						r.target = "/ws?access_token=" + tok
					}
					resp, body, rc := roundTrip(t, n, r)
					if valid {
						checkAccepted(t, resp, body, rc, user)
						rc.writeFrame(true, 0, opText, []byte(`{"type":"refresh","token":"`+tok+`"}`), true)
						rc.writeFrame(true, 0, opText, []byte(`{"type":"refresh","token":"`+tok+`x"}`), true)
						_, _, _ = rc.readFrame(wait)
						_, _, _ = rc.readFrame(wait)
					} else if resp.StatusCode != 401 {
						t.Errorf("%s: a token of another key: %s", place, resp.Status)
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond) // the last lines are written
		for _, n := range ltp.each() {
			log := n.log.String()
			for _, tok := range toks {
				// The signature is what must never leak; the header and
				// claims are not secret, but a whole token is.
				sig := tok[strings.LastIndex(tok, ".")+1:]
				if strings.Contains(log, sig) {
					t.Errorf("the log of %s holds a token's signature", n.id)
				}
			}
		}
	})
}
