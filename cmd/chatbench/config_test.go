package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	sec := []string{"-secret", testSecret}
	with := func(args ...string) []string { return append(append([]string{}, sec...), args...) }
	cases := []struct {
		name     string
		scenario string
		args     []string
		env      map[string]string
		check    func(t *testing.T, c *config)
	}{
		{"idle defaults", "idle", sec, nil, func(t *testing.T, c *config) {
			if c.conns != 1000 || c.rooms != 10 || c.duration != 30*time.Second || len(c.urls) != 1 || c.urls[0] != defaultURL {
				t.Errorf("%+v", c)
			}
			want := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3), net.IPv4(127, 0, 0, 4)}
			if !reflect.DeepEqual(c.srcIPs, want) {
				t.Errorf("source addresses %v, want %v", c.srcIPs, want)
			}
			if !strings.HasPrefix(c.roomPrefix, "bench-") || c.room(3) != c.roomPrefix+"3" {
				t.Errorf("room prefix %q", c.roomPrefix)
			}
		}},
		{"secret from the environment", "idle", nil, map[string]string{"CHATD_JWT_SECRET": testSecret}, func(t *testing.T, c *config) {
			if c.secret != testSecret {
				t.Errorf("secret %q", c.secret)
			}
		}},
		{"token url wins over an environment secret", "churn", []string{"-token-url", "http://127.0.0.1:8080/api/dev/token"},
			map[string]string{"CHATD_JWT_SECRET": testSecret}, func(t *testing.T, c *config) {
				if c.tokenURL == "" {
					t.Error("no token url")
				}
			}},
		{"urls repeated and comma-separated", "fanout",
			with("-url", "ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws", "-url", "ws://localhost:8083/ws"), nil,
			func(t *testing.T, c *config) {
				if len(c.urls) != 3 || c.urls[2] != "ws://localhost:8083/ws" {
					t.Errorf("urls %q", c.urls)
				}
			}},
		{"pids repeated and comma-separated", "idle", with("-pid", "12,13", "-pid", "14"), nil, func(t *testing.T, c *config) {
			if !reflect.DeepEqual(c.pids, []int{12, 13, 14}) {
				t.Errorf("pids %v", c.pids)
			}
		}},
		{"fanout publishers follow the rate", "fanout", with("-rate", "250"), nil, func(t *testing.T, c *config) {
			if c.publishers != 3 || c.conns != 100 || c.rooms != 1 {
				t.Errorf("publishers %d members %d rooms %d", c.publishers, c.conns, c.rooms)
			}
		}},
		{"fanout explicit", "fanout", with("-members", "1000", "-rooms", "10", "-publishers", "5", "-rate", "1000", "-size", "512", "-drain", "0s"), nil,
			func(t *testing.T, c *config) {
				if c.conns != 1000 || c.rooms != 10 || c.publishers != 5 || c.rate != 1000 || c.size != 512 || c.drain != 0 {
					t.Errorf("%+v", c)
				}
				if c.connectionsNeeded() != 1005 {
					t.Errorf("connections needed %d", c.connectionsNeeded())
				}
			}},
		{"churn paced", "churn", with("-workers", "8", "-rate", "500", "-cycle-timeout", "3s"), nil, func(t *testing.T, c *config) {
			if c.workers != 8 || c.rate != 500 || c.cycleTO != 3*time.Second || c.rooms != 100 || c.connectionsNeeded() != 8 {
				t.Errorf("%+v", c)
			}
		}},
		{"churn: the kernel picks the source", "churn", with(), nil, func(t *testing.T, c *config) {
			if len(c.srcIPs) != 0 {
				t.Errorf("source addresses %v for churn", c.srcIPs)
			}
		}},
		{"churn: source addresses when asked", "churn", with("-src-ips", "4"), nil, func(t *testing.T, c *config) {
			if len(c.srcIPs) != 4 {
				t.Errorf("source addresses %v, want 4", c.srcIPs)
			}
		}},
		{"idle: four source addresses", "idle", with(), nil, func(t *testing.T, c *config) {
			if len(c.srcIPs) != 4 {
				t.Errorf("source addresses %v, want 4", c.srcIPs)
			}
		}},
		{"no source addresses", "idle", with("-src-ips", "0"), nil, func(t *testing.T, c *config) {
			if len(c.srcIPs) != 0 {
				t.Errorf("source addresses %v", c.srcIPs)
			}
		}},
		{"remote server: kernel picks the source", "idle", with("-url", "wss://chat.example.com/ws"), nil, func(t *testing.T, c *config) {
			if len(c.srcIPs) != 0 {
				t.Errorf("source addresses %v for a remote server", c.srcIPs)
			}
		}},
		{"room prefix", "idle", with("-room-prefix", "load:"), nil, func(t *testing.T, c *config) {
			if c.room(7) != "load:7" {
				t.Errorf("room %q", c.room(7))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			var out bytes.Buffer
			c, err := parseConfig(tc.scenario, tc.args, getenv, &out)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			tc.check(t, c)
		})
	}
}

// TestParseConfigErrors: every invalid flag or combination is refused,
// and the error names the flag and says what is valid.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	sec := []string{"-secret", testSecret}
	with := func(args ...string) []string { return append(append([]string{}, sec...), args...) }
	cases := []struct {
		name     string
		scenario string
		args     []string
		want     []string // all in the error
	}{
		{"unknown scenario", "stress", sec, []string{`unknown scenario "stress"`, "idle, fanout or churn"}},
		{"no tokens", "idle", nil, []string{"no way to get tokens", "-secret", "CHATD_JWT_SECRET", "-token-url"}},
		{"short secret", "idle", []string{"-secret", "short"}, []string{"-secret", "5 bytes", "at least 32"}},
		{"secret and token url", "idle", with("-token-url", "http://127.0.0.1:8080/api/dev/token"), []string{"either -secret", "-token-url", "not both"}},
		{"token url not http", "idle", []string{"-token-url", "ws://127.0.0.1:8080/api/dev/token"}, []string{"-token-url", "http://"}},
		{"issuer with token url", "idle", []string{"-token-url", "http://127.0.0.1:8080/api/dev/token", "-issuer", "x"}, []string{"-issuer and -audience go with -secret"}},
		{"url not ws", "idle", with("-url", "http://127.0.0.1:8080/ws"), []string{`-url "http://127.0.0.1:8080/ws"`, "ws:// or wss://"}},
		{"src ips out of range", "idle", with("-src-ips", "300"), []string{"-src-ips 300", "0 to 254"}},
		{"src ips negative", "idle", with("-src-ips", "-1"), []string{"-src-ips -1"}},
		{"src ips for a remote server", "idle", with("-url", "ws://10.0.0.5:8080/ws", "-src-ips", "4"), []string{"-src-ips needs loopback"}},
		{"bad pid", "idle", with("-pid", "abc"), []string{`-pid "abc"`, "not a process id"}},
		{"zero pid", "idle", with("-pid", "0"), []string{`-pid "0"`}},
		{"zero duration", "idle", with("-duration", "0s"), []string{"-duration 0s", "positive"}},
		{"negative duration", "churn", with("-duration", "-1s"), []string{"-duration -1s"}},
		{"no connect workers", "idle", with("-connect-workers", "0"), []string{"-connect-workers 0", "at least 1"}},
		{"zero connect timeout", "idle", with("-connect-timeout", "0s"), []string{"-connect-timeout 0s"}},
		{"bad room prefix", "idle", with("-room-prefix", "a b"), []string{`-room-prefix "a b"`, "invalid room names"}},
		{"room prefix too long", "idle", with("-room-prefix", strings.Repeat("r", 64)), []string{"at most 64 bytes"}},
		{"zero rooms", "idle", with("-rooms", "0"), []string{"-rooms 0", "at least 1"}},
		{"zero conns", "idle", with("-conns", "0"), []string{"-conns 0", "at least 1"}},
		{"zero members", "fanout", with("-members", "0"), []string{"-members 0"}},
		{"zero rate", "fanout", with("-rate", "0"), []string{"-rate 0", "positive number of messages"}},
		{"infinite rate", "fanout", with("-rate", "+Inf"), []string{"-rate +Inf"}},
		{"NaN rate", "fanout", with("-rate", "NaN"), []string{"-rate NaN"}},
		{"negative publishers", "fanout", with("-publishers", "-2"), []string{"-publishers -2"}},
		{"size too large", "fanout", with("-size", "5000"), []string{"-size 5000", "0 to 4000"}},
		{"negative size", "fanout", with("-size", "-1"), []string{"-size -1"}},
		{"too many rooms for the publishers", "fanout", with("-rooms", "600", "-publishers", "2"), []string{"-rooms 600 needs more publishers", "-publishers 3"}},
		{"negative drain", "fanout", with("-drain", "-1s"), []string{"-drain -1s"}},
		{"zero workers", "churn", with("-workers", "0"), []string{"-workers 0"}},
		{"negative churn rate", "churn", with("-rate", "-5"), []string{"-rate -5", "0 (as fast as possible)"}},
		{"zero cycle timeout", "churn", with("-cycle-timeout", "0s"), []string{"-cycle-timeout 0s"}},
		{"flag of another scenario", "idle", with("-members", "5"), []string{"-members"}},
		{"not a number", "idle", with("-conns", "many"), []string{"-conns"}},
		{"stray argument", "idle", with("extra"), []string{`unexpected argument "extra"`}},
		{"several errors at once", "fanout", with("-members", "0", "-rate", "-1"), []string{"-members 0", "-rate -1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := parseConfig(tc.scenario, tc.args, noEnv, &out)
			if err == nil {
				t.Fatalf("parseConfig(%q, %q) accepted it", tc.scenario, tc.args)
			}
			msg := err.Error()
			if fe := out.String(); fe != "" {
				msg += " " + fe // the flag package prints its own parse errors
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestRunUsage: bad flags exit 2 with the error on stderr; -h and help
// print the usage and exit 0.
func TestRunUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args       []string
		code       int
		stdout     string
		stderrPart string
	}{
		{nil, 2, "", "Usage: chatbench idle|fanout|churn"},
		{[]string{"help"}, 0, "Usage: chatbench idle|fanout|churn", ""},
		{[]string{"-h"}, 0, "Scenarios:", ""},
		{[]string{"idle", "-h"}, 0, "", "-conns"},
		{[]string{"fanout", "-h"}, 0, "", "-publishers"},
		{[]string{"churn", "-h"}, 0, "", "-cycle-timeout"},
		{[]string{"bogus"}, 2, "", `chatbench: unknown scenario "bogus"`},
		{[]string{"fanout", "-members", "0", "-rate", "-1"}, 2, "", "chatbench: -members 0"},
	}
	for _, tc := range cases {
		out := runBenchRaw(tc.args)
		if out.code != tc.code || !strings.Contains(out.stdout, tc.stdout) || !strings.Contains(out.stderr, tc.stderrPart) {
			t.Errorf("chatbench %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, out.code, out.stdout, out.stderr, tc.code, tc.stdout, tc.stderrPart)
		}
	}
	// Several errors: one per line, each with the prefix.
	out := runBenchRaw([]string{"fanout", "-members", "0", "-rate", "-1"})
	if !strings.Contains(out.stderr, "\nchatbench: -rate -1") {
		t.Errorf("stderr %q", out.stderr)
	}
}

func runBenchRaw(args []string) runOutput {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, noEnv, &stdout, &stderr)
	return runOutput{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestListFlag(t *testing.T) {
	t.Parallel()
	vals := []string{"default"}
	l := &listFlag{vals: &vals}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(l, "x", "")
	if err := fs.Parse([]string{"-x", "a, b", "-x", ",c,", "-x", "d"}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vals, []string{"a", "b", "c", "d"}) || l.String() != "a,b,c,d" {
		t.Errorf("values %q, String %q", vals, l.String())
	}
}
