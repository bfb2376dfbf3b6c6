package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ws"
)

// ErrNotJoined is returned for a room the connection is not in.
var ErrNotJoined = errors.New("not joined")

// Conn is a local connection as the hub sees it.
type Conn interface {
	// Send queues an encoded event for the connection. It never blocks
	// and does no I/O, so the hub calls it under its locks. droppable
	// events (typing, presence) may be dropped when the connection is
	// falling behind. It reports whether the connection needs a Flush to
	// write what was queued.
	Send(pm *ws.PreparedMessage, droppable bool) (flush bool)
	// Flush writes what Send queued, without waiting for a client that
	// is behind. The hub calls it after releasing its locks. With a
	// batch, the connection may leave its write to it: a fan-out's
	// writes are then made together when the hub submits the batch,
	// right after flushing every member.
	Flush(batch *ws.Batch)
	// UserID is the connection's user.
	UserID() string
}

// flushList collects, during a fan-out under a room's lock, the
// connections to flush once the lock is released: no lock is held while
// writing to sockets.
type flushList struct {
	conns []Conn
	batch ws.Batch // the writes of the flush, made together
}

var flushLists = sync.Pool{New: func() any { return new(flushList) }}

func getFlushList() *flushList { return flushLists.Get().(*flushList) }

// flush flushes every connection collected, submits their writes, and
// returns the list to its pool, holding no connection.
func (l *flushList) flush() {
	for _, c := range l.conns {
		c.Flush(&l.batch)
	}
	l.batch.Submit()
	clear(l.conns)
	l.conns = l.conns[:0]
	flushLists.Put(l)
}

// send queues pm on c and remembers c for the flush.
func (l *flushList) send(c Conn, pm *ws.PreparedMessage, droppable bool) {
	if c.Send(pm, droppable) {
		l.conns = append(l.conns, c)
	}
}

// Hub is one node's rooms. Each message the broker delivers is encoded
// once and the same prepared frame is queued on every local member.
type Hub struct {
	broker Broker

	mu    sync.RWMutex // guards rooms; taken before a room's locks
	rooms map[string]*room

	deliveries atomic.Uint64
	draining   atomic.Bool // see Drain

	// unsubscribeDelay is how long a room with no local members stays
	// subscribed (see SubscriptionKeeper); closed stops new delays.
	unsubscribeDelay time.Duration
	closed           bool // guarded by mu
}

// SubscriptionKeeper is implemented by brokers whose subscriptions cost
// round trips (Redis: SUBSCRIBE, UNSUBSCRIBE, and a catch-up read). The
// hub then keeps a room subscribed for KeepSubscribed after its last local
// member left, so that a user who reloads the page, or rooms that members
// keep entering and leaving, do not unsubscribe and subscribe the node
// over and over. Deliveries to a room without members cost a lookup.
type SubscriptionKeeper interface {
	KeepSubscribed() time.Duration
}

// room is a room with local members. subMu serialises the broker
// subscription; mu guards the members and is held while fanning out, so a
// room's deliveries reach every member in order.
type room struct {
	name string
	refs int // connections attached, guarded by Hub.mu
	// idle unsubscribes the room once it has had no members for the
	// hub's unsubscribeDelay; guarded by Hub.mu.
	idle *time.Timer

	subMu      sync.Mutex
	subscribed bool // guarded by subMu

	mu    sync.Mutex
	conns map[Conn]*membership
	// users are the users with a local connection in the room, or a
	// presence change under way: one entry for all a user's state, made
	// and dropped with the user's first and last connection.
	users map[string]*roomUser
}

// roomUser is one user in one room. Its fields are guarded by room.mu,
// except lock.
type roomUser struct {
	conns int // local connections
	// typed is when the user's last typing event was relayed (see
	// TypingInterval); zero when none since the user's last message.
	typed time.Time

	// lock serialises the change of the user's local count and the
	// broker call that follows it (AddMember or RemoveMember, and the
	// presence event), so that one tab leaving while another joins
	// cannot end with the user counted present locally but removed from
	// the broker. locks counts its holder and waiters: the entry is kept
	// while any.
	lock  sync.Mutex
	locks int
}

// joinEvents recycles the presence joins attach hands to the broker's
// ReadJoin, which keeps none past the call (see Broker.ReadJoin): an
// allocation saved on every join, and no entry made bigger for it.
var joinEvents = sync.Pool{New: func() any { return new(Event) }}

// lockUser locks user's presence in r, making the user's entry if need
// be; unlockUser releases it, and drops the entry when nothing keeps it.
func (r *room) lockUser(user string) *roomUser {
	r.mu.Lock()
	u := r.users[user]
	if u == nil {
		u = &roomUser{}
		r.users[user] = u
	}
	u.locks++
	r.mu.Unlock()
	u.lock.Lock()
	return u
}

func (r *room) unlockUser(user string, u *roomUser) {
	u.lock.Unlock()
	r.mu.Lock()
	if u.locks--; u.locks == 0 && u.conns == 0 {
		delete(r.users, user)
	}
	r.mu.Unlock()
}

// membership is one connection in one room. While its join is being
// served it is pending: deliveries are kept, to be sent after `joined`
// minus those the joined history already holds.
type membership struct {
	member  protocol.Member
	pending bool
	queued  []pendingFrame
	// first holds queued's first frame, usually the only one (the user's
	// own presence join): no allocation for it on every join.
	first [1]pendingFrame
	// seen is the last id the joined history covered, until a newer
	// message is delivered: a broker's delivery of a message can arrive
	// after the join's history read already found it in the store (Redis:
	// the stream is read while the message's PUBLISH is still on its way
	// to this node), and is then a duplicate.
	seen protocol.ID
}

type pendingFrame struct {
	pm        *ws.PreparedMessage
	id        protocol.ID // zero for events
	droppable bool
}

// New returns a hub over broker and registers itself as its handler.
func New(broker Broker) *Hub {
	h := &Hub{broker: broker, rooms: map[string]*room{}}
	if k, ok := broker.(SubscriptionKeeper); ok {
		h.unsubscribeDelay = k.KeepSubscribed()
	}
	broker.SetHandler(h)
	return h
}

// Close stops the hub's timers: rooms kept subscribed without members
// are no longer unsubscribed (the broker's own Close ends every
// subscription).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, r := range h.rooms {
		if r.idle != nil {
			r.idle.Stop()
			r.idle = nil
		}
	}
}

// Broker returns the hub's broker.
func (h *Hub) Broker() Broker { return h.broker }

// Deliveries is the number of messages queued to local connections.
func (h *Hub) Deliveries() uint64 { return h.deliveries.Load() }

// Rooms is the number of rooms with local members.
func (h *Hub) Rooms() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, r := range h.rooms {
		if r.refs > 0 {
			n++
		}
	}
	return n
}

// JoinResult is what a join produced; the `joined` event was queued.
type JoinResult struct {
	History   int
	Recovered bool
}

// Join adds c to the room and queues `joined` on it: the members, and the
// history (the latest historyLimit messages, or with since every retained
// message after it). Messages published while the join is served are
// queued after `joined` exactly once. Joining a room c is already in
// serves the join again.
func (h *Hub) Join(ctx context.Context, c Conn, name string, member protocol.Member, ref, since string, historyLimit int) (JoinResult, error) {
	r, u, join, err := h.attach(ctx, c, name, member)
	if err != nil {
		return JoinResult{}, err
	}
	res, err := h.serveJoin(ctx, c, r, ref, since, historyLimit, join)
	if join != nil {
		*join = Event{}
		joinEvents.Put(join)
	}
	r.unlockUser(member.User, u)
	if err != nil {
		// The announcement, if any, may have been made: detach withdraws
		// it when this was the user's only connection in the room.
		h.detach(ctx, c, r, false)
		return JoinResult{}, err
	}
	return res, nil
}

// serveJoin reads the join's history and members, announcing the user's
// presence first when join is given (one broker step), and queues
// `joined` on c, then what was delivered meanwhile.
func (h *Hub) serveJoin(ctx context.Context, c Conn, r *room, ref, since string, historyLimit int, join *Event) (JoinResult, error) {
	history, recovered, members, err := h.broker.ReadJoin(ctx, r.name, since, historyLimit, join)
	if err != nil {
		return JoinResult{}, fmt.Errorf("join %s: %w", r.name, err)
	}
	last, _ := protocol.ParseID(since)
	if n := len(history); n > 0 {
		last, _ = protocol.ParseID(history[n-1].ID)
	}
	joined := ws.NewPreparedMessageInPlace(ws.Text, protocol.AppendJoined(frameBuffer(joinedSize(ref, r.name, members, history)), ref, r.name, members, history, recovered))

	r.mu.Lock()
	ms := r.conns[c]
	if ms == nil {
		r.mu.Unlock()
		return JoinResult{}, ErrNotJoined // left while the join was served
	}
	flush := c.Send(joined, false)
	for _, f := range ms.queued {
		if !f.id.IsZero() && f.id.Compare(last) <= 0 {
			continue // already in the joined history
		}
		flush = c.Send(f.pm, f.droppable) || flush
	}
	ms.pending, ms.queued, ms.seen = false, nil, last
	ms.first = [1]pendingFrame{} // holds no frame once sent
	r.mu.Unlock()
	if flush {
		c.Flush(nil)
	}
	return JoinResult{History: len(history), Recovered: recovered}, nil
}

// attach registers c in the room (pending) and subscribes the node to the
// room if it is the first local member. It returns with the user's
// presence lock in the room held (the caller unlocks it once the join is
// served), and, when this is the user's first connection in the room on
// this node, the presence join for the broker to announce with the join's
// read: under the lock, so that a leave of the user's other connection
// cannot reach the broker between the two.
func (h *Hub) attach(ctx context.Context, c Conn, name string, member protocol.Member) (*room, *roomUser, *Event, error) {
	h.mu.Lock()
	r := h.rooms[name]
	if r == nil {
		r = &room{name: name, conns: map[Conn]*membership{}, users: map[string]*roomUser{}}
		h.rooms[name] = r
	}
	r.refs++
	h.mu.Unlock()

	r.subMu.Lock()
	if !r.subscribed {
		if err := h.broker.Subscribe(ctx, name); err != nil {
			r.subMu.Unlock()
			h.release(ctx, r)
			return nil, nil, nil, fmt.Errorf("join %s: subscribe: %w", name, err)
		}
		r.subscribed = true
	}
	r.subMu.Unlock()

	u := r.lockUser(member.User)
	r.mu.Lock()
	defer r.mu.Unlock()
	ms, rejoin := r.conns[c]
	if rejoin {
		h.mu.Lock()
		r.refs-- // counted once per connection
		h.mu.Unlock()
		ms.pending, ms.queued = true, ms.first[:0]
		return r, u, nil, nil
	}
	ms = &membership{member: member, pending: true}
	ms.queued = ms.first[:0]
	r.conns[c] = ms
	u.conns++
	if u.conns > 1 {
		return r, u, nil, nil
	}
	join := joinEvents.Get().(*Event)
	*join = Event{Kind: EventPresence, Room: name, User: member.User, Name: member.Name, State: protocol.PresenceJoin}
	return r, u, join, nil
}

// Drain tells the hub that the node is shutting down and its
// connections will reconnect to other nodes: from now on, when a
// connection ends (Disconnect), its user's presence is left to lapse
// rather than withdrawn, if the broker can (PresenceLapser), so that a
// user who is back on another node a moment later is not announced as
// leaving and joining again.
func (h *Hub) Drain() { h.draining.Store(true) }

// Leave removes c from the room: the client asked to leave.
func (h *Hub) Leave(ctx context.Context, c Conn, name string) error {
	return h.leave(ctx, c, name, false)
}

// Disconnect removes c from the room because its connection ended. It is
// Leave, except while the hub drains (see Drain).
func (h *Hub) Disconnect(ctx context.Context, c Conn, name string) error {
	return h.leave(ctx, c, name, h.draining.Load())
}

func (h *Hub) leave(ctx context.Context, c Conn, name string, lapse bool) error {
	h.mu.RLock()
	r := h.rooms[name]
	h.mu.RUnlock()
	if r == nil {
		return ErrNotJoined
	}
	if !h.detach(ctx, c, r, lapse) {
		return ErrNotJoined
	}
	return nil
}

// detach removes c from r, announces the user's departure when it was
// their last connection in the room anywhere, and releases the room. With
// lapse, and a broker that can, the user's presence is left to lapse
// instead (see Drain).
func (h *Hub) detach(ctx context.Context, c Conn, r *room, lapse bool) bool {
	r.mu.Lock()
	ms := r.conns[c]
	r.mu.Unlock()
	if ms == nil {
		return false
	}
	user := ms.member.User
	u := r.lockUser(user)
	r.mu.Lock()
	if r.conns[c] != ms {
		// Detached meanwhile (a leave racing the connection's end).
		r.mu.Unlock()
		r.unlockUser(user, u)
		return false
	}
	delete(r.conns, c)
	u.conns--
	lastLocal := u.conns == 0
	if lastLocal {
		u.typed = time.Time{} // and the entry goes with the lock
	}
	r.mu.Unlock()

	if lastLocal {
		if l, ok := h.broker.(PresenceLapser); ok && lapse {
			// Best effort, like the leave event: an error leaves the
			// claim as it is, to expire all the same.
			_ = l.LapseMember(ctx, r.name, user)
		} else {
			leave := Event{Kind: EventPresence, Room: r.name, User: user, Name: ms.member.Name, State: protocol.PresenceLeave}
			_, _ = h.broker.WithdrawMember(ctx, r.name, user, leave)
		}
	}
	r.unlockUser(user, u)
	h.release(ctx, r)
	return true
}

// release drops one reference to r; the last one unsubscribes the node and
// forgets the room, at once or, with an unsubscribeDelay, once the room
// has stayed without members that long.
func (h *Hub) release(ctx context.Context, r *room) {
	h.mu.Lock()
	r.refs--
	idle := r.refs == 0
	if idle && h.unsubscribeDelay > 0 {
		switch {
		case h.closed:
		case r.idle == nil:
			r.idle = time.AfterFunc(h.unsubscribeDelay, func() { h.expire(r) })
		default:
			r.idle.Reset(h.unsubscribeDelay)
		}
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	if idle {
		h.unsubscribeIdle(ctx, r)
	}
}

// expire runs when r's unsubscribeDelay has passed.
func (h *Hub) expire(r *room) {
	h.mu.Lock()
	r.idle = nil
	closed := h.closed
	h.mu.Unlock()
	if !closed {
		h.unsubscribeIdle(context.Background(), r)
	}
}

// unsubscribeIdle unsubscribes the node from r and forgets r, unless a
// member came meanwhile. The room stays in the map during the
// unsubscribe, so a concurrent join finds it and subscribes again
// afterwards rather than racing a new subscription against the old
// unsubscribe.
func (h *Hub) unsubscribeIdle(ctx context.Context, r *room) {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	h.mu.Lock()
	if r.refs > 0 {
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	if r.subscribed {
		// An error leaves the node subscribed to a room it does not need;
		// deliveries to it find no members and cost little.
		_ = h.broker.Unsubscribe(detached(ctx), r.name)
		r.subscribed = false
	}
	h.mu.Lock()
	if r.refs == 0 && h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	h.mu.Unlock()
}

// detached returns ctx without its cancellation, for a call that the end
// of the command that led to it must not cut short; a ctx that cannot be
// cancelled as it is.
func detached(ctx context.Context) context.Context {
	if ctx == context.Background() {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// IsMember reports whether c is in the room.
func (h *Hub) IsMember(c Conn, name string) bool {
	h.mu.RLock()
	r := h.rooms[name]
	h.mu.RUnlock()
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[c] != nil
}

// Publish posts a message to the room; c must be a member.
func (h *Hub) Publish(ctx context.Context, c Conn, m protocol.Message) (protocol.Message, bool, error) {
	if !h.IsMember(c, m.Room) {
		return m, false, ErrNotJoined
	}
	stored, dup, err := h.broker.Publish(ctx, m)
	if err == nil {
		// A message clears the sender's typing indicator wherever it
		// arrives, so the sender's next typing is news: relay it at
		// once, as the browser client announces it at once.
		if r := h.lookup(m.Room); r != nil {
			r.mu.Lock()
			if u := r.users[m.From]; u != nil {
				u.typed = time.Time{}
			}
			r.mu.Unlock()
		}
	}
	return stored, dup, err
}

// TypingInterval is the least time between two typing events of one user
// in one room that a node relays; the ones in between are dropped. A
// typing event means "typing" for a few seconds where it arrives, so more
// of them say nothing new, and each costs a delivery to every member of
// the room on every node: without this, a client could make a room's
// members pay its whole command rate.
const TypingInterval = time.Second

// Typing relays a typing event; c must be a member. Within TypingInterval
// of the user's last one in the room (from any of their connections to
// this node), it is dropped, silently: typing is ephemeral, and the one
// before still stands.
func (h *Hub) Typing(ctx context.Context, c Conn, room string, member protocol.Member) error {
	r := h.lookup(room)
	if r == nil {
		return ErrNotJoined
	}
	now := time.Now()
	r.mu.Lock()
	ms := r.conns[c]
	if ms == nil {
		r.mu.Unlock()
		return ErrNotJoined
	}
	// The user c joined as has an entry while c is in the room.
	u := r.users[ms.member.User]
	if !u.typed.IsZero() && now.Sub(u.typed) < TypingInterval {
		r.mu.Unlock()
		return nil
	}
	u.typed = now
	r.mu.Unlock()
	return h.broker.PublishEvent(ctx, Event{Kind: EventTyping, Room: room, User: member.User, Name: member.Name})
}

// DeliverMessage implements Handler: the message is encoded once and
// queued on every local member of its room, in the room's order; then,
// with the room's lock released, each member is flushed: written to at
// once when its socket takes it, so a delivery costs one write and no
// goroutine, while a member that is behind is left to its own writer.
func (h *Hub) DeliverMessage(m protocol.Message) {
	r := h.lookup(m.Room)
	if r == nil {
		return
	}
	l := getFlushList()
	defer l.flush() // after the unlock below: writes hold no lock
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) == 0 {
		return
	}
	pm := ws.NewPreparedMessageInPlace(ws.Text, protocol.AppendMessage(frameBuffer(messageSize(&m)), &m))
	id, _ := protocol.ParseID(m.ID)
	for c, ms := range r.conns {
		if ms.pending {
			ms.queued = append(ms.queued, pendingFrame{pm: pm, id: id})
			continue
		}
		if !ms.seen.IsZero() {
			if id.Compare(ms.seen) <= 0 {
				continue // in the joined history already
			}
			ms.seen = protocol.ID{} // the broker delivers in order: no more to skip
		}
		l.send(c, pm, false)
	}
	h.deliveries.Add(uint64(len(r.conns)))
}

// DeliverEvent implements Handler. Typing is not sent back to the typing
// user's own connections.
func (h *Hub) DeliverEvent(ev Event) {
	r := h.lookup(ev.Room)
	if r == nil {
		return
	}
	l := getFlushList()
	defer l.flush() // after the unlock below: writes hold no lock
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) == 0 {
		return
	}
	data := frameBuffer(eventOverhead + len(ev.Room) + len(ev.User) + len(ev.Name) + len(ev.State))
	switch ev.Kind {
	case EventTyping:
		data = protocol.AppendTyping(data, ev.Room, ev.User, ev.Name)
	case EventPresence:
		data = protocol.AppendPresence(data, ev.Room, ev.User, ev.Name, ev.State)
	default:
		return
	}
	pm := ws.NewPreparedMessageInPlace(ws.Text, data)
	for c, ms := range r.conns {
		if ev.Kind == EventTyping && ms.member.User == ev.User {
			continue
		}
		if ms.pending {
			ms.queued = append(ms.queued, pendingFrame{pm: pm, droppable: true})
			continue
		}
		l.send(c, pm, true)
	}
}

// The sizes events are encoded into: their string values plus room for
// the keys, quotes and numbers around them, so that an encoding takes
// one allocation where appending to nil grows it three or four times.
// Values that need escaping may still grow it.
const (
	eventOverhead   = 80  // presence, typing
	messageOverhead = 112 // a message object, ts included
	memberOverhead  = 24
)

// frameBuffer is a buffer to append an encoding of about n bytes to, with
// the headroom for NewPreparedMessageInPlace to frame it without a copy.
func frameBuffer(n int) []byte {
	return make([]byte, ws.PreparedHeadroom, ws.PreparedHeadroom+n)
}

func messageSize(m *protocol.Message) int {
	return messageOverhead + len(m.Room) + len(m.ID) + len(m.From) + len(m.Name) + len(m.Text) + len(m.CID)
}

func joinedSize(ref, room string, members []protocol.Member, history []protocol.Message) int {
	n := eventOverhead + len(ref) + len(room)
	for i := range members {
		n += memberOverhead + len(members[i].User) + len(members[i].Name)
	}
	for i := range history {
		n += messageSize(&history[i])
	}
	return n
}

func (h *Hub) lookup(name string) *room {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rooms[name]
}
