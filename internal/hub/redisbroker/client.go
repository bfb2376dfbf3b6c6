package redisbroker

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient makes the Redis client for a URL:
//
//	redis://[user:password@]host:port[/db]        a standalone Redis
//	rediss://...                                   the same over TLS
//	redis+cluster://[user:password@]host:port,host:port,...
//	                                               a Redis Cluster, seeded by the hosts
//
// With cluster true a redis:// or rediss:// URL names one seed of a
// cluster. The client does not connect until it is used.
func NewClient(rawURL string, cluster bool) (redis.UniversalClient, error) {
	if rest, ok := strings.CutPrefix(rawURL, "redis+cluster://"); ok {
		return newClusterClient(rest)
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w (want redis://host:port, rediss://host:port or redis+cluster://host:port,host:port)", redact(rawURL), err)
	}
	if cluster {
		if opt.DB != 0 {
			return nil, fmt.Errorf("redis URL %q: a Redis Cluster has no database %d", redact(rawURL), opt.DB)
		}
		return redis.NewClusterClient(clusterOptions([]string{opt.Addr}, opt.Username, opt.Password, opt.TLSConfig != nil)), nil
	}
	tune(opt)
	return redis.NewClient(opt), nil
}

func newClusterClient(rest string) (redis.UniversalClient, error) {
	var user, pass string
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		u, err := url.Parse("redis://" + rest[:at+1] + "x")
		if err != nil {
			return nil, fmt.Errorf("redis+cluster URL: bad credentials: %w", err)
		}
		user = u.User.Username()
		pass, _ = u.User.Password()
		rest = rest[at+1:]
	}
	rest, _, _ = strings.Cut(rest, "/")
	rest, _, _ = strings.Cut(rest, "?")
	var addrs []string
	for a := range strings.SplitSeq(rest, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if !strings.Contains(a, ":") {
			a += ":6379"
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("redis+cluster URL: no host (want redis+cluster://host:port,host:port)")
	}
	return redis.NewClusterClient(clusterOptions(addrs, user, pass, false)), nil
}

// Timeouts: a node must answer `unavailable` quickly when Redis is gone,
// not after go-redis's retries; the caller's context bounds every call.
func tune(o *redis.Options) {
	o.Protocol = 2 // RESP2: plain pub/sub pushes on the subscribed connection
	o.DialTimeout = 2 * time.Second
	o.ReadTimeout = 5 * time.Second
	o.WriteTimeout = 5 * time.Second
	o.ContextTimeoutEnabled = true
	o.MaxRetries = 1
}

func clusterOptions(addrs []string, user, pass string, tls bool) *redis.ClusterOptions {
	o := &redis.ClusterOptions{
		Addrs:                 addrs,
		Username:              user,
		Password:              pass,
		Protocol:              2,
		DialTimeout:           2 * time.Second,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
	}
	if tls {
		o.TLSConfig = tlsConfig()
	}
	return o
}

// redact hides a URL's password in error messages and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Redact hides the password of a Redis URL, for logs.
func Redact(raw string) string { return redact(raw) }
