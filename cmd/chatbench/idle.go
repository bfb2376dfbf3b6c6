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

// connectFigures describe opening the connections of a scenario.
type connectFigures struct {
	Attempted int     `json:"attempted"`
	Connected int     `json:"connected"`
	Failed    int     `json:"failed"`
	ElapsedS  float64 `json:"elapsed_s"`
	// PerSecond is connections opened and joined per second.
	PerSecond float64 `json:"per_s"`
	// Latency is from the start of the dial to the last `joined`.
	Latency latency `json:"latency"`
}

// idleFigures are the idle scenario's own figures.
type idleFigures struct {
	HoldS float64 `json:"hold_s"`
	// Open is the connections still open at the end of the hold; Dropped
	// those the server closed (or that broke) during it.
	Open    int64 `json:"open"`
	Dropped int64 `json:"dropped"`
	// With -pid: VmRSS summed over the processes before connecting, once
	// every connection joined, and at the end of the hold; the per
	// connection figures divide the growth by the connections joined.
	RSSBeforeKiB          int64   `json:"rss_before_kib,omitempty"`
	RSSAfterJoinKiB       int64   `json:"rss_after_join_kib,omitempty"`
	RSSEndKiB             int64   `json:"rss_end_kib,omitempty"`
	RSSPerConnKiB         float64 `json:"rss_per_conn_kib,omitempty"`
	RSSPerConnEndKiB      float64 `json:"rss_per_conn_end_kib,omitempty"`
	ServerCPUConnectS     float64 `json:"server_cpu_connect_s,omitempty"`
	ServerCPUHoldS        float64 `json:"server_cpu_hold_s,omitempty"`
	ServerCPUPerConnectMS float64 `json:"server_cpu_per_connect_ms,omitempty"`
}

// runIdle opens cfg.conns connections, connection i joining room i%R,
// holds them for cfg.duration and closes them with 1000.
func runIdle(ctx context.Context, env *runEnv) error {
	cfg, live := env.cfg, env.live
	figs := &idleFigures{}
	env.res.Idle = figs
	env.res.Params = params{Conns: cfg.conns, Rooms: cfg.rooms, DurationS: cfg.duration.Seconds(), SrcIPs: len(cfg.srcIPs), ConnectWorkers: cfg.connectWorkers, Compression: cfg.compression}

	whole := env.procs.measureStart()
	connectPhase := env.procs.measureStart()
	conns := make([]*ws.Conn, cfg.conns)
	var closing atomic.Bool
	var dropped atomic.Int64
	var readers sync.WaitGroup
	lat := live.lat
	start := time.Now()
	var connected, failed atomic.Int64
	forEach(ctx, cfg.conns, cfg.connectWorkers, func(i int) {
		t0 := time.Now()
		c, err := env.cn.connectJoin(ctx, i, i, "bench-"+strconv.Itoa(i), []string{cfg.room(i % cfg.rooms)})
		if err != nil {
			if ctx.Err() == nil {
				failed.Add(1)
				env.fails.add(err)
			}
			return
		}
		lat.record(i, int64(time.Since(t0)))
		conns[i] = c
		connected.Add(1)
		live.opened.add(i, 1)
		live.conns.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer live.conns.Add(-1)
			buf := make([]byte, 0, 256)
			for {
				_, data, err := c.ReadMessage(buf[:0])
				if err != nil {
					if !closing.Load() {
						dropped.Add(1)
						env.fails.addKind(classifyRead(err), fmt.Errorf("connection %d ended while held: %w", i, err))
					}
					return
				}
				if cap(data) <= 1024 {
					buf = data
				}
			}
		}()
	})
	elapsed := time.Since(start)
	connectPhase.finish(env.procs)
	n := int(connected.Load())
	env.res.Connect = &connectFigures{
		Attempted: cfg.conns,
		Connected: n,
		Failed:    int(failed.Load()),
		ElapsedS:  round3(elapsed.Seconds()),
		PerSecond: round3(float64(n) / elapsed.Seconds()),
		Latency:   lat.snapshot().summary(),
	}
	if env.fails.count("http_429") > 0 {
		env.warn("the server refused upgrades with 429: raise chatd's -upgrade-rate/-upgrade-burst (CHATD_UPGRADE_RATE, CHATD_UPGRADE_BURST) or spread over more -src-ips")
	}

	holdPhase := env.procs.measureStart()
	if connectPhase != nil {
		figs.RSSBeforeKiB = connectPhase.RSSBeforeKiB
		figs.RSSAfterJoinKiB = connectPhase.RSSAfterKiB
		figs.ServerCPUConnectS = connectPhase.CPUSeconds
		if n > 0 {
			figs.RSSPerConnKiB = round3(float64(figs.RSSAfterJoinKiB-figs.RSSBeforeKiB) / float64(n))
			figs.ServerCPUPerConnectMS = round3(connectPhase.CPUSeconds * 1000 / float64(n))
		}
	}
	var err error
	if n == 0 {
		err = errors.New("no connection could be opened (see the failures)")
	} else {
		live.setPhase("holding")
		// The hold ends early when the server closed every connection
		// (a node shutting down, a crash): nothing is left to measure.
		allGone := make(chan struct{})
		go func() { readers.Wait(); close(allGone) }()
		holdStart := time.Now()
		timer := time.NewTimer(cfg.duration)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-allGone:
			env.warn("every connection was closed by the server after %.1f s of the %v hold", time.Since(holdStart).Seconds(), cfg.duration)
		}
		timer.Stop()
		figs.HoldS = round3(time.Since(holdStart).Seconds())
	}
	holdPhase.finish(env.procs)
	if holdPhase != nil {
		figs.RSSEndKiB = holdPhase.RSSAfterKiB
		figs.ServerCPUHoldS = holdPhase.CPUSeconds
		if n > 0 {
			figs.RSSPerConnEndKiB = round3(float64(figs.RSSEndKiB-figs.RSSBeforeKiB) / float64(n))
		}
	}
	figs.Dropped = dropped.Load()
	figs.Open = int64(n) - figs.Dropped

	live.setPhase("closing")
	closing.Store(true)
	closeAll(conns, 256)
	if !waitGroupTimeout(&readers, 10*time.Second) {
		env.warn("some connections did not finish closing within 10s")
	}
	whole.finish(env.procs)
	env.res.Server = whole
	return err
}
