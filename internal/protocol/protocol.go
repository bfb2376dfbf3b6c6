// Package protocol is the chatd wire protocol, version 1 (PROTOCOL.md):
// the commands clients send, their validation, and the encoding of the
// events the server sends. Every message is one JSON object in one text
// WebSocket message.
//
// Decoding uses encoding/json (commands are small and varied); encoding is
// hand-written appends, because events are encoded on the fan-out path.
package protocol

import (
	"strconv"
	"strings"
)

// Command types, client to server (PROTOCOL.md §3).
const (
	TypeJoin    = "join"
	TypeLeave   = "leave"
	TypeSend    = "send"
	TypeHistory = "history"
	TypeTyping  = "typing"
	TypeRefresh = "refresh"
	TypePing    = "ping"
)

// Error codes (PROTOCOL.md §4).
const (
	CodeBadRequest  = "bad_request"
	CodeUnknownType = "unknown_type"
	CodeForbidden   = "forbidden"
	CodeNotJoined   = "not_joined"
	CodeRateLimited = "rate_limited"
	CodeTooLarge    = "too_large"
	CodeUnavailable = "unavailable"
	CodeInternal    = "internal"
)

// Limits of the protocol itself; the text limit is configurable.
const (
	MaxRefLen           = 64
	MaxCIDLen           = 64
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 100
	DefaultMaxText      = 4096
)

// ValidRoom reports whether name is a valid room name:
// ^[A-Za-z0-9_.:-]{1,64}$.
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:-", c) >= 0) {
			return false
		}
	}
	return true
}

// Error is a protocol error answered with an `error` event.
type Error struct {
	Code    string
	Message string
	// RetryMS is set with rate_limited.
	RetryMS int64
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an *Error.
func Errorf(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// ID is a message id, "<milliseconds>-<sequence>", the form of a Redis
// stream id. IDs compare numerically, part by part.
type ID struct {
	MS, Seq uint64
}

// ParseID parses a message id. It accepts exactly "<digits>-<digits>".
func ParseID(s string) (ID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok || !allDigits(ms) || !allDigits(seq) {
		return ID{}, false
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return ID{}, false
	}
	return ID{a, b}, true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (id ID) String() string {
	b := strconv.AppendUint(make([]byte, 0, 24), id.MS, 10)
	b = append(b, '-')
	return string(strconv.AppendUint(b, id.Seq, 10))
}

// Compare returns -1, 0 or +1.
func (id ID) Compare(o ID) int {
	switch {
	case id.MS < o.MS:
		return -1
	case id.MS > o.MS:
		return 1
	case id.Seq < o.Seq:
		return -1
	case id.Seq > o.Seq:
		return 1
	}
	return 0
}

// Next returns the smallest id after id.
func (id ID) Next() ID {
	if id.Seq == ^uint64(0) {
		return ID{id.MS + 1, 0}
	}
	return ID{id.MS, id.Seq + 1}
}

// IsZero reports whether id is 0-0.
func (id ID) IsZero() bool { return id == ID{} }

// Message is a chat message as stored and delivered.
type Message struct {
	Room string
	ID   string
	From string
	Name string
	Text string
	TS   int64 // Unix milliseconds, server time
	CID  string
}

// Member is a user present in a room.
type Member struct {
	User string
	Name string
}
