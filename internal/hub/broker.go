// Package hub keeps a node's rooms: which local connections are in which
// room, and the fan-out of every room's messages and events to them. It
// owns the Broker interface through which rooms travel between nodes and
// history is kept; MemoryBroker is the single-node implementation, and the
// Redis broker (package redisbroker) the cluster one.
package hub

import (
	"context"
	"errors"

	"github.com/chatd/chatd/internal/protocol"
)

// ErrUnavailable says the broker cannot be reached; the command may be
// retried. Brokers wrap it.
var ErrUnavailable = errors.New("broker unavailable")

// EventKind tells presence from typing.
type EventKind uint8

// Kinds of ephemeral event.
const (
	EventPresence EventKind = iota + 1
	EventTyping
)

// Event is an ephemeral room event: never stored, droppable for slow
// consumers.
type Event struct {
	Kind  EventKind
	Room  string
	User  string
	Name  string
	State string // presence: protocol.PresenceJoin or PresenceLeave
}

// Handler receives what a broker delivers for the rooms this node is
// subscribed to. Messages of one room arrive in id order, one at a time.
type Handler interface {
	DeliverMessage(m protocol.Message)
	DeliverEvent(ev Event)
}

// Broker carries rooms between nodes and keeps their history. Every method
// is safe for concurrent use.
type Broker interface {
	// SetHandler sets where deliveries go; it is called once, before any
	// Subscribe.
	SetHandler(h Handler)

	// Publish stores m (Room, From, Name, Text, CID) in the room's history,
	// assigns its ID and TS, and delivers it to every subscribed node. A
	// message whose (From, Room, CID) was published within the retention
	// time (RetentionConfig.TTL) is not published again, nor delivered,
	// also when the original was trimmed from the history by count since:
	// the original comes back with duplicate true (its ID and TS always;
	// its other fields while it is retained, m's once it is not).
	Publish(ctx context.Context, m protocol.Message) (stored protocol.Message, duplicate bool, err error)

	// History returns up to limit retained messages older than before
	// (all the newest when before is empty), oldest first, and whether
	// older ones are retained.
	History(ctx context.Context, room, before string, limit int) (msgs []protocol.Message, more bool, err error)

	// Since returns every retained message newer than since, oldest first;
	// recovered says that no message newer than since has been dropped
	// from retention.
	Since(ctx context.Context, room, since string) (msgs []protocol.Message, recovered bool, err error)

	// Subscribe makes this node receive the room's messages and events; it
	// returns once deliveries are flowing. Unsubscribe stops them. Calls
	// for one room are made in order by the hub.
	Subscribe(ctx context.Context, room string) error
	Unsubscribe(ctx context.Context, room string) error

	// AddMember records that user has a connection in room on this node;
	// first is true when no node had one before. RemoveMember undoes it;
	// last is true when no node has one any more. Members lists the users
	// present on any node.
	AddMember(ctx context.Context, room string, m protocol.Member) (first bool, err error)
	RemoveMember(ctx context.Context, room, user string) (last bool, err error)
	Members(ctx context.Context, room string) ([]protocol.Member, error)

	// AnnounceMember is AddMember and, when first, PublishEvent(join);
	// WithdrawMember is RemoveMember and, when last, PublishEvent(leave).
	// A broker may make each one step (the Redis broker: one script, one
	// round trip, the event atomic with the claim).
	AnnounceMember(ctx context.Context, room string, m protocol.Member, join Event) (first bool, err error)
	WithdrawMember(ctx context.Context, room, user string, leave Event) (last bool, err error)

	// ReadJoin serves a join: with join, AnnounceMember(room, the user
	// and name of join, join) first; then Since(room, since) when since is
	// given, else History(room, "", limit); then Members(room), which
	// include the user just announced. A broker may make them one step
	// (the Redis broker: one pipeline, one round trip). On an error the
	// announcement may or may not have been made: the caller withdraws
	// it as it would any other (WithdrawMember). join is the caller's
	// again once ReadJoin returns: a broker keeps no reference to it.
	ReadJoin(ctx context.Context, room, since string, limit int, join *Event) (history []protocol.Message, recovered bool, members []protocol.Member, err error)

	// PublishEvent delivers an ephemeral event to every subscribed node.
	PublishEvent(ctx context.Context, ev Event) error

	// Ready reports whether the broker can serve (nil) or why not.
	Ready(ctx context.Context) error

	// Close releases the broker's resources.
	Close() error
}

// PresenceLapser is implemented by a broker whose presence claims expire
// on their own unless renewed (the Redis broker). When a node drains, its
// users reconnect to other nodes a moment later; withdrawing their
// presence would announce each of them leaving and joining again. Letting
// the claims lapse instead keeps a user who is back elsewhere within the
// claim's lifetime present throughout, and announces the leave of one who
// is not when the claim expires.
type PresenceLapser interface {
	// LapseMember stops renewing this node's claim of user's presence in
	// room, without withdrawing it and without any event: the claim
	// expires after the broker's presence TTL, and the user's leave is
	// announced then, unless another node claimed them meanwhile.
	LapseMember(ctx context.Context, room, user string) error
}
