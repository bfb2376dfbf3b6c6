package server_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/chatd/chatd/internal/ws"
)

// BenchmarkSendRoundTrip is one send and its sent, through a real
// connection on loopback: the command path of a session.
func BenchmarkSendRoundTrip(b *testing.B) {
	cfg := fastConfig()
	cfg.SendRate, cfg.SendBurst, cfg.UserRate, cfg.UserBurst = 1e9, 1<<20, 1e9, 1<<20
	cfg.CommandRate, cfg.CommandBurst = 1e9, 1<<20
	ts := startServer(b, cfg, serverOpts{quiet: true})
	c := ts.dialWith(b, "alice", dialOpts{header: authHeader(ts.token(b, "alice")), noRead: true})
	readUntil(b, c.conn, `"welcome"`)
	c.sendRaw(`{"type":"join","room":"bench","ref":"j"}`)
	readUntil(b, c.conn, `"joined"`)
	cmd := []byte(`{"type":"send","room":"bench","text":"hello, this is a fairly ordinary chat message","ref":"s"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.conn.WriteMessage(ws.Text, cmd); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c.conn, `"sent"`)
	}
}

// BenchmarkFanoutLoopback is one message to a room of 20 members, each on
// its own loopback connection, until every member has read it.
func BenchmarkFanoutLoopback(b *testing.B) {
	const members = 20
	cfg := fastConfig()
	cfg.SendRate, cfg.SendBurst, cfg.UserRate, cfg.UserBurst = 1e9, 1<<20, 1e9, 1<<20
	ts := startServer(b, cfg, serverOpts{quiet: true})
	var conns []*ws.Conn
	for i := range members {
		user := "u" + strconv.Itoa(i)
		c := ts.dialWith(b, user, dialOpts{header: authHeader(ts.token(b, user)), noRead: true})
		readUntil(b, c.conn, `"welcome"`)
		c.sendRaw(`{"type":"join","room":"bench","ref":"j"}`)
		readUntil(b, c.conn, `"joined"`)
		conns = append(conns, c.conn)
	}
	cmd := []byte(`{"type":"send","room":"bench","text":"hello, this is a fairly ordinary chat message"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := conns[0].WriteMessage(ws.Text, cmd); err != nil {
			b.Fatal(err)
		}
		for _, c := range conns {
			readUntil(b, c, `"message"`)
		}
	}
}

// BenchmarkChurnCycle is the cycle of chatbench's churn scenario, one at
// a time over loopback: connect and upgrade, welcome, join a room nobody
// is in, leave it, close. The allocations are the server's and the
// client's together (the client's are the same from one version of the
// server to the next).
func BenchmarkChurnCycle(b *testing.B) {
	cfg := fastConfig()
	cfg.UpgradeRate, cfg.UpgradeBurst = 1e9, 1<<20
	cfg.Compression = false
	ts := startServer(b, cfg, serverOpts{quiet: true})
	opts := &ws.DialOptions{Header: authHeader(ts.token(b, "alice")), Subprotocols: []string{"chat"}}
	join := []byte(`{"type":"join","room":"churn","ref":"j"}`)
	leave := []byte(`{"type":"leave","room":"churn","ref":"l"}`)
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		c, err := ws.Dial(ctx, ts.URL, opts)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, `"welcome"`)
		if err := c.WriteMessage(ws.Text, join); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, `"joined"`)
		if err := c.WriteMessage(ws.Text, leave); err != nil {
			b.Fatal(err)
		}
		readUntil(b, c, `"left"`)
		if err := c.Close(ws.StatusNormalClosure, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func authHeader(token string) map[string][]string {
	return map[string][]string{"Authorization": {"Bearer " + token}}
}

// readUntil reads messages until one that contains s.
func readUntil(b *testing.B, c *ws.Conn, s string) {
	b.Helper()
	buf := make([]byte, 0, 512)
	for {
		_, data, err := c.ReadMessage(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		if bytes.Contains(data, []byte(s)) {
			return
		}
	}
}
