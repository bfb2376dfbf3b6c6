package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/server"
)

// testSecret is the HS256 secret of the test servers (32 bytes).
const testSecret = "chatbench-test-secret-0123456789"

// noEnv is a getenv that sees no environment, so that a CHATD_JWT_SECRET
// set where the tests run cannot change them.
func noEnv(string) string { return "" }

// loadConfig is a chatd configuration for load runs: every rate limit far
// above what the tests send, as docs/chatbench.md tells operators to do.
func loadConfig() server.Config {
	return server.Config{
		NodeID:       "bench-test",
		Compression:  true,
		SendRate:     1e6,
		SendBurst:    1e6,
		UserRate:     1e6,
		UserBurst:    1e6,
		CommandRate:  1e6,
		CommandBurst: 1e6,
		UpgradeRate:  1e6,
		UpgradeBurst: 1e6,
		DrainWindow:  100 * time.Millisecond,
		DrainTimeout: 5 * time.Second,
	}
}

// testNode is a chatd node running in the test process on 127.0.0.1,
// wired as cmd/chatd wires it.
type testNode struct {
	URL      string // ws://127.0.0.1:port/ws
	TokenURL string // http://127.0.0.1:port/api/dev/token
	srv      *server.Server
	broker   *hub.MemoryBroker
	ln       *recordingListener
	stop     func() // drains the node and waits for it; idempotent
}

// startNode runs a node with cfg until the test ends; with no secret in
// cfg.Auth it is in dev mode, else cfg.Auth.Secret is testSecret.
func startNode(t *testing.T, cfg server.Config, devMode bool) *testNode {
	t.Helper()
	if !devMode {
		cfg.Auth.Secret = []byte(testSecret)
	}
	logger := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	broker := hub.NewMemoryBroker(hub.RetentionConfig{})
	srv, err := server.New(cfg, server.Deps{Broker: broker, Logger: logger})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &recordingListener{Listener: inner, sources: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, "", "") }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("the server did not stop within 30s")
			}
			broker.Close()
		})
	}
	t.Cleanup(stop)
	addr := inner.Addr().String()
	return &testNode{URL: "ws://" + addr + "/ws", TokenURL: "http://" + addr + "/api/dev/token", srv: srv, broker: broker, ln: ln, stop: stop}
}

// waitFor polls cond until it holds, failing the test after a generous
// timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordingListener counts accepted connections by source address, to
// check that chatbench spreads them over 127.0.0.x.
type recordingListener struct {
	net.Listener
	mu      sync.Mutex
	sources map[string]int
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			l.mu.Lock()
			l.sources[a.IP.String()]++
			l.mu.Unlock()
		}
	}
	return c, err
}

func (n *testNode) sources() map[string]int {
	n.ln.mu.Lock()
	defer n.ln.mu.Unlock()
	out := make(map[string]int, len(n.ln.sources))
	for k, v := range n.ln.sources {
		out[k] = v
	}
	return out
}

// runOutput is one run of chatbench in the test process.
type runOutput struct {
	code   int
	stdout string
	stderr string
	res    *result        // decoded -json output, when asked for
	raw    map[string]any // the same, untyped, to check the JSON names
}

// runBench runs chatbench with args (the scenario first), bounded by a
// generous timeout.
func runBench(t *testing.T, args ...string) runOutput {
	t.Helper()
	return runBenchCtx(t, context.Background(), args...)
}

// runBenchCtx is runBench with a context the test may cancel.
func runBenchCtx(t *testing.T, ctx context.Context, args ...string) runOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, noEnv, &stdout, &stderr)
	out := runOutput{code: code, stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("chatbench %s: exit %d\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), code, out.stderr, out.stdout)
	for _, a := range args {
		if a == "-json" && code != 2 {
			out.res = &result{}
			if err := json.Unmarshal(stdout.Bytes(), out.res); err != nil {
				t.Fatalf("-json output does not decode: %v", err)
			}
			if err := json.Unmarshal(stdout.Bytes(), &out.raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// checkLatency checks that a latency summary is ordered and positive.
func checkLatency(t *testing.T, what string, l latency, wantCount uint64) {
	t.Helper()
	if l.Count != wantCount {
		t.Errorf("%s latency count %d, want %d", what, l.Count, wantCount)
	}
	if wantCount == 0 {
		return
	}
	if !(0 < l.MinMS && l.MinMS <= l.P50MS && l.P50MS <= l.P90MS && l.P90MS <= l.P99MS && l.P99MS <= l.P999MS && l.P999MS <= l.MaxMS) {
		t.Errorf("%s latency not ordered: %+v", what, l)
	}
	if l.MeanMS < l.MinMS || l.MeanMS > l.MaxMS {
		t.Errorf("%s latency mean %v outside [min, max]: %+v", what, l.MeanMS, l)
	}
}
