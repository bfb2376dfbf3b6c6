package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/server"
)

// exchange writes req on a new TCP connection to addr and reads one
// response and whatever follows it until the server closes. The request
// is written by a goroutine of its own: the server may answer (and stop
// reading) before it has read all of it.
func exchange(t *testing.T, addr, req string) (resp *http.Response, body, after []byte) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(nc, req) }()
	br := bufio.NewReader(nc)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	if body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	// The server closes: EOF, or a reset when it did not read the whole
	// request; either way no byte may follow the response.
	after, _ = io.ReadAll(br)
	return resp, body, after
}

// checkJSONRefusal checks a response is the JSON error of PROTOCOL.md §1
// with status and code, a Content-Length that is its body's, closing the
// connection with nothing behind it.
func checkJSONRefusal(t *testing.T, resp *http.Response, body, after []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %s, want %d; body %q", resp.Status, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %q, body of %d bytes", cl, len(body))
	}
	if !resp.Close {
		t.Error("the connection is not closed after the error")
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	msg, _ := m["message"].(string)
	if len(m) != 2 || m["error"] != code || msg == "" {
		t.Errorf("body %s, want {\"error\":%q,\"message\":\"...\"}", body, code)
	}
	if len(after) > 0 {
		t.Errorf("%q after the response", after)
	}
}

// TestMalformedRequests: requests that net/http refuses before any
// handler runs, and requests the server's own reading of a connection's
// first request refuses, are answered like every other HTTP error: a JSON
// {"error","message"} with the status net/http chose (PROTOCOL.md §1).
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	tok := ts.token(t, "alice")
	upgradeHeaders := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\nAuthorization: Bearer " + tok + "\r\n"
	rows := []struct {
		name, req string
		status    int
		code      string
	}{
		{"a request line of one word", "GARBAGE\r\n\r\n", 400, "bad_request"},
		{"a method that is not a token", "G(T /healthz HTTP/1.1\r\nHost: example\r\n\r\n", 400, "bad_request"},
		{"a method that is not a token, to /ws", "G(T /ws HTTP/1.1\r\nHost: example\r\n" + upgradeHeaders + "\r\n", 400, "bad_request"},
		{"HTTP/2.0 in the request line", "GET /healthz HTTP/2.0\r\nHost: example\r\n\r\n", 505, "http_version_not_supported"},
		{"HTTP/2.0 in an upgrade's request line", "GET /ws HTTP/2.0\r\nHost: example\r\n" + upgradeHeaders + "\r\n", 505, "http_version_not_supported"},
		{"HTTP/3", "GET /healthz HTTP/3\r\nHost: example\r\n\r\n", 400, "bad_request"},
		{"a header line without a colon", "GET /healthz HTTP/1.1\r\nHost: example\r\nno colon here\r\n\r\n", 400, "bad_request"},
		{"a header line without a colon, in an upgrade", "GET /ws HTTP/1.1\r\nHost: example\r\n" + upgradeHeaders + "no colon here\r\n\r\n", 400, "bad_request"},
		{"a control byte in a header value", "GET /healthz HTTP/1.1\r\nHost: example\r\nX-A: a\x01b\r\n\r\n", 400, "bad_request"},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"no Host, in an upgrade", "GET /ws HTTP/1.1\r\n" + upgradeHeaders + "\r\n", 400, "bad_request"},
		{"a malformed Host", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad_request"},
		{"a malformed Host, in an upgrade", "GET /ws HTTP/1.1\r\nHost: a/b\r\n" + upgradeHeaders + "\r\n", 400, "bad_request"},
		{"two Host headers, in an upgrade", "GET /ws HTTP/1.1\r\nHost: example\r\nHost: other\r\n" + upgradeHeaders + "\r\n", 400, "bad_request"},
		{"headers over the limit", "GET /healthz HTTP/1.1\r\nHost: example\r\nX-Pad: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, "too_large"},
		{"headers over the limit, in an upgrade", "GET /ws HTTP/1.1\r\nHost: example\r\n" + upgradeHeaders + "X-Pad: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431, "too_large"},
		{"a transfer coding net/http does not know", "POST /api/dev/token HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"},
		{"a bare blank line", "\r\n\r\n", 400, "bad_request"},
		{"bytes that are not HTTP", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\xff\xfe\x00\n", 400, "bad_request"},
		{"bytes that are not HTTP, ending like a head", "\x00\x01\x02\x03 junk \xff\r\n\r\n", 400, "bad_request"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			resp, body, after := exchange(t, ts.Addr, row.req)
			checkJSONRefusal(t, resp, body, after, row.status, row.code)
		})
	}

	// A malformed request behind a served one, on a kept-alive
	// connection: net/http's answer comes after other writes.
	t.Run("after a request on the connection", func(t *testing.T) {
		t.Parallel()
		c := dialHTTP(t, ts.Addr)
		resp := c.do("GET /healthz HTTP/1.1\r\nHost: example\r\n\r\n")
		if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %s %s", resp.Status, body)
		}
		resp = c.do("GET /healthz HTTP/2.0\r\nHost: example\r\n\r\n")
		body, _ := io.ReadAll(resp.Body)
		after, _ := io.ReadAll(c.br)
		checkJSONRefusal(t, resp, body, after, 505, "http_version_not_supported")
	})
}

// TestBareLFRequests: requests whose lines end with a bare LF, which
// net/http accepts, are served at once, not left waiting for a CRLF CRLF
// that never comes.
func TestBareLFRequests(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	tok := ts.token(t, "alice")
	c := dialHTTP(t, ts.Addr)
	_ = c.nc.SetDeadline(time.Now().Add(3 * time.Second)) // well within the server's 10 s wait for a head
	resp := c.do("GET /healthz HTTP/1.1\nHost: example\n\n")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("healthz: %s %s", resp.Status, body)
	}
	c = dialHTTP(t, ts.Addr)
	_ = c.nc.SetDeadline(time.Now().Add(3 * time.Second))
	resp = c.do(strings.ReplaceAll(rawUpgradeRequest(tok, ""), "\r\n", "\n"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	c.welcomed()
}
