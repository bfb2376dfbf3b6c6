package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd/chatd/internal/protocol"
)

// subscribeChunk bounds the channels of one SUBSCRIBE command.
const subscribeChunk = 512

// errStalled ends a pub/sub connection whose probes stopped coming back.
var errStalled = errors.New("pub/sub connection stalled: probes are not coming back")

// shard owns this node's pub/sub connection to one Redis shard (the only
// one with a standalone Redis) and the subscriptions on it.
//
// A connection's life is a generation: connect, subscribe the probe
// channel, then every wanted room; each room is caught up from its stream
// once its subscription is confirmed and only then goes live. A failure of
// any kind (the connection, a catch-up, a stall) ends the generation; the
// next one, after a backoff, re-subscribes and catches up again.
//
// Three goroutines serve a generation, all ended with it: the receiver
// (reads the connection, dispatches, confirms), the commander (sends
// batched SUBSCRIBE/UNSUBSCRIBE) and the prober; a catch-up runs on a
// fourth. Deliveries to the handler are serialised by dmu, so a room's
// messages reach the hub in id order whether they come from the stream or
// from pub/sub.
type shard struct {
	b       *Broker
	addr    string        // "" for a standalone Redis
	probeCh string        // this node's probe channel on the shard
	client  *redis.Client // makes the pub/sub connections
	sharded bool          // SSUBSCRIBE (Redis Cluster) rather than SUBSCRIBE

	wake    chan struct{} // the commander has work; capacity 1
	catchup chan struct{} // the catch-up has work; capacity 1
	done    chan struct{} // closed when run returns
	regSem  chan struct{} // held by the reregister running; capacity 1

	dmu sync.Mutex // serialises deliveries; guards roomSub.last, lastKnown; taken before mu, never after

	mu        sync.Mutex
	rooms     map[string]*roomSub // by channel
	dirty     map[string]struct{} // channels whose wanted state changed
	queued    []*roomSub          // confirmed, waiting for their catch-up
	up        bool                // a generation is serving
	failed    bool                // the last connection failed; false while the first is made
	lastErr   error               // why the last generation ended
	probeSeq  uint64              // last probe sent
	probeWait uint64              // oldest probe not yet back; 0 if none
	probeAt   time.Time           // when probeWait was sent
	lastRTT   time.Duration       // of the last probe that came back
	stalled   bool
	lost      uint64 // generations that ended (each may have been a Redis that lost its data)
	unreg     bool   // the members of the shard's rooms are to be registered again
}

// roomSub is one room's subscription state on a shard.
type roomSub struct {
	room, channel string

	// Guarded by shard.mu.
	wanted   bool // the hub wants it
	sent     bool // the last command sent for it on this connection was a subscribe
	inflight int  // commands sent on this connection and not yet confirmed
	live     bool // confirmed and caught up: pub/sub deliveries go straight through
	queued   bool // waiting for its catch-up
	fromTail bool // unsubscribed on the wire since its last catch-up: start again at the stream's end
	waiters  []chan error
	buffered []payload // what pub/sub brought while it was being caught up

	// Guarded by shard.dmu.
	last      protocol.ID // last id delivered (or the stream's tail when subscribed)
	lastKnown bool
}

func (b *Broker) newShard(addr, probeCh string, client *redis.Client) *shard {
	sh := &shard{
		b:       b,
		addr:    addr,
		probeCh: probeCh,
		client:  client,
		sharded: b.cluster != nil,
		wake:    make(chan struct{}, 1),
		catchup: make(chan struct{}, 1),
		done:    make(chan struct{}),
		regSem:  make(chan struct{}, 1),
		rooms:   map[string]*roomSub{},
		dirty:   map[string]struct{}{},
		lastErr: errors.New("connecting"),
	}
	b.wg.Add(1)
	go sh.run()
	return sh
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// stop waits for the shard's goroutines; the broker's context is done.
func (sh *shard) stop() { <-sh.done }

// run serves generations until the broker closes, with a backoff between
// failed ones.
func (sh *shard) run() {
	defer sh.b.wg.Done()
	defer close(sh.done)
	cfg := sh.b.cfg
	backoff := cfg.ReconnectMin
	for sh.b.ctx.Err() == nil {
		started := time.Now()
		err := sh.serve()
		sh.down(err)
		if sh.b.ctx.Err() != nil {
			return
		}
		sh.b.stats.reconnects.Add(1)
		if time.Since(started) > 10*cfg.ReconnectMax {
			backoff = cfg.ReconnectMin // it served a while: not a flapping server
		}
		sh.b.log.Warn().Err(err).Str("shard", sh.addr).Dur("retry_in", backoff).Msg("redis pub/sub connection lost; reconnecting, then catching rooms up from their streams")
		// Jitter, so that the nodes of a cluster do not reconnect in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-sh.b.ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, cfg.ReconnectMax)
	}
}

// down ends a generation: waiting subscribers are told the broker is
// unavailable, and every wanted room will be subscribed again and caught
// up by the next one.
func (sh *shard) down(err error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.up, sh.failed = false, true
	sh.lastErr = err
	// Whatever Redis comes back may not hold this node's presence claims
	// any more: register them again before serving (reregister).
	sh.lost++
	if !sh.unreg {
		sh.unreg = true
		sh.b.unregistered.Add(1)
	}
	sh.queued = nil
	sh.probeWait = 0
	for ch, rs := range sh.rooms {
		rs.sent, rs.inflight, rs.live, rs.queued, rs.buffered = false, 0, false, false, nil
		for _, w := range rs.waiters {
			w <- unavailable("subscribe "+rs.room, err)
		}
		rs.waiters = nil
		if rs.wanted {
			sh.dirty[ch] = struct{}{}
		} else {
			delete(sh.rooms, ch)
			delete(sh.dirty, ch)
		}
	}
}

// generation is what the goroutines of one connection share.
type generation struct {
	ps     *redis.PubSub
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

// fail ends the generation with err (the first error wins) and closes
// the connection, which unblocks the receiver.
func (g *generation) fail(err error) {
	g.once.Do(func() {
		g.err = err
		g.cancel()
		_ = g.ps.Close()
	})
}

func (sh *shard) subscribe(ctx context.Context, ps *redis.PubSub, channels []string) error {
	if sh.sharded {
		return ps.SSubscribe(ctx, channels...)
	}
	return ps.Subscribe(ctx, channels...)
}

func (sh *shard) unsubscribe(ctx context.Context, ps *redis.PubSub, channels []string) error {
	if sh.sharded {
		return ps.SUnsubscribe(ctx, channels...)
	}
	return ps.Unsubscribe(ctx, channels...)
}

// serve runs one generation until it fails.
func (sh *shard) serve() error {
	cfg := sh.b.cfg
	ctx, cancel := context.WithCancel(sh.b.ctx)
	defer cancel()
	ps := sh.client.Subscribe(ctx) // no channel yet: no connection yet
	g := &generation{ps: ps, ctx: ctx, cancel: cancel}
	// On the way out: end the generation, then wait for its goroutines.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer g.fail(context.Canceled)
	// A blocked read ignores the context: closing the connection ends it.
	defer context.AfterFunc(ctx, func() { g.fail(context.Canceled) })()

	// The probe channel first: its confirmation proves the connection.
	if err := sh.subscribe(ctx, ps, []string{sh.probeCh}); err != nil {
		return fmt.Errorf("subscribe probe channel: %w", err)
	}
	msg, err := ps.ReceiveTimeout(ctx, cfg.StallTimeout)
	if err != nil {
		return fmt.Errorf("subscribe probe channel: %w", err)
	}
	if s, ok := msg.(*redis.Subscription); !ok || s.Channel != sh.probeCh {
		return fmt.Errorf("subscribe probe channel: unexpected reply %v", msg)
	}
	// Redis is back: this node's members first, before the node is ready
	// and its rooms are subscribed again.
	rctx, rcancel := context.WithTimeout(ctx, cfg.StallTimeout)
	err = sh.reregister(rctx)
	rcancel()
	if err != nil {
		return fmt.Errorf("register presence again: %w", err)
	}

	sh.mu.Lock()
	sh.up, sh.failed, sh.lastErr, sh.stalled = true, false, nil, false
	sh.probeWait = 0
	sh.mu.Unlock()
	sh.b.log.Info().Str("shard", sh.addr).Msg("redis pub/sub connected")
	signal(sh.wake)

	wg.Add(3)
	go func() { defer wg.Done(); sh.command(g) }()
	go func() { defer wg.Done(); sh.probe(g) }()
	go func() { defer wg.Done(); sh.catchUpLoop(g) }()

	for {
		msg, err := ps.ReceiveTimeout(ctx, 0)
		if err != nil {
			g.fail(err)
			return g.err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if err := sh.confirmed(m); err != nil {
				g.fail(err)
				return g.err
			}
		case *redis.Message:
			sh.dispatch(m)
		}
	}
}

// command sends the subscription changes, batched: whatever accumulated
// while the previous command was written goes in the next one.
func (sh *shard) command(g *generation) {
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-sh.wake:
		}
		var sub, unsub []string
		sh.mu.Lock()
		for ch := range sh.dirty {
			rs := sh.rooms[ch]
			switch {
			case rs == nil:
			case rs.wanted && !rs.sent:
				rs.sent, rs.live = true, false
				rs.inflight++
				sub = append(sub, ch)
			case !rs.wanted && rs.sent:
				// What is published from now on is not this node's
				// business until it subscribes again; a new
				// subscription then starts where the stream ends, like
				// the first one (the joining members read the history).
				rs.sent, rs.live, rs.fromTail = false, false, true
				rs.inflight++
				unsub = append(unsub, ch)
			case !rs.wanted && rs.inflight == 0:
				delete(sh.rooms, ch)
			}
		}
		clear(sh.dirty)
		sh.mu.Unlock()
		for len(sub) > 0 {
			n := min(len(sub), subscribeChunk)
			if err := sh.subscribe(g.ctx, g.ps, sub[:n]); err != nil {
				g.fail(fmt.Errorf("subscribe: %w", err))
				return
			}
			sub = sub[n:]
		}
		for len(unsub) > 0 {
			n := min(len(unsub), subscribeChunk)
			if err := sh.unsubscribe(g.ctx, g.ps, unsub[:n]); err != nil {
				g.fail(fmt.Errorf("unsubscribe: %w", err))
				return
			}
			unsub = unsub[n:]
		}
	}
}

// confirmed handles a (un)subscribe confirmation. Redis confirms every
// command, channel by channel and in order, so once a room has no command
// in flight its state on the connection is the last one sent.
func (sh *shard) confirmed(s *redis.Subscription) error {
	if s.Channel == sh.probeCh {
		return nil
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rs := sh.rooms[s.Channel]
	if rs == nil {
		return nil
	}
	if rs.inflight == 0 {
		// An unsubscribe we did not ask for: the slot moved to another
		// shard. Start over, which routes every room again.
		return fmt.Errorf("redis dropped the subscription to %s (%s): the cluster was resharded", s.Channel, s.Kind)
	}
	rs.inflight--
	if rs.inflight > 0 {
		return nil
	}
	switch {
	case rs.sent && !rs.queued:
		rs.queued = true
		sh.queued = append(sh.queued, rs)
		signal(sh.catchup)
	case !rs.sent && !rs.wanted:
		delete(sh.rooms, s.Channel)
	}
	return nil
}

// dispatch hands a pub/sub message to the hub, or keeps it while its room
// is being caught up.
func (sh *shard) dispatch(m *redis.Message) {
	p, err := decodePayload(m.Payload)
	if err != nil {
		sh.b.stats.badPayloads.Add(1)
		return
	}
	if p.kind == kindProbe {
		if m.Channel == sh.probeCh {
			sh.probeBack(p.token)
		}
		return
	}
	sh.mu.Lock()
	rs := sh.rooms[m.Channel]
	if rs == nil || !rs.live {
		if rs != nil && rs.sent {
			rs.buffered = append(rs.buffered, p)
		}
		sh.mu.Unlock()
		return
	}
	wanted := rs.wanted
	sh.mu.Unlock()
	sh.dmu.Lock()
	sh.deliver(rs, p, wanted)
	sh.dmu.Unlock()
}

// deliver hands one payload of rs's room to the handler; a message at or
// before the last one delivered is a duplicate (a catch-up already
// delivered it) and is dropped. A room the hub no longer wants (its
// unsubscribe is on its way) only has its last id noted. The caller
// holds dmu.
func (sh *shard) deliver(rs *roomSub, p payload, wanted bool) {
	h := sh.b.getHandler()
	if !wanted {
		h = nil
	}
	switch p.kind {
	case kindMessage:
		if rs.lastKnown && p.id.Compare(rs.last) <= 0 {
			sh.b.stats.duplicates.Add(1)
			return
		}
		rs.last, rs.lastKnown = p.id, true
		p.msg.Room = rs.room
		sh.b.stats.delivered.Add(1)
		if h != nil {
			h.DeliverMessage(p.msg)
		}
	case kindEvent:
		p.event.Room = rs.room
		if h != nil {
			h.DeliverEvent(p.event)
		}
	}
}

// catchUpLoop catches up the rooms whose subscriptions were confirmed, in
// batches: one pipeline reads every room's stream.
func (sh *shard) catchUpLoop(g *generation) {
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-sh.catchup:
		}
		sh.mu.Lock()
		batch := sh.queued
		sh.queued = nil
		sh.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if err := sh.catchUp(g.ctx, batch); err != nil {
			g.fail(fmt.Errorf("catch up: %w", err))
			return
		}
	}
}

// catchUp reads, for each room, what the stream holds after the last id
// delivered (or, for a new subscription, where the stream ends), delivers
// it, then what pub/sub brought meanwhile, and makes the room live.
func (sh *shard) catchUp(ctx context.Context, batch []*roomSub) error {
	ctx, cancel := context.WithTimeout(ctx, sh.b.cfg.StallTimeout)
	defer cancel()
	// The rooms are not live, so nothing moves their last id while the
	// streams are read; deliveries of other rooms go on meanwhile.
	pipe := sh.b.client.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, len(batch))
	sh.dmu.Lock()
	sh.mu.Lock()
	for _, rs := range batch {
		if rs.fromTail {
			rs.fromTail, rs.lastKnown = false, false
		}
	}
	sh.mu.Unlock()
	for i, rs := range batch {
		stream := sh.b.keys(rs.room).stream
		switch {
		case !rs.lastKnown:
			cmds[i] = pipe.XRevRangeN(ctx, stream, "+", "-", 1)
		case rs.last.IsZero():
			cmds[i] = pipe.XRange(ctx, stream, "-", "+")
		default:
			cmds[i] = pipe.XRange(ctx, stream, "("+rs.last.String(), "+")
		}
	}
	sh.dmu.Unlock()
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// The rooms stay queued in nobody's list: the generation ends
		// and the next one catches them all up again.
		return err
	}
	sh.dmu.Lock()
	defer sh.dmu.Unlock()
	for i, rs := range batch {
		sh.mu.Lock()
		wanted := rs.wanted
		sh.mu.Unlock()
		entries := cmds[i].Val()
		if !rs.lastKnown {
			// A new subscription starts at the stream's end: what is
			// before it, the joining member reads as history.
			rs.lastKnown = true
			rs.last = protocol.ID{}
			if len(entries) == 1 {
				rs.last, _ = protocol.ParseID(entries[0].ID)
			}
			entries = nil
		}
		for _, x := range entries {
			m, id, ok := messageOf(rs.room, x)
			if !ok {
				continue
			}
			sh.b.stats.caughtUp.Add(1)
			sh.deliver(rs, payload{kind: kindMessage, msg: m, id: id}, wanted)
		}
		sh.mu.Lock()
		buffered := rs.buffered
		rs.buffered, rs.queued = nil, false
		rs.live = rs.sent && rs.inflight == 0
		var waiters []chan error
		if rs.live {
			waiters, rs.waiters = rs.waiters, nil
		}
		sh.mu.Unlock()
		for _, p := range buffered {
			sh.deliver(rs, p, wanted)
		}
		for _, w := range waiters {
			w <- nil
		}
	}
	return nil
}

// probe publishes a probe on the node's own channel every ProbeInterval
// and ends the generation when one has not come back within StallTimeout:
// the connection is up but no longer delivering.
func (sh *shard) probe(g *generation) {
	cfg := sh.b.cfg
	t := time.NewTicker(cfg.ProbeInterval)
	defer t.Stop()
	for {
		sh.mu.Lock()
		if sh.probeWait != 0 && time.Since(sh.probeAt) > cfg.StallTimeout {
			sh.stalled = true
			sh.mu.Unlock()
			sh.b.stats.stalls.Add(1)
			g.fail(errStalled)
			return
		}
		sh.probeSeq++
		seq := sh.probeSeq
		if sh.probeWait == 0 {
			sh.probeWait, sh.probeAt = seq, time.Now()
		}
		sh.mu.Unlock()

		ctx, cancel := context.WithTimeout(g.ctx, cfg.ProbeInterval)
		body := encodeProbe(strconv.FormatUint(seq, 10))
		if sh.sharded {
			_ = sh.client.SPublish(ctx, sh.probeCh, body).Err()
		} else {
			_ = sh.client.Publish(ctx, sh.probeCh, body).Err()
		}
		cancel()

		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeBack records a probe that came back.
func (sh *shard) probeBack(token string) {
	seq, err := strconv.ParseUint(token, 10, 64)
	if err != nil {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.probeWait != 0 && seq >= sh.probeWait {
		sh.lastRTT = time.Since(sh.probeAt)
		sh.probeWait = 0
	}
}

// lag is how far behind the connection is: the age of the oldest probe
// still out, or the round trip of the last one.
func (sh *shard) lag() time.Duration {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.probeWait != 0 {
		return max(time.Since(sh.probeAt), sh.lastRTT)
	}
	return sh.lastRTT
}

// health says whether the shard's connection is up and delivering.
func (sh *shard) health() error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	name := "redis pub/sub"
	if sh.addr != "" {
		name += " " + sh.addr
	}
	if !sh.up {
		return fmt.Errorf("%s is down: %w", name, sh.lastErr)
	}
	if sh.probeWait != 0 {
		if age := time.Since(sh.probeAt); age > sh.b.cfg.StallTimeout/2 {
			return fmt.Errorf("%s is stalled: no probe back for %v", name, age.Round(time.Millisecond))
		}
	}
	return nil
}

// reregister claims again, all at once, the presence of every member this
// node has in the shard's rooms, when the shard's connection was lost
// since they were last registered: a Redis that restarted without
// persistence (or was flushed, or failed over to a replica that had not
// seen them) does not hold them any more, and they would otherwise stay
// absent from the rooms' members until the next heartbeat, and be
// announced to nobody. A user whom Redis did not hold is announced joining
// (renew): whoever joined meanwhile learns of them, and the others, who
// already show them, get a join they can ignore. Concurrent calls wait for
// the one running; a loss while it runs leaves the shard to be registered
// again.
func (sh *shard) reregister(ctx context.Context) error {
	select {
	case sh.regSem <- struct{}{}:
	case <-ctx.Done():
		return unavailable("register presence again", ctx.Err())
	}
	defer func() { <-sh.regSem }()
	sh.mu.Lock()
	unreg, lost := sh.unreg, sh.lost
	sh.mu.Unlock()
	if !unreg {
		return nil
	}
	if err := sh.b.renewClaims(ctx, sh); err != nil {
		return err
	}
	sh.mu.Lock()
	if sh.unreg && sh.lost == lost {
		sh.unreg = false
		sh.b.unregistered.Add(-1)
	}
	sh.mu.Unlock()
	return nil
}

// want marks the room wanted and waits until it is live.
func (sh *shard) want(ctx context.Context, room string) error {
	ch := sh.b.keys(room).channel
	sh.mu.Lock()
	rs := sh.rooms[ch]
	if rs == nil {
		rs = &roomSub{room: room, channel: ch}
		sh.rooms[ch] = rs
	}
	rs.wanted = true
	if rs.live && rs.sent && rs.inflight == 0 {
		sh.mu.Unlock()
		return nil
	}
	if !sh.up && sh.failed {
		// Redis is known to be down: say so now, not at the deadline.
		// (While the first connection is being made, wait for it.)
		err := sh.lastErr
		rs.wanted = false
		sh.dirty[ch] = struct{}{}
		sh.mu.Unlock()
		signal(sh.wake)
		return unavailable("subscribe "+room, err)
	}
	w := make(chan error, 1)
	rs.waiters = append(rs.waiters, w)
	sh.dirty[ch] = struct{}{}
	sh.mu.Unlock()
	signal(sh.wake)

	var err error
	select {
	case err = <-w:
		if err == nil {
			return nil
		}
	case <-ctx.Done():
		err = fmt.Errorf("subscribe %s: %w", room, ctx.Err())
	}
	// The hub will not count this room as subscribed: undo.
	sh.mu.Lock()
	for i, x := range rs.waiters {
		if x == w {
			rs.waiters = append(rs.waiters[:i], rs.waiters[i+1:]...)
			break
		}
	}
	rs.wanted = false
	sh.dirty[ch] = struct{}{}
	sh.mu.Unlock()
	signal(sh.wake)
	return err
}

// unwant marks the room not wanted; the commander unsubscribes it.
func (sh *shard) unwant(room string) {
	ch := sh.b.keys(room).channel
	sh.mu.Lock()
	if rs := sh.rooms[ch]; rs != nil {
		rs.wanted = false
		sh.dirty[ch] = struct{}{}
	}
	sh.mu.Unlock()
	signal(sh.wake)
}

// shardFor returns the shard that carries room's channel, making it when
// it is the first room on that Redis shard.
func (b *Broker) shardFor(ctx context.Context, room string) (*shard, error) {
	if b.cluster == nil {
		b.shardsMu.Lock()
		defer b.shardsMu.Unlock()
		return b.shards[""], nil
	}
	node, err := b.cluster.MasterForKey(ctx, b.keys(room).channel)
	if err != nil {
		return nil, classify("route "+room, err)
	}
	addr := node.Options().Addr
	b.shardsMu.Lock()
	sh := b.shards[addr]
	b.shardsMu.Unlock()
	if sh != nil {
		return sh, nil
	}
	probe, err := b.probeChannelOn(ctx, addr)
	if err != nil {
		return nil, err
	}
	b.shardsMu.Lock()
	defer b.shardsMu.Unlock()
	if sh := b.shards[addr]; sh != nil {
		return sh, nil
	}
	if b.ctx.Err() != nil {
		return nil, unavailable("subscribe "+room, errors.New("broker closed"))
	}
	sh = b.newShard(addr, probe, node)
	b.shards[addr] = sh
	return sh, nil
}

// probeChannelOn finds a probe channel of this node whose slot the shard
// at addr serves: sharded pub/sub goes to the slot's owner.
func (b *Broker) probeChannelOn(ctx context.Context, addr string) (string, error) {
	slots, err := b.cluster.ClusterSlots(ctx).Result()
	if err != nil {
		return "", classify("cluster slots", err)
	}
	owns := func(slot int) bool {
		for _, s := range slots {
			if slot >= int(s.Start) && slot <= int(s.End) && len(s.Nodes) > 0 && s.Nodes[0].Addr == addr {
				return true
			}
		}
		return false
	}
	for i := range 1 << 20 {
		ch := probeChannel(b.cfg.Prefix, b.cfg.NodeID, i)
		if owns(slotOf(ch)) {
			return ch, nil
		}
	}
	return "", fmt.Errorf("no slot of the cluster is served by %s", addr)
}

// KeepSubscribed implements hub.SubscriptionKeeper.
func (b *Broker) KeepSubscribed() time.Duration { return max(b.cfg.KeepSubscribed, 0) }

// Subscribe implements hub.Broker: it returns once the room's channel is
// subscribed and the node knows where the room's stream ends.
func (b *Broker) Subscribe(ctx context.Context, room string) error {
	sh, err := b.shardFor(ctx, room)
	if err != nil {
		return err
	}
	b.shardsMu.Lock()
	b.roomSh[room] = sh
	b.shardsMu.Unlock()
	if err := sh.want(ctx, room); err != nil {
		b.shardsMu.Lock()
		delete(b.roomSh, room)
		b.shardsMu.Unlock()
		return err
	}
	return nil
}

// Unsubscribe implements hub.Broker. It does not wait for Redis.
func (b *Broker) Unsubscribe(_ context.Context, room string) error {
	b.shardsMu.Lock()
	sh := b.roomSh[room]
	delete(b.roomSh, room)
	b.shardsMu.Unlock()
	if sh != nil {
		sh.unwant(room)
	}
	return nil
}
