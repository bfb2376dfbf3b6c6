package cluster_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/ws"
)

// Every scenario runs on a standalone Redis; the ones about delivery also
// run on a three-master Redis Cluster with sharded pub/sub.
func TestStandalone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.fn(t, srv.URL(), false)
		})
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	for _, sc := range scenarios {
		if !sc.cluster {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.fn(t, c.URL(), true)
		})
	}
}

var scenarios = []struct {
	name    string
	fn      func(t *testing.T, url string, isCluster bool)
	cluster bool // also run on a Redis Cluster
}{
	{"OneOrderOnEveryNode", testOneOrder, true},
	{"PresenceAcrossNodes", testPresence, true},
	{"IdempotentSendAcrossNodes", testIdempotent, true},
	{"SharedRateLimit", testRateLimit, true},
	{"NodeKilledClientsRecover", testNodeKilled, false},
	{"DrainWithoutPresenceFlapping", testDrainPresence, false},
}

// messagesOf reads c's events until it has n messages of room, and
// returns their ids in order.
func messagesOf(c *client, room string, n int) []string {
	c.t.Helper()
	var ids []string
	for len(ids) < n {
		e := c.next()
		if e.str("type") == "message" && e.str("room") == room {
			ids = append(ids, e.str("id"))
		}
	}
	return ids
}

// Concurrent senders on three nodes: every member, on every node, gets
// every message once and in the same order, the order of history.
func testOneOrder(t *testing.T, url string, isCluster bool) {
	nodes := startNodes(t, url, isCluster, 3, clusterOpts{})
	var members []*client
	for i, nd := range nodes {
		for j := range 2 {
			c := dial(t, nd, fmt.Sprintf("u%d%d", i, j))
			c.join("lobby", "")
			members = append(members, c)
		}
	}
	const each = 25
	var wg sync.WaitGroup
	for i := range nodes {
		sender := members[2*i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				sender.send(map[string]any{"type": "send", "room": "lobby", "text": fmt.Sprintf("%s-%d", sender.user, k)})
			}
		}()
	}
	wg.Wait()
	total := each * len(nodes)
	want := messagesOf(members[0], "lobby", total)
	seen := map[string]bool{}
	for _, id := range want {
		if seen[id] {
			t.Fatalf("id %s delivered twice", id)
		}
		seen[id] = true
	}
	for i, c := range members[1:] {
		got := messagesOf(c, "lobby", total)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("member %d (on %s) saw another order than member 0", i+1, c.user)
		}
	}
	// History, asked on any node, is that order.
	late := dial(t, nodes[2], "late")
	joined := late.join("lobby", "")
	ms, _ := joined["members"].([]any)
	if len(ms) != len(members)+1 {
		t.Errorf("joined.members lists %d users, want %d from all three nodes", len(ms), len(members)+1)
	}
	late.send(map[string]any{"type": "history", "room": "lobby", "limit": 100, "ref": "h"})
	h := late.expect("history")
	var hist []string
	list, _ := h["messages"].([]any)
	for _, m := range list {
		id, _ := m.(map[string]any)["id"].(string)
		hist = append(hist, id)
	}
	if strings.Join(hist, ",") != strings.Join(want, ",") || h["more"] != false {
		t.Fatalf("history on node 2 differs from the delivery order (%d vs %d messages)", len(hist), len(want))
	}
}

// nextPresence returns the next presence event in room, skipping the
// rest.
func nextPresence(c *client, room string) (user, state string) {
	c.t.Helper()
	for {
		e := c.next()
		if e.str("type") == "presence" && e.str("room") == room {
			return e.str("user"), e.str("state")
		}
	}
}

// A user's first connection on any node is the join, the last on all
// nodes the leave; joined.members spans the nodes.
func testPresence(t *testing.T, url string, isCluster bool) {
	nodes := startNodes(t, url, isCluster, 3, clusterOpts{})
	ann := dial(t, nodes[0], "ann")
	ann.join("p", "")
	if u, s := nextPresence(ann, "p"); u != "ann" || s != "join" {
		t.Fatalf("ann saw %s %s, want her own join", u, s)
	}
	bob1 := dial(t, nodes[1], "bob")
	j := bob1.join("p", "")
	if ms, _ := j["members"].([]any); len(ms) != 2 {
		t.Fatalf("bob's joined.members %v, want ann (node 0) and bob", j["members"])
	}
	if u, s := nextPresence(ann, "p"); u != "bob" || s != "join" {
		t.Fatalf("ann saw %s %s, want bob's join from node 1", u, s)
	}
	bob2 := dial(t, nodes[2], "bob")
	bob2.join("p", "")
	bob1.send(map[string]any{"type": "leave", "room": "p", "ref": "l"})
	bob1.expect("left")
	// Bob is still on node 2: no leave. The next event ann sees must be
	// carol's join, not a leave of bob.
	carol := dial(t, nodes[1], "carol")
	carol.join("p", "")
	if u, s := nextPresence(ann, "p"); u != "carol" || s != "join" {
		t.Fatalf("ann saw %s %s, want carol's join (bob's second connection keeps him present)", u, s)
	}
	bob2.send(map[string]any{"type": "leave", "room": "p", "ref": "l"})
	if u, s := nextPresence(ann, "p"); u != "bob" || s != "leave" {
		t.Fatalf("ann saw %s %s, want bob's leave once his last connection left", u, s)
	}
}

// A node that drains (a rolling restart) lets its users' presence lapse
// instead of withdrawing it: a user who is back on another node before
// their claim expires is announced neither leaving nor joining, and one
// who does not come back is announced leaving once, when the claim
// expires.
func testDrainPresence(t *testing.T, url string, isCluster bool) {
	nodes := startNodes(t, url, isCluster, 2, clusterOpts{presenceTTL: 5 * time.Second})
	watcher := dial(t, nodes[1], "watcher")
	watcher.join("d", "")
	if u, s := nextPresence(watcher, "d"); u != "watcher" || s != "join" {
		t.Fatalf("watcher saw %s %s, want its own join", u, s)
	}
	// ann joins before cal, so that her claim on node 0 never outlives
	// his: by the time his leave is announced, hers has expired too, and
	// would have been announced first had she not come back.
	ann := dial(t, nodes[0], "ann")
	ann.join("d", "")
	if u, s := nextPresence(watcher, "d"); u != "ann" || s != "join" {
		t.Fatalf("watcher saw %s %s, want ann's join", u, s)
	}
	cal := dial(t, nodes[0], "cal")
	cal.join("d", "")
	if u, s := nextPresence(watcher, "d"); u != "cal" || s != "join" {
		t.Fatalf("watcher saw %s %s, want cal's join", u, s)
	}
	ann.send(map[string]any{"type": "send", "room": "d", "text": "before the drain"})
	last := ann.expect("message").str("id")

	nodes[0].stop() // SIGTERM: draining, close 1001, Serve returns
	ann.expect("draining")
	<-ann.done
	if code := ws.CloseStatus(ann.err); code != ws.StatusGoingAway {
		t.Fatalf("ann's connection ended with %v (%v), want 1001", code, ann.err)
	}
	// ann is back, on node 1; cal is not.
	ann = dial(t, nodes[1], "ann")
	j := ann.join("d", last)
	if j["recovered"] != true {
		t.Errorf("ann's rejoin since %s: recovered %v", last, j["recovered"])
	}
	for {
		e := watcher.next()
		if e.str("type") != "presence" {
			continue
		}
		if e.str("user") == "cal" && e.str("state") == "leave" {
			break
		}
		t.Fatalf("watcher saw presence %s %s during the rolling restart; want only cal's leave once his claim expired", e.str("user"), e.str("state"))
	}
	// Nothing about ann after it either: everything before ann's next
	// message has reached the watcher once it sees that message.
	ann.send(map[string]any{"type": "send", "room": "d", "text": "after the drain"})
	for {
		e := watcher.next()
		if e.str("type") == "presence" {
			t.Fatalf("watcher saw presence %s %s after cal's leave", e.str("user"), e.str("state"))
		}
		if e.str("type") == "message" && e.str("text") == "after the drain" {
			break
		}
	}
}

// A send retried with the same cid on another node is not posted again.
func testIdempotent(t *testing.T, url string, isCluster bool) {
	nodes := startNodes(t, url, isCluster, 3, clusterOpts{})
	watcher := dial(t, nodes[2], "watcher")
	watcher.join("idem", "")
	first := dial(t, nodes[0], "ann")
	first.join("idem", "")
	first.send(map[string]any{"type": "send", "room": "idem", "text": "once", "cid": "c-1", "ref": "s1"})
	sent1 := first.expect("sent")
	retry := dial(t, nodes[1], "ann")
	retry.join("idem", "")
	retry.send(map[string]any{"type": "send", "room": "idem", "text": "once", "cid": "c-1", "ref": "s2"})
	sent2 := retry.expect("sent")
	if sent2.str("id") != sent1.str("id") || sent2["ts"] != sent1["ts"] || sent2.str("ref") != "s2" {
		t.Fatalf("retry on another node answered %v, want the original %v", sent2, sent1)
	}
	retry.send(map[string]any{"type": "send", "room": "idem", "text": "marker", "ref": "s3"})
	got := messagesOf(watcher, "idem", 2)
	if got[0] != sent1.str("id") {
		t.Fatalf("watcher's first message %s, want %s", got[0], sent1.str("id"))
	}
	marker := retry.expect("sent")
	if got[1] != marker.str("id") {
		t.Fatalf("watcher's second message %s, want the marker %s: the retry was posted again", got[1], marker.str("id"))
	}
}

// Connections of one user on three nodes share one budget.
func testRateLimit(t *testing.T, url string, isCluster bool) {
	const burst = 6
	nodes := startNodes(t, url, isCluster, 3, clusterOpts{userRate: 0.01, userBurst: burst})
	var conns []*client
	for _, nd := range nodes {
		c := dial(t, nd, "spammer")
		c.join("rl", "")
		conns = append(conns, c)
	}
	const each = burst
	for _, c := range conns {
		for k := range each {
			c.send(map[string]any{"type": "send", "room": "rl", "text": "x", "ref": "r" + strconv.Itoa(k)})
		}
	}
	sent, limited := 0, 0
	for _, c := range conns {
		for answered := 0; answered < each; {
			e := c.next()
			switch {
			case e.str("type") == "sent":
				sent++
				answered++
			case e.str("type") == "error" && e.str("code") == "rate_limited":
				limited++
				answered++
				if ms, _ := e["retry_ms"].(float64); ms <= 0 {
					t.Errorf("rate_limited without retry_ms: %v", e)
				}
			case e.str("type") == "error":
				t.Fatalf("unexpected error %v", e)
			}
		}
	}
	if sent != burst || limited != len(conns)*each-burst {
		t.Fatalf("%d sent and %d rate limited over three nodes, want %d and %d", sent, limited, burst, len(conns)*each-burst)
	}
}

// A node dies mid-traffic: its client reconnects to another node, rejoins
// with since the last id it saw, and misses nothing.
func testNodeKilled(t *testing.T, url string, isCluster bool) {
	nodes := startNodes(t, url, isCluster, 3, clusterOpts{})
	sender := dial(t, nodes[0], "sender")
	sender.join("k", "")
	recv := dial(t, nodes[2], "recv")
	recv.join("k", "")

	const total = 60
	acked := make(chan []string, 1)
	go func() {
		var ids []string
		for k := range total {
			if k == total/3 {
				nodes[2].kill()
			}
			sender.send(map[string]any{"type": "send", "room": "k", "text": strconv.Itoa(k), "ref": "s" + strconv.Itoa(k)})
			for {
				e := sender.next()
				if e.str("type") == "sent" {
					ids = append(ids, e.str("id"))
					break
				}
				if e.str("type") == "error" {
					t.Errorf("send %d: %v", k, e)
					break
				}
			}
		}
		acked <- ids
	}()

	var got []string
	c := recv
	reconnected := false
	for len(got) < total {
		select {
		case e := <-c.events:
			if e.str("type") == "message" {
				got = append(got, e.str("id"))
			}
			continue
		case <-c.done:
		}
		// Drain what arrived before the cut, then reconnect elsewhere.
		for drained := false; !drained; {
			select {
			case e := <-c.events:
				if e.str("type") == "message" {
					got = append(got, e.str("id"))
				}
			default:
				drained = true
			}
		}
		if reconnected {
			t.Fatalf("second disconnect: %v", c.err)
		}
		reconnected = true
		since := "0-0"
		if len(got) > 0 {
			since = got[len(got)-1]
		}
		c = dial(t, nodes[1], "recv")
		j := c.join("k", since)
		// 0-0 is below where the room's history begins: what is retained
		// comes back, but is not vouched for (recovered false).
		if want := since != "0-0"; j["recovered"] != want {
			t.Fatalf("rejoin with since %s: recovered %v, want %v", since, j["recovered"], want)
		}
		hist, _ := j["history"].([]any)
		for _, m := range hist {
			id, _ := m.(map[string]any)["id"].(string)
			got = append(got, id)
		}
	}
	want := <-acked
	if !reconnected {
		t.Fatal("the receiver's node was killed but its connection did not end")
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the receiver saw %d messages that differ from the %d sent:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
}

// Redis stops mid-traffic and comes back: sends fail with unavailable
// while it is down (never a silent drop), the nodes report not ready, and
// afterwards every member has every message that was acknowledged, in
// order, once.
func TestRedisStoppedMidTraffic(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	nodes := startNodes(t, srv.URL(), false, 3, clusterOpts{})
	sender := dial(t, nodes[0], "sender")
	sender.join("r", "")
	var members []*client
	for i, nd := range nodes {
		c := dial(t, nd, "m"+strconv.Itoa(i))
		c.join("r", "")
		members = append(members, c)
	}
	var acked []string
	unavailable := 0
	send := func(k int) {
		sender.send(map[string]any{"type": "send", "room": "r", "text": strconv.Itoa(k), "ref": "s" + strconv.Itoa(k)})
		for {
			e := sender.next()
			switch {
			case e.str("type") == "sent":
				acked = append(acked, e.str("id"))
				return
			case e.str("type") == "error" && e.str("code") == "unavailable":
				unavailable++
				return
			case e.str("type") == "error":
				t.Fatalf("send %d: %v", k, e)
			}
		}
	}
	for k := range 20 {
		send(k)
	}
	srv.Stop()
	for _, nd := range nodes {
		waitFor(t, nd.id+" not ready", func() error {
			if nd.ready() == nil {
				return fmt.Errorf("still ready")
			}
			return nil
		})
	}
	for k := 20; k < 25; k++ {
		send(k)
	}
	if unavailable == 0 {
		t.Fatal("no send answered unavailable while Redis was down")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		nd.waitReady(t)
	}
	for k := 25; k < 45; k++ {
		send(k)
	}
	for i, c := range members {
		got := messagesOf(c, "r", len(acked))
		if strings.Join(got, ",") != strings.Join(acked, ",") {
			t.Fatalf("member on node %d saw\n%v\nwant the acknowledged\n%v", i, got, acked)
		}
	}
}
