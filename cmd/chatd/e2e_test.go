package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// e2eTimeout bounds each wait on the real binary; generous, because the
// machine may be loaded.
const e2eTimeout = 30 * time.Second

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// chatdBinary builds cmd/chatd once per test run.
func chatdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "chatd-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "chatd")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build: " + err.Error() + ": " + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a chatd process started by a test.
type proc struct {
	t         *testing.T
	cmd       *exec.Cmd
	addr      string
	listening map[string]any      // the log line that says where it listens
	logs      chan map[string]any // every JSON log line
	passed    []map[string]any    // the lines waitLog read past
	exited    chan struct{}
	err       error // Wait's result, set before exited is closed
}

// startChatd runs the binary on a free loopback port with env added to
// the test's environment, and waits until it listens.
func startChatd(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(chatdBinary(t), "-addr", "127.0.0.1:0", "-log-format", "json")
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, logs: make(chan map[string]any, 1000), exited: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill() // this process, by its PID
			<-p.exited
		}
	})
	lines := make(chan map[string]any, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"message": sc.Text(), "raw": true}
			}
			lines <- m
		}
		close(lines)
	}()
	go func() {
		for m := range lines {
			t.Logf("chatd: %v", m)
			p.logs <- m
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	p.listening = p.waitLog("chatd listening")
	p.addr, _ = p.listening["addr"].(string)
	if p.addr == "" {
		t.Fatalf("no addr in %v", p.listening)
	}
	return p
}

// waitLog returns the first log line whose message contains s.
func (p *proc) waitLog(s string) map[string]any {
	p.t.Helper()
	timeout := time.After(e2eTimeout)
	for {
		select {
		case m := <-p.logs:
			if msg, _ := m["message"].(string); strings.Contains(msg, s) {
				return m
			}
			p.passed = append(p.passed, m)
		case <-p.exited:
			p.t.Fatalf("chatd exited (%v) before logging %q", p.err, s)
		case <-timeout:
			p.t.Fatalf("chatd did not log %q within %v", s, e2eTimeout)
		}
	}
}

// wait returns the exit status once the process has exited.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(e2eTimeout):
		p.t.Fatalf("chatd still running %v later", e2eTimeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// token runs `chatd token` with env.
func tokenFromBinary(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(chatdBinary(t), append([]string{"token"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chatd token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func readEvent(t *testing.T, c *ws.Conn) (map[string]any, error) {
	t.Helper()
	typ, data, err := c.ReadMessage(nil)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if typ != ws.Text || json.Unmarshal(data, &m) != nil {
		t.Fatalf("not a JSON text message: %q", data)
	}
	return m, nil
}

func expectEvent(t *testing.T, c *ws.Conn, typ string) map[string]any {
	t.Helper()
	for {
		m, err := readEvent(t, c)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// TestBinaryEndToEnd builds chatd, runs it on a free port with a secret
// from the environment, chats through it with a token from `chatd token`,
// then sends SIGTERM: the client gets draining and close 1001, and chatd
// exits 0.
func TestBinaryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	env := []string{"CHATD_JWT_SECRET=" + testSecret, "CHATD_NODE_ID=e2e", "CHATD_DRAIN_WINDOW=500ms", "CHATD_HEARTBEAT=5s"}
	p := startChatd(t, env...)
	if p.listening["node"] != "e2e" || p.listening["level"] != "info" {
		t.Errorf("listening log %v, want JSON with node e2e", p.listening)
	}
	if w := p.listening["fanout_writes"]; w != "io_uring" && w != "write(2)" {
		t.Errorf("listening log %v: fanout_writes %v, want io_uring or write(2)", p.listening, w)
	}
	version, _ := p.listening["version"].(string)
	if version == "" {
		t.Errorf("listening log %v: no version", p.listening)
	}
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := `chatd_build_info{go_version="` + runtime.Version() + `",node="e2e",version="` + version + `"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %s", want)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	// With a key configured, there is no dev token endpoint.
	resp, err = http.Post("http://"+p.addr+"/api/dev/token", "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /api/dev/token with a key: %d, want 404", resp.StatusCode)
	}

	tok := tokenFromBinary(t, env, "--sub", "alice", "--name", "Alice", "--ttl", "1h")
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	c, err := ws.Dial(ctx, "ws://"+p.addr+"/ws", &ws.DialOptions{Subprotocols: []string{"chat", "access_token." + tok}, Compression: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "chat" {
		t.Errorf("subprotocol %q", c.Subprotocol())
	}
	w := expectEvent(t, c, "welcome")
	if w["user"] != "alice" || w["name"] != "Alice" || w["node"] != "e2e" || w["heartbeat"] != float64(5) {
		t.Errorf("welcome %v", w)
	}
	send := func(s string) {
		if err := c.WriteMessage(ws.Text, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"type":"join","room":"lobby","ref":"j"}`)
	expectEvent(t, c, "joined")
	send(`{"type":"send","room":"lobby","text":"hello","ref":"s"}`)
	if m := expectEvent(t, c, "message"); m["text"] != "hello" || m["from"] != "alice" {
		t.Errorf("message %v", m)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d := expectEvent(t, c, "draining")
	if ms, _ := d["reconnect_ms"].(float64); ms < 0 || ms >= 500 {
		t.Errorf("reconnect_ms %v outside the drain window", d["reconnect_ms"])
	}
	for {
		_, err := readEvent(t, c)
		if err != nil {
			if code := ws.CloseStatus(err); code != ws.StatusGoingAway {
				t.Errorf("closed with %v (%v), want 1001", code, err)
			}
			break
		}
	}
	if code := p.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// TestBinaryDevTokens: with a secret and CHATD_DEV_TOKENS=true (as
// deploy/chatd.env sets them for a local cluster), chatd warns, and POST
// /api/dev/token hands out tokens signed with that secret, which the
// server (and any node sharing the secret) accepts.
func TestBinaryDevTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	p := startChatd(t, "CHATD_JWT_SECRET="+testSecret, "CHATD_DEV_TOKENS=true", "CHATD_DRAIN_WINDOW=100ms")
	// The warning comes before the line that says where chatd listens.
	var warn map[string]any
	for _, m := range p.passed {
		if msg, _ := m["message"].(string); strings.HasPrefix(msg, "DEV TOKENS:") {
			warn = m
		}
	}
	if warn == nil || warn["level"] != "warn" {
		t.Errorf("no DEV TOKENS warning before listening: %v", warn)
	}
	resp, err := http.Get("http://" + p.addr + "/api/dev/token")
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Dev bool }
	err = json.NewDecoder(resp.Body).Decode(&info)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !info.Dev {
		t.Errorf("GET /api/dev/token: %d %+v %v, want 200 dev true", resp.StatusCode, info, err)
	}
	resp, err = http.Post("http://"+p.addr+"/api/dev/token", "application/json", strings.NewReader(`{"name":"Ann"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&out)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		t.Fatalf("POST /api/dev/token: %d %v", resp.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	c, err := ws.Dial(ctx, "ws://"+p.addr+"/ws", &ws.DialOptions{Subprotocols: []string{"chat", "access_token." + out.Token}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if w := expectEvent(t, c, "welcome"); w["user"] != "Ann" {
		t.Errorf("welcome %v", w)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// dialMute completes a WebSocket handshake and then never reads nor
// answers anything.
func dialMute(t *testing.T, addr, token string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, e2eTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\n" +
		"Sec-WebSocket-Protocol: chat\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return nc
}

// TestBinarySecondSignal: a second SIGTERM during the drain exits at
// once, with status 1.
func TestBinarySecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	// Two clients that never answer: the second is closed 10 s into the
	// drain window, and its closing handshake waits for an answer.
	env := []string{"CHATD_JWT_SECRET=" + testSecret, "CHATD_DRAIN_WINDOW=20s", "CHATD_DRAIN_TIMEOUT=60s"}
	p := startChatd(t, env...)
	tok := tokenFromBinary(t, env, "-sub", "mute")
	dialMute(t, p.addr, tok)
	dialMute(t, p.addr, tok)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog("signal received")
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 1 {
		t.Errorf("exit status %d after a second signal, want 1", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("exited %v after the second signal, not at once", d)
	}
}

// TestBinaryPprof: -pprof (CHATD_PPROF) serves the Go profiles on a
// listener of its own; the public port does not serve them.
func TestBinaryPprof(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	p := startChatd(t, "CHATD_JWT_SECRET="+testSecret, "CHATD_PPROF=127.0.0.1:0", "CHATD_DRAIN_WINDOW=100ms")
	var addr string
	for _, m := range p.passed {
		if msg, _ := m["message"].(string); strings.Contains(msg, "pprof listening") {
			addr, _ = m["addr"].(string)
		}
	}
	if addr == "" || addr == p.addr {
		t.Fatalf("no pprof listener of its own logged (pprof %q, public %q)", addr, p.addr)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("http://" + addr + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("pprof goroutine profile: %d %.80q", code, body)
	}
	if code, _ := get("http://" + p.addr + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("the public port serves /debug/pprof/: %d, want 404", code)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}
