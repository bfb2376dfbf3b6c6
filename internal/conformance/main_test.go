package conformance_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
)

// secret is the HS256 secret every node is configured with (at least 32
// bytes, as chatd requires).
const secret = "conformance-secret-0123456789-abcdefghij"

// wait bounds every wait for something chatd should do; generous, because
// -race on two loaded cores is slow. quiet is how long a check waits to
// see that something does not happen.
const (
	wait  = 10 * time.Second
	quiet = 400 * time.Millisecond
)

// baseFlags are given to every node. The limits of admission and rate are
// raised far above what the checks do, so that a check is refused only
// where it asks to be; the checks of those limits start nodes of their own
// with the defaults. Every other setting is chatd's default.
var baseFlags = []string{
	"-upgrade-rate", "100000", "-upgrade-burst", "100000",
	"-send-rate", "100000", "-send-burst", "100000",
	"-user-rate", "100000", "-user-burst", "100000",
	"-command-rate", "100000", "-command-burst", "100000",
}

// findingsEnv makes the checks that show a finding run.
const findingsEnv = "CHATD_CONFORMANCE_FINDINGS"

// finding skips t unless CHATD_CONFORMANCE_FINDINGS=1: the check that
// follows shows chatd disagreeing with the contract, as what says.
func finding(t *testing.T, what string) {
	t.Helper()
	if os.Getenv(findingsEnv) != "1" {
		t.Skipf("finding: %s (run with %s=1 to reproduce)", what, findingsEnv)
	}
	t.Logf("finding under check: %s", what)
}

// state is what the test binary shares between tests: the chatd binary,
// the base nodes of both topologies, and the Redis server. Each is started
// once, by the first test that needs it, and stopped by TestMain.
var state struct {
	mu     sync.Mutex
	bin    string
	binErr error
	tmp    string
	single *topology
	redis  *topology
	rs     *redistest.Server
	nodes  []*node // every node started, stopped at the end
}

// parallel is how many checks run at once unless -parallel says otherwise:
// they spend most of their time waiting for chatd's timers (heartbeats,
// expiry, drains, the presence TTL), not on a CPU, so more of them than
// GOMAXPROCS keeps the package short on a small machine.
const parallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set && runtime.GOMAXPROCS(0) < parallel {
		_ = flag.Set("test.parallel", strconv.Itoa(parallel))
	}
	code := m.Run()
	state.mu.Lock()
	nodes := state.nodes
	state.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
	if state.rs != nil {
		state.rs.Close()
	}
	if state.tmp != "" {
		_ = os.RemoveAll(state.tmp)
	}
	os.Exit(code)
}

// chatdBinary builds cmd/chatd once into a temporary directory.
func chatdBinary(t testing.TB) string {
	t.Helper()
	dir := tempDir(t)
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.bin == "" && state.binErr == nil {
		state.bin, state.binErr = build(dir)
	}
	if state.binErr != nil {
		t.Fatal(state.binErr)
	}
	return state.bin
}

// tempDir is the package's temporary directory, removed by TestMain.
func tempDir(t testing.TB) string {
	t.Helper()
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.tmp == "" {
		dir, err := os.MkdirTemp("", "chatd-conformance-")
		if err != nil {
			t.Fatal(err)
		}
		state.tmp = dir
	}
	return state.tmp
}

func build(dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "chatd")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/chatd/chatd/cmd/chatd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build chatd: %v\n%s", err, out)
	}
	return bin, nil
}

// node is one chatd process.
type node struct {
	id     string
	addr   string // 127.0.0.1:port
	flags  []string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *logBuffer

	stopOnce sync.Once
}

var nodeSeq atomic.Int64

// startNode starts chatd with the base flags, then flags, on a free
// loopback port, and returns once it listens.
func startNode(t testing.TB, flags ...string) *node {
	t.Helper()
	bin := chatdBinary(t)
	n := &node{
		id:     fmt.Sprintf("conf-%d", nodeSeq.Add(1)),
		log:    &logBuffer{},
		exited: make(chan struct{}),
	}
	args := []string{"-addr", "127.0.0.1:0", "-log-format", "json", "-node-id", n.id}
	args = append(args, baseFlags...)
	args = append(args, flags...)
	n.flags = args
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = environWithout("CHATD_")
	if !slices.Contains(flags, "-jwt-public-key") {
		n.cmd.Env = append(n.cmd.Env, "CHATD_JWT_SECRET="+secret)
	}
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	n.cmd.Stdout = n.log
	n.cmd.Stderr = io.MultiWriter(n.log, pw)
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start chatd: %v", err)
	}
	state.mu.Lock()
	state.nodes = append(state.nodes, n)
	state.mu.Unlock()
	go func() {
		_ = n.cmd.Wait()
		_ = pw.Close()
		close(n.exited)
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			if found {
				continue // keep draining the pipe
			}
			var line struct {
				Addr    string `json:"addr"`
				Message string `json:"message"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Message, "chatd listening") && line.Addr != "" {
				found = true
				addr <- line.Addr
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addr:
		n.addr = a
	case <-n.exited:
		t.Fatalf("chatd %v exited at start:\n%s", args, n.log.String())
	case <-time.After(wait):
		n.stop()
		t.Fatalf("chatd %v did not listen within %v:\n%s", args, wait, n.log.String())
	}
	if err := n.waitReady(); err != nil {
		n.stop()
		t.Fatalf("chatd %v: %v\n%s", args, err, n.log.String())
	}
	return n
}

// startTestNode is startNode for a node that lives as long as t.
func startTestNode(t testing.TB, flags ...string) *node {
	t.Helper()
	n := startNode(t, flags...)
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("log of node %s:\n%s", n.id, tail(n.log.String(), 4000))
		}
	})
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitReady polls /readyz until it answers 200.
func (n *node) waitReady() error {
	deadline := time.Now().Add(wait)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + n.addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %v: %s", wait, last)
}

// url is the node's WebSocket endpoint.
func (n *node) url() string { return "ws://" + n.addr + "/ws" }

// signal sends sig to the node's process, by its PID.
func (n *node) signal(sig syscall.Signal) {
	select {
	case <-n.exited:
	default:
		_ = syscall.Kill(n.cmd.Process.Pid, sig)
	}
}

// stop ends the node: SIGTERM by its PID, SIGKILL if it has not exited
// within the drain timeout.
func (n *node) stop() {
	n.stopOnce.Do(func() {
		n.signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.exited
		}
	})
}

// exitCode waits for the process to end and returns its exit status.
func (n *node) exitCode(d time.Duration) (int, error) {
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode(), nil
	case <-time.After(d):
		return -1, errors.New("still running")
	}
}

func environWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// logBuffer collects a process's output, safely for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 4<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// topology is a chatd service as clients see it: node a and node b. With
// one node they are the same node; with two, they share one Redis, and a
// check that puts one member on a and another on b checks both nodes.
type topology struct {
	name     string
	a, b     *node
	redisURL string // empty for the in-memory broker
}

// clustered reports whether a and b are different nodes.
func (tp *topology) clustered() bool { return tp.a != tp.b }

// each returns the topology's distinct nodes.
func (tp *topology) each() []*node {
	if tp.clustered() {
		return []*node{tp.a, tp.b}
	}
	return []*node{tp.a}
}

// nodes starts a topology of its own, with flags beside the base flags,
// for a check that needs another setting or that stops a node. It lives as
// long as t.
func (tp *topology) nodes(t *testing.T, flags ...string) *topology {
	t.Helper()
	if !tp.clustered() {
		n := startTestNode(t, flags...)
		return &topology{name: tp.name, a: n, b: n}
	}
	f := append([]string{"-redis", tp.redisURL}, flags...)
	return &topology{name: tp.name, a: startTestNode(t, f...), b: startTestNode(t, f...), redisURL: tp.redisURL}
}

// topoMu serialises the start of the shared topologies.
var topoMu sync.Mutex

func singleTopology(t *testing.T) *topology {
	t.Helper()
	topoMu.Lock()
	defer topoMu.Unlock()
	if state.single == nil {
		n := startNode(t)
		state.single = &topology{name: "single", a: n, b: n}
	}
	return state.single
}

func redisTopology(t *testing.T) *topology {
	t.Helper()
	redistest.Require(t, "redis-server")
	topoMu.Lock()
	defer topoMu.Unlock()
	if state.redis != nil {
		return state.redis
	}
	if state.rs == nil {
		dir := filepath.Join(tempDir(t), "redis")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		rs, err := redistest.StartProcess(dir)
		if err != nil {
			t.Fatal(err)
		}
		state.rs = rs
	}
	url := state.rs.URL()
	a := startNode(t, "-redis", url)
	b := startNode(t, "-redis", url)
	state.redis = &topology{name: "redis", a: a, b: b, redisURL: url}
	return state.redis
}

// forEach runs check in both topologies, as the subtests single and redis.
func forEach(t *testing.T, check func(t *testing.T, tp *topology)) {
	t.Helper()
	t.Run("single", func(t *testing.T) { check(t, singleTopology(t)) })
	t.Run("redis", func(t *testing.T) { check(t, redisTopology(t)) })
}
