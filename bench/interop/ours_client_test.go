package interop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	coder "github.com/coder/websocket"

	"github.com/chatd/chatd/internal/ws"
)

// TestOursClient runs our client against gorilla/websocket and
// coder/websocket servers, with compression off and on; coder also in its
// context-takeover mode, where the server keeps its deflate window across
// messages (our client offers only client_no_context_takeover) and our
// client must decompress against the previous messages.
func TestOursClient(t *testing.T) {
	peers := []struct {
		name     string
		compress bool
		handler  func(*serverLog) http.Handler
	}{
		{"gorilla/plain", false, func(l *serverLog) http.Handler { return gorillaServer(l, false) }},
		{"gorilla/deflate", true, func(l *serverLog) http.Handler { return gorillaServer(l, true) }},
		{"coder/plain", false, func(l *serverLog) http.Handler { return coderServer(l, coder.CompressionDisabled) }},
		{"coder/deflate", true, func(l *serverLog) http.Handler { return coderServer(l, coder.CompressionNoContextTakeover) }},
		{"coder/deflate-takeover", true, func(l *serverLog) http.Handler { return coderServer(l, coder.CompressionContextTakeover) }},
	}
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			log := newServerLog()
			srv := httptest.NewServer(p.handler(log))
			t.Cleanup(srv.Close)
			url := wsURL(srv.URL)

			// The keepalive check idles for seconds: it runs on its own
			// server and connection while the messages are exchanged.
			pingLog := newServerLog()
			pingSrv := httptest.NewServer(p.handler(pingLog))
			t.Cleanup(pingSrv.Close)
			pingErr := make(chan error, 1)
			go func() { pingErr <- oursClientPing(wsURL(pingSrv.URL), p.compress, pingLog) }()

			t.Run("messages-and-client-close", func(t *testing.T) {
				c, recv := dialOurs(t, url, p.compress, ws.Options{})
				exchange(t, func(text bool, b []byte) error { return c.WriteMessage(msgType(text), b) }, recv)

				start := time.Now()
				if err := c.Close(4001, "client bye"); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("Close took %v: the server's close frame did not come", d)
				}
				// Our reader ends with our own close, answered cleanly.
				m := receive(t, recv, 10*time.Second)
				var ce *ws.CloseError
				if !errors.As(m.err, &ce) || ce.Code != 4001 || ce.Remote || ce.Err != nil {
					t.Errorf("our reader ended with %v, want a clean local close 4001", m.err)
				}
				e := log.next(t)
				if e.err != nil || e.code != 4001 || e.reason != "client bye" || !e.remote {
					t.Errorf("server saw %+v, want the peer's close 4001 \"client bye\"", e)
				}
			})

			t.Run("server-close", func(t *testing.T) {
				c, recv := dialOurs(t, url, p.compress, ws.Options{})
				if err := c.WriteMessage(ws.Text, []byte(cmdClose)); err != nil {
					t.Fatal(err)
				}
				m := receive(t, recv, 10*time.Second)
				var ce *ws.CloseError
				if !errors.As(m.err, &ce) || ce.Code != 4002 || ce.Reason != "server bye" || !ce.Remote || ce.Err != nil {
					t.Errorf("our reader ended with %v, want the peer's close 4002 \"server bye\"", m.err)
				}
				e := log.next(t)
				if e.err != nil || e.code != 4002 {
					t.Errorf("server saw %+v, want its close 4002 answered", e)
				}
			})

			if err := <-pingErr; err != nil {
				t.Errorf("ping: %v", err)
			}
		})
	}
}

// oursClientPing checks that the server answers our pings: an explicit
// one, whose payload the server must see, and keepalive pings
// (PingInterval 100 ms, PongTimeout 2 s: an answered ping is followed by
// the next one 100 ms after it). An unanswered keepalive ping closes the
// connection, so a connection alive after 3.5 s of silence had its pings
// answered.
func oursClientPing(url string, compress bool, log *serverLog) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ws.Dial(ctx, url, &ws.DialOptions{Compression: compress, Options: ws.Options{PingInterval: 100 * time.Millisecond, PongTimeout: 2 * time.Second}})
	if err != nil {
		return err
	}
	defer c.CloseNow()
	if err := c.Ping([]byte("ours-ping")); err != nil {
		return err
	}
	got := make(chan error, 1)
	go func() {
		_, p, err := c.ReadMessage(nil)
		if err == nil && string(p) != "still there?" {
			err = fmt.Errorf("echo %q", p)
		}
		got <- err
	}()
	time.Sleep(3500 * time.Millisecond)
	if err := c.WriteMessage(ws.Text, []byte("still there?")); err != nil {
		return fmt.Errorf("write after the keepalive window: %w", err)
	}
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("read after the keepalive window: %w", err)
		}
	case <-time.After(5 * time.Second):
		return errors.New("no echo after the keepalive window")
	}
	pings := log.pingList()
	if !containsString(pings, "ours-ping") {
		return fmt.Errorf("server did not see our ping payload; saw %q", pings)
	}
	if n := countEmpty(pings); n < 2 {
		return fmt.Errorf("server saw %d keepalive pings in 3.5 s, want at least 2", n)
	}
	if err := c.Close(ws.StatusNormalClosure, ""); err != nil {
		return err
	}
	select {
	case e := <-log.events:
		if e.err != nil || e.code != 1000 {
			return fmt.Errorf("server saw %+v, want 1000", e)
		}
	case <-time.After(10 * time.Second):
		return errors.New("server reported no end of connection")
	}
	return nil
}

// dialOurs dials with our client and starts a goroutine that reads every
// message into the returned channel until an error, which it sends last.
func dialOurs(t *testing.T, url string, compress bool, opts ws.Options) (*ws.Conn, <-chan msg) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.ReadLimit = readLimit
	c, err := ws.Dial(ctx, url, &ws.DialOptions{Compression: compress, Options: opts})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	if c.Compressed() != compress {
		t.Fatalf("Compressed() = %v, want %v", c.Compressed(), compress)
	}
	ch := make(chan msg, 1)
	go func() {
		defer close(ch)
		for {
			typ, p, err := c.ReadMessage(nil)
			ch <- msg{text: typ == ws.Text, data: p, err: err}
			if err != nil {
				return
			}
		}
	}()
	return c, ch
}

func msgType(text bool) ws.MessageType {
	if text {
		return ws.Text
	}
	return ws.Binary
}
