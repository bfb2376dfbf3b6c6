// Command chatbench is chatd's load tool, built on chatd's own WebSocket
// client (internal/ws). It runs one scenario against one or more chatd
// nodes on this machine or another:
//
//	chatbench idle   -conns 10000 -rooms 100 -duration 60s -pid $(pidof chatd)
//	chatbench fanout -members 1000 -rooms 1 -rate 100 -duration 20s -pid ...
//	chatbench churn  -workers 64 -duration 10s
//
// While it runs it prints a progress line on stderr every second; at the
// end, a table on stdout, or with -json one JSON object with every figure.
// docs/chatbench.md describes the figures and how chatd must be configured
// (rate limits) for each scenario.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "chatbench: interrupted: closing connections (interrupt again to exit at once)")
		cancel()
		<-sigs
		os.Exit(130)
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// fdReserve is how many open files are kept for everything but
// connections (the binary, stdio, /proc reads, HTTP token fetches).
const fdReserve = 500

// run is main without the process: it returns the exit status. ctx
// cancelled ends the run early, with the figures so far.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageHead)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageHead)
		return 0
	}
	cfg, err := parseConfig(args[0], args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatbench: %s\n", strings.ReplaceAll(err.Error(), "\n", "\nchatbench: "))
		return 2
	}

	env := &runEnv{cfg: cfg, stderr: stderr, procs: procSet{pids: cfg.pids}}
	env.res = &result{
		Scenario:   cfg.scenario,
		URLs:       cfg.urls,
		RoomPrefix: cfg.roomPrefix,
		StartedAt:  time.Now().UTC().Truncate(time.Millisecond),
		Failures:   map[string]failureCount{},
	}
	limit, err := raiseOpenFileLimit()
	if err != nil {
		env.warn("could not raise the open-file limit: %v", err)
	}
	env.res.OpenFileLimit = limit
	if need := uint64(cfg.connectionsNeeded()); limit > 0 && need+fdReserve > limit {
		fmt.Fprintf(stderr, "chatbench: %d connections need %d open files, but this process may open at most %d (the hard RLIMIT_NOFILE): ask for at most %d, or split the load over several chatbench processes\n",
			need, need+fdReserve, limit, max(int64(limit)-fdReserve, 0))
		return 2
	}
	for _, pid := range cfg.pids {
		if _, err := readProc(pid); err != nil {
			fmt.Fprintf(stderr, "chatbench: -pid %d: %v (give the process id of a running chatd on this machine)\n", pid, err)
			return 2
		}
	}

	tokens, err := newTokenSource(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return 2
	}
	if cfg.scenario == "churn" {
		tokens = &cachedTokens{src: tokens}
	}
	env.cn, err = newConnector(cfg, tokens)
	if err != nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return 2
	}

	env.live = newLive(cfg.scenario)
	env.fails = newFailures(&env.live.errors)

	progressCtx, stopProgress := context.WithCancel(context.Background())
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if !cfg.quiet {
			env.live.run(progressCtx, stderr)
		}
	}()
	self := procSet{pids: []int{os.Getpid()}}
	selfStart := self.measureStart()
	start := time.Now()

	switch cfg.scenario {
	case "idle":
		err = runIdle(ctx, env)
	case "fanout":
		err = runFanout(ctx, env)
	case "churn":
		err = runChurn(ctx, env)
	}

	stopProgress()
	<-progressDone
	selfStart.finish(self)
	res := env.res
	res.ElapsedS = round3(time.Since(start).Seconds())
	res.ClientCPUS = selfStart.CPUSeconds
	res.Interrupted = ctx.Err() != nil
	res.Failures = env.fails.snapshot()
	res.finish()
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if e := enc.Encode(res); e != nil {
			fmt.Fprintf(stderr, "chatbench: %v\n", e)
			return 1
		}
	} else {
		res.writeTable(stdout)
	}
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return 1
	case !res.Clean:
		fmt.Fprintf(stderr, "chatbench: the run was not clean: %s\n", res.problems())
		return 1
	}
	return 0
}

// runEnv is what a scenario runs with.
type runEnv struct {
	cfg    *config
	stderr io.Writer
	cn     *connector
	live   *live
	fails  *failures
	procs  procSet
	res    *result
}

// warn prints a warning now and keeps it for the report.
func (e *runEnv) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	fmt.Fprintf(e.stderr, "chatbench: WARNING: %s\n", msg)
	e.res.Warnings = append(e.res.Warnings, msg)
}

// connectionsNeeded is how many connections the scenario holds at once.
func (cfg *config) connectionsNeeded() int {
	switch cfg.scenario {
	case "fanout":
		return cfg.conns + cfg.publishers
	case "churn":
		return cfg.workers
	}
	return cfg.conns
}
