package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub/redisbroker"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/ratelimit/redislimit"
	"github.com/chatd/chatd/internal/server"
	"github.com/chatd/chatd/internal/ws"
)

// wait bounds every wait for something the cluster should do; generous,
// because -race on two loaded cores is slow.
const wait = 20 * time.Second

var secret = []byte("chatd-cluster-test-secret-0123456789")

// node is one chatd node in the test: a server on a loopback listener
// with its own Redis client, broker and limiter.
type node struct {
	id     string
	addr   string
	srv    *server.Server
	broker *redisbroker.Broker
	client redis.UniversalClient

	cancel  context.CancelFunc
	served  chan struct{}
	mu      sync.Mutex
	conns   map[net.Conn]struct{} // accepted connections, for kill
	killed  bool
	stopped sync.Once
}

// trackingListener remembers every accepted connection, so that a node
// can be killed: its connections cut without a close frame.
type trackingListener struct {
	net.Listener
	n *node
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.mu.Lock()
		l.n.conns[c] = struct{}{}
		l.n.mu.Unlock()
	}
	return c, err
}

// clusterOpts change how nodes are built.
type clusterOpts struct {
	userRate  float64
	userBurst int
	sendRate  float64 // per connection; default 1000/s
	quiet     bool    // logs nowhere (benchmarks)
	// presenceTTL is how long a node's presence claims outlive its last
	// heartbeat; default 3 s.
	presenceTTL time.Duration
}

// startNodes starts n nodes on the Redis at url, with a key prefix of
// their own.
func startNodes(t testing.TB, url string, isCluster bool, n int, opts clusterOpts) []*node {
	t.Helper()
	prefix := redistest.Prefix(t)
	var nodes []*node
	for i := range n {
		nodes = append(nodes, startNode(t, url, isCluster, "node-"+strconv.Itoa(i), prefix, opts))
	}
	for _, nd := range nodes {
		nd.waitReady(t)
	}
	return nodes
}

func startNode(t testing.TB, url string, isCluster bool, id, prefix string, opts clusterOpts) *node {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", id).Logger()
	if opts.quiet {
		log = zerolog.Nop()
	}
	client, err := redisbroker.NewClient(url, isCluster)
	if err != nil {
		t.Fatal(err)
	}
	presenceTTL := 3 * time.Second
	if opts.presenceTTL > 0 {
		presenceTTL = opts.presenceTTL
	}
	broker, err := redisbroker.New(client, redisbroker.Config{
		NodeID:        id,
		Prefix:        prefix,
		PresenceTTL:   presenceTTL,
		ProbeInterval: 200 * time.Millisecond,
		StallTimeout:  3 * time.Second,
		ReconnectMin:  20 * time.Millisecond,
		ReconnectMax:  250 * time.Millisecond,
		Logger:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		NodeID:       id,
		Auth:         auth.Config{Secret: secret},
		Heartbeat:    25 * time.Second,
		PongTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
		SendRate:     1000,
		SendBurst:    1000,
		UserRate:     1000,
		UserBurst:    1000,
		CommandRate:  10000,
		CommandBurst: 10000,
		QueueSize:    4096,
		UpgradeRate:  1000,
		UpgradeBurst: 1000,
		DrainWindow:  100 * time.Millisecond,
		DrainTimeout: 2 * time.Second,
	}
	if opts.sendRate > 0 {
		cfg.SendRate, cfg.SendBurst = opts.sendRate, int(opts.sendRate)
		cfg.CommandRate, cfg.CommandBurst = opts.sendRate, int(opts.sendRate)
	}
	rate, burst := 1000.0, 1000
	if opts.userRate > 0 {
		rate, burst = opts.userRate, opts.userBurst
	}
	srv, err := server.New(cfg, server.Deps{
		Broker:      broker,
		UserLimiter: redislimit.New(client, prefix, rate, burst),
		Logger:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{id: id, addr: ln.Addr().String(), srv: srv, broker: broker, client: client, cancel: cancel, served: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go func() {
		defer close(nd.served)
		_ = srv.Serve(ctx, trackingListener{ln, nd}, "", "")
	}()
	t.Cleanup(nd.stop)
	return nd
}

// stop shuts the node down gracefully (drain), once.
func (nd *node) stop() {
	nd.stopped.Do(func() {
		nd.cancel()
		<-nd.served
		nd.broker.Close()
		nd.client.Close()
	})
}

// kill ends the node as a crash would: every connection cut at once, no
// draining, no close frame; its broker stops.
func (nd *node) kill() {
	nd.mu.Lock()
	nd.killed = true
	for c := range nd.conns {
		c.Close()
	}
	nd.mu.Unlock()
	nd.stop()
}

func (nd *node) ready() error {
	resp, err := http.Get("http://" + nd.addr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func (nd *node) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, nd.id+" ready", func() error { return nd.ready() })
}

func waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, wait, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// event is a server event, decoded loosely.
type event map[string]any

func (e event) str(k string) string { s, _ := e[k].(string); return s }

// client is a WebSocket client of one node; a goroutine reads its events
// into a channel until the connection ends.
type client struct {
	t      testing.TB
	user   string
	conn   *ws.Conn
	events chan event
	done   chan struct{} // closed when the connection ended
	err    error         // why, set before done is closed
}

func token(t testing.TB, user string) string {
	t.Helper()
	s, err := auth.NewSigner(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(auth.TokenSpec{Subject: user, Name: "Name " + user, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t testing.TB, nd *node, user string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := ws.Dial(ctx, "ws://"+nd.addr+"/ws", &ws.DialOptions{Subprotocols: []string{"chat", "access_token." + token(t, user)}})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", nd.id, user, err)
	}
	c := &client{t: t, user: user, conn: conn, events: make(chan event, 100000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, data, err := conn.ReadMessage(nil)
			if err != nil {
				c.err = err
				return
			}
			var e event
			if err := json.Unmarshal(data, &e); err != nil {
				c.err = err
				return
			}
			c.events <- e
		}
	}()
	t.Cleanup(func() { conn.CloseNow(); <-c.done })
	if w := c.expect("welcome"); w.str("node") != nd.id {
		t.Fatalf("welcome from %q, dialled %s", w.str("node"), nd.id)
	}
	return c
}

func (c *client) send(v map[string]any) {
	c.t.Helper()
	data, _ := json.Marshal(v)
	if err := c.conn.WriteMessage(ws.Text, data); err != nil {
		c.t.Fatalf("%s: write: %v", c.user, err)
	}
}

// next returns the next event, skipping none.
func (c *client) next() event {
	c.t.Helper()
	select {
	case e := <-c.events:
		return e
	case <-c.done:
		select {
		case e := <-c.events:
			return e
		default:
		}
		c.t.Fatalf("%s: connection ended: %v", c.user, c.err)
	case <-time.After(wait):
		c.t.Fatalf("%s: no event within %v", c.user, wait)
	}
	return nil
}

// expect returns the next event of type typ, skipping others (typing,
// presence and messages it is not waiting for).
func (c *client) expect(typ string) event {
	c.t.Helper()
	for {
		if e := c.next(); e.str("type") == typ {
			return e
		}
	}
}

// join joins room (with since when not empty) and returns `joined`.
func (c *client) join(room, since string) event {
	c.t.Helper()
	cmd := map[string]any{"type": "join", "room": room, "ref": "j-" + room}
	if since != "" {
		cmd["since"] = since
	}
	c.send(cmd)
	for {
		e := c.next()
		switch e.str("type") {
		case "joined":
			return e
		case "error":
			c.t.Fatalf("%s: join %s: %v", c.user, room, e)
		}
	}
}
