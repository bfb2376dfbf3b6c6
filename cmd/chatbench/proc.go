package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)
// needs cgo to ask).
const clockTicks = 100

// procSample is what /proc says about one process at one moment.
type procSample struct {
	RSSKiB int64   // VmRSS
	CPU    float64 // user + system seconds since the process started
}

// readProc reads VmRSS from /proc/PID/status and utime+stime from
// /proc/PID/stat.
func readProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	found := false
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				s.RSSKiB, err = strconv.ParseInt(f[0], 10, 64)
				found = err == nil
			}
			break
		}
	}
	if !found {
		return s, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	s.CPU = cpu
	return s, nil
}

// parseStatCPU returns utime+stime, in seconds, from the contents of
// /proc/PID/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself, so fields are counted from the last
// ')'; utime and stime are fields 14 and 15.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected format")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("only %d fields", len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime/stime are not numbers")
	}
	return float64(utime+stime) / clockTicks, nil
}

// procSet samples the server processes given with -pid.
type procSet struct {
	pids []int
}

// sample reads every process; a process that cannot be read is reported
// as an error (the run goes on without its figures).
func (p procSet) sample() (map[int]procSample, error) {
	out := make(map[int]procSample, len(p.pids))
	var errs []string
	for _, pid := range p.pids {
		s, err := readProc(pid)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out[pid] = s
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// serverFigures are the -pid processes' figures over a phase of a run.
type serverFigures struct {
	PIDs []int `json:"pids"`
	// CPUSeconds is the user+system CPU the processes used in the
	// measured phase (see the scenario's docs for which phase).
	CPUSeconds float64 `json:"cpu_s"`
	// RSSBeforeKiB and RSSAfterKiB are VmRSS summed over the processes.
	RSSBeforeKiB int64        `json:"rss_before_kib"`
	RSSAfterKiB  int64        `json:"rss_after_kib"`
	PerPID       []pidFigures `json:"per_pid"`
	before       map[int]procSample
	after        map[int]procSample
	beforeErr    error
	afterErr     error
	Errors       []string `json:"errors,omitempty"`
}

type pidFigures struct {
	PID          int     `json:"pid"`
	CPUSeconds   float64 `json:"cpu_s"`
	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
}

// measureStart samples the processes at the start of a phase.
func (p procSet) measureStart() *serverFigures {
	if len(p.pids) == 0 {
		return nil
	}
	f := &serverFigures{PIDs: p.pids}
	f.before, f.beforeErr = p.sample()
	return f
}

// finish samples the processes at the end of the phase and computes the
// figures.
func (f *serverFigures) finish(p procSet) {
	if f == nil {
		return
	}
	f.after, f.afterErr = p.sample()
	for _, err := range []error{f.beforeErr, f.afterErr} {
		if err != nil {
			f.Errors = append(f.Errors, err.Error())
		}
	}
	f.PerPID = f.PerPID[:0]
	f.CPUSeconds, f.RSSBeforeKiB, f.RSSAfterKiB = 0, 0, 0
	for _, pid := range f.PIDs {
		b, okb := f.before[pid]
		a, oka := f.after[pid]
		if !okb || !oka {
			continue
		}
		pf := pidFigures{PID: pid, CPUSeconds: round3(a.CPU - b.CPU), RSSBeforeKiB: b.RSSKiB, RSSAfterKiB: a.RSSKiB}
		f.PerPID = append(f.PerPID, pf)
		f.CPUSeconds += a.CPU - b.CPU
		f.RSSBeforeKiB += b.RSSKiB
		f.RSSAfterKiB += a.RSSKiB
	}
	f.CPUSeconds = round3(f.CPUSeconds)
}

func round3(v float64) float64 {
	if v < 0 {
		return -round3(-v)
	}
	return float64(int64(v*1000+0.5)) / 1000
}
