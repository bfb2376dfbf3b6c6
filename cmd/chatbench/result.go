package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// result is everything a run measured. It is printed as a table, or with
// -json as one object; the JSON names are the stable interface for
// scripts (docs/chatbench.md lists them).
type result struct {
	Scenario   string    `json:"scenario"`
	URLs       []string  `json:"urls"`
	RoomPrefix string    `json:"room_prefix"`
	StartedAt  time.Time `json:"started_at"`
	Params     params    `json:"params"`
	// ElapsedS is the whole run, connecting and closing included.
	ElapsedS float64 `json:"elapsed_s"`
	// Interrupted is true when the run was cut short (SIGINT, SIGTERM):
	// the figures cover what ran.
	Interrupted bool `json:"interrupted"`
	// Clean is true when nothing failed and, for fanout, nothing was
	// lost, duplicated or out of order: the figures are valid.
	Clean bool `json:"clean"`
	// OpenFileLimit is this process's RLIMIT_NOFILE after raising it.
	OpenFileLimit uint64 `json:"open_file_limit"`
	// ClientCPUS is this process's own CPU over the run: on one machine,
	// what the load tool took from the server.
	ClientCPUS float64 `json:"client_cpu_s"`

	Connect *connectFigures `json:"connect,omitempty"`
	Idle    *idleFigures    `json:"idle,omitempty"`
	Fanout  *fanoutFigures  `json:"fanout,omitempty"`
	Churn   *churnFigures   `json:"churn,omitempty"`
	// Server is the -pid processes over the scenario's measured phase:
	// the whole run for idle, publishing and draining for fanout, the
	// cycles for churn.
	Server *serverFigures `json:"server,omitempty"`

	// Failures counts what went wrong by kind (http_429, close_1013,
	// timeout_joined...), with the first error of each kind.
	Failures map[string]failureCount `json:"failures"`
	Warnings []string                `json:"warnings,omitempty"`
}

// params are the scenario's settings as run.
type params struct {
	Conns          int     `json:"conns,omitempty"`
	Members        int     `json:"members,omitempty"`
	Rooms          int     `json:"rooms"`
	Publishers     int     `json:"publishers,omitempty"`
	Rate           float64 `json:"rate,omitempty"`
	Size           int     `json:"size,omitempty"`
	Workers        int     `json:"workers,omitempty"`
	DurationS      float64 `json:"duration_s"`
	SrcIPs         int     `json:"src_ips"`
	ConnectWorkers int     `json:"connect_workers,omitempty"`
	Compression    bool    `json:"compression"`
}

// failureTotal is the number of failures of every kind.
func (r *result) failureTotal() int64 {
	var n int64
	for _, f := range r.Failures {
		n += f.Count
	}
	return n
}

// finish derives Clean once every figure is in.
func (r *result) finish() {
	clean := !r.Interrupted && r.failureTotal() == 0
	if f := r.Fanout; f != nil {
		clean = clean && f.Lost == 0 && f.Extra == 0 && f.Duplicates == 0 && f.OutOfOrder == 0 && f.Disconnects == 0
	}
	if c := r.Connect; c != nil {
		clean = clean && c.Failed == 0
	}
	r.Clean = clean
}

// problems is a one-line account of why a run is not clean, or "".
func (r *result) problems() string {
	var p []string
	if r.Interrupted {
		p = append(p, "interrupted")
	}
	if n := r.failureTotal(); n > 0 {
		p = append(p, plural(n, "failure"))
	}
	if f := r.Fanout; f != nil {
		for _, c := range []struct {
			n    int64
			what string
		}{{f.Lost, "lost"}, {f.Extra, "extra"}, {f.Duplicates, "duplicate"}, {f.OutOfOrder, "out of order"}, {f.Disconnects, "disconnect"}} {
			if c.n > 0 {
				what := c.what
				if what == "disconnect" {
					p = append(p, plural(c.n, what))
				} else {
					p = append(p, fmt.Sprintf("%d %s", c.n, what))
				}
			}
		}
	}
	return strings.Join(p, ", ")
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.FormatInt(n, 10) + " " + what + "s"
}

// writeTable prints the result for people: one figure per line, name and
// value, sections in the order the run went.
func (r *result) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, a ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, a...))
	}
	p := r.Params
	row("scenario", "%s  (rooms %s*)", r.Scenario, r.RoomPrefix)
	row("nodes", "%s", strings.Join(r.URLs, " "))
	switch r.Scenario {
	case "idle":
		row("parameters", "conns %d  rooms %d  hold %s  src-ips %d  connect-workers %d", p.Conns, p.Rooms, secs(p.DurationS), p.SrcIPs, p.ConnectWorkers)
	case "fanout":
		row("parameters", "members %d  rooms %d  publishers %d  rate %s msg/s  size %d  duration %s  src-ips %d", p.Members, p.Rooms, p.Publishers, num(p.Rate), p.Size, secs(p.DurationS), p.SrcIPs)
	case "churn":
		rate := "as fast as possible"
		if p.Rate > 0 {
			rate = num(p.Rate) + " cycles/s"
		}
		row("parameters", "workers %d  rooms %d  rate %s  duration %s  src-ips %d", p.Workers, p.Rooms, rate, secs(p.DurationS), p.SrcIPs)
	}
	row("elapsed", "%s  (client CPU %s s)", secs(r.ElapsedS), num(r.ClientCPUS))

	if c := r.Connect; c != nil {
		row("connections", "%d of %d joined, %d failed, in %s: %s/s", c.Connected, c.Attempted, c.Failed, secs(c.ElapsedS), num(c.PerSecond))
		if c.Latency.Count > 0 {
			row("connect latency", "%s", latRow(c.Latency))
		}
	}
	if f := r.Idle; f != nil {
		row("held", "%d open, %d dropped, for %s", f.Open, f.Dropped, secs(f.HoldS))
		if f.RSSAfterJoinKiB > 0 {
			row("server RSS", "%s KiB before, %s KiB joined, %s KiB at the end", group(f.RSSBeforeKiB), group(f.RSSAfterJoinKiB), group(f.RSSEndKiB))
			row("RSS per connection", "%s KiB joined, %s KiB at the end", num(f.RSSPerConnKiB), num(f.RSSPerConnEndKiB))
			row("server CPU", "%s s connecting (%s ms per connection), %s s holding", num(f.ServerCPUConnectS), num(f.ServerCPUPerConnectMS), num(f.ServerCPUHoldS))
		}
	}
	if f := r.Fanout; f != nil {
		row("publishers", "%d of %d, %s msg/s each", f.Publishers, p.Publishers, num(f.PerPublisherRate))
		row("published", "%s sent, %s acked, %s errors (%s rate_limited), in %s: %s msg/s",
			group(f.Published), group(f.Acked), group(f.PublishErrors), group(f.RateLimited), secs(f.PublishS), num(f.MsgsPerS))
		row("deliveries", "%s of %s expected: %s/s (drain %s)", group(f.Delivered), group(f.Expected), num(f.DeliveriesPerS), secs(f.DrainS))
		row("lost / dup / out-of-order", "%s / %s / %s  (extra %s, members with loss %d, rooms with loss %d)",
			group(f.Lost), group(f.Duplicates), group(f.OutOfOrder), group(f.Extra), f.MembersWithLoss, f.RoomsWithLoss)
		row("delivery latency", "%s", latRow(f.Latency))
		row("ack latency", "%s", latRow(f.AckLatency))
		row("disconnects", "%d", f.Disconnects)
		if r.Server != nil {
			row("server CPU", "%s s: %s s per million deliveries", num(f.ServerCPUS), num(f.ServerCPUSPerMDeliveries))
		}
	}
	if f := r.Churn; f != nil {
		row("cycles", "%s done, %s failed, in %s: %s cycles/s", group(f.Cycles), group(f.Failed), secs(f.CyclesS), num(f.CyclesPerS))
		row("cycle latency", "%s", latRow(f.Latency))
		row("connect latency", "%s", latRow(f.ConnectLatency))
		if r.Server != nil {
			row("server CPU", "%s s: %s ms per cycle", num(f.ServerCPUS), num(f.ServerCPUMSPerCycle))
		}
	}
	if s := r.Server; s != nil {
		pids := make([]string, len(s.PIDs))
		for i, pid := range s.PIDs {
			pids[i] = strconv.Itoa(pid)
		}
		row("server processes", "pid %s: CPU %s s, RSS %s → %s KiB", strings.Join(pids, ","), num(s.CPUSeconds), group(s.RSSBeforeKiB), group(s.RSSAfterKiB))
		for _, e := range s.Errors {
			row("server /proc error", "%s", e)
		}
	}

	kinds := make([]string, 0, len(r.Failures))
	for k := range r.Failures {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		row("failures", "none")
	}
	for _, k := range kinds {
		f := r.Failures[k]
		row("failures "+k, "%s  (first: %s)", group(f.Count), f.Example)
	}
	for _, wmsg := range r.Warnings {
		row("warning", "%s", wmsg)
	}
	verdict := "clean"
	if !r.Clean {
		verdict = "NOT CLEAN: " + r.problems()
	}
	row("result", "%s", verdict)
	_ = tw.Flush()
}

// latRow formats a latency summary on one line, in milliseconds.
func latRow(l latency) string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s ms  (mean %s, n %s)",
		num(l.P50MS), num(l.P90MS), num(l.P99MS), num(l.P999MS), num(l.MaxMS), num(l.MeanMS), group(int64(l.Count)))
}

// num formats a figure with at most three decimals and no trailing zeros.
func num(v float64) string {
	return strconv.FormatFloat(round3(v), 'f', -1, 64)
}

func secs(s float64) string { return num(s) + " s" }

// group formats n with thousands separators, for counts in the millions.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
