package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/server"
	"github.com/chatd/chatd/internal/ws"
)

// testSecret is the HS256 secret of every test server (32 bytes).
var testSecret = []byte("chatd-test-secret-0123456789abcdef")

// waitTimeout bounds every wait for something the server should do at
// once; it is generous because -race on two cores is slow.
const waitTimeout = 10 * time.Second

// testServer is a chatd node running in the test on 127.0.0.1.
type testServer struct {
	URL    string // ws://127.0.0.1:port/ws
	HTTP   string // http://127.0.0.1:port
	Addr   string // 127.0.0.1:port
	Server *server.Server
	Signer *auth.Signer
	Broker hub.Broker

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// serverOpts change how startServer builds the node.
type serverOpts struct {
	// broker wraps the MemoryBroker (failure injection).
	broker func(hub.Broker) hub.Broker
	// retention of the MemoryBroker.
	retention hub.RetentionConfig
	// sndBuf, when positive, shrinks the kernel send buffer of every
	// accepted connection, so that a client that stops reading fills the
	// server's queue after a few kilobytes instead of megabytes.
	sndBuf int
	// devMode leaves the server without a key.
	devMode bool
	// quiet sends the logs nowhere (fuzzing runs many iterations per t).
	quiet bool
	// logs, when set, receives a copy of every log line.
	logs io.Writer
	// web is served at / like cmd/chatd serves the browser client.
	web http.Handler
}

// fastConfig is a configuration with short timeouts for tests; a test
// changes what it needs.
func fastConfig() server.Config {
	return server.Config{
		NodeID:       "test",
		Heartbeat:    25 * time.Second,
		PongTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
		Compression:  true,
		DrainWindow:  200 * time.Millisecond,
		DrainTimeout: 3 * time.Second,
		SendRate:     1000,
		SendBurst:    1000,
		UserRate:     1000,
		UserBurst:    1000,
		CommandRate:  10000,
		CommandBurst: 10000,
		UpgradeRate:  1000,
		UpgradeBurst: 1000,
	}
}

// startServer runs a node with cfg (fastConfig when zero) until the test
// ends, and waits for it to stop then.
func startServer(t testing.TB, cfg server.Config, opts ...serverOpts) *testServer {
	t.Helper()
	var o serverOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "test"
	}
	publicKey := len(cfg.Auth.PublicKeyPEM) > 0
	if !o.devMode && !publicKey {
		cfg.Auth.Secret = testSecret
	}
	var logOut io.Writer = zerolog.NewTestWriter(t)
	if o.logs != nil {
		logOut = io.MultiWriter(logOut, o.logs)
	}
	logger := zerolog.New(logOut).With().Timestamp().Logger()
	if o.quiet {
		logger = zerolog.Nop()
	}
	var broker hub.Broker = hub.NewMemoryBroker(o.retention)
	if o.broker != nil {
		broker = o.broker(broker)
	}
	srv, err := server.New(cfg, server.Deps{Broker: broker, Logger: logger, Web: o.web})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.sndBuf > 0 {
		ln = &smallBufListener{Listener: ln, size: o.sndBuf}
	}
	ts := &testServer{
		Addr:   ln.Addr().String(),
		Server: srv,
		Broker: broker,
		done:   make(chan error, 1),
	}
	ts.URL = "ws://" + ts.Addr + "/ws"
	ts.HTTP = "http://" + ts.Addr
	if !o.devMode {
		// With a public key configured, this signer's tokens are refused.
		ts.Signer, err = auth.NewSigner(auth.Config{Secret: testSecret, Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- srv.Serve(ctx, ln, "", "") }()
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// stop cancels the server's context and waits for Serve to return.
func (ts *testServer) stop() error {
	ts.once.Do(func() {
		ts.cancel()
		select {
		case ts.err = <-ts.done:
		case <-time.After(30 * time.Second):
			ts.err = errors.New("Serve did not return within 30s of its context ending")
		}
	})
	return ts.err
}

// smallBufListener shrinks the send buffer of accepted connections.
type smallBufListener struct {
	net.Listener
	size int
}

func (l *smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// token signs a token for user with a one-hour lifetime.
func (ts *testServer) token(t testing.TB, user string) string {
	t.Helper()
	return ts.sign(t, auth.TokenSpec{Subject: user, Name: strings.ToUpper(user[:1]) + user[1:], TTL: time.Hour})
}

func (ts *testServer) sign(t testing.TB, spec auth.TokenSpec) string {
	t.Helper()
	tok, err := ts.Signer.Sign(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// msg is one decoded server event.
type msg map[string]any

func (m msg) typ() string { return m.str("type") }

func (m msg) str(k string) string {
	s, _ := m[k].(string)
	return s
}

func (m msg) num(k string) int64 {
	f, _ := m[k].(float64)
	return int64(f)
}

func (m msg) has(k string) bool {
	_, ok := m[k]
	return ok
}

func (m msg) list(k string) []msg {
	raw, _ := m[k].([]any)
	out := make([]msg, 0, len(raw))
	for _, v := range raw {
		o, _ := v.(map[string]any)
		out = append(out, msg(o))
	}
	return out
}

// client is a connection speaking the chat protocol through internal/ws.
// A goroutine reads every message into a channel, so waits have timeouts.
type client struct {
	t    testing.TB
	name string
	conn *ws.Conn

	msgs    chan msg
	backlog []msg // messages set aside by roundTrip, read first by next
	done    chan struct{}
	err     error // why reading ended; set before done is closed
	nref    atomic.Int64
}

// dialOpts change how a client connects.
type dialOpts struct {
	header       http.Header
	subprotocols []string // default: chat
	query        string   // appended to the URL
	noRead       bool     // do not start the reader (a client that stops reading)
	compression  bool
	rcvBuf       int // shrink the client's kernel receive buffer
}

// dial connects user with a valid token in the Authorization header,
// reads the welcome and returns the client.
func (ts *testServer) dial(t testing.TB, user string) *client {
	t.Helper()
	c := ts.dialWith(t, user, dialOpts{header: http.Header{"Authorization": {"Bearer " + ts.token(t, user)}}})
	w := c.next()
	if w.typ() != "welcome" {
		t.Fatalf("%s: first message is %v, want welcome", user, w)
	}
	return c
}

// dialWith connects with the given options and fails the test on error.
func (ts *testServer) dialWith(t testing.TB, name string, o dialOpts) *client {
	t.Helper()
	conn, err := ts.tryDial(o)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	return newClient(t, name, conn, !o.noRead)
}

func (ts *testServer) tryDial(o dialOpts) (*ws.Conn, error) {
	sub := o.subprotocols
	if sub == nil {
		sub = []string{"chat"}
	}
	do := &ws.DialOptions{Header: o.header, Subprotocols: sub, Compression: o.compression}
	do.ReadLimit = 1 << 20
	if o.rcvBuf > 0 {
		d := &net.Dialer{}
		do.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(o.rcvBuf)
			}
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return ws.Dial(ctx, ts.URL+o.query, do)
}

func newClient(t testing.TB, name string, conn *ws.Conn, read bool) *client {
	c := &client{t: t, name: name, conn: conn, msgs: make(chan msg, 100000), done: make(chan struct{})}
	t.Cleanup(func() {
		_ = c.conn.CloseNow()
		if read {
			<-c.done
		}
	})
	if read {
		c.startReading()
	}
	return c
}

func (c *client) startReading() {
	go func() {
		defer close(c.done)
		for {
			typ, data, err := c.conn.ReadMessage(nil)
			if err != nil {
				c.err = err
				return
			}
			if typ != ws.Text {
				c.err = errors.New("server sent a binary message")
				return
			}
			var m msg
			if err := json.Unmarshal(data, &m); err != nil {
				c.err = errors.New("server sent a message that is not a JSON object: " + string(data))
				return
			}
			// Every event of every test is held to PROTOCOL.md §4.
			if err := checkEvent(m); err != nil {
				c.err = fmt.Errorf("server sent an event that breaks PROTOCOL.md: %w", err)
				return
			}
			c.msgs <- m
		}
	}()
}

// send writes v as one JSON text message.
func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(ws.Text, []byte(s)); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// ref returns a fresh ref.
func (c *client) ref() string { return c.name + "-" + strconv.FormatInt(c.nref.Add(1), 10) }

// next returns the next message, failing the test when none comes or the
// connection ends.
func (c *client) next() msg {
	c.t.Helper()
	m, ok := c.nextWithin(waitTimeout)
	if !ok {
		c.t.Fatalf("%s: no message within %v (connection: %v)", c.name, waitTimeout, c.endErr())
	}
	return m
}

func (c *client) nextWithin(d time.Duration) (msg, bool) {
	if len(c.backlog) > 0 {
		m := c.backlog[0]
		c.backlog = c.backlog[1:]
		return m, true
	}
	select {
	case m := <-c.msgs:
		return m, true
	default:
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m := <-c.msgs:
		return m, true
	case <-c.done:
		select {
		case m := <-c.msgs:
			return m, true
		default:
			return nil, false
		}
	case <-timer.C:
		return nil, false
	}
}

func (c *client) endErr() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// expect returns the next message and fails unless it has type typ.
func (c *client) expect(typ string) msg {
	c.t.Helper()
	m := c.next()
	if m.typ() != typ {
		c.t.Fatalf("%s: got %v, want a %q", c.name, m, typ)
	}
	return m
}

// waitFor skips messages until one of type typ satisfying pred (nil: any)
// comes, and returns it.
func (c *client) waitFor(typ string, pred func(msg) bool) msg {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		m, ok := c.nextWithin(time.Until(deadline))
		if !ok {
			c.t.Fatalf("%s: no %q within %v (connection: %v)", c.name, typ, waitTimeout, c.endErr())
		}
		if m.typ() == typ && (pred == nil || pred(m)) {
			return m
		}
	}
}

// quiet fails if a message other than the allowed types arrives within d.
func (c *client) quiet(d time.Duration, allowed ...string) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, ok := c.nextWithin(time.Until(deadline))
		if !ok {
			return
		}
		allow := false
		for _, a := range allowed {
			allow = allow || m.typ() == a
		}
		if !allow {
			c.t.Fatalf("%s: unexpected %v", c.name, m)
		}
	}
}

// roundTrip sends v with a fresh ref and returns the reply carrying that
// ref; other events that come first are kept for next.
func (c *client) roundTrip(v map[string]any) msg {
	c.t.Helper()
	ref := c.ref()
	v["ref"] = ref
	c.send(v)
	deadline := time.Now().Add(waitTimeout)
	var other []msg
	defer func() { c.backlog = append(other, c.backlog...) }()
	for {
		m, ok := c.nextWithin(time.Until(deadline))
		if !ok {
			c.t.Fatalf("%s: no reply to %v within %v (connection: %v)", c.name, v, waitTimeout, c.endErr())
		}
		if m.str("ref") == ref {
			return m
		}
		other = append(other, m)
	}
}

// join joins room and returns `joined`, failing on anything else.
func (c *client) join(room string) msg {
	c.t.Helper()
	m := c.roundTrip(map[string]any{"type": "join", "room": room})
	if m.typ() != "joined" {
		c.t.Fatalf("%s: join %s: %v", c.name, room, m)
	}
	return m
}

// post sends text to room and returns `sent`.
func (c *client) post(room, text string) msg {
	c.t.Helper()
	m := c.roundTrip(map[string]any{"type": "send", "room": room, "text": text})
	if m.typ() != "sent" {
		c.t.Fatalf("%s: send to %s: %v", c.name, room, m)
	}
	return m
}

// sync sends a ping and skips everything up to its pong, so that every
// event caused before it has arrived (the server answers in order).
func (c *client) sync() []msg {
	c.t.Helper()
	ref := c.ref()
	c.send(map[string]any{"type": "ping", "ref": ref})
	var skipped []msg
	for {
		m := c.next()
		if m.typ() == "pong" && m.str("ref") == ref {
			return skipped
		}
		skipped = append(skipped, m)
	}
}

// closed waits for the connection to end and returns its close code.
func (c *client) closed() ws.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
		return ws.CloseStatus(c.err)
	case <-time.After(waitTimeout):
		c.t.Fatalf("%s: connection still open after %v", c.name, waitTimeout)
		return 0
	}
}

// expectClose skips messages until the connection ends and checks the
// code the server closed it with.
func (c *client) expectClose(want ws.StatusCode) []msg {
	c.t.Helper()
	code := c.closed()
	var rest []msg
	for {
		select {
		case m := <-c.msgs:
			rest = append(rest, m)
			continue
		default:
		}
		break
	}
	if code != want {
		c.t.Fatalf("%s: closed with %v (%v), want %v; messages before: %v", c.name, code, c.err, want, rest)
	}
	return rest
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(wait*2, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(wait)
	}
}

// httpDo sends an HTTP request and returns the response with its body read.
func httpDo(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{Timeout: waitTimeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// metric returns the value of the first sample of name on /metrics (-1
// when absent).
func (ts *testServer) metric(t testing.TB, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.HTTP+"/metrics", nil)
	_, body := httpDo(t, req)
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if f[0] == name || strings.HasPrefix(f[0], name+"{") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// failingBroker is a MemoryBroker whose calls fail for chosen rooms:
// rooms named "down*" answer hub.ErrUnavailable on Publish, rooms named
// "broken*" a plain error on Publish, rooms named "nohist*" a plain error
// on History and ReadJoin (a plain error is answered with internal), and rooms named
// "panic*" panic on Publish (a bug in chatd: close 1011). Ready fails
// while unready is set.
type failingBroker struct {
	hub.Broker
	unready *atomic.Bool
}

func (b failingBroker) Ready(ctx context.Context) error {
	if b.unready != nil && b.unready.Load() {
		return fmt.Errorf("test broker: %w", hub.ErrUnavailable)
	}
	return b.Broker.Ready(ctx)
}

var errBroken = errors.New("test: broker is broken")

func (b failingBroker) fail(room string) error {
	switch {
	case strings.HasPrefix(room, "down"):
		return hub.ErrUnavailable
	case strings.HasPrefix(room, "broken"):
		return errBroken
	}
	return nil
}

func (b failingBroker) Publish(ctx context.Context, m protocol.Message) (protocol.Message, bool, error) {
	if strings.HasPrefix(m.Room, "panic") {
		panic("test: broker panics")
	}
	if err := b.fail(m.Room); err != nil {
		return protocol.Message{}, false, err
	}
	return b.Broker.Publish(ctx, m)
}

func (b failingBroker) History(ctx context.Context, room, before string, limit int) ([]protocol.Message, bool, error) {
	if strings.HasPrefix(room, "nohist") {
		return nil, false, errBroken
	}
	return b.Broker.History(ctx, room, before, limit)
}

func (b failingBroker) ReadJoin(ctx context.Context, room, since string, limit int, join *hub.Event) ([]protocol.Message, bool, []protocol.Member, error) {
	if strings.HasPrefix(room, "nohist") {
		return nil, false, nil, errBroken
	}
	return b.Broker.ReadJoin(ctx, room, since, limit, join)
}
