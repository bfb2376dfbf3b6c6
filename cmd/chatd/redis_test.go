package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
	"github.com/chatd/chatd/internal/ws"
)

func TestRedisSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in the error; "" for valid
	}{
		{"standalone", []string{"-redis", "redis://127.0.0.1:6379/0"}, ""},
		{"tls", []string{"-redis", "rediss://user:pw@127.0.0.1:6380"}, ""},
		{"cluster URL", []string{"-redis", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"}, ""},
		{"cluster flag", []string{"-redis", "redis://127.0.0.1:7000", "-redis-cluster"}, ""},
		{"bad scheme", []string{"-redis", "http://127.0.0.1:6379"}, "-redis (CHATD_REDIS_URL)"},
		{"cluster without hosts", []string{"-redis", "redis+cluster://"}, "no host"},
		{"cluster flag without URL", []string{"-redis-cluster"}, "needs a Redis URL"},
		{"cluster with a database", []string{"-redis", "redis://127.0.0.1:7000/3", "-redis-cluster"}, "no database"},
		{"node id with a brace", []string{"-node-id", "a{b}"}, "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, env{}.get, io.Discard)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("%v: %v", tt.args, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("%v: error %v, want one saying %q", tt.args, err, tt.want)
			case err != nil && strings.Contains(err.Error(), "pw"):
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func TestDefaultNodeIDsDiffer(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 20 {
		seen[defaultNodeID()] = true
	}
	if len(seen) < 15 {
		t.Fatalf("20 default node ids gave %d distinct ones", len(seen))
	}
}

// TestBinaryWithRedis runs two chatd binaries on one Redis: a message sent
// on one node reaches a member on the other; with Redis stopped, both
// nodes keep serving, report not ready and answer send with unavailable;
// once it is back they are ready again and carry messages again.
func TestBinaryWithRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	env := []string{"CHATD_JWT_SECRET=" + testSecret, "CHATD_REDIS_URL=" + srv.URL(), "CHATD_HEARTBEAT=5s"}
	a := startChatd(t, append(env, "CHATD_NODE_ID=node-a")...)
	b := startChatd(t, append(env, "CHATD_NODE_ID=node-b")...)
	if a.listening["broker"] != "redis" {
		t.Errorf("listening log %v, want broker redis", a.listening)
	}
	ready := func(p *proc) int {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitStatus := func(p *proc, want int) {
		t.Helper()
		deadline := time.Now().Add(e2eTimeout)
		for ready(p) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz never answered %d", p.addr, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus(a, http.StatusOK)
	waitStatus(b, http.StatusOK)

	ctx, cancel := context.WithTimeout(context.Background(), 2*e2eTimeout)
	defer cancel()
	dial := func(p *proc, user string) *ws.Conn {
		tok := tokenFromBinary(t, env, "--sub", user, "--ttl", "1h")
		c, err := ws.Dial(ctx, "ws://"+p.addr+"/ws", &ws.DialOptions{Subprotocols: []string{"chat", "access_token." + tok}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		expectEvent(t, c, "welcome")
		if err := c.WriteMessage(ws.Text, []byte(`{"type":"join","room":"lobby"}`)); err != nil {
			t.Fatal(err)
		}
		expectEvent(t, c, "joined")
		return c
	}
	ca := dial(a, "alice")
	cb := dial(b, "bob")
	for {
		p := expectEvent(t, ca, "presence")
		if p["user"] == "alice" {
			continue // her own join
		}
		if p["user"] != "bob" || p["state"] != "join" {
			t.Errorf("alice on node-a saw %v, want bob's join from node-b", p)
		}
		break
	}
	if err := ca.WriteMessage(ws.Text, []byte(`{"type":"send","room":"lobby","text":"across","ref":"s1"}`)); err != nil {
		t.Fatal(err)
	}
	if m := expectEvent(t, cb, "message"); m["text"] != "across" || m["from"] != "alice" {
		t.Fatalf("bob on node-b got %v", m)
	}

	srv.Stop()
	waitStatus(a, http.StatusServiceUnavailable)
	waitStatus(b, http.StatusServiceUnavailable)
	if err := ca.WriteMessage(ws.Text, []byte(`{"type":"send","room":"lobby","text":"lost?","ref":"s2"}`)); err != nil {
		t.Fatal(err)
	}
	if e := expectEvent(t, ca, "error"); e["code"] != "unavailable" || e["ref"] != "s2" {
		t.Fatalf("send with Redis down: %v, want error unavailable", e)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitStatus(a, http.StatusOK)
	waitStatus(b, http.StatusOK)
	if err := cb.WriteMessage(ws.Text, []byte(`{"type":"send","room":"lobby","text":"back","ref":"s3"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		m := expectEvent(t, ca, "message")
		if m["text"] == "across" {
			continue // her own, from before
		}
		if m["text"] != "back" || m["from"] != "bob" {
			t.Fatalf("after Redis came back, alice got %v", m)
		}
		break
	}
}
