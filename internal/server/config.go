// Package server is chatd's HTTP and WebSocket front: the routes, the
// checks made before an upgrade (origin, token, subprotocol, admission),
// the per-connection session that speaks the protocol of PROTOCOL.md, the
// metrics, and the graceful drain at shutdown. It wires the hub, auth,
// ratelimit and ws packages together; cmd/chatd only parses configuration.
package server

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/clientip"
	"github.com/chatd/chatd/internal/protocol"
)

// Config is the server's configuration. Zero fields take the defaults
// listed in Defaults.
type Config struct {
	// NodeID names this node in welcome.node, logs and metrics.
	NodeID string

	// Auth is the token verification configuration. With neither a secret
	// nor a public key, the server runs in dev mode: a random secret, and
	// POST /api/dev/token enabled.
	Auth auth.Config
	// DevTokens enables POST /api/dev/token with a configured HS256
	// secret: tokens for any name, signed with Auth.Secret, which every
	// node sharing the secret accepts. It is for test clusters whose
	// browser client signs in by name; a public key cannot sign, so it is
	// refused with one. Without any key it changes nothing (dev mode
	// hands out tokens anyway).
	DevTokens bool
	// AllowedOrigins is the Origin allow-list; empty means same-host only.
	AllowedOrigins []string
	// TrustedProxies are the addresses (IPs or CIDRs) whose
	// X-Forwarded-For is believed.
	TrustedProxies []string

	Heartbeat    time.Duration // server ping interval
	PongTimeout  time.Duration // further wait for any frame after a ping
	WriteTimeout time.Duration // a write to a client that takes longer fails it
	ReadLimit    int64         // largest WebSocket message from a client
	MaxText      int           // largest message text, in bytes
	HistoryLimit int           // messages in joined.history without since
	QueueSize    int           // outbound queue per connection, in messages
	MaxRooms     int           // rooms one connection may be in
	Compression  bool          // negotiate permessage-deflate

	SendRate     float64 // messages per second per connection
	SendBurst    int
	UserRate     float64 // messages per second per user, all connections
	UserBurst    int
	CommandRate  float64 // commands of any kind per second per connection
	CommandBurst int
	// AbuseStrikes denials within AbuseWindow close the connection (1008).
	AbuseStrikes int
	AbuseWindow  time.Duration

	UpgradeRate  float64 // WebSocket upgrades per second per client IP
	UpgradeBurst int
	MaxConns     int64 // connections on this node; 0 means unlimited

	// DrainWindow spreads the reconnects of drained clients
	// (draining.reconnect_ms) and the 1001 closes over this long.
	DrainWindow time.Duration
	// DrainTimeout bounds the whole drain at shutdown.
	DrainTimeout time.Duration
}

// Defaults is the configuration a zero field falls back to.
var Defaults = Config{
	Heartbeat:    25 * time.Second,
	PongTimeout:  10 * time.Second,
	WriteTimeout: 10 * time.Second,
	ReadLimit:    64 << 10,
	MaxText:      protocol.DefaultMaxText,
	HistoryLimit: protocol.DefaultHistoryLimit,
	QueueSize:    256,
	MaxRooms:     256,
	SendRate:     10,
	SendBurst:    20,
	UserRate:     20,
	UserBurst:    40,
	CommandRate:  50,
	CommandBurst: 100,
	AbuseStrikes: 100, // 10 denials a second for 10 s: twice the send rate
	AbuseWindow:  10 * time.Second,
	UpgradeRate:  50,
	UpgradeBurst: 200,
	DrainWindow:  5 * time.Second,
	DrainTimeout: 15 * time.Second,
}

// withDefaults fills zero fields from Defaults.
func (c Config) withDefaults() Config {
	d := Defaults
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setF := func(v *float64, def float64) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.Heartbeat, d.Heartbeat)
	setDur(&c.PongTimeout, d.PongTimeout)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	if c.ReadLimit == 0 {
		c.ReadLimit = d.ReadLimit
	}
	setInt(&c.MaxText, d.MaxText)
	setInt(&c.HistoryLimit, d.HistoryLimit)
	setInt(&c.QueueSize, d.QueueSize)
	setInt(&c.MaxRooms, d.MaxRooms)
	setF(&c.SendRate, d.SendRate)
	setInt(&c.SendBurst, d.SendBurst)
	setF(&c.UserRate, d.UserRate)
	setInt(&c.UserBurst, d.UserBurst)
	setF(&c.CommandRate, d.CommandRate)
	setInt(&c.CommandBurst, d.CommandBurst)
	setInt(&c.AbuseStrikes, d.AbuseStrikes)
	setDur(&c.AbuseWindow, d.AbuseWindow)
	setF(&c.UpgradeRate, d.UpgradeRate)
	setInt(&c.UpgradeBurst, d.UpgradeBurst)
	setDur(&c.DrainWindow, d.DrainWindow)
	setDur(&c.DrainTimeout, d.DrainTimeout)
	if c.NodeID == "" {
		c.NodeID = "chatd"
	}
	return c
}

// ConfigError is one invalid setting: Field names the Config field (for
// Auth, "Auth.Secret" and so on), so that a caller can say which flag or
// variable to fix; the message says what is wrong and how to fix it.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Msg }

// Validate checks the configuration after defaults: every field, and that
// the token key, the origin list and the proxy list parse, so that New
// cannot fail on them. Each problem is a *ConfigError (joined with
// errors.Join), one line, saying what is wrong and how to fix it.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if !protocol.ValidRoom(c.NodeID) {
		// It is a metrics label and part of every connection id.
		bad("NodeID", "node id %q must be 1 to 64 letters, digits or _.:- (a host name works)", c.NodeID)
	}
	if c.Heartbeat < time.Second {
		bad("Heartbeat", "heartbeat %v is too short: use at least 1s", c.Heartbeat)
	} else if c.Heartbeat%time.Second != 0 {
		bad("Heartbeat", "heartbeat %v is not a whole number of seconds (welcome.heartbeat is in seconds): use 25s, 1m...", c.Heartbeat)
	}
	if c.PongTimeout < 100*time.Millisecond {
		bad("PongTimeout", "pong timeout %v is too short: use at least 100ms", c.PongTimeout)
	}
	if c.WriteTimeout < 100*time.Millisecond {
		bad("WriteTimeout", "write timeout %v is too short: use at least 100ms", c.WriteTimeout)
	}
	if c.ReadLimit < 1024 {
		bad("ReadLimit", "read limit %d bytes is too small: use at least 1024", c.ReadLimit)
	}
	if c.MaxText < 1 || int64(c.MaxText) > c.ReadLimit {
		bad("MaxText", "max text %d must be between 1 and the read limit (%d)", c.MaxText, c.ReadLimit)
	}
	if c.HistoryLimit < 1 || c.HistoryLimit > protocol.MaxHistoryLimit {
		bad("HistoryLimit", "history limit %d must be between 1 and %d", c.HistoryLimit, protocol.MaxHistoryLimit)
	}
	if c.QueueSize < 8 {
		bad("QueueSize", "queue size %d is too small: use at least 8", c.QueueSize)
	}
	if c.MaxRooms < 1 {
		bad("MaxRooms", "max rooms %d must be at least 1", c.MaxRooms)
	}
	for _, r := range []struct {
		field, name string
		v           float64
	}{{"SendRate", "send rate", c.SendRate}, {"UserRate", "user rate", c.UserRate}, {"CommandRate", "command rate", c.CommandRate}, {"UpgradeRate", "upgrade rate", c.UpgradeRate}} {
		if !(r.v > 0) || math.IsInf(r.v, 0) {
			bad(r.field, "%s %v must be a positive number of events per second", r.name, r.v)
		}
	}
	for _, b := range []struct {
		field, name string
		v           int
	}{{"SendBurst", "send burst", c.SendBurst}, {"UserBurst", "user burst", c.UserBurst}, {"CommandBurst", "command burst", c.CommandBurst}, {"UpgradeBurst", "upgrade burst", c.UpgradeBurst}} {
		if b.v < 1 {
			bad(b.field, "%s %d must be at least 1", b.name, b.v)
		}
	}
	if c.AbuseStrikes < 1 {
		bad("AbuseStrikes", "abuse strikes %d must be at least 1", c.AbuseStrikes)
	}
	if c.AbuseWindow <= 0 {
		bad("AbuseWindow", "abuse window %v must be positive", c.AbuseWindow)
	}
	if c.MaxConns < 0 {
		bad("MaxConns", "max connections %d must be 0 (unlimited) or more", c.MaxConns)
	}
	if c.DrainWindow <= 0 {
		bad("DrainWindow", "drain window %v must be positive", c.DrainWindow)
	}
	if c.DrainTimeout < c.DrainWindow {
		bad("DrainTimeout", "drain timeout %v is shorter than the drain window %v: make it longer", c.DrainTimeout, c.DrainWindow)
	}
	if c.DevTokens && len(c.Auth.PublicKeyPEM) > 0 {
		bad("DevTokens", "dev tokens are signed with the HS256 secret, and a public key cannot sign: turn dev tokens off, or configure a secret instead of the public key")
	}
	if len(c.Auth.Secret) > 0 || len(c.Auth.PublicKeyPEM) > 0 {
		if _, err := auth.NewVerifier(c.Auth); err != nil {
			field, hint := "Auth.Secret", ""
			if len(c.Auth.PublicKeyPEM) > 0 {
				field, hint = "Auth.PublicKeyPEM", ` (give a PEM "PUBLIC KEY": RSA of 2048 bits or more, ECDSA P-256 or Ed25519)`
			}
			bad(field, "%s%s", strings.TrimPrefix(err.Error(), "auth: "), hint)
		}
	}
	if _, err := auth.NewOriginPolicy(c.AllowedOrigins); err != nil {
		bad("AllowedOrigins", "%s (use exact origins like https://chat.example.com, wildcards like https://*.example.com, or *)", strings.TrimPrefix(err.Error(), "auth: "))
	}
	if _, err := clientip.NewResolver(c.TrustedProxies); err != nil {
		bad("TrustedProxies", "%v (use IP addresses or CIDRs like 10.0.0.0/8)", err)
	}
	return errors.Join(errs...)
}
