package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The smoke tests run each scenario small against a real chatd node in
// this process, over loopback TCP, and check a clean, sane report.

func TestIdleSmoke(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	const conns, rooms = 40, 4
	out := runBench(t, "idle", "-url", node.URL, "-secret", testSecret, "-conns", strconv.Itoa(conns),
		"-rooms", strconv.Itoa(rooms), "-duration", "300ms", "-src-ips", "4", "-connect-workers", "8",
		"-pid", strconv.Itoa(os.Getpid()), "-json")
	if out.code != 0 {
		t.Fatalf("exit %d: %s", out.code, out.stderr)
	}
	r := out.res
	if !r.Clean || r.Scenario != "idle" || r.Interrupted || len(r.Failures) != 0 {
		t.Errorf("clean %v scenario %q interrupted %v failures %v", r.Clean, r.Scenario, r.Interrupted, r.Failures)
	}
	c := r.Connect
	if c == nil || c.Attempted != conns || c.Connected != conns || c.Failed != 0 || c.PerSecond <= 0 {
		t.Fatalf("connect figures %+v", c)
	}
	checkLatency(t, "connect", c.Latency, conns)
	f := r.Idle
	if f == nil || f.Open != conns || f.Dropped != 0 || f.HoldS < 0.3 {
		t.Fatalf("idle figures %+v", f)
	}
	// The server is this process: its figures must be there.
	if f.RSSBeforeKiB <= 0 || f.RSSAfterJoinKiB <= 0 || f.RSSEndKiB <= 0 || r.Server == nil || len(r.Server.PerPID) != 1 {
		t.Errorf("server figures missing: idle %+v server %+v", f, r.Server)
	}
	if r.Params.Conns != conns || r.Params.Rooms != rooms || r.Params.SrcIPs != 4 {
		t.Errorf("params %+v", r.Params)
	}
	// The connections came from 127.0.0.1 to 127.0.0.4, ten from each.
	src := node.sources()
	for k := 1; k <= 4; k++ {
		if ip := "127.0.0." + strconv.Itoa(k); src[ip] != conns/4 {
			t.Errorf("connections from %s: %d, want %d (all: %v)", ip, src[ip], conns/4, src)
		}
	}
	for _, key := range []string{"scenario", "urls", "params", "connect", "idle", "server", "failures", "clean", "client_cpu_s", "open_file_limit"} {
		if _, ok := out.raw[key]; !ok {
			t.Errorf("-json output has no %q", key)
		}
	}
}

func TestFanoutSmoke(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	const members, rooms, pubs = 30, 3, 2
	out := runBench(t, "fanout", "-url", node.URL, "-secret", testSecret, "-members", strconv.Itoa(members),
		"-rooms", strconv.Itoa(rooms), "-publishers", strconv.Itoa(pubs), "-rate", "40", "-duration", "1s",
		"-size", "200", "-compression", "-pid", strconv.Itoa(os.Getpid()), "-json")
	if out.code != 0 {
		t.Fatalf("exit %d: %s", out.code, out.stderr)
	}
	r := out.res
	if !r.Clean || len(r.Failures) != 0 {
		t.Errorf("clean %v failures %v", r.Clean, r.Failures)
	}
	if r.Connect == nil || r.Connect.Connected != members+pubs {
		t.Fatalf("connect %+v", r.Connect)
	}
	f := r.Fanout
	if f == nil {
		t.Fatal("no fanout figures")
	}
	// 40 msg/s from two publishers for 1 s: 20 sends each, exactly, as
	// the send schedule is fixed.
	if f.Published != 40 || f.Acked != 40 || f.PublishErrors != 0 || f.RateLimited != 0 {
		t.Errorf("published %d acked %d errors %d rate_limited %d, want 40, 40, 0, 0", f.Published, f.Acked, f.PublishErrors, f.RateLimited)
	}
	// Every room has 10 members and its publisher, and gets its share of
	// the sends; everyone in a room gets every one of its messages.
	want := int64(f.Acked) * (members/rooms + 1)
	if f.Expected != want || f.Delivered != want {
		t.Errorf("expected %d delivered %d, want %d", f.Expected, f.Delivered, want)
	}
	if f.Lost != 0 || f.Extra != 0 || f.Duplicates != 0 || f.OutOfOrder != 0 || f.MembersWithLoss != 0 || f.Disconnects != 0 {
		t.Errorf("lost %d extra %d dup %d ooo %d members with loss %d disconnects %d", f.Lost, f.Extra, f.Duplicates, f.OutOfOrder, f.MembersWithLoss, f.Disconnects)
	}
	checkLatency(t, "delivery", f.Latency, uint64(want))
	checkLatency(t, "ack", f.AckLatency, 40)
	if f.DeliveriesPerS <= 0 || f.MsgsPerS <= 0 || f.Members != members || f.Publishers != pubs {
		t.Errorf("figures %+v", f)
	}
	if r.Server == nil || f.ServerCPUS < 0 {
		t.Errorf("server figures missing: %+v", r.Server)
	}
	if !r.Params.Compression || r.Params.Size != 200 {
		t.Errorf("params %+v", r.Params)
	}
}

// TestFanoutTwoURLs spreads members over two URLs of one node (the form
// a cluster run takes), and checks the table output.
func TestFanoutTwoURLs(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	url2 := strings.Replace(node.URL, "127.0.0.1", "localhost", 1)
	out := runBench(t, "fanout", "-url", node.URL+","+url2, "-secret", testSecret, "-members", "20",
		"-rooms", "1", "-rate", "20", "-duration", "1s", "-q")
	if out.code != 0 {
		t.Fatalf("exit %d: %s", out.code, out.stderr)
	}
	for _, want := range []string{
		"scenario", "fanout", node.URL + " " + url2,
		"deliveries", "420 of 420 expected", // 20 sends × (20 members + the publisher)
		"lost / dup / out-of-order", "0 / 0 / 0",
		"delivery latency", "p99", "failures", "none", "result", "clean",
	} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("the table has no %q", want)
		}
	}
	if out.stderr != "" && strings.Contains(out.stderr, "[") {
		t.Errorf("-q printed progress lines: %s", out.stderr)
	}
}

func TestChurnSmoke(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	out := runBench(t, "churn", "-url", node.URL, "-secret", testSecret, "-workers", "4", "-rooms", "3",
		"-duration", "1s", "-pid", strconv.Itoa(os.Getpid()), "-json")
	if out.code != 0 {
		t.Fatalf("exit %d: %s", out.code, out.stderr)
	}
	r := out.res
	f := r.Churn
	if !r.Clean || f == nil || f.Cycles < 1 || f.Failed != 0 || f.CyclesPerS <= 0 {
		t.Fatalf("clean %v churn %+v failures %v", r.Clean, f, r.Failures)
	}
	checkLatency(t, "cycle", f.Latency, uint64(f.Cycles))
	checkLatency(t, "connect", f.ConnectLatency, uint64(f.Cycles))
	if f.ConnectLatency.MaxMS > f.Latency.MaxMS {
		t.Errorf("connecting took longer than the whole cycle: %+v", f)
	}
	if r.Server == nil {
		t.Error("no server figures")
	}
}

// TestChurnPacedDevTokens runs churn at a fixed rate with tokens from a
// dev-mode server.
func TestChurnPacedDevTokens(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), true)
	out := runBench(t, "churn", "-url", node.URL, "-token-url", node.TokenURL, "-workers", "4",
		"-rate", "20", "-duration", "1s", "-json")
	if out.code != 0 {
		t.Fatalf("exit %d: %s", out.code, out.stderr)
	}
	// 20 cycles/s for 1 s: cycles 0 to 19 are scheduled, all of them run.
	if f := out.res.Churn; f == nil || f.Cycles != 20 || f.Failed != 0 || f.TargetRate != 20 {
		t.Fatalf("churn %+v failures %v", f, out.res.Failures)
	}
}

// TestRateLimitedFanout runs fanout against chatd's default per-user and
// per-connection message rates: the run must say which limits to raise,
// and exit 1.
func TestRateLimitedFanout(t *testing.T) {
	t.Parallel()
	cfg := loadConfig()
	cfg.SendRate, cfg.SendBurst, cfg.UserRate, cfg.UserBurst = 10, 20, 20, 40 // chatd's defaults
	node := startNode(t, cfg, false)
	out := runBench(t, "fanout", "-url", node.URL, "-secret", testSecret, "-members", "5", "-rate", "200",
		"-publishers", "1", "-duration", "2s", "-drain", "2s", "-json")
	if out.code != 1 {
		t.Fatalf("exit %d, want 1", out.code)
	}
	if out.res.Clean || out.res.Fanout.RateLimited == 0 {
		t.Errorf("clean %v rate_limited %d", out.res.Clean, out.res.Fanout.RateLimited)
	}
	for _, want := range []string{"rate_limited", "CHATD_SEND_RATE", "CHATD_USER_RATE"} {
		if !strings.Contains(out.stderr, want) {
			t.Errorf("stderr does not mention %s", want)
		}
	}
}

// TestUpgradeRateLimited: chatd's per-IP upgrade limit refuses most of
// the connections; they are counted as http_429 with advice.
func TestUpgradeRateLimited(t *testing.T) {
	t.Parallel()
	cfg := loadConfig()
	cfg.UpgradeRate, cfg.UpgradeBurst = 0.001, 5
	node := startNode(t, cfg, false)
	out := runBench(t, "idle", "-url", node.URL, "-secret", testSecret, "-conns", "20", "-src-ips", "0",
		"-duration", "100ms", "-json", "-q")
	if out.code != 1 {
		t.Fatalf("exit %d, want 1", out.code)
	}
	r := out.res
	if r.Connect.Connected != 5 || r.Connect.Failed != 15 || r.Failures["http_429"].Count != 15 {
		t.Errorf("connect %+v failures %v", r.Connect, r.Failures)
	}
	if !strings.Contains(strings.Join(r.Warnings, " "), "CHATD_UPGRADE_RATE") {
		t.Errorf("no advice on the upgrade rate: %q", r.Warnings)
	}
}

// TestNoServer: nothing listens; every connection fails as refused, and
// the run ends at once with exit 1.
func TestNoServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, scenario := range []string{"idle", "fanout", "churn"} {
		start := time.Now()
		out := runBench(t, scenario, "-url", "ws://"+addr+"/ws", "-secret", testSecret, "-json", "-q", "-duration", "500ms")
		if out.code != 1 {
			t.Errorf("%s: exit %d, want 1", scenario, out.code)
			continue
		}
		if out.res.Clean || out.res.Failures["connect_refused"].Count == 0 {
			t.Errorf("%s: clean %v failures %v", scenario, out.res.Clean, out.res.Failures)
		}
		if d := time.Since(start); d > time.Minute {
			t.Errorf("%s took %v", scenario, d)
		}
	}
}

// TestRefusals: what cannot run is refused before any connection, with
// exit 2 and one line saying what to do.
func TestRefusals(t *testing.T) {
	t.Parallel()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad pid", []string{"idle", "-secret", testSecret, "-pid", "2147483647"}, "-pid 2147483647"},
	}
	if lim.Max < 1<<30 {
		n := strconv.FormatUint(lim.Max+1, 10)
		cases = append(cases,
			struct {
				name string
				args []string
				want string
			}{"too many idle", []string{"idle", "-secret", testSecret, "-conns", n}, "split the load over several chatbench processes"},
			struct {
				name string
				args []string
				want string
			}{"too many fanout", []string{"fanout", "-secret", testSecret, "-members", n}, "ask for at most"},
		)
	} else {
		t.Logf("the hard open-file limit is %d: the too-many-connections case is not checked", lim.Max)
	}
	for _, tc := range cases {
		out := runBench(t, tc.args...)
		if out.code != 2 {
			t.Errorf("%s: exit %d, want 2", tc.name, out.code)
		}
		if !strings.Contains(out.stderr, tc.want) || strings.Count(strings.TrimSpace(out.stderr), "\n") != 0 {
			t.Errorf("%s: stderr %q, want one line with %q", tc.name, out.stderr, tc.want)
		}
		if out.stdout != "" {
			t.Errorf("%s: stdout %q", tc.name, out.stdout)
		}
	}
}

// TestIdleServerShutdown: the node drains (draining, then 1001) while
// the connections are held; the run counts every connection as dropped
// or failed, ends without waiting for the hold, and exits 1.
func TestIdleServerShutdown(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	const conns = 20
	done := make(chan runOutput, 1)
	go func() {
		done <- runBench(t, "idle", "-url", node.URL, "-secret", testSecret, "-conns", strconv.Itoa(conns),
			"-duration", "10m", "-json", "-q")
	}()
	waitFor(t, "the connections", func() bool { return node.srv.Connections() == conns })
	node.stop()
	var out runOutput
	select {
	case out = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end when the server closed every connection")
	}
	if out.code != 1 {
		t.Fatalf("exit %d, want 1", out.code)
	}
	r := out.res
	if r.Clean || r.Idle.Open != 0 || int(r.Idle.Dropped) != r.Connect.Connected || r.Connect.Connected+r.Connect.Failed != conns {
		t.Errorf("clean %v connect %+v idle %+v", r.Clean, r.Connect, r.Idle)
	}
	if r.Idle.HoldS > 60 {
		t.Errorf("held for %v s", r.Idle.HoldS)
	}
}

// TestInterrupt: a cancelled run (SIGINT) stops at once, closes its
// connections, prints what it measured and exits 1.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	for _, args := range [][]string{
		{"idle", "-conns", "10", "-duration", "10m"},
		{"fanout", "-members", "10", "-rate", "20", "-duration", "10m"},
		{"churn", "-workers", "2", "-duration", "10m"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan runOutput, 1)
		before := node.sources()["127.0.0.1"]
		go func() {
			done <- runBenchCtx(t, ctx, append(args, "-url", node.URL, "-secret", testSecret, "-json", "-q", "-src-ips", "1")...)
		}()
		waitFor(t, args[0]+" connections", func() bool { return node.sources()["127.0.0.1"] >= before+2 })
		cancel()
		var out runOutput
		select {
		case out = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s: the run did not end when interrupted", args[0])
		}
		if out.code != 1 || !out.res.Interrupted || out.res.Clean {
			t.Errorf("%s: exit %d interrupted %v clean %v", args[0], out.code, out.res.Interrupted, out.res.Clean)
		}
		if len(out.res.Failures) != 0 {
			t.Errorf("%s: an interruption is not the server's failure: %v", args[0], out.res.Failures)
		}
	}
	waitFor(t, "the connections to close", func() bool { return node.srv.Connections() == 0 })
}

// TestFanoutServerShutdown: the node drains while the publishers send;
// the run ends (no ten-minute wait), counts the disconnects and exits 1.
func TestFanoutServerShutdown(t *testing.T) {
	t.Parallel()
	node := startNode(t, loadConfig(), false)
	done := make(chan runOutput, 1)
	go func() {
		done <- runBench(t, "fanout", "-url", node.URL, "-secret", testSecret, "-members", "10", "-rate", "50",
			"-duration", "10m", "-json", "-q", "-room-prefix", "shutdown-")
	}()
	// Every connection joined (each is a user of its own, present in the
	// one room): a publisher still joining when the node drains would end
	// the run before it publishes, with its members neither failed nor
	// disconnected.
	waitFor(t, "the joins", func() bool {
		members, err := node.broker.Members(context.Background(), "shutdown-0")
		return err == nil && len(members) == 11
	})
	node.stop()
	var out runOutput
	select {
	case out = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end when the server closed every connection")
	}
	// A connection the server accepted may not have joined yet: it is a
	// connect failure instead of a disconnect.
	r := out.res
	if out.code != 1 || r.Clean || int(r.Fanout.Disconnects)+r.Connect.Failed != 11 || r.Failures["close_1001"].Count == 0 {
		t.Errorf("exit %d clean %v disconnects %d connect %+v failures %v", out.code, r.Clean, r.Fanout.Disconnects, r.Connect, r.Failures)
	}
}
