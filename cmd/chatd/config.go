package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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

	fs.StringVar(&cfg.jwtSecret, "jwt-secret", "", "HS256 secret, at least 32 bytes; with no secret and no public key chatd runs in dev mode")
	fs.StringVar(&cfg.jwtPublicKey, "jwt-public-key", "", "PEM file with the RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key that verifies tokens")
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
		fmt.Fprintf(out, "Usage: chatd [flags]\n       chatd token -sub USER [-name NAME] [-ttl 1h] [-rooms a,b*] [-admin]\n\n")
		fmt.Fprintf(out, "chatd is a WebSocket chat server. Every flag can also be set with the environment\nvariable shown; a flag on the command line wins.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			env := envName(f.Name)
			if a, ok := envAliases[f.Name]; ok {
				env = a
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(out, "  -%s  [%s]\n    \t%s%s\n", f.Name, env, f.Usage, def)
		})
	}
	return fs
}

// parseConfig reads flags from args and, for flags not given, the
// environment through getenv. Errors name the flag or variable and what a
// valid value looks like.
func parseConfig(args []string, getenv func(string) string, usageOut io.Writer) (*config, error) {
	cfg := &config{}
	fs := newFlagSet(cfg, usageOut)
	if err := fs.Parse(args); err != nil {
		return nil, err
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
			errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, cleanFlagError(err)))
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

func cleanFlagError(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "parse error") || strings.Contains(msg, "invalid syntax") {
		return "not a valid value"
	}
	return msg
}

// finish derives the server configuration and checks what depends on
// several settings.
func (cfg *config) finish() error {
	s := &cfg.srv
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key (CHATD_TLS_CERT, CHATD_TLS_KEY) must be given together")
	}
	if cfg.jwtSecret != "" && cfg.jwtPublicKey != "" {
		return errors.New("set either CHATD_JWT_SECRET (HS256) or CHATD_JWT_PUBLIC_KEY (RS256/ES256/EdDSA), not both")
	}
	if cfg.jwtSecret != "" {
		if len(cfg.jwtSecret) < 32 {
			return fmt.Errorf("CHATD_JWT_SECRET is %d bytes; HS256 needs at least 32 (generate one with: openssl rand -base64 32)", len(cfg.jwtSecret))
		}
		s.Auth.Secret = []byte(cfg.jwtSecret)
	}
	if cfg.jwtPublicKey != "" {
		pem, err := os.ReadFile(cfg.jwtPublicKey)
		if err != nil {
			return fmt.Errorf("CHATD_JWT_PUBLIC_KEY: %w", err)
		}
		s.Auth.PublicKeyPEM = pem
	}
	s.AllowedOrigins = splitList(cfg.origins)
	s.TrustedProxies = splitList(cfg.proxies)
	if cfg.historySize < 1 {
		return fmt.Errorf("history size %d must be at least 1 (CHATD_HISTORY_SIZE)", cfg.historySize)
	}
	if cfg.historyTTL < time.Second {
		return fmt.Errorf("history TTL %v must be at least 1s (CHATD_HISTORY_TTL)", cfg.historyTTL)
	}
	switch cfg.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q must be debug, info, warn or error (CHATD_LOG_LEVEL)", cfg.logLevel)
	}
	switch cfg.logFormat {
	case "auto", "json", "console":
	default:
		return fmt.Errorf("log format %q must be auto, json or console (CHATD_LOG_FORMAT)", cfg.logFormat)
	}
	if cfg.maxConns < 0 {
		return fmt.Errorf("max connections %d must be 0 (automatic) or more (CHATD_MAX_CONNS)", cfg.maxConns)
	}
	s.MaxConns = cfg.maxConns
	if s.NodeID == "" {
		s.NodeID = defaultNodeID()
	}
	return validateServer(*s)
}

func validateServer(s server.Config) error {
	// Validate what the server would; defaults are already in place for
	// every flag, so zero values here were given explicitly.
	return s.Validate()
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
	if err != nil || host == "" {
		host = "chatd"
	}
	return host + "-" + strconv.FormatInt(time.Now().UnixNano()%46656, 36)
}
