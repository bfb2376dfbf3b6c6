package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// atomicCounter is a counter spread over cache lines, so that thousands
// of goroutines can count deliveries without all hitting one word.
type atomicCounter struct {
	shards [16]struct {
		n atomic.Int64
		_ [56]byte
	}
}

func (c *atomicCounter) add(shard int, n int64) { c.shards[shard&15].n.Add(n) }

func (c *atomicCounter) load() int64 {
	var t int64
	for i := range c.shards {
		t += c.shards[i].n.Load()
	}
	return t
}

// live is what the progress line shows while a scenario runs.
type live struct {
	scenario   string
	conns      atomic.Int64  // open connections
	opened     atomicCounter // connections opened and joined (idle, fanout)
	published  atomicCounter // messages sent (fanout)
	deliveries atomicCounter // messages received (fanout)
	cycles     atomicCounter // completed cycles (churn)
	errors     atomicCounter // failures of any kind
	lat        *shardedHist  // the scenario's main latency
	latName    string        // what lat measures, for the line
	phase      atomic.Pointer[string]
	start      time.Time
	mu         sync.Mutex
	lastAt     time.Time
	last       [4]int64 // opened, published, deliveries, cycles at lastAt
}

// newLive returns the progress of a scenario; its main latency is that
// of connecting (idle), delivery (fanout) or a whole cycle (churn).
func newLive(scenario string) *live {
	l := &live{scenario: scenario, lat: newShardedHist(), start: time.Now()}
	switch scenario {
	case "idle":
		l.latName = "connect"
	case "fanout":
		l.latName = "delivery"
	case "churn":
		l.latName = "cycle"
	}
	l.setPhase("connecting")
	return l
}

func (l *live) setPhase(p string) { l.phase.Store(&p) }

// line formats the progress line: the rates are over the time since the
// previous call.
func (l *live) line() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	cur := [4]int64{l.opened.load(), l.published.load(), l.deliveries.load(), l.cycles.load()}
	dt := now.Sub(l.lastAt).Seconds()
	if l.lastAt.IsZero() {
		dt = now.Sub(l.start).Seconds()
	}
	rate := func(i int) float64 {
		if dt <= 0 {
			return 0
		}
		return float64(cur[i]-l.last[i]) / dt
	}
	s := fmt.Sprintf("[%5.1fs %-10s] conns %6d", now.Sub(l.start).Seconds(), *l.phase.Load(), l.conns.Load())
	switch l.scenario {
	case "idle":
		s += fmt.Sprintf("  joined/s %6.0f", rate(0))
	case "fanout":
		s += fmt.Sprintf("  joined/s %6.0f  msgs/s %6.0f  deliveries/s %8.0f", rate(0), rate(1), rate(2))
	case "churn":
		s += fmt.Sprintf("  cycles/s %7.0f", rate(3))
	}
	snap := l.lat.snapshot()
	s += fmt.Sprintf("  p99 %s %s  errors %d", l.latName, fmtDur(snap.quantile(0.99)), l.errors.load())
	l.lastAt, l.last = now, cur
	return s
}

// run prints the progress line to w every second until ctx ends.
func (l *live) run(ctx context.Context, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Fprintln(w, l.line())
		}
	}
}

func fmtDur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}
