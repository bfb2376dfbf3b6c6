package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// TestClusterScript runs scripts/cluster.sh (redis-server, three chatd
// nodes and HAProxy on loopback), sends messages through the balancer
// between clients that landed on different nodes, then stops one node and
// checks that its clients reconnect through the balancer to the others and
// recover every message, with no gap and no duplicate.
func TestClusterScript(t *testing.T) {
	for _, p := range []string{"redis-server", "redis-cli", "haproxy", "curl", "go"} {
		requireBinary(t, p)
	}
	cl := startClusterScript(t)
	secret := envFileValue(t, "chatd.env", "CHATD_JWT_SECRET")

	const users = 6
	clients := make([]*chatClient, users)
	for i := range clients {
		c := &chatClient{t: t, user: "user" + strconv.Itoa(i), url: "ws://" + cl.lbAddr + "/ws"}
		c.token = mintToken(t, secret, c.user)
		c.connect("")
		clients[i] = c
	}
	nodes := map[string][]*chatClient{}
	for _, c := range clients {
		nodes[c.node] = append(nodes[c.node], c)
	}
	if len(nodes) < 2 {
		t.Fatalf("the balancer put every client on one node (%v); want them spread", keys(nodes))
	}
	t.Logf("clients per node: %v", countPerNode(nodes))

	sent := 0
	for _, c := range clients {
		c.send(fmt.Sprintf("hello from %s", c.user))
		sent++
	}
	for _, c := range clients {
		c.waitCount(sent)
	}
	assertSameLog(t, clients)

	// Stop the node with the most clients, while the others keep talking.
	victim := ""
	for node, cs := range nodes {
		if victim == "" || len(cs) > len(nodes[victim]) {
			victim = node
		}
	}
	pid := cl.pids[victim]
	if pid == 0 {
		t.Fatalf("no pid for node %q in %v", victim, cl.pids)
	}
	t.Logf("stopping %s (pid %d) with %d clients", victim, pid, len(nodes[victim]))
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var survivors []*chatClient
	for _, c := range clients {
		if c.node != victim {
			survivors = append(survivors, c)
		}
	}
	for round := 0; round < 3; round++ {
		for _, c := range survivors {
			c.send(fmt.Sprintf("while %s drains: %s #%d", victim, c.user, round))
			sent++
		}
	}
	for _, c := range nodes[victim] {
		code := c.waitClosed()
		if code != ws.StatusGoingAway {
			t.Errorf("%s: closed with %d, want 1001", c.user, code)
		}
		if !c.sawDraining() {
			t.Errorf("%s: no draining event before the close", c.user)
		}
		c.connect(c.lastID())
		if c.node == victim {
			t.Errorf("%s: reconnected to the stopped node %s", c.user, victim)
		}
	}
	for _, c := range nodes[victim] {
		c.send("back from " + c.user)
		sent++
	}
	for _, c := range clients {
		c.waitCount(sent)
	}
	assertSameLog(t, clients)
}

type cluster struct {
	lbAddr string
	pids   map[string]int // name (redis, chatd1…, haproxy) to pid
}

// startClusterScript runs scripts/cluster.sh on free ports and waits until
// it says it is ready; the script (and with it every process) is stopped
// when the test ends.
func startClusterScript(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	lb, tlsPort, redisPort := freePort(t), freePort(t), freePort(t)
	nodeBase := freePortRun(t, 3)
	cmd := exec.Command("bash", "scripts/cluster.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(),
		"LB_PORT="+strconv.Itoa(lb), "LB_TLS_PORT="+strconv.Itoa(tlsPort),
		"NODE_PORT_BASE="+strconv.Itoa(nodeBase), "REDIS_PORT="+strconv.Itoa(redisPort),
		"CLUSTER_DIR="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan struct{})
	var out strings.Builder
	var outMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			outMu.Lock()
			out.WriteString(sc.Text() + "\n")
			outMu.Unlock()
			if strings.HasPrefix(sc.Text(), "cluster: ready") {
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	logs := func() string {
		outMu.Lock()
		defer outMu.Unlock()
		var b strings.Builder
		b.WriteString(out.String() + stderr.String())
		for _, name := range []string{"chatd1", "chatd2", "chatd3", "haproxy", "redis"} {
			data, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			fmt.Fprintf(&b, "--- %s.log (last 3000 bytes)\n%s\n", name, tail(string(data), 3000))
		}
		return b.String()
	}
	t.Cleanup(func() {
		// The script's trap drains the chatd nodes, then stops HAProxy
		// and Redis.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("cluster.sh did not stop within 60 s of SIGTERM\n%s", logs())
		}
		if t.Failed() {
			t.Logf("cluster output and logs:\n%s", logs())
		}
	})
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("cluster.sh exited before it was ready: %v\n%s", err, logs())
	case <-time.After(3 * time.Minute):
		t.Fatalf("cluster.sh not ready within 3 minutes\n%s", logs())
	}
	cl := &cluster{lbAddr: "127.0.0.1:" + strconv.Itoa(lb), pids: map[string]int{}}
	data, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, pid, ok := strings.Cut(line, " ")
		if n, err := strconv.Atoi(pid); ok && err == nil {
			cl.pids[name] = n
		}
	}
	// The script is ready when the balancer answers; wait until it sees
	// every node, so that connections spread over them.
	deadline := time.Now().Add(30 * time.Second)
	for _, node := range []string{"chatd1", "chatd2", "chatd3"} {
		addr := "127.0.0.1:" + strconv.Itoa(nodeBase+int(node[5]-'1'))
		for {
			status := httpStatus("http://" + addr + "/readyz")
			if status == "200 OK" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s at %s not ready: %s\n%s", node, addr, status, logs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// HAProxy marks a server up after two good checks a second apart.
	time.Sleep(2500 * time.Millisecond)
	return cl
}

// httpStatus returns the status line of a GET, or the error.
func httpStatus(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.Status
	}
	return resp.Status + ": " + string(body)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePortRun finds n consecutive free ports (the script numbers its nodes
// from one base port).
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := freePort(t)
		var lns []net.Listener
		ok := true
		for i := 0; i < n; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no run of %d free ports", n)
	return 0
}

// envFileValue reads KEY=value from an env file.
func envFileValue(t *testing.T, path, key string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			return v
		}
	}
	t.Fatalf("%s has no %s", path, key)
	return ""
}

// mintToken signs a token with the chatd binary's own token command.
func mintToken(t *testing.T, secret, user string) string {
	t.Helper()
	cmd := exec.Command(chatdBinary(t), "token", "--sub", user, "--name", strings.ToUpper(user[:1])+user[1:], "--ttl", "1h")
	cmd.Env = append(os.Environ(), "CHATD_JWT_SECRET="+secret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chatd token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

const room = "deploy-test"

// chatClient is a protocol client that reconnects and rejoins with since.
type chatClient struct {
	t     *testing.T
	user  string
	token string
	url   string
	node  string

	mu       sync.Mutex
	conn     *ws.Conn
	ids      []string // message ids seen in the room, in order
	seen     map[string]bool
	draining bool
	closed   chan ws.StatusCode
	changed  chan struct{} // pinged whenever ids grows
}

// connect dials through the balancer (retrying while a node is going
// away), joins the room with since, and starts reading.
func (c *chatClient) connect(since string) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var conn *ws.Conn
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		conn, err = ws.Dial(ctx, c.url, &ws.DialOptions{
			Subprotocols: []string{"chat"},
			Header:       http.Header{"Authorization": {"Bearer " + c.token}},
		})
		cancel()
		if err == nil {
			welcome, err := readJSON(conn)
			if err == nil && welcome["type"] == "welcome" {
				c.node, _ = welcome["node"].(string)
				break
			}
			conn.CloseNow()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: could not connect through the balancer: %v", c.user, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	join := map[string]any{"type": "join", "room": room, "ref": "j"}
	if since != "" {
		join["since"] = since
	}
	writeJSON(c.t, conn, join)
	var joined map[string]any
	for {
		m, err := readJSON(conn)
		if err != nil {
			c.t.Fatalf("%s: join: %v", c.user, err)
		}
		if m["type"] == "joined" {
			joined = m
			break
		}
		if m["type"] == "error" {
			c.t.Fatalf("%s: join refused: %v", c.user, m)
		}
	}
	if since != "" && joined["recovered"] != true {
		c.t.Errorf("%s: rejoin since %s was not recovered", c.user, since)
	}
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]bool{}
		c.changed = make(chan struct{}, 1)
	}
	c.conn = conn
	c.closed = make(chan ws.StatusCode, 1)
	c.draining = false
	c.mu.Unlock()
	hist, _ := joined["history"].([]any)
	for _, h := range hist {
		c.add(h.(map[string]any))
	}
	go c.read(conn, c.closed)
}

func (c *chatClient) read(conn *ws.Conn, closed chan ws.StatusCode) {
	for {
		m, err := readJSON(conn)
		if err != nil {
			var ce *ws.CloseError
			code := ws.StatusCode(0)
			if errors.As(err, &ce) {
				code = ce.Code
			}
			closed <- code
			return
		}
		switch m["type"] {
		case "message":
			c.add(m)
		case "draining":
			c.mu.Lock()
			c.draining = true
			c.mu.Unlock()
		}
	}
}

// add records a message once; a duplicate is an error.
func (c *chatClient) add(m map[string]any) {
	id, _ := m["id"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[id] {
		c.t.Errorf("%s: message %s delivered twice", c.user, id)
		return
	}
	c.seen[id] = true
	c.ids = append(c.ids, id)
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *chatClient) send(text string) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	writeJSON(c.t, conn, map[string]any{"type": "send", "room": room, "text": text})
}

func (c *chatClient) lastID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) == 0 {
		return ""
	}
	return c.ids[len(c.ids)-1]
}

func (c *chatClient) log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

func (c *chatClient) sawDraining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

func (c *chatClient) waitCount(n int) {
	c.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if len(c.log()) >= n {
			return
		}
		select {
		case <-c.changed:
		case <-deadline:
			c.t.Fatalf("%s: %d messages after 30 s, want %d", c.user, len(c.log()), n)
		}
	}
}

func (c *chatClient) waitClosed() ws.StatusCode {
	c.t.Helper()
	select {
	case code := <-c.closed:
		return code
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s: still connected 60 s after its node was stopped", c.user)
		return 0
	}
}

func assertSameLog(t *testing.T, clients []*chatClient) {
	t.Helper()
	want := clients[0].log()
	for _, c := range clients[1:] {
		if got := c.log(); !slices.Equal(got, want) {
			t.Fatalf("%s saw %v,\n%s saw %v", clients[0].user, want, c.user, got)
		}
	}
}

func readJSON(conn *ws.Conn) (map[string]any, error) {
	_, data, err := conn.ReadMessage(nil)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("bad JSON from server: %w: %s", err, data)
	}
	return m, nil
}

func writeJSON(t *testing.T, conn *ws.Conn, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteMessage(ws.Text, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func countPerNode(nodes map[string][]*chatClient) map[string]int {
	out := map[string]int{}
	for n, cs := range nodes {
		out[n] = len(cs)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
