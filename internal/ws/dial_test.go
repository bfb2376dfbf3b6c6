package ws

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeServer answers every handshake with what answer returns for the
// request (the whole response, head and all), then reads until the client
// hangs up. It plays servers that answer wrongly.
func fakeServer(t *testing.T, answer func(r *http.Request) string) string {
	t.Helper()
	return handshakeServer(t, func(nc net.Conn, r *http.Request) {
		io.WriteString(nc, answer(r))
		io.Copy(io.Discard, nc)
	})
}

// handshakeServer reads the handshake request of every connection and has
// respond answer it on nc, within 20 seconds; the connection is closed
// when respond returns.
func handshakeServer(t *testing.T, respond func(nc net.Conn, r *http.Request)) string {
	t.Helper()
	return listenRaw(t, func(nc net.Conn) {
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		r, err := http.ReadRequest(bufio.NewReader(nc))
		if err != nil {
			return
		}
		respond(nc, r)
	})
}

// answer101 is a correct 101 answer to r with the extra header lines.
func answer101(r *http.Request, extra string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + AcceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n" + extra + "\r\n"
}

// TestDialVerifiesAnswer: Dial refuses every wrong server answer of RFC
// 6455 §4.1 (and RFC 7692 §5) with a *DialError, and accepts the right
// ones with what they negotiated.
func TestDialVerifiesAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     DialOptions
		answer   func(r *http.Request) string
		wantErr  string // "" means success
		status   int    // DialError.Response.StatusCode when not 101
		sub      string
		deflate  bool
		takeover bool
	}{
		{"plain", DialOptions{}, func(r *http.Request) string { return answer101(r, "") }, "", 0, "", false, false},
		{"subprotocol", DialOptions{Subprotocols: []string{"a", "chat"}}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Protocol: chat\r\n")
		}, "", 0, "chat", false, false},
		{"no subprotocol chosen", DialOptions{Subprotocols: []string{"chat"}}, func(r *http.Request) string { return answer101(r, "") }, "", 0, "", false, false},
		{"deflate without takeover", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n")
		}, "", 0, "", true, false},
		{"deflate with takeover", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n")
		}, "", 0, "", true, true},
		{"deflate declined", DialOptions{Compression: true}, func(r *http.Request) string { return answer101(r, "") }, "", 0, "", false, false},
		{"upgrade header case", DialOptions{}, func(r *http.Request) string {
			return strings.Replace(answer101(r, ""), "Upgrade: websocket", "upgrade: WebSocket", 1)
		}, "", 0, "", false, false},

		{"403", DialOptions{}, func(*http.Request) string {
			return "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nno entry\n"
		}, "no entry", 403, "", false, false},
		{"200", DialOptions{}, func(*http.Request) string {
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
		}, "200 OK", 200, "", false, false},
		{"wrong accept key", DialOptions{}, func(r *http.Request) string {
			return strings.Replace(answer101(r, ""), AcceptKey(r.Header.Get("Sec-WebSocket-Key")), rfcAccept, 1)
		}, "Sec-WebSocket-Accept", 0, "", false, false},
		{"no accept key", DialOptions{}, func(*http.Request) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		}, "Sec-WebSocket-Accept", 0, "", false, false},
		{"no Upgrade", DialOptions{}, func(r *http.Request) string {
			return strings.Replace(answer101(r, ""), "Upgrade: websocket\r\n", "", 1)
		}, "Upgrade", 0, "", false, false},
		{"no Connection", DialOptions{}, func(r *http.Request) string {
			return strings.Replace(answer101(r, ""), "Connection: Upgrade\r\n", "", 1)
		}, "Connection", 0, "", false, false},
		{"subprotocol not offered", DialOptions{Subprotocols: []string{"chat"}}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Protocol: other\r\n")
		}, "not offered", 0, "", false, false},
		{"subprotocol when none offered", DialOptions{}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Protocol: chat\r\n")
		}, "not offered", 0, "", false, false},
		{"subprotocol list", DialOptions{Subprotocols: []string{"a", "b"}}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Protocol: a, b\r\n")
		}, "not offered", 0, "", false, false},
		{"two subprotocol headers", DialOptions{Subprotocols: []string{"a", "b"}}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n")
		}, "not offered", 0, "", false, false},
		{"extension not offered", DialOptions{}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
		}, "not offered", 0, "", false, false},
		{"unknown extension", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n")
		}, "not offered", 0, "", false, false},
		{"unknown deflate parameter", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n")
		}, "invalid", 0, "", false, false},
		{"client_max_window_bits not offered", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n")
		}, "invalid", 0, "", false, false},
		{"bad server_max_window_bits", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=20\r\n")
		}, "invalid", 0, "", false, false},
		{"deflate twice", DialOptions{Compression: true}, func(r *http.Request) string {
			return answer101(r, "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n")
		}, "twice", 0, "", false, false},
		{"HTTP/1.0", DialOptions{}, func(r *http.Request) string {
			return strings.Replace(answer101(r, ""), "HTTP/1.1", "HTTP/1.0", 1)
		}, "HTTP/1.1", 0, "", false, false},
		{"not HTTP", DialOptions{}, func(*http.Request) string { return "SSH-2.0-OpenSSH\r\n\r\n" }, "read handshake response", 0, "", false, false},
		{"hang-up", DialOptions{}, func(*http.Request) string { return "" }, "read handshake response", 0, "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := handshakeServer(t, func(nc net.Conn, r *http.Request) {
				a := tc.answer(r)
				if a == "" {
					return // hang up
				}
				io.WriteString(nc, a)
				io.Copy(io.Discard, nc)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, "ws://"+addr+"/", &tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.CloseNow()
				if c.Subprotocol() != tc.sub || c.Compressed() != tc.deflate || c.readTakeover != tc.takeover {
					t.Fatalf("negotiated subprotocol %q, deflate %v, takeover %v", c.Subprotocol(), c.Compressed(), c.readTakeover)
				}
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatalf("Dial succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %q, want it to contain %q", err, tc.wantErr)
			}
			var de *DialError
			if tc.status != 0 {
				if !errors.As(err, &de) || de.Response == nil || de.Response.StatusCode != tc.status {
					t.Fatalf("err %v, want a DialError with status %d", err, tc.status)
				}
				body, _ := io.ReadAll(de.Response.Body)
				if tc.status == 403 && string(body) != "no entry\n" {
					t.Fatalf("body %q", body)
				}
			}
		})
	}
}

// TestDialRequest: what Dial sends (RFC 6455 §4.1): a fresh 16-byte key,
// the offers, the caller's headers; and what it refuses to send.
func TestDialRequest(t *testing.T) {
	t.Parallel()
	reqs := make(chan *http.Request, 4)
	addr := fakeServer(t, func(r *http.Request) string { reqs <- r; return answer101(r, "") })
	url := "ws://" + addr + "/path?q=1#frag"
	opts := &DialOptions{
		Subprotocols: []string{"chat", "access_token.x"},
		Compression:  true,
		Header:       http.Header{"Authorization": {"Bearer t"}, "Origin": {"http://o.example"}, "Host": {"chat.example"}},
	}
	var keys []string
	for range 2 {
		c := dialTest(t, url, opts)
		c.CloseNow()
		r := <-reqs
		if r.Method != "GET" || r.RequestURI != "/path?q=1" || r.Proto != "HTTP/1.1" || r.Host != "chat.example" {
			t.Fatalf("request line %s %s %s, Host %s", r.Method, r.RequestURI, r.Proto, r.Host)
		}
		if CheckRequest(r) != nil {
			t.Fatalf("Dial's request fails CheckRequest: %v", CheckRequest(r))
		}
		for name, want := range map[string]string{
			"Sec-WebSocket-Protocol":   "chat, access_token.x",
			"Sec-WebSocket-Extensions": "permessage-deflate; client_no_context_takeover",
			"Authorization":            "Bearer t",
			"Origin":                   "http://o.example",
		} {
			if got := strings.Join(r.Header.Values(name), "|"); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		keys = append(keys, r.Header.Get("Sec-WebSocket-Key"))
	}
	if keys[0] == keys[1] {
		t.Fatalf("the same key twice: %s", keys[0])
	}

	for _, h := range []http.Header{
		{"Sec-WebSocket-Key": {"x"}},
		{"Sec-Websocket-Protocol": {"chat"}},
		{"Upgrade": {"h2c"}},
		{"Connection": {"close"}},
		{"Sec-WebSocket-Extensions": {"permessage-deflate"}},
		{"X-Bad": {"a\r\nInjected: 1"}},
		{"Bad Name": {"v"}},
	} {
		if c, err := Dial(context.Background(), url, &DialOptions{Header: h}); err == nil {
			c.CloseNow()
			t.Errorf("header %v: Dial succeeded", h)
		}
	}
	for _, u := range []string{"http://" + addr + "/", "ws:///nohost", "://bad", "ws://[::1"} {
		if c, err := Dial(context.Background(), u, nil); err == nil {
			c.CloseNow()
			t.Errorf("URL %q: Dial succeeded", u)
		}
	}
	if c, err := Dial(context.Background(), url, &DialOptions{Subprotocols: []string{"a b"}}); err == nil {
		c.CloseNow()
		t.Errorf("subprotocol with a space: Dial succeeded")
	}
}

// TestDialContext: ctx bounds the connection and the handshake; a server
// that never answers does not hang Dial.
func TestDialContext(t *testing.T) {
	t.Parallel()
	addr := listenRaw(t, func(nc net.Conn) { io.Copy(io.Discard, nc) }) // reads, never answers
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	within(t, 10*time.Second, "Dial", func() {
		c, err := Dial(ctx, "ws://"+addr+"/", nil)
		if err == nil {
			c.CloseNow()
			t.Error("Dial succeeded")
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want it to wrap context.DeadlineExceeded", err)
		}
	})
	// Cancelled before the start.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if c, err := Dial(ctx2, "ws://"+addr+"/", nil); err == nil || !errors.Is(err, context.Canceled) {
		if c != nil {
			c.CloseNow()
		}
		t.Errorf("cancelled ctx: err %v", err)
	}
	// The deadline has no effect after the handshake.
	ts := startServer(t, echoOpts(), nil)
	ctx3, cancel3 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	c, err := Dial(ctx3, ts.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	cancel3()
	<-ctx3.Done()
	if err := c.WriteMessage(Text, []byte("after ctx")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.ReadMessage(nil); err != nil || string(p) != "after ctx" {
		t.Fatalf("read after ctx ended: %q, %v", p, err)
	}
}

// TestDialTLS: wss:// through a TLS server, with and without the right
// root certificate.
func TestDialTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, echoOpts())
		if err != nil {
			return
		}
		defer c.CloseNow()
		echoServe(c)
	}))
	srv.EnableHTTP2 = true                           // the client must still get HTTP/1.1 (ALPN)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	t.Cleanup(srv.Close)
	url := "wss://" + srv.Listener.Addr().String() + "/"
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	for _, compress := range []bool{false, true} {
		c := dialTest(t, url, &DialOptions{TLSConfig: &tls.Config{RootCAs: pool}, Compression: compress})
		if c.Compressed() != compress {
			t.Fatalf("compressed %v", c.Compressed())
		}
		for _, n := range []int{0, 100, 5000, 70000, 1 << 20} {
			msg := pattern(n)
			if err := c.WriteMessage(Text, msg); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.ReadMessage(nil)
			if err != nil || typ != Text || string(got) != string(msg) {
				t.Fatalf("echo of %d bytes over TLS: %d bytes, %v", n, len(got), err)
			}
		}
		if err := c.Close(StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := Dial(ctx, url, nil); err == nil || !strings.Contains(err.Error(), "TLS") {
		if c != nil {
			c.CloseNow()
		}
		t.Fatalf("unknown authority: err %v", err)
	}
}
