package interop

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

// peerClient is a gorilla/websocket or coder/websocket client connected to
// our server, with a goroutine reading every message into recv.
type peerClient struct {
	send  func(text bool, p []byte) error
	ping  func(payload string) error // returns once the pong arrived
	close func(code int, reason string) error
	drop  func() // closes the TCP connection
	recv  <-chan msg
	exts  string // the Sec-WebSocket-Extensions the server answered

	mu    sync.Mutex
	pings []string // pings received from the server
}

func (pc *peerClient) gotPing(p string) {
	pc.mu.Lock()
	pc.pings = append(pc.pings, p)
	pc.mu.Unlock()
}

func (pc *peerClient) pingList() []string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return append([]string(nil), pc.pings...)
}

func dialGorilla(url string, compress bool) (*peerClient, error) {
	d := websocket.Dialer{EnableCompression: compress, HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, fmt.Errorf("gorilla Dial: %w", err)
	}
	c.SetReadLimit(readLimit)
	pc := &peerClient{exts: resp.Header.Get("Sec-WebSocket-Extensions"), drop: func() { _ = c.Close() }}
	pongs := make(chan string, 16)
	c.SetPongHandler(func(p string) error { pongs <- p; return nil })
	c.SetPingHandler(func(p string) error {
		pc.gotPing(p)
		_ = c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(5*time.Second))
		return nil
	})
	var writeMu sync.Mutex // gorilla allows one concurrent writer
	pc.send = func(text bool, p []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		typ := websocket.BinaryMessage
		if text {
			typ = websocket.TextMessage
		}
		return c.WriteMessage(typ, p)
	}
	pc.ping = func(p string) error {
		if err := c.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(5*time.Second)); err != nil {
			return err
		}
		select {
		case got := <-pongs:
			if got != p {
				return errors.New("pong payload " + got + ", want " + p)
			}
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("no pong within 5s")
		}
	}
	pc.close = func(code int, reason string) error {
		return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(5*time.Second))
	}
	ch := make(chan msg, 1)
	go func() {
		defer close(ch)
		for {
			typ, p, err := c.ReadMessage()
			ch <- msg{text: typ == websocket.TextMessage, data: p, err: err}
			if err != nil {
				return
			}
		}
	}()
	pc.recv = ch
	return pc, nil
}

func dialCoder(url string, mode coder.CompressionMode) (*peerClient, error) {
	pc := &peerClient{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := coder.Dial(ctx, url, &coder.DialOptions{
		CompressionMode: mode,
		OnPingReceived: func(_ context.Context, p []byte) bool {
			pc.gotPing(string(p))
			return true
		},
	})
	if err != nil {
		return nil, fmt.Errorf("coder Dial: %w", err)
	}
	pc.drop = func() { _ = c.CloseNow() }
	c.SetReadLimit(readLimit)
	pc.exts = resp.Header.Get("Sec-WebSocket-Extensions")
	bg := context.Background()
	pc.send = func(text bool, p []byte) error {
		typ := coder.MessageBinary
		if text {
			typ = coder.MessageText
		}
		return c.Write(bg, typ, p)
	}
	pc.ping = func(string) error {
		// coder sends its own payload and returns when the pong arrived
		// (read by the reader goroutine).
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		return c.Ping(ctx)
	}
	pc.close = func(code int, reason string) error {
		// Returns nil only after the server's close frame arrived.
		return c.Close(coder.StatusCode(code), reason)
	}
	ch := make(chan msg, 1)
	go func() {
		defer close(ch)
		for {
			typ, p, err := c.Read(bg)
			ch <- msg{text: typ == coder.MessageText, data: p, err: err}
			if err != nil {
				return
			}
		}
	}()
	pc.recv = ch
	return pc, nil
}

// mustDial dials with a peer client for the length of the test.
func mustDial(t *testing.T, dial func(url string) (*peerClient, error), url string) *peerClient {
	t.Helper()
	pc, err := dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.drop)
	return pc
}

// TestOursServer runs gorilla/websocket and coder/websocket clients against
// our server (Compression on, so it compresses whenever the client offers).
func TestOursServer(t *testing.T) {
	clients := []struct {
		name     string
		compress bool
		dial     func(url string) (*peerClient, error)
	}{
		{"gorilla/plain", false, func(u string) (*peerClient, error) { return dialGorilla(u, false) }},
		{"gorilla/deflate", true, func(u string) (*peerClient, error) { return dialGorilla(u, true) }},
		{"coder/plain", false, func(u string) (*peerClient, error) { return dialCoder(u, coder.CompressionDisabled) }},
		{"coder/deflate", true, func(u string) (*peerClient, error) { return dialCoder(u, coder.CompressionNoContextTakeover) }},
		{"coder/deflate-takeover", true, func(u string) (*peerClient, error) { return dialCoder(u, coder.CompressionContextTakeover) }},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			t.Parallel()
			log := newServerLog()
			srv := httptest.NewServer(oursServer(log))
			t.Cleanup(srv.Close)
			url := wsURL(srv.URL)

			// The keepalive check idles for seconds: it runs on its own
			// server and connection while the messages are exchanged.
			pingLog := newServerLog()
			pingSrv := httptest.NewServer(oursServer(pingLog))
			t.Cleanup(pingSrv.Close)
			pingErr := make(chan error, 1)
			go func() { pingErr <- peerClientPing(cl.dial, wsURL(pingSrv.URL)+"?keepalive=1", pingLog) }()

			checkExts := func(t *testing.T, pc *peerClient) {
				t.Helper()
				if got := strings.HasPrefix(pc.exts, "permessage-deflate"); got != cl.compress {
					t.Fatalf("server answered Sec-WebSocket-Extensions %q; compression offered: %v", pc.exts, cl.compress)
				}
			}

			t.Run("messages-and-client-close", func(t *testing.T) {
				pc := mustDial(t, cl.dial, url)
				checkExts(t, pc)
				exchange(t, pc.send, pc.recv)
				if err := pc.close(4003, "peer bye"); err != nil {
					t.Fatalf("close: %v", err)
				}
				// The client's reader ends with the server's answer.
				m := receive(t, pc.recv, 10*time.Second)
				if code := closeCode(m.err); code != 4003 {
					t.Errorf("client reader ended with %v, want the echo of 4003", m.err)
				}
				e := log.next(t)
				if e.err != nil || e.code != 4003 || e.reason != "peer bye" || !e.remote {
					t.Errorf("our server saw %+v, want the peer's close 4003 \"peer bye\"", e)
				}
			})

			t.Run("server-close", func(t *testing.T) {
				pc := mustDial(t, cl.dial, url)
				if err := pc.send(true, []byte(cmdClose)); err != nil {
					t.Fatal(err)
				}
				m := receive(t, pc.recv, 10*time.Second)
				if code, reason := closeCode(m.err), closeReason(m.err); code != 4004 || reason != "server bye" {
					t.Errorf("client reader ended with %v, want the server's close 4004 \"server bye\"", m.err)
				}
				e := log.next(t)
				if e.err != nil || e.code != 4004 || e.remote {
					t.Errorf("our server saw %+v, want its own close 4004 answered cleanly", e)
				}
			})

			if err := <-pingErr; err != nil {
				t.Errorf("ping: %v", err)
			}
		})
	}
}

// peerClientPing checks that our server answers the client's ping, and
// that the client receives and answers our server's keepalive pings
// (PingInterval 100 ms, PongTimeout 2 s): an unanswered one would close
// the connection, so a connection alive after 3.5 s of silence had them
// answered.
func peerClientPing(dial func(string) (*peerClient, error), url string, log *serverLog) error {
	pc, err := dial(url)
	if err != nil {
		return err
	}
	defer pc.drop()
	if err := pc.ping("peer-ping"); err != nil {
		return fmt.Errorf("explicit ping: %w", err)
	}
	time.Sleep(3500 * time.Millisecond)
	if err := pc.send(true, []byte("still there?")); err != nil {
		return fmt.Errorf("send after the keepalive window: %w", err)
	}
	select {
	case m := <-pc.recv:
		if m.err != nil || string(m.data) != "still there?" {
			return fmt.Errorf("after the keepalive window got %q, %v", m.data, m.err)
		}
	case <-time.After(5 * time.Second):
		return errors.New("no echo after the keepalive window")
	}
	if n := countEmpty(pc.pingList()); n < 2 {
		return fmt.Errorf("client saw %d keepalive pings from our server in 3.5 s, want at least 2", n)
	}
	if err := pc.close(1000, ""); err != nil {
		return err
	}
	select {
	case e := <-log.events:
		if e.err != nil || e.code != 1000 {
			return fmt.Errorf("our server saw %+v, want 1000", e)
		}
	case <-time.After(10 * time.Second):
		return errors.New("our server reported no end of connection")
	}
	return nil
}

func closeCode(err error) int {
	var ge *websocket.CloseError
	if errors.As(err, &ge) {
		return ge.Code
	}
	var ce coder.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	return -1
}

func closeReason(err error) string {
	var ge *websocket.CloseError
	if errors.As(err, &ge) {
		return ge.Text
	}
	var ce coder.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}
