package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/server"
)

// rawHTTP is a plain TCP connection to the server, for requests written
// by hand.
type rawHTTP struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialHTTP(t *testing.T, addr string) *rawHTTP {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawHTTP{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawHTTP) do(req string) *http.Response {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, req); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	return resp
}

func rawUpgradeRequest(token, extra string) string {
	return "GET /ws HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: chat\r\nAuthorization: Bearer " + token + "\r\n" + extra + "\r\n"
}

// welcomed reads the first frame after a 101 and checks it is welcome.
func (c *rawHTTP) welcomed() {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatal(err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var l [2]byte
		io.ReadFull(c.br, l[:])
		n = int(l[0])<<8 | int(l[1])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil || m["type"] != "welcome" {
		c.t.Fatalf("first frame %q, want welcome", payload)
	}
}

// TestUpgradePaths: upgrades are served whichever way a connection comes
// (its first request, read by the server itself; a later request on a
// kept-alive connection, or a head too large for the first look, through
// net/http), and other requests on a connection the server looked at
// first are served by net/http with nothing lost, keep-alive included.
func TestUpgradePaths(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{})
	tok := ts.token(t, "alice")

	t.Run("first request", func(t *testing.T) {
		c := dialHTTP(t, ts.Addr)
		resp := c.do(rawUpgradeRequest(tok, ""))
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "chat" {
			t.Fatalf("%s %v", resp.Status, resp.Header)
		}
		c.welcomed()
	})
	t.Run("after other requests on the connection", func(t *testing.T) {
		c := dialHTTP(t, ts.Addr)
		for range 2 {
			resp := c.do("GET /healthz HTTP/1.1\r\nHost: example\r\n\r\n")
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
				t.Fatalf("healthz: %s %s", resp.Status, body)
			}
		}
		resp := c.do(rawUpgradeRequest(tok, ""))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade after healthz: %s", resp.Status)
		}
		c.welcomed()
	})
	t.Run("head larger than the first look", func(t *testing.T) {
		c := dialHTTP(t, ts.Addr)
		resp := c.do(rawUpgradeRequest(tok, "Cookie: big="+strings.Repeat("x", 6000)+"\r\n"))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s", resp.Status)
		}
		c.welcomed()
	})
	t.Run("refused", func(t *testing.T) {
		c := dialHTTP(t, ts.Addr)
		resp := c.do(rawUpgradeRequest("not-a-token", ""))
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), `"unauthorized"`) {
			t.Fatalf("%s %v %s", resp.Status, resp.Header, body)
		}
		if !resp.Close {
			t.Error("a refused upgrade did not close the connection")
		}
	})
	t.Run("malformed", func(t *testing.T) {
		c := dialHTTP(t, ts.Addr)
		resp := c.do("GET /ws HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nbroken header line\r\n\r\n")
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s", resp.Status)
		}
	})
	t.Run("pipelined frames behind the request", func(t *testing.T) {
		c := dialHTTP(t, ts.Addr)
		// A masked ping right behind the request (key 0, payload "p").
		ping := []byte{0x89, 0x81, 0, 0, 0, 0, 'p'}
		resp := c.do(rawUpgradeRequest(tok, "") + string(ping))
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s", resp.Status)
		}
		c.welcomed()
		var pong [3]byte
		if _, err := io.ReadFull(c.br, pong[:]); err != nil || pong != [3]byte{0x8a, 1, 'p'} {
			t.Fatalf("got % x, %v; want the pong", pong, err)
		}
	})
}

// TestWelcomeWithUpgrade: the welcome goes out in the same write as the
// 101 response, so the client's first read holds both (over loopback, one
// write arrives whole), whether the upgrade is a connection's first
// request or comes through net/http, and with permessage-deflate
// negotiated too (the welcome is sent uncompressed).
func TestWelcomeWithUpgrade(t *testing.T) {
	t.Parallel()
	ts := startServer(t, server.Config{Compression: true})
	tok := ts.token(t, "alice")
	tests := []struct {
		name   string
		before int // healthz requests before the upgrade
		extra  string
	}{
		{"first request", 0, ""},
		{"through net/http", 1, ""},
		{"deflate negotiated", 0, "Sec-WebSocket-Extensions: permessage-deflate\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialHTTP(t, ts.Addr)
			for range tc.before {
				resp := c.do("GET /healthz HTTP/1.1\r\nHost: example\r\n\r\n")
				_, _ = io.ReadAll(resp.Body)
			}
			if c.br.Buffered() != 0 {
				t.Fatalf("%d bytes left after the responses", c.br.Buffered())
			}
			if _, err := io.WriteString(c.nc, rawUpgradeRequest(tok, tc.extra)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			n, err := c.nc.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			head, frame, ok := strings.Cut(string(buf[:n]), "\r\n\r\n")
			if !ok || !strings.HasPrefix(head, "HTTP/1.1 101 ") {
				t.Fatalf("first read: %q", buf[:n])
			}
			if tc.extra != "" && !strings.Contains(head, "permessage-deflate") {
				t.Fatalf("deflate not negotiated: %q", head)
			}
			// One text frame, FIN set, RSV1 clear (not compressed), with
			// a 7-bit length: the welcome, and nothing else.
			if len(frame) < 2 || frame[0] != 0x81 || int(frame[1]) >= 126 || len(frame) != 2+int(frame[1]) {
				t.Fatalf("after the 101 in the first read: %q, want the welcome's frame", frame)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(frame[2:]), &m); err != nil || m["type"] != "welcome" || m["user"] != "alice" || m["conn"] == "" {
				t.Fatalf("welcome %q: %v", frame[2:], err)
			}
		})
	}
}
