package hub

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/protocol"
)

// RetentionConfig says how much history a broker keeps per room.
type RetentionConfig struct {
	// Size is the number of messages kept per room. Default 1000.
	Size int
	// TTL is how long a message is kept. Default 24 h.
	TTL time.Duration
}

// WithDefaults fills in the defaults of zero fields.
func (c RetentionConfig) WithDefaults() RetentionConfig {
	if c.Size <= 0 {
		c.Size = 1000
	}
	if c.TTL <= 0 {
		c.TTL = 24 * time.Hour
	}
	return c
}

// MemoryBroker is the broker of a single node: history in memory, delivery
// by a direct call. Ids are assigned like Redis stream ids
// (<milliseconds>-<sequence>, strictly increasing per room).
//
// Its history begins when it is made: a node that restarts lost whatever
// came before, and cannot say what that was. So every room's history has
// a floor, the id before which it cannot vouch for anything, and a since
// below the floor is never recovered (see Since). A room whose history has
// expired entirely and that nobody is in or subscribed to is forgotten, so
// that memory does not grow with every room name ever used; the floor of
// its next incarnation is at least its last id.
//
// A client message id (cid) is remembered for the retention time, whether
// or not its message is still retained: count trimming does not shorten
// it. A room remembers at most MaxCIDs of them (or its history size, when
// that is larger); beyond it, the oldest are forgotten first.
type MemoryBroker struct {
	cfg        RetentionConfig
	now        func() time.Time
	sweepEvery time.Duration
	maxCIDs    int // per room

	mu sync.Mutex // guards the fields below; taken before a room's mu, never after
	// rooms are the rooms the broker knows.
	rooms map[string]*memRoom
	// floor is the floor of a room made now: the id of the broker's
	// start, raised to the last id of every room forgotten since.
	floor     protocol.ID
	nextSweep time.Time

	handler atomic.Pointer[Handler]
}

var _ Broker = (*MemoryBroker)(nil)

type memRoom struct {
	mu         sync.Mutex
	msgs       []storedMessage     // oldest first
	last       protocol.ID         // last id assigned
	trimmedTo  protocol.ID         // highest id dropped from retention
	floor      protocol.ID         // history before it is unknown (see MemoryBroker)
	gone       bool                // forgotten: a new room of the name replaces it
	cids       map[string]cidEntry // (from, cid) → the original, for the retention time; made by the first cid
	cidOrder   []cidRef            // the cids in publish order (so in ts order) from cidHead on
	cidHead    int
	presence   map[string]protocol.Member
	subscribed bool
}

// MaxCIDs is how many client message ids a room of a MemoryBroker
// remembers at most (its history size, when that is larger): a retry is
// recognised for the retention time unless the room saw more messages with
// a cid than that meanwhile. At a few hundred bytes each, a room at the
// limit holds some tens of megabytes of them.
const MaxCIDs = 100_000

// cidEntry is what a retry of a cid is answered with: the original's id
// and ts.
type cidEntry struct {
	id protocol.ID
	ts int64
}

// cidRef is a cid in the order of publication; the map's entry is
// forgotten with it unless the key was used again since (same id).
type cidRef struct {
	key string
	cidEntry
}

type storedMessage struct {
	id protocol.ID
	m  protocol.Message
}

// NewMemoryBroker returns a broker for one node.
func NewMemoryBroker(cfg RetentionConfig) *MemoryBroker {
	return newMemoryBroker(cfg, time.Now)
}

func newMemoryBroker(cfg RetentionConfig, now func() time.Time) *MemoryBroker {
	cfg = cfg.WithDefaults()
	start := now()
	return &MemoryBroker{
		cfg: cfg,
		now: now,
		// Often enough that an expired room does not linger much beyond
		// its retention, seldom enough that the walk over every room
		// costs nothing.
		sweepEvery: min(cfg.TTL, time.Minute),
		maxCIDs:    max(MaxCIDs, cfg.Size),
		rooms:      map[string]*memRoom{},
		floor:      protocol.ID{MS: uint64(max(start.UnixMilli(), 0))},
		nextSweep:  start.Add(min(cfg.TTL, time.Minute)),
	}
}

// SetHandler implements Broker.
func (b *MemoryBroker) SetHandler(h Handler) { b.handler.Store(&h) }

// room returns the room called name, made when create is set (nil when it
// is not and the room is unknown). Now and then it first sweeps away the
// rooms that hold nothing any more.
func (b *MemoryBroker) room(name string, create bool) *memRoom {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !now.Before(b.nextSweep) {
		b.sweepLocked(now)
		b.nextSweep = now.Add(b.sweepEvery)
	}
	r := b.rooms[name]
	if r == nil && create {
		r = &memRoom{
			presence: map[string]protocol.Member{},
			floor:    b.floor,
			// Ids only grow, also from one incarnation of a room to the
			// next when the clock went back meanwhile.
			last: b.floor,
		}
		b.rooms[name] = r
	}
	return r
}

// lockRoom returns the room called name, made if need be, with its mu
// held. A room is forgotten only when it holds nothing, but between the
// lookup and the lock it may have been: what is about to be put in it
// would be lost with it, so the lookup is made again.
func (b *MemoryBroker) lockRoom(name string) *memRoom {
	for {
		r := b.room(name, true)
		if testHookRoomLookedUp != nil {
			testHookRoomLookedUp(b)
		}
		r.mu.Lock()
		if !r.gone {
			return r
		}
		r.mu.Unlock()
	}
}

// testHookRoomLookedUp, set by tests only, runs between a room's lookup
// and its lock in lockRoom.
var testHookRoomLookedUp func(*MemoryBroker)

// sweepLocked forgets every room that holds nothing once its expired
// history is trimmed. b.mu is held.
func (b *MemoryBroker) sweepLocked(now time.Time) {
	for name, r := range b.rooms {
		r.mu.Lock()
		b.trim(r, now)
		if r.unused() {
			b.forgetLocked(name, r)
		}
		r.mu.Unlock()
	}
}

// unused reports whether the room holds nothing: no retained message, no
// cid within the retention time, nobody present, no subscription. r.mu is
// held.
func (r *memRoom) unused() bool {
	return len(r.msgs) == 0 && len(r.cids) == 0 && len(r.presence) == 0 && !r.subscribed
}

// forgetLocked drops the room, raising the floor of rooms made from now
// on to its last id: a since below that id may have missed messages of
// the forgotten room, one at or above it missed nothing. b.mu and r.mu are
// held.
func (b *MemoryBroker) forgetLocked(name string, r *memRoom) {
	delete(b.rooms, name)
	r.gone = true
	if r.last.Compare(b.floor) > 0 {
		b.floor = r.last
	}
}

func (b *MemoryBroker) getHandler() Handler {
	if h := b.handler.Load(); h != nil {
		return *h
	}
	return nil
}

// forgetIfUnused drops a room that holds nothing: no retained history,
// nobody present, no subscription, so that joining many empty rooms costs
// nothing once they are left.
func (b *MemoryBroker) forgetIfUnused(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[name]
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.trim(r, b.now())
	if r.unused() {
		b.forgetLocked(name, r)
	}
}

func cidKey(from, cid string) string { return from + "\x00" + cid }

// Publish implements Broker. Delivery happens under the room's lock, so
// that every subscriber sees the room's messages in id order.
func (b *MemoryBroker) Publish(ctx context.Context, m protocol.Message) (protocol.Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return m, false, err
	}
	r := b.lockRoom(m.Room)
	defer r.mu.Unlock()
	now := b.now()
	b.trim(r, now)
	if m.CID != "" {
		if e, ok := r.cids[cidKey(m.From, m.CID)]; ok {
			if orig, found := r.find(e.id); found {
				return orig, true, nil
			}
			// Trimmed by count, but within the retention time: the
			// original's id and ts, the rest as given.
			m.ID, m.TS = e.id.String(), e.ts
			return m, true, nil
		}
	}
	ms := uint64(now.UnixMilli())
	id := protocol.ID{MS: ms}
	if ms <= r.last.MS {
		id = r.last.Next()
	}
	r.last = id
	m.ID = id.String()
	m.TS = int64(id.MS)
	r.msgs = append(r.msgs, storedMessage{id: id, m: m})
	if m.CID != "" {
		e := cidEntry{id: id, ts: m.TS}
		k := cidKey(m.From, m.CID)
		if r.cids == nil {
			r.cids = map[string]cidEntry{}
		}
		r.cids[k] = e
		r.cidOrder = append(r.cidOrder, cidRef{key: k, cidEntry: e})
	}
	b.trim(r, now)
	if r.subscribed {
		if h := b.getHandler(); h != nil {
			h.DeliverMessage(m)
		}
	}
	return m, false, nil
}

func (r *memRoom) find(pid protocol.ID) (protocol.Message, bool) {
	i, found := slices.BinarySearchFunc(r.msgs, pid, func(s storedMessage, t protocol.ID) int { return s.id.Compare(t) })
	if !found {
		return protocol.Message{}, false
	}
	return r.msgs[i].m, true
}

// trim drops messages beyond the count and older than the TTL, and the
// de-duplication entries older than the TTL or beyond the room's cid
// limit (a cid outlives its message when the message is trimmed by count).
func (b *MemoryBroker) trim(r *memRoom, now time.Time) {
	cutoff := now.Add(-b.cfg.TTL).UnixMilli()
	b.trimCIDs(r, cutoff)
	drop := 0
	if n := len(r.msgs) - b.cfg.Size; n > 0 {
		drop = n
	}
	for drop < len(r.msgs) && r.msgs[drop].m.TS < cutoff {
		drop++
	}
	if drop == 0 {
		return
	}
	r.trimmedTo = r.msgs[drop-1].id
	r.msgs = slices.Delete(r.msgs, 0, drop)
}

// trimCIDs forgets the cids older than cutoff, and the oldest beyond the
// room's limit. r.mu is held.
func (b *MemoryBroker) trimCIDs(r *memRoom, cutoff int64) {
	for r.cidHead < len(r.cidOrder) {
		c := r.cidOrder[r.cidHead]
		if c.ts >= cutoff && len(r.cidOrder)-r.cidHead <= b.maxCIDs {
			break
		}
		if e, ok := r.cids[c.key]; ok && e.id == c.id {
			delete(r.cids, c.key)
		}
		r.cidOrder[r.cidHead] = cidRef{}
		r.cidHead++
	}
	// Compact once the forgotten part is the larger one: amortised, each
	// cid is moved at most once more.
	if r.cidHead > 0 && r.cidHead >= len(r.cidOrder)-r.cidHead {
		n := copy(r.cidOrder, r.cidOrder[r.cidHead:])
		clear(r.cidOrder[n:])
		r.cidOrder = r.cidOrder[:n]
		r.cidHead = 0
		if n == 0 {
			r.cidOrder = nil
		}
	}
}

// History implements Broker.
func (b *MemoryBroker) History(ctx context.Context, room, before string, limit int) ([]protocol.Message, bool, error) {
	r := b.room(room, false)
	if r == nil {
		return nil, false, ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.trim(r, b.now())
	end := len(r.msgs)
	if before != "" {
		bid, ok := protocol.ParseID(before)
		if !ok {
			return nil, false, nil
		}
		end, _ = slices.BinarySearchFunc(r.msgs, bid, func(s storedMessage, t protocol.ID) int { return s.id.Compare(t) })
	}
	start := max(end-limit, 0)
	out := make([]protocol.Message, 0, end-start)
	for _, s := range r.msgs[start:end] {
		out = append(out, s.m)
	}
	return out, start > 0, nil
}

// Since implements Broker. recovered is false when since is below the
// room's floor (what came before this broker's history began is unknown)
// or below the highest id dropped from retention.
func (b *MemoryBroker) Since(ctx context.Context, room, since string) ([]protocol.Message, bool, error) {
	sid, ok := protocol.ParseID(since)
	if !ok {
		return nil, false, nil
	}
	r := b.room(room, false)
	if r == nil {
		// A room made now would have this floor, and hold nothing.
		b.mu.Lock()
		floor := b.floor
		b.mu.Unlock()
		return nil, floor.Compare(sid) <= 0, ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.trim(r, b.now())
	i, found := slices.BinarySearchFunc(r.msgs, sid, func(s storedMessage, t protocol.ID) int { return s.id.Compare(t) })
	if found {
		i++
	}
	out := make([]protocol.Message, 0, len(r.msgs)-i)
	for _, s := range r.msgs[i:] {
		out = append(out, s.m)
	}
	return out, r.floor.Compare(sid) <= 0 && r.trimmedTo.Compare(sid) <= 0, nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(ctx context.Context, room string) error {
	r := b.lockRoom(room)
	r.subscribed = true
	r.mu.Unlock()
	return ctx.Err()
}

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(ctx context.Context, room string) error {
	if r := b.room(room, false); r != nil {
		r.mu.Lock()
		r.subscribed = false
		r.mu.Unlock()
		b.forgetIfUnused(room)
	}
	return nil
}

// AddMember implements Broker: with one node, the hub's first local
// connection of a user is the first anywhere.
func (b *MemoryBroker) AddMember(ctx context.Context, room string, m protocol.Member) (bool, error) {
	r := b.lockRoom(room)
	defer r.mu.Unlock()
	_, present := r.presence[m.User]
	r.presence[m.User] = m
	return !present, nil
}

// RemoveMember implements Broker.
func (b *MemoryBroker) RemoveMember(ctx context.Context, room, user string) (bool, error) {
	r := b.room(room, false)
	if r == nil {
		return false, nil
	}
	r.mu.Lock()
	_, present := r.presence[user]
	delete(r.presence, user)
	r.mu.Unlock()
	b.forgetIfUnused(room)
	return present, nil
}

// Members implements Broker.
func (b *MemoryBroker) Members(ctx context.Context, room string) ([]protocol.Member, error) {
	r := b.room(room, false)
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]protocol.Member, 0, len(r.presence))
	for _, m := range r.presence {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b protocol.Member) int {
		if a.User < b.User {
			return -1
		}
		if a.User > b.User {
			return 1
		}
		return 0
	})
	return out, nil
}

// AnnounceMember implements Broker: AddMember, then the event.
func (b *MemoryBroker) AnnounceMember(ctx context.Context, room string, m protocol.Member, join Event) (bool, error) {
	first, err := b.AddMember(ctx, room, m)
	if err == nil && first {
		// Presence is best effort: a lost event does not fail the join.
		_ = b.PublishEvent(ctx, join)
	}
	return first, err
}

// WithdrawMember implements Broker: RemoveMember, then the event.
func (b *MemoryBroker) WithdrawMember(ctx context.Context, room, user string, leave Event) (bool, error) {
	last, err := b.RemoveMember(ctx, room, user)
	if err == nil && last {
		_ = b.PublishEvent(ctx, leave)
	}
	return last, err
}

// ReadJoin implements Broker: AnnounceMember, Since or History, then
// Members.
func (b *MemoryBroker) ReadJoin(ctx context.Context, room, since string, limit int, join *Event) (history []protocol.Message, recovered bool, members []protocol.Member, err error) {
	if join != nil {
		if _, err := b.AnnounceMember(ctx, room, protocol.Member{User: join.User, Name: join.Name}, *join); err != nil {
			return nil, false, nil, err
		}
	}
	if since != "" {
		history, recovered, err = b.Since(ctx, room, since)
	} else {
		history, _, err = b.History(ctx, room, "", limit)
	}
	if err != nil {
		return nil, false, nil, err
	}
	if members, err = b.Members(ctx, room); err != nil {
		return nil, false, nil, err
	}
	return history, recovered, members, nil
}

// PublishEvent implements Broker.
func (b *MemoryBroker) PublishEvent(ctx context.Context, ev Event) error {
	r := b.room(ev.Room, false)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subscribed {
		if h := b.getHandler(); h != nil {
			h.DeliverEvent(ev)
		}
	}
	return nil
}

// Ready implements Broker: memory is always there.
func (b *MemoryBroker) Ready(context.Context) error { return nil }

// Close implements Broker.
func (b *MemoryBroker) Close() error { return nil }
