package web_test

// A browser test across two chatd nodes over a real Redis: the pages of
// two users on two nodes, and one node drained under its user as in a
// rolling restart.

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub/redisbroker"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/server"
	"github.com/chatd/chatd/web"
)

// clusterNode is a chatd node of a cluster over Redis, as cmd/chatd builds
// it with -redis and dev tokens on (deploy/chatd.env).
type clusterNode struct {
	id     string
	addr   string
	srv    *server.Server
	cancel context.CancelFunc
	served chan error
}

func startClusterNode(t *testing.T, redisURL, prefix, id string) *clusterNode {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", id).Logger()
	client, err := redisbroker.NewClient(redisURL, false)
	if err != nil {
		t.Fatal(err)
	}
	broker, err := redisbroker.New(client, redisbroker.Config{NodeID: id, Prefix: prefix, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		NodeID:       id,
		Auth:         auth.Config{Secret: testSecret},
		DevTokens:    true,
		Compression:  true,
		DrainWindow:  time.Second,
		DrainTimeout: 10 * time.Second,
	}, server.Deps{Broker: broker, Logger: log, Web: web.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &clusterNode{id: id, addr: ln.Addr().String(), srv: srv, cancel: cancel, served: make(chan error, 1)}
	go func() { n.served <- srv.Serve(ctx, ln, "", "") }()
	t.Cleanup(func() {
		n.drain(t)
		broker.Close()
		client.Close()
	})
	return n
}

func (n *clusterNode) URL() string { return "http://" + n.addr + "/" }

// drain stops the node as SIGTERM does and waits until it has; once done,
// it does nothing more.
func (n *clusterNode) drain(t *testing.T) {
	t.Helper()
	n.cancel()
	if n.served == nil {
		return
	}
	select {
	case err := <-n.served:
		if err != nil {
			t.Errorf("%s: Serve: %v", n.id, err)
		}
	case <-time.After(waitLong):
		t.Errorf("%s: Serve did not return %v after a drain", n.id, waitLong)
	}
	n.served = nil
}

// switchProxy is a reverse proxy on loopback, the balancer in front of a
// page: it forwards everything, WebSocket upgrades included, to one node,
// and can be switched to another. Established tunnels stay where they are.
type switchProxy struct {
	addr   string
	target atomic.Pointer[url.URL]
}

func startSwitchProxy(t *testing.T, to *clusterNode) *switchProxy {
	t.Helper()
	p := &switchProxy{}
	p.switchTo(to)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.target.Load())
			// The page's origin is the proxy's: keep its Host, as a
			// balancer does, so that the same-host origin check holds.
			r.Out.Host = r.In.Host
		},
		// A node that drains cuts tunnels; that is the point, not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	hs := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { _ = hs.Close() })
	return p
}

func (p *switchProxy) switchTo(n *clusterNode) {
	p.target.Store(&url.URL{Scheme: "http", Host: n.addr})
}

func (p *switchProxy) URL() string { return "http://" + p.addr + "/" }

// TestBrowserTwoNodes: Alice's page is on node 1 (through a proxy), Bob's
// on node 2, over one Redis: they sign in by name (dev tokens signed with
// the cluster's shared secret), see each other's presence and exchange
// messages. Then the proxy sends new connections to node 2 and node 1
// drains: Alice's page reconnects through the proxy to node 2. Bob writes
// while she moves; her page ends with every message once, in order, and
// his never shows her leaving.
func TestBrowserTwoNodes(t *testing.T) {
	redistest.Require(t, "redis-server")
	rds := redistest.Start(t)
	prefix := redistest.Prefix(t)
	node1 := startClusterNode(t, rds.URL(), prefix, "web-node-1")
	node2 := startClusterNode(t, rds.URL(), prefix, "web-node-2")
	proxy := startSwitchProxy(t, node1)

	alice := openPage(t, "alice", proxy.URL(), desktop)
	bob := openPage(t, "bob", node2.URL(), desktop)
	alice.signInDev("Alice")
	bob.signInDev("Bob")
	alice.waitFor("Alice on node 1", `document.getElementById("status-text").textContent === "Connected (web-node-1)"`, waitShort)
	bob.waitFor("Bob on node 2", `document.getElementById("status-text").textContent === "Connected (web-node-2)"`, waitShort)
	alice.typeKeys("lobby\r")
	alice.waitJoined("lobby")
	bob.typeKeys("lobby\r")
	bob.waitJoined("lobby")
	alice.waitFor("Bob in the member list", `window.__test.members().includes("Bob")`, waitShort)
	bob.waitFor("Alice in the member list", `JSON.stringify(window.__test.members()) === '["Alice","Bob"]'`, waitShort)

	var texts, from []string
	say := func(p *page, who, text string) {
		p.send(text)
		texts = append(texts, text)
		from = append(from, who)
	}
	say(alice, "Alice", "Hello from node 1")
	bob.waitTexts("Alice's message", texts, waitShort)
	say(bob, "Bob", "Hello from node 2")
	for _, p := range []*page{alice, bob} {
		p.waitTexts("the greetings", texts, waitShort)
	}
	alice.screenshot("two-nodes")

	// From now on Bob's page notes whether Alice ever leaves its list.
	eval[bool](bob, `(() => { window.__aliceLeft = false;
		new MutationObserver(() => { if (!window.__test.members().includes("Alice")) window.__aliceLeft = true; })
			.observe(document.getElementById("member-list"), { childList: true, subtree: true, characterData: true });
		return true; })()`)

	// The rolling restart: the balancer stops sending to node 1, which
	// drains. Bob writes while Alice is told to go, and after node 1 is
	// gone, before she is back.
	seen := eval[int](alice, `window.__test.statusLog.length`)
	proxy.switchTo(node2)
	node1.cancel()
	// The page may be back before a poll would see it away: its status
	// log keeps what it showed.
	alice.waitFor("Alice's page to see the drain", fmt.Sprintf(`window.__test.statusLog.slice(%d).includes("Server restarting…")`, seen), waitShort)
	say(bob, "Bob", "while node 1 drains")
	say(bob, "Bob", "still draining")
	node1.drain(t)
	say(bob, "Bob", "node 1 is gone")
	alice.waitFor("Alice on node 2", `document.getElementById("status-text").textContent === "Connected (web-node-2)"`, waitLong)
	alice.waitJoined("lobby")
	say(alice, "Alice", "Back, on node 2")

	for _, p := range []*page{alice, bob} {
		p.waitTexts("the whole conversation", texts, waitShort)
		p.checkMessages(texts, from, map[*page]string{alice: "Alice", bob: "Bob"}[p])
		if gaps := eval[int](p, `document.querySelectorAll("#messages li.gap").length`); gaps != 0 {
			p.fatalf("%d gap markers: the rejoin was not recovered", gaps)
		}
	}
	if a, b := ids(alice.messages()), ids(bob.messages()); !slices.Equal(a, b) {
		t.Fatalf("the two pages show different messages:\nalice %v\nbob   %v", a, b)
	}
	if eval[bool](bob, `window.__aliceLeft`) {
		bob.fatalf("Alice left Bob's member list during the rolling restart")
	}
	alice.waitFor("Bob in Alice's member list", `window.__test.members().includes("Bob")`, waitShort)
	if n := node2.srv.Connections(); n != 2 {
		t.Errorf("node 2 serves %d connections, want Alice's and Bob's", n)
	}
	alice.screenshot("after-drain")
	bob.screenshot("after-drain")
}
