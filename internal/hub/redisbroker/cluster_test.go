package redisbroker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/hub/brokertest"
	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/protocol"
)

// nodes makes n brokers on one Redis (one cluster of chatd nodes), each
// with its own recorder.
func nodes(t *testing.T, url string, isCluster bool, n int, tweak func(*Config)) ([]*Broker, []*brokertest.Recorder) {
	t.Helper()
	prefix := redistest.Prefix(t)
	var bs []*Broker
	var recs []*brokertest.Recorder
	for i := range n {
		cfg := testConfig(t, "node-"+strconv.Itoa(i), prefix)
		if tweak != nil {
			tweak(&cfg)
		}
		b := newBroker(t, client(t, url, isCluster), cfg)
		rec := brokertest.NewRecorder()
		b.SetHandler(rec)
		bs = append(bs, b)
		recs = append(recs, rec)
	}
	return bs, recs
}

// expectSequence reads n messages from rec and checks they are the ids
// of want, in that order.
func expectSequence(t *testing.T, rec *brokertest.Recorder, want []string) {
	t.Helper()
	for i, id := range want {
		m := rec.Next(t)
		if m.ID != id {
			t.Fatalf("delivery %d: id %s (%q), want %s", i, m.ID, m.Text, id)
		}
	}
	select {
	case m := <-rec.Msgs:
		t.Fatalf("extra delivery %s (%q): a duplicate", m.ID, m.Text)
	default:
	}
}

// Every node delivers the same messages in the same order, whichever
// node published them; cid de-duplication and presence span the nodes.
func TestCrossNode(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name    string
		url     func(*testing.T) string
		cluster bool
	}{
		{"standalone", func(t *testing.T) string { return standalone(t).URL() }, false},
		{"cluster", func(t *testing.T) string { return cluster(t).URL() }, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			bs, recs := nodes(t, mode.url(t), mode.cluster, 3, nil)
			ctx := bg(t)
			rooms := []string{"r1", "r2", "r3", "r4"}
			for _, b := range bs {
				for _, r := range rooms {
					if err := b.Subscribe(ctx, r); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Concurrent senders on every node, in every room.
			var mu sync.Mutex
			var order []string // ids in the order the publish calls returned, per room below
			byRoom := map[string][]protocol.Message{}
			var wg sync.WaitGroup
			for i, b := range bs {
				for _, r := range rooms {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := range 15 {
							m := brokertest.Publish(t, b, r, "u"+strconv.Itoa(i), fmt.Sprintf("n%d-%d", i, j), "")
							mu.Lock()
							order = append(order, m.ID)
							byRoom[r] = append(byRoom[r], m)
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
			total := len(order)
			var first []string
			for n, rec := range recs {
				var got []string
				last := map[string]protocol.ID{}
				for range total {
					m := rec.Next(t)
					id, _ := protocol.ParseID(m.ID)
					if id.Compare(last[m.Room]) <= 0 {
						t.Fatalf("node %d: %s delivered %s after %s", n, m.Room, m.ID, last[m.Room])
					}
					last[m.Room] = id
					got = append(got, m.Room+"/"+m.ID)
				}
				// Per room, every node saw the same sequence.
				seqs := perRoom(got)
				if n == 0 {
					first = got
					continue
				}
				want := perRoom(first)
				for _, r := range rooms {
					if strings.Join(seqs[r], ",") != strings.Join(want[r], ",") {
						t.Fatalf("node %d saw room %s in another order than node 0", n, r)
					}
				}
			}

			// A retry of a send lands on another node: the original comes back.
			orig := brokertest.Publish(t, bs[0], "r1", "ann", "once", "cid-1")
			retry, dup, err := bs[2].Publish(ctx, protocol.Message{Room: "r1", From: "ann", Text: "once", CID: "cid-1"})
			if err != nil || !dup || retry.ID != orig.ID {
				t.Fatalf("retry on another node: %+v dup=%v err=%v, want the original %s", retry, dup, err, orig.ID)
			}
			for _, rec := range recs {
				if m := rec.Next(t); m.ID != orig.ID {
					t.Fatalf("delivered %s, want %s once", m.ID, orig.ID)
				}
			}

			// Presence: first join anywhere, last leave everywhere.
			steps := []struct {
				node  int
				add   bool
				want  bool
				count int
			}{
				{0, true, true, 1},   // ann's first connection: join
				{1, true, false, 1},  // ann on another node: not a join
				{0, false, false, 1}, // one node left: not a leave
				{1, false, true, 0},  // the last: leave
			}
			for i, s := range steps {
				var got bool
				if s.add {
					got, err = bs[s.node].AddMember(ctx, "p", protocol.Member{User: "ann", Name: "Ann"})
				} else {
					got, err = bs[s.node].RemoveMember(ctx, "p", "ann")
				}
				if err != nil || got != s.want {
					t.Fatalf("presence step %d: %v, %v; want %v", i, got, err, s.want)
				}
				ms, err := bs[2].Members(ctx, "p")
				if err != nil || len(ms) != s.count {
					t.Fatalf("presence step %d: members seen by node 2 %v, %v; want %d", i, ms, err, s.count)
				}
			}
		})
	}
}

func perRoom(seq []string) map[string][]string {
	out := map[string][]string{}
	for _, s := range seq {
		r, id, _ := strings.Cut(s, "/")
		out[r] = append(out[r], id)
	}
	return out
}

// A node that dies without a word stops counting after the presence TTL,
// and a surviving node announces its users' leave.
func TestDeadNodePresence(t *testing.T) {
	t.Parallel()
	bs, recs := nodes(t, standalone(t).URL(), false, 2, func(c *Config) { c.PresenceTTL = 900 * time.Millisecond })
	ctx := bg(t)
	if err := bs[1].Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[0].AddMember(ctx, "room", protocol.Member{User: "ann", Name: "Ann"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bs[1].AddMember(ctx, "room", protocol.Member{User: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	// Heartbeats keep both present well past the TTL.
	time.Sleep(2 * time.Second)
	if ms, _ := bs[1].Members(ctx, "room"); len(ms) != 2 {
		t.Fatalf("members while both nodes live: %v", ms)
	}
	bs[0].abandon()
	ev := recs[1].NextEvent(t)
	if ev.Kind != hub.EventPresence || ev.User != "ann" || ev.Name != "Ann" || ev.State != protocol.PresenceLeave {
		t.Fatalf("after node 0 died: %+v, want ann's leave", ev)
	}
	ms, err := bs[1].Members(ctx, "room")
	if err != nil || len(ms) != 1 || ms[0].User != "bob" {
		t.Fatalf("members after node 0 died: %v, %v", ms, err)
	}
}

// Killing the pub/sub connections repeatedly while messages flow: after
// each reconnect the node catches up from the stream, so it delivers
// every message once, in order.
func TestPubSubReconnectCatchUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // its own: the test kills every subscriber's connection
	bs, recs := nodes(t, srv.URL(), false, 2, nil)
	ctx := bg(t)
	if err := bs[1].Subscribe(ctx, "flow"); err != nil {
		t.Fatal(err)
	}
	const total = 300
	ids := make([]string, 0, total)
	kills := 0
	for i := range total {
		if i%50 == 25 {
			// Only pub/sub connections: node 0's publishes keep working,
			// and what they publish while node 1 reconnects is in the
			// stream only.
			if _, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
				t.Fatal(err)
			}
			kills++
		}
		ids = append(ids, brokertest.Publish(t, bs[0], "flow", "ann", strconv.Itoa(i), "").ID)
	}
	expectSequence(t, recs[1], ids)
	if kills == 0 || bs[1].stats.reconnects.Load() == 0 {
		t.Fatalf("kills %d, reconnects %d: the test did not disturb the subscription", kills, bs[1].stats.reconnects.Load())
	}
	t.Logf("%d kills, %d reconnects, %d messages caught up from the stream, %d duplicates dropped",
		kills, bs[1].stats.reconnects.Load(), bs[1].stats.caughtUp.Load(), bs[1].stats.duplicates.Load())
}

// Redis stopped and started again: while it is down the broker is not
// ready and publishing fails with ErrUnavailable; once it is back the
// subscription comes back and nothing is lost or repeated.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	bs, recs := nodes(t, srv.URL(), false, 2, nil)
	ctx := bg(t)
	if err := bs[1].Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, brokertest.Publish(t, bs[0], "room", "ann", "before"+strconv.Itoa(i), "").ID)
	}
	srv.Stop()
	waitFor(t, 15*time.Second, "not ready with Redis down", func() error {
		if bs[1].Ready(ctx) == nil {
			return errors.New("still ready")
		}
		return nil
	})
	_, _, err := bs[0].Publish(ctx, protocol.Message{Room: "room", From: "ann", Text: "while down"})
	if !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("publish with Redis down: %v, want ErrUnavailable", err)
	}
	if err := bs[1].Subscribe(ctx, "other"); !errors.Is(err, hub.ErrUnavailable) {
		t.Fatalf("subscribe with Redis down: %v, want ErrUnavailable", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, bs[1])
	waitReady(t, bs[0])
	for i := range 5 {
		ids = append(ids, brokertest.Publish(t, bs[0], "room", "ann", "after"+strconv.Itoa(i), "").ID)
	}
	expectSequence(t, recs[1], ids)
}

// A pub/sub connection that stays up but stops delivering is found by its
// probes, reported by Ready, replaced, and the gap is caught up.
func TestStalledSubscription(t *testing.T) {
	t.Parallel()
	srv := standalone(t)
	proxy := newFreezeProxy(t, srv.Addr())
	prefix := redistest.Prefix(t)
	pub := newBroker(t, client(t, srv.URL(), false), testConfig(t, "pub", prefix))
	sub := newBroker(t, client(t, "redis://"+proxy.addr, false), testConfig(t, "sub", prefix))
	rec := brokertest.NewRecorder()
	sub.SetHandler(rec)
	ctx := bg(t)
	if err := sub.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	waitReady(t, sub)
	ids := []string{brokertest.Publish(t, pub, "room", "ann", "before", "").ID}
	expectSequence(t, rec, ids)

	proxy.freezeSubscribers()
	for i := range 5 {
		ids = append(ids, brokertest.Publish(t, pub, "room", "ann", "during"+strconv.Itoa(i), "").ID)
	}
	waitFor(t, 15*time.Second, "stall reported", func() error {
		if sub.stats.stalls.Load() > 0 {
			return nil
		}
		if err := sub.Ready(ctx); err != nil && strings.Contains(err.Error(), "stalled") {
			return nil
		}
		return errors.New("no stall seen")
	})
	waitReady(t, sub)
	expectSequence(t, rec, ids[1:])
	ids = append(ids, brokertest.Publish(t, pub, "room", "ann", "after", "").ID)
	expectSequence(t, rec, ids[len(ids)-1:])
}

// freezeProxy forwards TCP to Redis; it can stop passing Redis's bytes to
// the connections that subscribed, which then look up but deliver nothing.
type freezeProxy struct {
	addr string
	mu   sync.Mutex
	subs []*proxied
}

type proxied struct {
	frozen     chan struct{}
	once       sync.Once
	subscriber bool
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	var open []net.Conn
	var openMu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		openMu.Lock()
		for _, c := range open {
			c.Close()
		}
		openMu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			openMu.Lock()
			open = append(open, c, up)
			openMu.Unlock()
			pc := &proxied{frozen: make(chan struct{})}
			conns.Add(2)
			go func() { // client → Redis; notes a SUBSCRIBE
				defer conns.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if strings.Contains(strings.ToLower(string(buf[:n])), "subscribe") {
							p.mu.Lock()
							if !pc.subscriber {
								pc.subscriber = true
								p.subs = append(p.subs, pc)
							}
							p.mu.Unlock()
						}
						if _, werr := up.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						up.Close()
						return
					}
				}
			}()
			go func() { // Redis → client, until frozen
				defer conns.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					select {
					case <-pc.frozen:
						// Hold the connection open and silent.
						_, _ = io.Copy(io.Discard, up)
						return
					default:
					}
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

// freezeSubscribers silences every connection that has subscribed so far.
func (p *freezeProxy) freezeSubscribers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.subs {
		pc.once.Do(func() { close(pc.frozen) })
	}
	p.subs = nil
}
