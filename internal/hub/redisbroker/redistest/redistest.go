// Package redistest starts real redis-server processes for tests: a
// standalone server or a three-master cluster, each on free loopback ports,
// in a temporary directory, stopped by PID when the test ends.
//
// When redis-server is not installed the tests that need it are skipped,
// except under CI=true, where that is a failure: CI must not pass by
// skipping the Redis tests.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Require skips tb when the named programs are missing, or fails it when
// CI=true. It returns their paths.
func Require(tb testing.TB, programs ...string) []string {
	tb.Helper()
	paths := make([]string, 0, len(programs))
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s is not installed, and CI=true: the Redis tests must run in CI (apt-get install redis-server)", p)
			}
			tb.Skipf("%s is not installed; skipping (set CI=true to make this a failure)", p)
		}
		paths = append(paths, path)
	}
	return paths
}

var prefixSeq atomic.Uint64

// Prefix returns a key prefix no other test in this process uses, so that
// tests can share one server.
func Prefix(tb testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(tb.Name())
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("t%d.%s:", prefixSeq.Add(1), name)
}

// Server is one redis-server process.
type Server struct {
	Port int
	Dir  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	out    *logBuffer
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Start starts a standalone redis-server on a free loopback port that
// persists nothing, and stops it when tb ends. Extra arguments are added
// to the command line, e.g. "--appendonly", "yes".
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	Require(tb, "redis-server")
	s, err := StartProcess(tb.TempDir(), extra...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// StartProcess is Start without a test: for servers shared by a package's
// tests, started once and closed from TestMain. The caller must check that
// redis-server exists (Require) and call Close.
func StartProcess(dir string, extra ...string) (*Server, error) {
	var lastErr error
	for range 3 { // the free port may be taken before the server binds it
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Port: port, Dir: dir}
		s.args = append([]string{
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", dir,
			"--logfile", "",
			"--daemonize", "no",
		}, extra...)
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = &logBuffer{}
	cmd := exec.Command("redis-server", s.args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Own process group, so that a Ctrl-C of the test run does not
	// race our own shutdown of the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd = cmd
	if err := waitPing(s.Addr(), exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		s.cmd = nil
		return fmt.Errorf("redis-server on port %d: %w; output:\n%s", s.Port, err, s.out.String())
	}
	s.exited = exited
	return nil
}

// Stop kills the server (SIGKILL, by PID) and waits for it to exit. The
// data directory stays, so Restart brings back what it persisted.
func (s *Server) Stop() {
	s.signal(syscall.SIGKILL)
}

// Shutdown stops the server gracefully (SIGTERM), so that it writes its
// append-only file before exiting.
func (s *Server) Shutdown() {
	s.signal(syscall.SIGTERM)
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Restart starts the server again on the same port, in the same directory.
func (s *Server) Restart() error {
	s.Stop()
	var err error
	for i := 0; i < 50; i++ { // the port can linger briefly after the kill
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Close stops the server; it is safe to call more than once.
func (s *Server) Close() { s.Stop() }

// Output returns what the server logged.
func (s *Server) Output() string { return s.out.String() }

// Do sends one command to the server on a new connection and returns the
// reply as text (simple strings, errors as "ERR ...", integers, bulk strings;
// arrays are flattened, one element per line).
func (s *Server) Do(args ...string) (string, error) { return Do(s.Addr(), args...) }

// Do sends one command to addr; see Server.Do.
func Do(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	var out []string
	if err := readReply(bufio.NewReader(c), &out); err != nil {
		return "", err
	}
	return strings.Join(out, "\n"), nil
}

func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		*out = append(*out, line[1:])
	case '-':
		return errors.New(line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			*out = append(*out, "")
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, _ := strconv.Atoi(line[1:])
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errors.New("exited before answering PING")
		default:
		}
		reply, err := Do(addr, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v (last error: %v)", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Cluster is a Redis Cluster of three masters and no replicas.
type Cluster struct {
	Nodes []*Server
}

// Addrs are the masters' host:port.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is a redis+cluster:// URL naming every master.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// StartCluster starts a three-master cluster and stops it when tb ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	Require(tb, "redis-server", "redis-cli")
	c, err := StartClusterProcess(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// StartClusterProcess is StartCluster without a test; see StartProcess.
func StartClusterProcess(dir string) (*Cluster, error) {
	c := &Cluster{}
	for i := range 3 {
		nodeDir := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			c.Close()
			return nil, err
		}
		busPort, err := FreePort()
		if err != nil {
			c.Close()
			return nil, err
		}
		s, err := StartProcess(nodeDir,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(nodeDir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(busPort),
		)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.waitOK(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitOK waits until every node reports cluster_state:ok and knows every
// other node, so that clients see one consistent slot map.
func (c *Cluster) waitOK() error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, n := range c.Nodes {
			info, err := n.Do("CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("cluster did not reach cluster_state:ok in 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Close()
	}
}

// logBuffer collects a process's output, safely for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
