// Package redisbroker is the broker of a chatd cluster: Redis carries
// every room between the nodes and keeps its history, presence and
// de-duplication.
//
// A room is a stream (history and recovery), a hash of metadata (the
// highest id dropped from retention, and the first id, below which a
// recovery is never complete), one key per client message id, a
// sorted set and a hash of presence, and a pub/sub channel, all under the
// hash tag {room} so that in a Redis Cluster they share one slot. A
// message is stored and published by one Lua script (XADD, trimming, then
// PUBLISH with its stream id), so every node delivers a room's messages
// in stream order. With a Redis Cluster the channel is a shard channel
// (SPUBLISH/SSUBSCRIBE, Redis 7), so pub/sub scales with the cluster.
//
// A node subscribes to a room while it has local members. Its
// subscriptions live on one pub/sub connection per Redis shard, whose
// owner goroutine batches SUBSCRIBE and UNSUBSCRIBE, delivers messages in
// order, and after a reconnect catches every room up from the stream since
// the last id it delivered: members see no gap and no duplicate. Before
// that, and before the node publishes, or reads or changes presence,
// again, it registers its members' presence again, since the Redis it
// reconnected to may have lost it. A probe published on the node's own
// channel every ProbeInterval detects a connection that is up but no
// longer delivering.
package redisbroker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
)

// Config configures a Broker. Zero fields take the defaults given.
type Config struct {
	// NodeID names this node in presence claims and probe channels. It
	// must be unique in the cluster. Required.
	NodeID string
	// Prefix starts every key and channel. Default "chatd:".
	Prefix string
	// Retention is how much history is kept per room.
	Retention hub.RetentionConfig
	// PresenceTTL is how long a node's presence claims outlive its last
	// heartbeat; heartbeats come every third of it. Default 15 s.
	PresenceTTL time.Duration
	// ProbeInterval is how often a probe goes through each pub/sub
	// connection. Default 1 s.
	ProbeInterval time.Duration
	// StallTimeout is how long a probe may take before the connection is
	// declared stalled and replaced. Default 5 s.
	StallTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between pub/sub
	// reconnect attempts. Defaults 50 ms and 2 s.
	ReconnectMin, ReconnectMax time.Duration
	// KeepSubscribed is how long the hub keeps a room subscribed after
	// its last member on this node left (hub.SubscriptionKeeper): members
	// coming and going, or a page reloaded, then cost no SUBSCRIBE,
	// UNSUBSCRIBE and catch-up read each. Default 30 s; negative:
	// unsubscribe at once.
	KeepSubscribed time.Duration
	// Logger receives the broker's logs.
	Logger zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "chatd:"
	}
	c.Retention = c.Retention.WithDefaults()
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = 15 * time.Second
	}
	if c.KeepSubscribed == 0 {
		c.KeepSubscribed = 30 * time.Second
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = time.Second
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 5 * time.Second
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = 50 * time.Millisecond
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = 2 * time.Second
	}
	return c
}

// Broker is a hub.Broker over Redis. It is safe for concurrent use.
type Broker struct {
	cfg     Config
	log     zerolog.Logger
	client  redis.UniversalClient
	cluster *redis.ClusterClient // nil for a standalone Redis
	pubCmd  string               // PUBLISH or SPUBLISH

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the broker's goroutines

	handlerMu sync.RWMutex
	handler   hub.Handler

	shardsMu sync.Mutex
	shards   map[string]*shard // by shard address ("" standalone)
	roomSh   map[string]*shard // room → its shard, while subscribed

	membersMu sync.Mutex
	members   map[string]map[string]string // room → user → name, claimed by this node

	// renewMu orders renewals against withdrawals. A renewal claims the
	// members as they were when it started: a withdrawal (RemoveMember,
	// WithdrawMember, LapseMember) made while it runs would be undone by
	// it, the user claimed again by this node, shown present by every node
	// until the claim expired, then announced leaving a second time.
	// Renewals hold it to write, withdrawals to read.
	renewMu sync.RWMutex
	// afterClaims, when set (by tests), runs in a renewal between taking
	// the members and renewing them.
	afterClaims func()

	// unregistered counts the shards whose members are to be registered
	// again in Redis (see shard.reregister): zero almost always, so the
	// commands that read or change presence check it for nothing.
	unregistered atomic.Int32

	stats stats
}

var (
	_ hub.Broker         = (*Broker)(nil)
	_ hub.PresenceLapser = (*Broker)(nil)
)

// New returns a broker over client, a *redis.Client or a
// *redis.ClusterClient (see NewClient). It does not wait for Redis: a
// broker made while Redis is down serves once Redis is back, and Ready
// says so. The caller closes client after Close.
func New(client redis.UniversalClient, cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	if cfg.NodeID == "" {
		return nil, errors.New("redisbroker: a node id is required")
	}
	if strings.ContainsAny(cfg.NodeID, "{}") {
		return nil, fmt.Errorf("redisbroker: node id %q must not contain { or }", cfg.NodeID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "redisbroker").Logger(),
		client:  client,
		pubCmd:  "PUBLISH",
		ctx:     ctx,
		cancel:  cancel,
		shards:  map[string]*shard{},
		roomSh:  map[string]*shard{},
		members: map[string]map[string]string{},
	}
	switch c := client.(type) {
	case *redis.ClusterClient:
		b.cluster = c
		b.pubCmd = "SPUBLISH"
	case *redis.Client:
	default:
		cancel()
		return nil, fmt.Errorf("redisbroker: unsupported client %T", client)
	}
	if b.cluster == nil {
		// One pub/sub connection for everything, probed from the start
		// so that Ready tells the truth before the first join.
		sh := b.newShard("", probeChannel(cfg.Prefix, cfg.NodeID, 0), client.(*redis.Client))
		b.shards[""] = sh
	}
	b.wg.Add(1)
	go b.heartbeatLoop()
	return b, nil
}

// SetHandler implements hub.Broker.
func (b *Broker) SetHandler(h hub.Handler) {
	b.handlerMu.Lock()
	b.handler = h
	b.handlerMu.Unlock()
}

func (b *Broker) getHandler() hub.Handler {
	b.handlerMu.RLock()
	defer b.handlerMu.RUnlock()
	return b.handler
}

func (b *Broker) keys(room string) keys { return roomKeys(b.cfg.Prefix, room) }

func (b *Broker) ttlMS() int64 { return b.cfg.Retention.TTL.Milliseconds() }

// unavailable wraps an error that says Redis could not be reached or
// could not serve, so that the server answers `unavailable`.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, hub.ErrUnavailable, err)
}

// classify turns a Redis error into the broker's: connection problems,
// timeouts and a cluster or server that cannot serve yet (or lost its
// scripts in a restart, for a script called by SHA in a pipeline) are
// unavailable; anything else (a script error) is a bug worth its own
// error.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "BUSY", "MOVED", "ASK", "NOSCRIPT"} {
			if strings.HasPrefix(msg, p) {
				return unavailable(op, err)
			}
		}
		if !isNetError(err) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return unavailable(op, err)
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, redis.ErrClosed)
}

// Publish implements hub.Broker: one script stores, de-duplicates and
// publishes.
func (b *Broker) Publish(ctx context.Context, m protocol.Message) (protocol.Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return m, false, err
	}
	if err := b.settle(ctx, m.Room); err != nil {
		return m, false, err
	}
	k := b.keys(m.Room)
	cidKey := k.cidBase // unused without a cid, but in the room's slot
	if m.CID != "" {
		cidKey = k.cidKey(m.From, m.CID)
	}
	start := time.Now()
	res, err := publishScript.Run(ctx, b.client,
		[]string{k.stream, k.meta, cidKey},
		b.pubCmd, k.channel, b.cfg.Retention.Size, b.ttlMS(), m.From, m.Name, m.Text, m.CID,
	).Slice()
	if err != nil {
		return m, false, classify("publish "+m.Room, err)
	}
	b.stats.publishNanos.Add(uint64(time.Since(start)))
	b.stats.publishes.Add(1)
	if len(res) != 7 {
		return m, false, fmt.Errorf("publish %s: unexpected reply %v", m.Room, res)
	}
	dup, _ := res[0].(int64)
	out := protocol.Message{Room: m.Room}
	out.ID, _ = res[1].(string)
	out.From, _ = res[2].(string)
	out.Name, _ = res[3].(string)
	out.Text, _ = res[4].(string)
	out.CID, _ = res[5].(string)
	id, ok := protocol.ParseID(out.ID)
	if !ok {
		return m, false, fmt.Errorf("publish %s: bad stream id %q", m.Room, out.ID)
	}
	out.TS = int64(id.MS)
	if s, _ := res[6].(string); s != "" {
		if ts, err := strconv.ParseInt(s, 10, 64); err == nil && ts > 0 {
			out.TS = ts
		}
	}
	return out, dup == 1, nil
}

// entryMessage turns a stream entry into a message.
func entryMessage(room string, v any) (protocol.Message, protocol.ID, bool) {
	e, ok := v.([]any)
	if !ok || len(e) != 2 {
		return protocol.Message{}, protocol.ID{}, false
	}
	idStr, _ := e[0].(string)
	id, ok := protocol.ParseID(idStr)
	if !ok {
		return protocol.Message{}, protocol.ID{}, false
	}
	m := protocol.Message{Room: room, ID: idStr, TS: int64(id.MS)}
	f, _ := e[1].([]any)
	for i := 0; i+1 < len(f); i += 2 {
		k, _ := f[i].(string)
		val, _ := f[i+1].(string)
		switch k {
		case "f":
			m.From = val
		case "n":
			m.Name = val
		case "t":
			m.Text = val
		case "c":
			m.CID = val
		}
	}
	return m, id, true
}

// messageOf turns a go-redis XMessage (from XRANGE) into a message.
func messageOf(room string, x redis.XMessage) (protocol.Message, protocol.ID, bool) {
	id, ok := protocol.ParseID(x.ID)
	if !ok {
		return protocol.Message{}, protocol.ID{}, false
	}
	m := protocol.Message{Room: room, ID: x.ID, TS: int64(id.MS)}
	m.From, _ = x.Values["f"].(string)
	m.Name, _ = x.Values["n"].(string)
	m.Text, _ = x.Values["t"].(string)
	m.CID, _ = x.Values["c"].(string)
	return m, id, true
}

// History implements hub.Broker.
func (b *Broker) History(ctx context.Context, room, before string, limit int) ([]protocol.Message, bool, error) {
	if limit <= 0 {
		return nil, false, nil
	}
	if before != "" {
		bid, ok := protocol.ParseID(before)
		if !ok || bid.IsZero() {
			return nil, false, nil
		}
		before = bid.String() // canonical: "0012-1" is "12-1"
	}
	k := b.keys(room)
	res, err := historyScript.Run(ctx, b.client, []string{k.stream, k.meta}, b.ttlMS(), before, limit).Slice()
	if err != nil {
		return nil, false, classify("history "+room, err)
	}
	msgs, more := historyReply(room, res, limit)
	return msgs, more, nil
}

// historyReply is the messages of historyScript's reply, oldest first,
// and whether there are more.
func historyReply(room string, res []any, limit int) ([]protocol.Message, bool) {
	more := len(res) > limit
	if more {
		res = res[:limit]
	}
	out := make([]protocol.Message, 0, len(res))
	for i := len(res) - 1; i >= 0; i-- {
		if m, _, ok := entryMessage(room, res[i]); ok {
			out = append(out, m)
		}
	}
	return out, more
}

// maxID is the largest id; nothing comes after it.
var maxID = protocol.ID{MS: ^uint64(0), Seq: ^uint64(0)}

// Since implements hub.Broker. recovered is false when since is below
// the highest id dropped from the stream, or below the room's floor, the
// first id Redis holds a record of: with no record at all (a room never
// written, or a Redis that lost its data) Redis cannot say what came
// before, and nothing is vouched for.
func (b *Broker) Since(ctx context.Context, room, since string) ([]protocol.Message, bool, error) {
	sid, ok := protocol.ParseID(since)
	if !ok {
		return nil, false, nil
	}
	k := b.keys(room)
	res, err := sinceScript.Run(ctx, b.client, []string{k.stream, k.meta}, b.ttlMS(), sinceArg(sid)).Slice()
	if err != nil {
		return nil, false, classify("since "+room, err)
	}
	return sinceReply(room, sid, res)
}

// sinceArg is sinceScript's argument for since.
func sinceArg(sid protocol.ID) string {
	if sid == maxID {
		return prevID(maxID).String() // "(" of the largest id is not an id; nothing is after it anyway
	}
	return sid.String()
}

// sinceReply is the messages of sinceScript's reply after sid, oldest
// first, and whether they are all there were.
func sinceReply(room string, sid protocol.ID, res []any) ([]protocol.Message, bool, error) {
	if len(res) != 3 {
		return nil, false, fmt.Errorf("since %s: unexpected reply %v", room, res)
	}
	dStr, _ := res[0].(string)
	dropped, _ := protocol.ParseID(dStr)
	fStr, _ := res[2].(string)
	floor, known := protocol.ParseID(fStr)
	entries, _ := res[1].([]any)
	out := make([]protocol.Message, 0, len(entries))
	for _, e := range entries {
		if m, id, ok := entryMessage(room, e); ok && id.Compare(sid) > 0 {
			out = append(out, m)
		}
	}
	return out, known && floor.Compare(sid) <= 0 && dropped.Compare(sid) <= 0, nil
}

// AddMember implements hub.Broker: the node claims the user's presence.
func (b *Broker) AddMember(ctx context.Context, room string, m protocol.Member) (bool, error) {
	return b.addMember(ctx, room, m, nil)
}

// AnnounceMember implements hub.Broker: the claim and the join
// event are one script call.
func (b *Broker) AnnounceMember(ctx context.Context, room string, m protocol.Member, join hub.Event) (bool, error) {
	return b.addMember(ctx, room, m, b.publishArgs(join))
}

// publishArgs are the presence scripts' optional arguments that make them
// publish ev on its room's channel.
func (b *Broker) publishArgs(ev hub.Event) []any {
	cmd := "PUBLISH"
	if b.cluster != nil {
		cmd = "SPUBLISH" // sharded pub/sub, see shard.go
	}
	return []any{cmd, b.keys(ev.Room).channel, encodeEvent(ev)}
}

func (b *Broker) addMember(ctx context.Context, room string, m protocol.Member, publish []any) (bool, error) {
	if err := b.settle(ctx, room); err != nil {
		return false, err
	}
	k := b.keys(room)
	first, err := addMemberScript.Run(ctx, b.client, []string{k.presence, k.entries}, b.claimArgs(m, publish)...).Int()
	if err != nil {
		return false, classify("presence "+room, err)
	}
	b.claimed(room, m)
	return first == 1, nil
}

// claimArgs are addMemberScript's arguments for m's claim, with the
// optional publish arguments (publishArgs).
func (b *Broker) claimArgs(m protocol.Member, publish []any) []any {
	return append([]any{m.User, m.Name, b.cfg.NodeID, b.cfg.PresenceTTL.Milliseconds()}, publish...)
}

// claimed records a claim Redis took, for the heartbeat to renew.
func (b *Broker) claimed(room string, m protocol.Member) {
	b.membersMu.Lock()
	users := b.members[room]
	if users == nil {
		users = map[string]string{}
		b.members[room] = users
	}
	users[m.User] = m.Name
	b.membersMu.Unlock()
}

// RemoveMember implements hub.Broker. The local claim is forgotten even
// when Redis cannot be told: the claim then expires after PresenceTTL.
func (b *Broker) RemoveMember(ctx context.Context, room, user string) (bool, error) {
	return b.removeMember(ctx, room, user, nil)
}

// WithdrawMember implements hub.Broker: the withdrawal and the
// leave event are one script call.
func (b *Broker) WithdrawMember(ctx context.Context, room, user string, leave hub.Event) (bool, error) {
	return b.removeMember(ctx, room, user, b.publishArgs(leave))
}

func (b *Broker) removeMember(ctx context.Context, room, user string, publish []any) (bool, error) {
	// Registered again first, so that the users who still show the user
	// present learn that they left.
	serr := b.settle(ctx, room)
	b.renewMu.RLock()
	defer b.renewMu.RUnlock()
	b.membersMu.Lock()
	if users := b.members[room]; users != nil {
		delete(users, user)
		if len(users) == 0 {
			delete(b.members, room)
		}
	}
	b.membersMu.Unlock()
	if serr != nil {
		return false, serr
	}
	k := b.keys(room)
	args := append([]any{user, b.cfg.NodeID, b.cfg.PresenceTTL.Milliseconds()}, publish...)
	last, err := removeMemberScript.Run(ctx, b.client, []string{k.presence, k.entries}, args...).Int()
	if err != nil {
		return false, classify("presence "+room, err)
	}
	return last == 1, nil
}

// LapseMember implements hub.PresenceLapser: the node forgets its claim
// and stops renewing it, and Redis keeps it until it expires, within
// PresenceTTL. A user who reconnects to another node meanwhile is claimed
// there too and stays present, with no event; otherwise the sweep of a
// node with members in the room announces the leave once the claim has
// expired.
func (b *Broker) LapseMember(ctx context.Context, room, user string) error {
	b.renewMu.RLock()
	defer b.renewMu.RUnlock()
	b.membersMu.Lock()
	defer b.membersMu.Unlock()
	if users := b.members[room]; users != nil {
		delete(users, user)
		if len(users) == 0 {
			delete(b.members, room)
		}
	}
	return nil
}

// Members implements hub.Broker: the users with a live claim on any node.
func (b *Broker) Members(ctx context.Context, room string) ([]protocol.Member, error) {
	if err := b.settle(ctx, room); err != nil {
		return nil, err
	}
	k := b.keys(room)
	res, err := membersScript.Run(ctx, b.client, []string{k.presence, k.entries}).Slice()
	if err != nil {
		return nil, classify("members "+room, err)
	}
	return membersReply(res), nil
}

// membersReply is the members of membersScript's reply, sorted by user.
func membersReply(res []any) []protocol.Member {
	out := make([]protocol.Member, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		user, _ := res[i].(string)
		name, _ := res[i+1].(string)
		out = append(out, protocol.Member{User: user, Name: name})
	}
	slices.SortFunc(out, func(a, b protocol.Member) int { return strings.Compare(a.User, b.User) })
	return out
}

// ReadJoin implements hub.Broker: the presence claim with its join event
// (when join is given), the history (or, with since, what came after it)
// and the members, in one script call (joinScript) instead of three. It
// touches only the room's keys, so in a cluster it goes to the room's
// node; the members are read after the claim, so they include the user
// just claimed.
func (b *Broker) ReadJoin(ctx context.Context, room, since string, limit int, join *hub.Event) ([]protocol.Message, bool, []protocol.Member, error) {
	sid, fromSince := protocol.ID{}, since != ""
	if fromSince {
		var ok bool
		if sid, ok = protocol.ParseID(since); !ok {
			fromSince, limit = false, 0 // as Since: nothing to recover after what is not an id
		}
	}
	if err := b.settle(ctx, room); err != nil {
		return nil, false, nil, err
	}
	k := b.keys(room)
	args := []any{"", b.ttlMS(), 0}
	switch {
	case fromSince:
		args[0], args[2] = "s", sinceArg(sid)
	case limit > 0:
		args[0], args[2] = "h", limit
	}
	var claimant protocol.Member
	if join != nil {
		claimant = protocol.Member{User: join.User, Name: join.Name}
		args = append(args, b.claimArgs(claimant, b.publishArgs(*join))...)
	}
	res, err := joinScript.Run(ctx, b.client, []string{k.presence, k.entries, k.stream, k.meta}, args...).Slice()
	if err != nil {
		return nil, false, nil, classify("join "+room, err)
	}
	if join != nil {
		b.claimed(room, claimant)
	}
	if len(res) < 1 || (args[0] != "" && len(res) < 2) {
		return nil, false, nil, fmt.Errorf("join %s: unexpected reply %v", room, res)
	}
	var (
		history   []protocol.Message
		recovered bool
	)
	if args[0] != "" {
		read, _ := res[1].([]any)
		if fromSince {
			if history, recovered, err = sinceReply(room, sid, read); err != nil {
				return nil, false, nil, err
			}
		} else {
			history, _ = historyReply(room, read, limit)
		}
	}
	mem, _ := res[0].([]any)
	return history, recovered, membersReply(mem), nil
}

// evalIn queues script on a pipeline, by its SHA or, for a Redis that
// may not have it (pipelines do not fall back to EVAL), with its text.
func evalIn(ctx context.Context, p redis.Pipeliner, script *redis.Script, bySHA bool, keys []string, args ...any) *redis.Cmd {
	if bySHA {
		return script.EvalSha(ctx, p, keys, args...)
	}
	return script.Eval(ctx, p, keys, args...)
}

// PublishEvent implements hub.Broker. Events are not stored.
func (b *Broker) PublishEvent(ctx context.Context, ev hub.Event) error {
	ch := b.keys(ev.Room).channel
	var err error
	if b.cluster != nil {
		err = b.cluster.SPublish(ctx, ch, encodeEvent(ev)).Err()
	} else {
		err = b.client.Publish(ctx, ch, encodeEvent(ev)).Err()
	}
	return classify("event "+ev.Room, err)
}

// shardList is the broker's shards at this moment, for a caller that
// goes through them without holding shardsMu.
func (b *Broker) shardList() []*shard {
	b.shardsMu.Lock()
	defer b.shardsMu.Unlock()
	return slices.Collect(maps.Values(b.shards))
}

// Ready implements hub.Broker: Redis answers, and every pub/sub
// connection is up and delivering its probes.
func (b *Broker) Ready(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return classify("redis ping", err)
	}
	shards := b.shardList()
	for _, sh := range shards {
		if err := sh.health(); err != nil {
			return err
		}
	}
	return nil
}

// Close implements hub.Broker: it stops the broker's goroutines and
// withdraws the node's presence claims. It does not close the client.
func (b *Broker) Close() error {
	b.cancel()
	b.shardsMu.Lock()
	for _, sh := range b.shards {
		sh.stop()
	}
	b.shardsMu.Unlock()
	b.wg.Wait()

	// Withdraw this node's claims, so that its users leave at once
	// rather than after PresenceTTL. Best effort: Redis may be gone.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.membersMu.Lock()
	claims := b.members
	b.members = map[string]map[string]string{}
	b.membersMu.Unlock()
	for room, users := range claims {
		for user, name := range users {
			k := b.keys(room)
			last, err := removeMemberScript.Run(ctx, b.client, []string{k.presence, k.entries},
				user, b.cfg.NodeID, b.cfg.PresenceTTL.Milliseconds()).Int()
			if err != nil {
				return nil
			}
			if last == 1 {
				_ = b.PublishEvent(ctx, hub.Event{Kind: hub.EventPresence, Room: room, User: user, Name: name, State: protocol.PresenceLeave})
			}
		}
	}
	return nil
}

// heartbeatLoop renews this node's presence claims every third of the
// presence TTL and announces the leave of users whose nodes died.
func (b *Broker) heartbeatLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.PresenceTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		if err := b.heartbeat(b.ctx); err != nil && b.ctx.Err() == nil {
			b.log.Warn().Err(err).Msg("presence heartbeat failed")
		}
	}
}

// heartbeat renews every claim of this node in one pipeline.
func (b *Broker) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PresenceTTL/3)
	defer cancel()
	return b.renewClaims(ctx, nil)
}

// renewClaims renews this node's claims in every room (in sh's rooms,
// unless sh is nil), with no withdrawal running meanwhile (renewMu).
func (b *Broker) renewClaims(ctx context.Context, sh *shard) error {
	b.renewMu.Lock()
	defer b.renewMu.Unlock()
	rooms := b.claims(sh)
	if b.afterClaims != nil {
		b.afterClaims()
	}
	return b.renew(ctx, rooms)
}

// claims returns the refresh script's arguments for every room in which
// this node has members (only those whose channel is on sh, unless sh is
// nil).
func (b *Broker) claims(sh *shard) map[string][]any {
	b.membersMu.Lock()
	rooms := make(map[string][]any, len(b.members))
	for room, users := range b.members {
		args := []any{b.cfg.NodeID, b.cfg.PresenceTTL.Milliseconds()}
		for u, n := range users {
			args = append(args, u, n)
		}
		rooms[room] = args
	}
	b.membersMu.Unlock()
	if sh != nil && b.cluster != nil {
		b.shardsMu.Lock()
		for room := range rooms {
			if b.roomSh[room] != sh {
				delete(rooms, room)
			}
		}
		b.shardsMu.Unlock()
	}
	return rooms
}

// renew claims the given users of this node in their rooms (the refresh
// script's arguments by room) in one pipeline, and announces what it
// finds: the leave of users whose every claim has expired (their nodes
// died), and the join of users of this node whom Redis did not hold, from
// a Redis that lost its data (restarted without persistence, flushed) or
// claims that expired while Redis could not be reached. A join is
// announced only for a user still claimed once the claims are renewed
// (not one who left meanwhile). It fails when Redis could not be reached
// for a room; any other error of a room (a script error: nothing a retry
// would fix) is logged, so that it cannot hold up the others.
func (b *Broker) renew(ctx context.Context, rooms map[string][]any) error {
	if len(rooms) == 0 {
		return nil
	}
	// Called by SHA in the pipeline, which does not fall back to EVAL: a
	// Redis that restarted has no script. When it cannot be loaded (a
	// master of a cluster is down), the script's text goes with each call.
	bySHA := refreshScript.Load(ctx, b.loader()).Err() == nil
	pipe := b.client.Pipeline()
	cmds := make(map[string]*redis.Cmd, len(rooms))
	for room, args := range rooms {
		k := b.keys(room)
		cmds[room] = evalIn(ctx, pipe, refreshScript, bySHA, []string{k.presence, k.entries}, args...)
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	var err error
	for room, cmd := range cmds {
		res, cerr := cmd.Slice()
		if cerr != nil {
			cerr = classify("presence "+room, cerr)
			if errors.Is(cerr, hub.ErrUnavailable) || errors.Is(cerr, context.Canceled) {
				err = cmp.Or(err, cerr)
			} else {
				b.log.Error().Err(cerr).Str("room", room).Msg("presence renewal failed")
			}
			continue
		}
		if len(res) != 2 {
			b.log.Error().Str("room", room).Msgf("presence renewal: unexpected reply %v", res)
			continue
		}
		left, _ := res[0].([]any)
		back, _ := res[1].([]any)
		for i := 0; i+1 < len(left); i += 2 {
			user, _ := left[i].(string)
			name, _ := left[i+1].(string)
			_ = b.PublishEvent(ctx, hub.Event{Kind: hub.EventPresence, Room: room, User: user, Name: name, State: protocol.PresenceLeave})
		}
		for i := 0; i+1 < len(back); i += 2 {
			user, _ := back[i].(string)
			b.membersMu.Lock()
			name, still := b.members[room][user]
			b.membersMu.Unlock()
			if still {
				_ = b.PublishEvent(ctx, hub.Event{Kind: hub.EventPresence, Room: room, User: user, Name: name, State: protocol.PresenceJoin})
			}
		}
	}
	return err
}

// settle makes sure that, when the connection to room's shard was lost
// since this node's members were last registered, they are registered
// again (shard.reregister) before room's presence is read or changed, or
// a message is published to it: a Redis that came back without its data
// then holds this node's members before anyone who reads the members
// after seeing this node's message or join. It costs an atomic load when
// nothing was lost.
func (b *Broker) settle(ctx context.Context, room string) error {
	if b.unregistered.Load() == 0 {
		return nil
	}
	b.shardsMu.Lock()
	sh := b.roomSh[room]
	if b.cluster == nil {
		sh = b.shards[""]
	}
	b.shardsMu.Unlock()
	if sh == nil {
		return nil
	}
	return sh.reregister(ctx)
}

// loader is where SCRIPT LOAD goes: every master of a cluster.
func (b *Broker) loader() redis.Scripter {
	if b.cluster != nil {
		return b.cluster
	}
	return b.client
}

// Node returns the broker's node id.
func (b *Broker) Node() string { return b.cfg.NodeID }

// prevID returns the id before id (id must not be zero).
func prevID(id protocol.ID) protocol.ID {
	if id.Seq > 0 {
		return protocol.ID{MS: id.MS, Seq: id.Seq - 1}
	}
	return protocol.ID{MS: id.MS - 1, Seq: ^uint64(0)}
}
