package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/ws"
)

// churnFigures are the churn scenario's own figures. A cycle is: dial,
// upgrade, welcome, join (until `joined`), leave (until `left`), and the
// closing handshake with 1000; it counts as done only when every step
// succeeded.
type churnFigures struct {
	Cycles int64 `json:"cycles"`
	Failed int64 `json:"failed"`
	// CyclesS is from the first cycle's start to the last one's end;
	// CyclesPerS is Cycles over it.
	CyclesS    float64 `json:"cycles_s"`
	CyclesPerS float64 `json:"cycles_per_s"`
	// TargetRate is -rate (0: as fast as possible).
	TargetRate float64 `json:"target_rate,omitempty"`
	// Latency is a whole cycle; ConnectLatency from the dial to `joined`.
	Latency        latency `json:"latency"`
	ConnectLatency latency `json:"connect_latency"`
	// With -pid: the server CPU over the cycles, and per cycle.
	ServerCPUS          float64 `json:"server_cpu_s,omitempty"`
	ServerCPUMSPerCycle float64 `json:"server_cpu_ms_per_cycle,omitempty"`
}

// runChurn runs cycles on cfg.workers workers for cfg.duration. Worker w
// is user bench-churn-<w> throughout; cycle k joins room k%R, goes to node
// k%len(urls) and comes from source address k%len(src-ips). With -rate,
// cycle k starts no earlier than k/rate seconds into the run (a fixed
// schedule, so a slow cycle does not lower the offered rate while
// workers are free); without, each worker starts its next cycle as soon
// as the last ended.
func runChurn(ctx context.Context, env *runEnv) error {
	cfg, live := env.cfg, env.live
	figs := &churnFigures{TargetRate: cfg.rate}
	env.res.Churn = figs
	env.res.Params = params{Workers: cfg.workers, Rooms: cfg.rooms, Rate: cfg.rate, DurationS: cfg.duration.Seconds(),
		SrcIPs: len(cfg.srcIPs), Compression: cfg.compression}
	if !cfg.quiet {
		fmt.Fprintf(env.stderr, "chatbench: churn opens connections from %d source addresses as fast as it can: chatd's -upgrade-rate and -upgrade-burst (CHATD_UPGRADE_RATE, CHATD_UPGRADE_BURST) must be above the cycle rate per address\n", max(len(cfg.srcIPs), 1))
	}

	connLat := newShardedHist()
	var next, done, failed atomic.Int64
	var interval time.Duration
	if cfg.rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.rate)
	}
	live.setPhase("cycling")
	server := env.procs.measureStart()
	start := time.Now()
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for w := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := "bench-churn-" + strconv.Itoa(w)
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				at := time.Now()
				if interval > 0 {
					at = start.Add(time.Duration(k) * interval)
					if !at.Before(end) || !sleepUntil(ctx, at) {
						return
					}
				} else if !at.Before(end) {
					return
				}
				t0 := time.Now()
				connected, err := cycle(ctx, env, int(k), sub, cfg.room(int(k%int64(cfg.rooms))))
				if ctx.Err() != nil && err != nil {
					return // interrupted: not the server's failure
				}
				if connected > 0 {
					connLat.record(w, int64(connected))
				}
				if err != nil {
					failed.Add(1)
					env.fails.add(err)
					continue
				}
				live.lat.record(w, int64(time.Since(t0)))
				live.cycles.add(w, 1)
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	server.finish(env.procs)
	env.res.Server = server

	figs.Cycles, figs.Failed = done.Load(), failed.Load()
	figs.CyclesS = round3(elapsed.Seconds())
	figs.CyclesPerS = round3(float64(figs.Cycles) / elapsed.Seconds())
	figs.Latency = live.lat.snapshot().summary()
	figs.ConnectLatency = connLat.snapshot().summary()
	if server != nil {
		figs.ServerCPUS = server.CPUSeconds
		if figs.Cycles > 0 {
			figs.ServerCPUMSPerCycle = round3(server.CPUSeconds * 1000 / float64(figs.Cycles))
		}
	}
	if env.fails.count("http_429") > 0 {
		env.warn("the server refused upgrades with 429: raise chatd's -upgrade-rate/-upgrade-burst (CHATD_UPGRADE_RATE, CHATD_UPGRADE_BURST) or spread over more -src-ips")
	}
	if cfg.rate > 0 && ctx.Err() == nil && figs.CyclesPerS < 0.95*cfg.rate {
		env.warn("reached %.1f cycles/s of the %.1f asked for: the workers could not keep up; use more -workers", figs.CyclesPerS, cfg.rate)
	}
	if figs.Cycles == 0 && ctx.Err() == nil {
		return errors.New("no cycle completed (see the failures)")
	}
	return nil
}

// cycle runs cycle k as user sub in room: it returns how long connecting
// and joining took (0 if it did not get that far) and the first failure.
// The whole cycle is bounded by -cycle-timeout.
func cycle(ctx context.Context, env *runEnv, k int, sub, room string) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, env.cfg.cycleTO)
	defer cancel()
	timedOut := func(err error, step string) error {
		if ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return &failure{kind: "timeout_cycle", err: fmt.Errorf("cycle %d: no %s within -cycle-timeout %v", k, step, env.cfg.cycleTO)}
		}
		return err
	}
	t0 := time.Now()
	c, err := env.cn.connectJoin(cctx, k, k, sub, []string{room})
	if err != nil {
		return 0, timedOut(err, "joined")
	}
	connected := time.Since(t0)
	env.live.conns.Add(1)
	defer env.live.conns.Add(-1)

	// ReadMessage has no deadline: the end of cctx closes the connection.
	stop := context.AfterFunc(cctx, func() { _ = c.CloseNow() })
	defer stop()
	cmd := appendLeave(make([]byte, 0, 64), room, "l")
	if err := c.WriteMessage(ws.Text, cmd); err != nil {
		_ = c.CloseNow()
		return connected, timedOut(&failure{kind: classifyRead(err), err: fmt.Errorf("cycle %d: leave: %w", k, err)}, "left")
	}
	if _, err := await(c, make([]byte, 0, 256), "left"); err != nil {
		_ = c.CloseNow()
		return connected, timedOut(err, "left")
	}
	if err := c.Close(ws.StatusNormalClosure, ""); err != nil {
		return connected, timedOut(&failure{kind: "close_error", err: fmt.Errorf("cycle %d: close: %w", k, err)}, "close")
	}
	return connected, nil
}
