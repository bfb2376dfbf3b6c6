package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
)

// The canned responses formatted exactly as net/http/server.go's
// conn.serve formats them (one fmt.Fprintf each), so that a change of
// their form in a later Go shows up here and in TestMalformedRequests.
const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// cannedPlain is net/http's Fprintf(c.rwc, "HTTP/1.1 "+publicErr+errorHeaders+publicErr),
// whose format has no verb.
func cannedPlain(publicErr string) string {
	return "HTTP/1.1 " + publicErr + errorHeaders + publicErr
}

func cannedStatusError(code int, text string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s: %s%s%d %s: %s", code, http.StatusText(code), text, errorHeaders, code, http.StatusText(code), text)
}

func cannedTE() string {
	code := http.StatusNotImplemented
	return fmt.Sprintf("HTTP/1.1 %d %s%sUnsupported transfer encoding", code, http.StatusText(code), errorHeaders)
}

// checkJSONError parses out as one HTTP response and checks it is the
// JSON error of PROTOCOL.md §1 with status, code and msg (msg "" for any
// non-empty message), with a Content-Length that matches its body,
// Connection: close, and nothing behind it.
func checkJSONError(t testing.TB, out []byte, status int, code, msg string) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(out))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q is not an HTTP response: %v", out, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body of %q: %v", out, err)
	}
	if br.Buffered() != 0 {
		t.Errorf("%d bytes behind the response %q", br.Buffered(), out)
	}
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d", resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %q, body of %d bytes", cl, len(body))
	}
	// ReadResponse takes Connection: close out of the header into Close.
	if !resp.Close {
		t.Errorf("no Connection: close in %q", out)
	}
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil || len(m) != 2 || m["error"] == "" || m["message"] == "" {
		t.Fatalf("body %q is not {\"error\",\"message\"}: %v", body, err)
	}
	if m["error"] != code {
		t.Errorf("error %q, want %q", m["error"], code)
	}
	if msg != "" && m["message"] != msg {
		t.Errorf("message %q, want %q", m["message"], msg)
	}
}

// TestJSONCannedError: each of net/http's canned answers becomes chatd's
// JSON error with the same status; anything that is not exactly one of
// them is left alone.
func TestJSONCannedError(t *testing.T) {
	t.Parallel()
	rewritten := []struct {
		name, in  string
		status    int
		code, msg string
	}{
		{"bad request", cannedPlain("400 Bad Request"), 400, "bad_request", "malformed HTTP request"},
		{"missing Host", cannedStatusError(400, "missing required Host header"), 400, "bad_request", "missing required Host header"},
		{"malformed Host", cannedStatusError(400, "malformed Host header"), 400, "bad_request", "malformed Host header"},
		{"header name", cannedStatusError(400, "invalid header name"), 400, "bad_request", "invalid header name"},
		{"header value", cannedStatusError(400, "invalid header value"), 400, "bad_request", "invalid header value"},
		{"headers too large", cannedPlain("431 Request Header Fields Too Large"), 431, "too_large", "request headers too large"},
		{"transfer encoding", cannedTE(), 501, "not_implemented", "unsupported transfer encoding"},
		{"version", cannedStatusError(505, "unsupported protocol version"), 505, "http_version_not_supported", "unsupported protocol version"},
		{"a 4xx without a code of its own", cannedPlain("418 I'm a teapot"), 418, "bad_request", "i'm a teapot"},
		{"a 5xx without a code of its own", cannedStatusError(502, "upstream"), 502, "internal", "upstream"},
		{"a reason that needs escaping", cannedStatusError(400, `a "quoted" <reason> \ é`), 400, "bad_request", `a "quoted" <reason> \ é`},
	}
	for _, row := range rewritten {
		t.Run(row.name, func(t *testing.T) {
			out, ok := jsonCannedError([]byte(row.in))
			if !ok {
				t.Fatalf("%q not recognised", row.in)
			}
			checkJSONError(t, out, row.status, row.code, row.msg)
		})
	}

	plain := cannedPlain("400 Bad Request")
	kept := []struct{ name, in string }{
		{"empty", ""},
		{"the prefix alone", "HTTP/1.1 "},
		{"a status line alone", "HTTP/1.1 400 Bad Request\r\n"},
		{"a truncated canned answer", plain[:len(plain)-1]},
		{"a byte behind it", plain + "x"},
		{"a second response behind it", plain + plain},
		{"a byte before it", " " + plain},
		{"HTTP/1.0", strings.Replace(plain, "HTTP/1.1", "HTTP/1.0", 1)},
		{"a 200", cannedPlain("200 OK")},
		{"a 302", cannedPlain("302 Found")},
		{"a 600", "HTTP/1.1 600 X" + errorHeaders + "600 X"},
		{"a code of letters", "HTTP/1.1 4x0 Bad Request" + errorHeaders + "4x0 Bad Request"},
		{"a code of two digits", "HTTP/1.1 40 Bad Request" + errorHeaders + "40 Bad Request"},
		{"a wrong reason phrase", cannedPlain("400 Not Found")},
		{"a reason phrase glued on", cannedPlain("400 Bad Requests")},
		{"an empty statusError reason", cannedPlain("400 Bad Request: ")},
		{"a body that is not the status", "HTTP/1.1 400 Bad Request" + errorHeaders + "something else"},
		{"the 501 body on a 400", "HTTP/1.1 400 Bad Request" + errorHeaders + "Unsupported transfer encoding"},
		{"an empty body", "HTTP/1.1 400 Bad Request" + errorHeaders},
		{"another Content-Type", strings.Replace(plain, "text/plain; charset=utf-8", "text/html", 1)},
		{"a header more", strings.Replace(plain, "Connection: close", "Connection: close\r\nDate: x", 1)},
		{"LF line ends", strings.ReplaceAll(plain, "\r\n", "\n")},
		{"a handler's error response", "HTTP/1.1 400 Bad Request\r\nCache-Control: no-store\r\nContent-Type: application/json\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 58\r\n\r\n{\"error\":\"bad_request\",\"message\":\"malformed HTTP request\"}\n"},
		{"a WebSocket frame", "\x81\x05hello"},
	}
	for _, row := range kept {
		t.Run(row.name, func(t *testing.T) {
			if out, ok := jsonCannedError([]byte(row.in)); ok {
				t.Fatalf("%q rewritten into %q", row.in, out)
			}
		})
	}
}

// FuzzJSONCannedError: whatever is written, jsonCannedError never panics,
// and either leaves it alone or gives a well-formed JSON error response
// with the status of the input's status line.
func FuzzJSONCannedError(f *testing.F) {
	for _, s := range []string{
		cannedPlain("400 Bad Request"),
		cannedStatusError(400, "missing required Host header"),
		cannedStatusError(400, "invalid header value"),
		cannedPlain("431 Request Header Fields Too Large"),
		cannedTE(),
		cannedStatusError(505, "unsupported protocol version"),
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 4",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		in := bytes.Clone(p)
		out, ok := jsonCannedError(p)
		if !bytes.Equal(p, in) {
			t.Fatalf("input changed from %q to %q", in, p)
		}
		if !ok {
			if out != nil {
				t.Fatalf("not recognised, yet %q returned", out)
			}
			return
		}
		status, err := strconv.Atoi(string(p[len("HTTP/1.1 ") : len("HTTP/1.1 ")+3]))
		if err != nil {
			t.Fatalf("%q recognised without a numeric status", p)
		}
		code := "bad_request"
		switch {
		case cannedCodes[status] != "":
			code = cannedCodes[status]
		case status >= 500:
			code = "internal"
		}
		checkJSONError(t, out, status, code, "")
	})
}

// FuzzSniffHead checks the looks the listener takes at a connection's
// first bytes: none panics; a connection turned away from the fast path
// by its first bytes stays turned away whatever follows (peekHead decides
// on what has arrived so far); a head the fast path serves is never
// turned away early unless a bare LF sends it to net/http; and
// hasHostHeader agrees with net/textproto wherever that parses the head.
func FuzzSniffHead(f *testing.F) {
	for _, s := range []string{
		"GET /ws HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET /ws?access_token=x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
		"GET /ws HTTP/1.1\nHost: example\nUpgrade: websocket\n\n",
		"GET /ws HTTP/1.1\r\nhost:\r\n continued\r\nUpgrade: websocket\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: example\r\n\r\n",
		"\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := -1 // the first prefix length mayBeUpgradeHead turns away
		for k := 0; k <= len(b); k++ {
			may := mayBeUpgradeHead(b[:k])
			if out >= 0 && may {
				t.Fatalf("%q turned away at %d bytes, then taken at %d", b, out, k)
			}
			if out < 0 && !may {
				out = k
			}
		}
		bareLF := false
		for i, c := range b {
			bareLF = bareLF || c == '\n' && (i == 0 || b[i-1] != '\r')
		}
		if isUpgradeHead(b) && !bareLF && out >= 0 {
			t.Fatalf("upgrade head %q turned away at %d bytes", b, out)
		}
		has := hasHostHeader(b)
		// Compared only on heads as peekHead returns them: up to the
		// first CRLF CRLF.
		if bytes.Index(b, []byte("\r\n\r\n")) != len(b)-4 {
			return
		}
		_, rest, _ := bytes.Cut(b, []byte("\r\n"))
		hdr, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest))).ReadMIMEHeader()
		if err != nil {
			return
		}
		if _, want := hdr["Host"]; has != want {
			t.Fatalf("hasHostHeader(%q) = %v, textproto: %v", b, has, want)
		}
	})
}
