package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chatd/chatd/internal/server"
)

// config is everything chatd is configured with: flags, each with a
// CHATD_* environment variable that applies when the flag is not given.
type config struct {
	addr         string
	redisURL     string
	redisCluster bool
	tlsCert      string
	tlsKey       string
	logLevel     string
	logFormat    string
	jwtSecret    string
	jwtPublicKey string
	historySize  int
	historyTTL   time.Duration
	maxConns     int64
	origins      string
	proxies      string
	pprofAddr    string
	ioUring      bool
	srv          server.Config
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "CHATD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envAliases are environment names that differ from envName(flag).
var envAliases = map[string]string{
	"redis": "CHATD_REDIS_URL",
}

func newFlagSet(cfg *config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(out)
	d := server.Defaults
	s := &cfg.srv

	fs.StringVar(&cfg.addr, "addr", ":8080", "listen address, host:port")
	fs.StringVar(&s.NodeID, "node-id", "", "this node's id, shown in welcome.node, logs and metrics (default: hostname and a random suffix)")
	fs.StringVar(&cfg.redisURL, "redis", "", "Redis URL (redis://host:6379/0, rediss://, redis+cluster://); empty runs a single node with an in-memory broker")
	fs.BoolVar(&cfg.redisCluster, "redis-cluster", false, "treat the Redis URL as a Redis Cluster seed")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with -tls-key serves https:// and wss:// directly")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.logFormat, "log-format", "auto", "log format: json, console, or auto (console on a terminal)")
	fs.StringVar(&cfg.pprofAddr, "pprof", "", "serve Go profiles (net/http/pprof) at http://ADDR/debug/pprof/ on a listener of their own, e.g. 127.0.0.1:6060; off when empty, keep it on loopback")

	fs.StringVar(&cfg.jwtSecret, "jwt-secret", "", "HS256 secret, at least 32 bytes; with no secret and no public key chatd runs in dev mode")
	fs.StringVar(&cfg.jwtPublicKey, "jwt-public-key", "", "PEM file with the RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key that verifies tokens")
	fs.BoolVar(&s.DevTokens, "dev-tokens", false, "with -jwt-secret, hand out tokens signed with it to anyone at POST /api/dev/token, so a test cluster's browser client signs in by name on any node; never in production (refused with -jwt-public-key)")
	fs.StringVar(&s.Auth.Issuer, "jwt-issuer", "", "required token issuer (iss), when set")
	fs.StringVar(&s.Auth.Audience, "jwt-audience", "", "required token audience (aud), when set")
	fs.StringVar(&cfg.origins, "allowed-origins", "", "comma-separated allowed Origins (https://chat.example.com, https://*.example.com, *); empty allows the server's own host only")
	fs.StringVar(&cfg.proxies, "trusted-proxies", "", "comma-separated IPs or CIDRs of proxies whose X-Forwarded-For is trusted")

	fs.DurationVar(&s.Heartbeat, "heartbeat", d.Heartbeat, "interval between server pings")
	fs.DurationVar(&s.PongTimeout, "pong-timeout", d.PongTimeout, "how long after a ping a silent client is closed")
	fs.DurationVar(&s.WriteTimeout, "write-timeout", d.WriteTimeout, "longest write to a client before it is dropped")
	fs.IntVar(&cfg.historySize, "history-size", 1000, "messages retained per room")
	fs.DurationVar(&cfg.historyTTL, "history-ttl", 24*time.Hour, "how long messages are retained")
	fs.IntVar(&s.HistoryLimit, "history-limit", d.HistoryLimit, "messages in joined.history when joining without since (1-100)")
	fs.Int64Var(&s.ReadLimit, "read-limit", d.ReadLimit, "largest WebSocket message from a client, in bytes (larger closes with 1009)")
	fs.IntVar(&s.MaxText, "max-text", d.MaxText, "largest message text, in bytes")
	fs.IntVar(&s.QueueSize, "queue-size", d.QueueSize, "outbound queue per connection, in messages; a client that lets it fill is closed with 1013")
	fs.IntVar(&s.MaxRooms, "max-rooms", d.MaxRooms, "rooms one connection may be in")
	fs.BoolVar(&s.Compression, "compression", true, "negotiate permessage-deflate with clients that offer it")
	fs.BoolVar(&cfg.ioUring, "io-uring", true, "on Linux, make a fan-out's socket writes through io_uring, many per system call, where the kernel allows it (else, and when off, one write(2) each)")

	fs.Float64Var(&s.SendRate, "send-rate", d.SendRate, "messages per second per connection")
	fs.IntVar(&s.SendBurst, "send-burst", d.SendBurst, "message burst per connection")
	fs.Float64Var(&s.UserRate, "user-rate", d.UserRate, "messages per second per user, across connections")
	fs.IntVar(&s.UserBurst, "user-burst", d.UserBurst, "message burst per user")
	fs.Float64Var(&s.CommandRate, "command-rate", d.CommandRate, "commands of any kind per second per connection")
	fs.IntVar(&s.CommandBurst, "command-burst", d.CommandBurst, "command burst per connection")
	fs.IntVar(&s.AbuseStrikes, "abuse-strikes", d.AbuseStrikes, "rate-limit denials within -abuse-window that close a connection with 1008")
	fs.DurationVar(&s.AbuseWindow, "abuse-window", d.AbuseWindow, "window for -abuse-strikes")
	fs.Float64Var(&s.UpgradeRate, "upgrade-rate", d.UpgradeRate, "WebSocket upgrades per second per client IP (429 beyond)")
	fs.IntVar(&s.UpgradeBurst, "upgrade-burst", d.UpgradeBurst, "upgrade burst per client IP")
	fs.Int64Var(&cfg.maxConns, "max-conns", 0, "connections on this node, 503 beyond (default: the open-file limit less 256)")
	fs.DurationVar(&s.DrainWindow, "drain-window", d.DrainWindow, "at shutdown, spread client reconnects and 1001 closes over this long")
	fs.DurationVar(&s.DrainTimeout, "drain-timeout", d.DrainTimeout, "at shutdown, wait at most this long for connections to close")

	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: chatd [flags]\n")
		fmt.Fprintf(out, "       chatd token -sub USER [-name NAME] [-ttl 1h] [-rooms a,b*] [-admin]   print a token (chatd token -h)\n")
		fmt.Fprintf(out, "       chatd cert [-host localhost] [-out localhost.pem]                      write a self-signed certificate\n")
		fmt.Fprintf(out, "       chatd healthcheck [-addr :8080]                                        ask this machine's chatd for /healthz\n")
		fmt.Fprintf(out, "       chatd version                                                          print the version, commit and Go version of this build\n\n")
		fmt.Fprintf(out, "chatd is a WebSocket chat server. Every flag can also be set with the environment\nvariable shown; a flag on the command line wins.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if d := flagDefault(f); d != "" {
				def = " (default " + d + ")"
			}
			fmt.Fprintf(out, "  -%s  [%s]\n    \t%s%s\n", f.Name, flagEnv(f.Name), f.Usage, def)
		})
	}
	return fs
}

// flagEnv is the environment variable of a flag.
func flagEnv(name string) string {
	if a, ok := envAliases[name]; ok {
		return a
	}
	return envName(name)
}

// flagDefault is a flag's default as -h shows it; "" for an empty string,
// zero or false.
func flagDefault(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false":
		return ""
	}
	return f.DefValue
}

// flagKind says what a valid value of a flag looks like, for errors.
func flagKind(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "a valid value"
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration like 500ms, 25s or 1m30s"
	case bool:
		return "true or false"
	case int, int64:
		return "a whole number"
	case float64:
		return "a number"
	}
	return "a valid value"
}

// setting names a flag and its environment variable in an error.
func setting(name string) string { return "-" + name + " (" + flagEnv(name) + ")" }

// serverFlags maps the fields of server.Config to the flags that set them.
var serverFlags = map[string]string{
	"NodeID": "node-id", "Heartbeat": "heartbeat", "PongTimeout": "pong-timeout", "WriteTimeout": "write-timeout",
	"ReadLimit": "read-limit", "MaxText": "max-text", "HistoryLimit": "history-limit", "QueueSize": "queue-size",
	"MaxRooms": "max-rooms", "SendRate": "send-rate", "SendBurst": "send-burst", "UserRate": "user-rate",
	"UserBurst": "user-burst", "CommandRate": "command-rate", "CommandBurst": "command-burst",
	"AbuseStrikes": "abuse-strikes", "AbuseWindow": "abuse-window", "UpgradeRate": "upgrade-rate",
	"UpgradeBurst": "upgrade-burst", "MaxConns": "max-conns", "DrainWindow": "drain-window",
	"DrainTimeout": "drain-timeout", "Auth.Secret": "jwt-secret", "Auth.PublicKeyPEM": "jwt-public-key",
	"Auth.Issuer": "jwt-issuer", "Auth.Audience": "jwt-audience", "AllowedOrigins": "allowed-origins",
	"TrustedProxies": "trusted-proxies", "Compression": "compression", "DevTokens": "dev-tokens",
}

// parseConfig reads flags from args and, for flags not given, the
// environment through getenv. Errors name the flag and its variable and
// say what a valid value looks like, on one line. -h writes the usage to
// usageOut and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, usageOut io.Writer) (*config, error) {
	cfg := &config{}
	fs := newFlagSet(cfg, usageOut)
	// The flag package would print its own error and the whole usage;
	// one line is what a misconfigured deployment's log needs.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(usageOut)
			fs.Usage()
			return nil, err
		}
		return nil, flagError(fs, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see chatd -h)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, name := range names {
		if given[name] {
			continue
		}
		env := envName(name)
		if a, ok := envAliases[name]; ok {
			env = a
		}
		v, ok := lookup(getenv, env)
		if !ok {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not %s", env, v, flagKind(fs.Lookup(name))))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, cfg.finish()
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// flagErrorPattern matches the flag package's message for a bad value.
var flagErrorPattern = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for flag -([^:]+): `)

// flagError rewrites an error of fs.Parse into one line that says how to
// fix it.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if m := flagErrorPattern.FindStringSubmatch(msg); m != nil {
		if f := fs.Lookup(m[2]); f != nil {
			return fmt.Errorf("-%s %q is not %s", m[2], m[1], flagKind(f))
		}
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag -%s (chatd -h lists them)", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("-%s needs a value (chatd -h says what it takes)", name)
	}
	return err
}

// finish derives the server configuration and checks what depends on
// several settings.
func (cfg *config) finish() error {
	s := &cfg.srv
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return fmt.Errorf("%s and %s must be given together", setting("tls-cert"), setting("tls-key"))
	}
	for _, f := range []struct{ name, path string }{{"tls-cert", cfg.tlsCert}, {"tls-key", cfg.tlsKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %v (chatd cert writes a self-signed one for tests)", setting(f.name), err)
		}
	}
	if cfg.jwtSecret != "" && cfg.jwtPublicKey != "" {
		return fmt.Errorf("set either %s (HS256) or %s (RS256, ES256, EdDSA), not both", setting("jwt-secret"), setting("jwt-public-key"))
	}
	if cfg.jwtSecret != "" {
		if len(cfg.jwtSecret) < 32 {
			return fmt.Errorf("%s is %d bytes; HS256 needs at least 32 (generate one with: openssl rand -base64 32)", setting("jwt-secret"), len(cfg.jwtSecret))
		}
		s.Auth.Secret = []byte(cfg.jwtSecret)
	}
	if cfg.jwtPublicKey != "" {
		pem, err := os.ReadFile(cfg.jwtPublicKey)
		if err != nil {
			return fmt.Errorf("%s: %v (give the path of a PEM public key file)", setting("jwt-public-key"), err)
		}
		s.Auth.PublicKeyPEM = pem
	}
	s.AllowedOrigins = splitList(cfg.origins)
	s.TrustedProxies = splitList(cfg.proxies)
	if cfg.historySize < 1 {
		return fmt.Errorf("%s %d must be at least 1", setting("history-size"), cfg.historySize)
	}
	if cfg.historyTTL < time.Second {
		return fmt.Errorf("%s %v must be at least 1s", setting("history-ttl"), cfg.historyTTL)
	}
	switch cfg.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("%s %q must be debug, info, warn or error", setting("log-level"), cfg.logLevel)
	}
	switch cfg.logFormat {
	case "auto", "json", "console":
	default:
		return fmt.Errorf("%s %q must be auto, json or console", setting("log-format"), cfg.logFormat)
	}
	if cfg.maxConns < 0 {
		return fmt.Errorf("%s %d must be 0 (automatic) or more", setting("max-conns"), cfg.maxConns)
	}
	s.MaxConns = cfg.maxConns
	if s.NodeID == "" {
		s.NodeID = defaultNodeID()
	}
	if strings.ContainsAny(s.NodeID, "{}") {
		return fmt.Errorf("%s %q must not contain { or }", setting("node-id"), s.NodeID)
	}
	if err := checkRedisURL(cfg.redisURL, cfg.redisCluster); err != nil {
		return err
	}
	return validateServer(*s)
}

// validateServer checks what server.New would, and names the flag of each
// invalid setting. Defaults are already in place for every flag, so a zero
// here was given explicitly.
func validateServer(s server.Config) error {
	err := s.Validate()
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range unjoin(err) {
		var ce *server.ConfigError
		if errors.As(e, &ce) {
			if name, ok := serverFlags[ce.Field]; ok {
				e = fmt.Errorf("%s: %s", setting(name), ce.Msg)
			}
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func defaultNodeID() string {
	host, err := os.Hostname()
	// The first label of the host name, in the characters a node id may
	// have, short enough for the suffix.
	host, _, _ = strings.Cut(host, ".")
	host = strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return r
		}
		return '-'
	}, host)
	host = host[:min(len(host), 56)]
	if err != nil || host == "" {
		host = "chatd"
	}
	// A random suffix: two nodes started at once on hosts of one name
	// (containers) must not share an id, or they share presence claims.
	return host + "-" + strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36)
}
