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
type MemoryBroker struct {
	cfg RetentionConfig
	now func() time.Time

	mu      sync.Mutex // guards rooms; taken before a room's mu, never after
	rooms   map[string]*memRoom
	handler atomic.Pointer[Handler]
}

var _ Broker = (*MemoryBroker)(nil)

type memRoom struct {
	mu         sync.Mutex
	msgs       []storedMessage // oldest first
	last       protocol.ID     // last id assigned
	trimmedTo  protocol.ID     // highest id dropped from retention
	cids       map[string]string
	presence   map[string]protocol.Member
	subscribed bool
}

type storedMessage struct {
	id protocol.ID
	m  protocol.Message
}

// NewMemoryBroker returns a broker for one node.
func NewMemoryBroker(cfg RetentionConfig) *MemoryBroker {
	return &MemoryBroker{cfg: cfg.WithDefaults(), now: time.Now, rooms: map[string]*memRoom{}}
}

// SetHandler implements Broker.
func (b *MemoryBroker) SetHandler(h Handler) { b.handler.Store(&h) }

func (b *MemoryBroker) room(name string, create bool) *memRoom {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[name]
	if r == nil && create {
		r = &memRoom{cids: map[string]string{}, presence: map[string]protocol.Member{}}
		b.rooms[name] = r
	}
	return r
}

func (b *MemoryBroker) getHandler() Handler {
	if h := b.handler.Load(); h != nil {
		return *h
	}
	return nil
}

// forgetIfUnused drops a room that holds nothing: no history, nobody
// present, no subscription, so that joining many empty rooms costs nothing
// once they are left.
func (b *MemoryBroker) forgetIfUnused(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rooms[name]
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 && len(r.presence) == 0 && !r.subscribed && r.last.IsZero() {
		delete(b.rooms, name)
	}
}

func cidKey(from, cid string) string { return from + "\x00" + cid }

// Publish implements Broker. Delivery happens under the room's lock, so
// that every subscriber sees the room's messages in id order.
func (b *MemoryBroker) Publish(ctx context.Context, m protocol.Message) (protocol.Message, bool, error) {
	if err := ctx.Err(); err != nil {
		return m, false, err
	}
	r := b.room(m.Room, true)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := b.now()
	b.trim(r, now)
	if m.CID != "" {
		if id, ok := r.cids[cidKey(m.From, m.CID)]; ok {
			if orig, found := r.find(id); found {
				return orig, true, nil
			}
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
		r.cids[cidKey(m.From, m.CID)] = m.ID
	}
	b.trim(r, now)
	if r.subscribed {
		if h := b.getHandler(); h != nil {
			h.DeliverMessage(m)
		}
	}
	return m, false, nil
}

func (r *memRoom) find(id string) (protocol.Message, bool) {
	pid, ok := protocol.ParseID(id)
	if !ok {
		return protocol.Message{}, false
	}
	i, found := slices.BinarySearchFunc(r.msgs, pid, func(s storedMessage, t protocol.ID) int { return s.id.Compare(t) })
	if !found {
		return protocol.Message{}, false
	}
	return r.msgs[i].m, true
}

// trim drops messages beyond the count and older than the TTL, with their
// de-duplication entries (a cid is remembered as long as its message is).
func (b *MemoryBroker) trim(r *memRoom, now time.Time) {
	drop := 0
	if n := len(r.msgs) - b.cfg.Size; n > 0 {
		drop = n
	}
	cutoff := now.Add(-b.cfg.TTL).UnixMilli()
	for drop < len(r.msgs) && r.msgs[drop].m.TS < cutoff {
		drop++
	}
	if drop == 0 {
		return
	}
	for _, s := range r.msgs[:drop] {
		if s.m.CID != "" {
			delete(r.cids, cidKey(s.m.From, s.m.CID))
		}
	}
	r.trimmedTo = r.msgs[drop-1].id
	r.msgs = slices.Delete(r.msgs, 0, drop)
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

// Since implements Broker.
func (b *MemoryBroker) Since(ctx context.Context, room, since string) ([]protocol.Message, bool, error) {
	sid, ok := protocol.ParseID(since)
	if !ok {
		return nil, false, nil
	}
	r := b.room(room, false)
	if r == nil {
		return nil, true, ctx.Err()
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
	return out, r.trimmedTo.Compare(sid) <= 0, nil
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(ctx context.Context, room string) error {
	r := b.room(room, true)
	r.mu.Lock()
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
	r := b.room(room, true)
	r.mu.Lock()
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
