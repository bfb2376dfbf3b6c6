package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/protocol"
)

const defaultURL = "ws://127.0.0.1:8080/ws"

// config is a run's settings, from the flags of one scenario.
type config struct {
	scenario string

	urls           []string
	secret         string
	issuer         string
	audience       string
	tokenURL       string
	duration       time.Duration
	pids           []int
	json           bool
	quiet          bool
	srcIPCount     int
	srcIPs         []net.IP
	connectWorkers int
	connectTimeout time.Duration
	roomPrefix     string
	compression    bool

	conns      int     // idle: connections; fanout: members
	rooms      int     // rooms
	publishers int     // fanout
	rate       float64 // fanout: msg/s in total; churn: cycles/s (0: as fast as possible)
	size       int     // fanout: text size in bytes
	drain      time.Duration
	workers    int // churn
	cycleTO    time.Duration
}

// listFlag is a repeatable flag whose values may also be comma lists.
type listFlag struct {
	vals *[]string
	set  bool
}

func (l *listFlag) String() string {
	if l.vals == nil {
		return ""
	}
	return strings.Join(*l.vals, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.vals = nil // the first use replaces the default
		l.set = true
	}
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.vals = append(*l.vals, part)
		}
	}
	return nil
}

const usageHead = `Usage: chatbench idle|fanout|churn [flags]

chatbench is chatd's load tool. It opens WebSocket connections to one or
more chatd nodes, prints a progress line on stderr every second, and a
table of results on stdout at the end (-json: one JSON object instead).

Scenarios:
  idle     -conns N joined to -rooms R (connection i joins room i%R), held
           for -duration: connect rate, failures, and with -pid the
           server's RSS per connection and CPU.
  fanout   -members N over -rooms R and -publishers P sending -rate msg/s
           in total for -duration: deliveries/s, delivery latency, loss,
           duplicates, out-of-order, server CPU s per million deliveries.
  churn    connect/join/leave/close cycles by -workers C, paced at -rate
           cycles/s or as fast as possible (-rate 0), for -duration:
           cycles/s, failures by kind, cycle latency.

Tokens: -secret (or CHATD_JWT_SECRET) signs HS256 tokens locally, user
"bench-<i>" per connection; -token-url fetches them from a dev-mode
server's POST /api/dev/token. chatd's rate limits must be above what the
scenario sends; see docs/chatbench.md.

Exit status: 0 when the run was clean, 1 when anything failed or (fanout)
was lost, duplicated or out of order, 2 for bad flags.

Run "chatbench SCENARIO -h" for a scenario's flags.
`

// parseConfig parses the flags of scenario.
func parseConfig(scenario string, args []string, getenv func(string) string, out io.Writer) (*config, error) {
	cfg := &config{scenario: scenario}
	fs := flag.NewFlagSet("chatbench "+scenario, flag.ContinueOnError)
	fs.SetOutput(out)

	cfg.urls = []string{defaultURL}
	fs.Var(&listFlag{vals: &cfg.urls}, "url", "chatd WebSocket URL; repeat (or comma-separate) for several nodes: connections are assigned round-robin")
	fs.StringVar(&cfg.secret, "secret", getenv("CHATD_JWT_SECRET"), "the server's HS256 secret, to sign tokens locally [CHATD_JWT_SECRET]")
	fs.StringVar(&cfg.issuer, "issuer", "", "with -secret: the iss claim, when chatd checks one (-jwt-issuer)")
	fs.StringVar(&cfg.audience, "audience", "", "with -secret: the aud claim, when chatd checks one (-jwt-audience)")
	fs.StringVar(&cfg.tokenURL, "token-url", "", "fetch tokens from a dev-mode server instead: http://HOST:PORT/api/dev/token")
	var pids []string
	fs.Var(&listFlag{vals: &pids}, "pid", "server process id for RSS and CPU figures from /proc; repeat or comma-separate")
	fs.BoolVar(&cfg.json, "json", false, "print one JSON object with every figure instead of the table")
	fs.BoolVar(&cfg.quiet, "q", false, "no progress line")
	// A churn connection holds its port only for its cycle (the server
	// closes first, and keeps the TIME_WAIT): one address is enough, and
	// binding each connection to one of several costs two system calls a
	// cycle on the machine the server is measured on.
	srcIPs := 4
	if scenario == "churn" {
		srcIPs = 0
	}
	fs.IntVar(&cfg.srcIPCount, "src-ips", srcIPs, "spread connections over source addresses 127.0.0.1..127.0.0.K (loopback servers only; 0: let the kernel choose)")
	fs.IntVar(&cfg.connectWorkers, "connect-workers", 100, "connections opened concurrently while connecting")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", 15*time.Second, "bound on one connection's dial, upgrade, welcome and joins")
	fs.StringVar(&cfg.roomPrefix, "room-prefix", "", "room names are PREFIX<r>; default bench-<random>- so every run starts with empty rooms")
	fs.BoolVar(&cfg.compression, "compression", false, "offer permessage-deflate")

	switch scenario {
	case "idle":
		fs.IntVar(&cfg.conns, "conns", 1000, "connections")
		fs.IntVar(&cfg.rooms, "rooms", 10, "rooms; connection i joins room i%R")
		fs.DurationVar(&cfg.duration, "duration", 30*time.Second, "how long to hold the connections once all joined")
	case "fanout":
		fs.IntVar(&cfg.conns, "members", 100, "member connections; member i joins room i%R")
		fs.IntVar(&cfg.rooms, "rooms", 1, "rooms")
		fs.IntVar(&cfg.publishers, "publishers", 0, "publisher connections, each its own user (0: ceil(rate/100), so 100 msg/s each)")
		fs.Float64Var(&cfg.rate, "rate", 100, "messages per second, all publishers together")
		fs.IntVar(&cfg.size, "size", 0, "pad message texts to this many bytes (0: no padding, about 40 bytes)")
		fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to publish")
		fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "after publishing, wait at most this long for outstanding deliveries")
	case "churn":
		fs.IntVar(&cfg.workers, "workers", 64, "concurrent workers, each running one cycle at a time")
		fs.IntVar(&cfg.rooms, "rooms", 100, "rooms; a cycle joins room (cycle number)%R")
		fs.Float64Var(&cfg.rate, "rate", 0, "cycles per second in total (0: as fast as the workers go)")
		fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to run cycles")
		fs.DurationVar(&cfg.cycleTO, "cycle-timeout", 10*time.Second, "bound on one cycle")
	default:
		return nil, fmt.Errorf("unknown scenario %q: use idle, fanout or churn (chatbench -h)", scenario)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: chatbench %s [flags]\n\n", scenario)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags come after the scenario: chatbench %s -h)", fs.Arg(0), scenario)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	for _, p := range pids {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-pid %q is not a process id", p)
		}
		cfg.pids = append(cfg.pids, n)
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, u := range cfg.urls {
		if !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			bad("-url %q must be a ws:// or wss:// URL, like %s", u, defaultURL)
		}
	}
	loopback := true
	for _, u := range cfg.urls {
		loopback = loopback && isLoopbackURL(u)
	}
	switch {
	case cfg.srcIPCount < 0 || cfg.srcIPCount > 254:
		bad("-src-ips %d must be from 0 to 254", cfg.srcIPCount)
	case !loopback && given["src-ips"] && cfg.srcIPCount > 0:
		bad("-src-ips needs loopback server URLs (127.x.x.x or localhost): 127.0.0.x cannot reach another host")
	case loopback:
		for k := 1; k <= cfg.srcIPCount; k++ {
			cfg.srcIPs = append(cfg.srcIPs, net.IPv4(127, 0, 0, byte(k)))
		}
	}
	if cfg.duration <= 0 {
		bad("-duration %v must be positive", cfg.duration)
	}
	if cfg.connectWorkers < 1 {
		bad("-connect-workers %d must be at least 1", cfg.connectWorkers)
	}
	if cfg.connectTimeout <= 0 {
		bad("-connect-timeout %v must be positive", cfg.connectTimeout)
	}
	if cfg.roomPrefix == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		cfg.roomPrefix = "bench-" + hex.EncodeToString(b[:]) + "-"
	}
	if room := cfg.roomPrefix + strconv.Itoa(max(cfg.rooms, 1)-1); !protocol.ValidRoom(room) {
		bad("-room-prefix %q makes invalid room names like %q: use A-Z a-z 0-9 _ . : - and at most 64 bytes in all", cfg.roomPrefix, room)
	}
	if cfg.rooms < 1 {
		bad("-rooms %d must be at least 1", cfg.rooms)
	}
	switch scenario {
	case "idle":
		if cfg.conns < 1 {
			bad("-conns %d must be at least 1", cfg.conns)
		}
	case "fanout":
		if cfg.conns < 1 {
			bad("-members %d must be at least 1", cfg.conns)
		}
		if cfg.rate <= 0 || math.IsInf(cfg.rate, 0) || math.IsNaN(cfg.rate) {
			bad("-rate %v must be a positive number of messages per second", cfg.rate)
		}
		if cfg.publishers < 0 {
			bad("-publishers %d must be 0 (automatic) or more", cfg.publishers)
		}
		if cfg.publishers == 0 && cfg.rate > 0 {
			cfg.publishers = int(math.Ceil(cfg.rate / 100))
		}
		if cfg.size < 0 || cfg.size > 4000 {
			bad("-size %d must be from 0 to 4000 bytes (chatd's default text limit is 4096)", cfg.size)
		}
		if cfg.publishers > 0 && cfg.rooms > cfg.publishers*256 {
			bad("-rooms %d needs more publishers: one connection may join at most 256 rooms (use -publishers %d)", cfg.rooms, (cfg.rooms+255)/256)
		}
		if cfg.drain < 0 {
			bad("-drain %v must not be negative", cfg.drain)
		}
	case "churn":
		if cfg.workers < 1 {
			bad("-workers %d must be at least 1", cfg.workers)
		}
		if cfg.rate < 0 || math.IsInf(cfg.rate, 0) || math.IsNaN(cfg.rate) {
			bad("-rate %v must be 0 (as fast as possible) or a positive number of cycles per second", cfg.rate)
		}
		if cfg.cycleTO <= 0 {
			bad("-cycle-timeout %v must be positive", cfg.cycleTO)
		}
	}
	switch {
	case cfg.tokenURL != "":
		if u, err := url.Parse(cfg.tokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("-token-url %q must be an http:// or https:// URL, like http://127.0.0.1:8080/api/dev/token", cfg.tokenURL)
		}
		if given["secret"] {
			bad("give either -secret (sign tokens here) or -token-url (fetch them from a dev-mode server), not both")
		}
		if cfg.issuer != "" || cfg.audience != "" {
			bad("-issuer and -audience go with -secret: a dev-mode server signs its own tokens")
		}
	case cfg.secret == "":
		bad("no way to get tokens: give -secret (or set CHATD_JWT_SECRET) with the server's HS256 secret, or -token-url http://HOST:PORT/api/dev/token for a dev-mode server")
	case len(cfg.secret) < auth.MinSecretLen:
		bad("-secret (CHATD_JWT_SECRET) is %d bytes, but chatd's HS256 secret is at least %d: give the server's own secret", len(cfg.secret), auth.MinSecretLen)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func (cfg *config) room(r int) string { return cfg.roomPrefix + strconv.Itoa(r) }
