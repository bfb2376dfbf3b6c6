package protocol

import (
	"strconv"
	"unicode/utf8"
)

// Encoders for server events (PROTOCOL.md §4). Each appends one JSON object
// to dst. Optional fields (ref, cid) are left out when empty.

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// and U+2028/U+2029 are escaped so the output is also valid JavaScript.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func itoa(n int) string { return strconv.Itoa(n) }

// obj helps writing `{"type":"x"` and then `,"k":v` pairs.
func begin(dst []byte, typ string) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	return append(dst, '"')
}

func str(dst []byte, key, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return AppendString(dst, v)
}

func optStr(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return str(dst, key, v)
}

func num(dst []byte, key string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

func boolean(dst []byte, key string, v bool) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return strconv.AppendBool(dst, v)
}

func key(dst []byte, k string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, k...)
	return append(dst, '"', ':')
}

// AppendWelcome encodes `welcome`, the first message on every connection.
func AppendWelcome(dst []byte, user, name, node, conn string, heartbeatSeconds int64) []byte {
	dst = begin(dst, "welcome")
	dst = str(dst, "user", user)
	dst = str(dst, "name", name)
	dst = str(dst, "node", node)
	dst = str(dst, "conn", conn)
	dst = num(dst, "heartbeat", heartbeatSeconds)
	return append(dst, '}')
}

// appendMessageObject encodes a message object with the given type.
func appendMessageObject(dst []byte, m *Message) []byte {
	dst = begin(dst, "message")
	dst = str(dst, "room", m.Room)
	dst = str(dst, "id", m.ID)
	dst = str(dst, "from", m.From)
	dst = str(dst, "name", m.Name)
	dst = str(dst, "text", m.Text)
	dst = num(dst, "ts", m.TS)
	dst = optStr(dst, "cid", m.CID)
	return append(dst, '}')
}

// AppendMessage encodes a `message` event.
func AppendMessage(dst []byte, m *Message) []byte { return appendMessageObject(dst, m) }

func appendMessages(dst []byte, msgs []Message) []byte {
	dst = append(dst, '[')
	for i := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendMessageObject(dst, &msgs[i])
	}
	return append(dst, ']')
}

// AppendJoined encodes `joined`.
func AppendJoined(dst []byte, ref, room string, members []Member, history []Message, recovered bool) []byte {
	dst = begin(dst, "joined")
	dst = optStr(dst, "ref", ref)
	dst = str(dst, "room", room)
	dst = key(dst, "members")
	dst = append(dst, '[')
	for i, m := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"user":`...)
		dst = AppendString(dst, m.User)
		dst = append(dst, `,"name":`...)
		dst = AppendString(dst, m.Name)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	dst = key(dst, "history")
	dst = appendMessages(dst, history)
	dst = boolean(dst, "recovered", recovered)
	return append(dst, '}')
}

// AppendLeft encodes `left`.
func AppendLeft(dst []byte, ref, room string) []byte {
	dst = begin(dst, "left")
	dst = optStr(dst, "ref", ref)
	dst = str(dst, "room", room)
	return append(dst, '}')
}

// AppendSent encodes `sent`.
func AppendSent(dst []byte, ref, room, id string, ts int64) []byte {
	dst = begin(dst, "sent")
	dst = optStr(dst, "ref", ref)
	dst = str(dst, "room", room)
	dst = str(dst, "id", id)
	dst = num(dst, "ts", ts)
	return append(dst, '}')
}

// AppendHistory encodes `history`.
func AppendHistory(dst []byte, ref, room string, msgs []Message, more bool) []byte {
	dst = begin(dst, "history")
	dst = optStr(dst, "ref", ref)
	dst = str(dst, "room", room)
	dst = key(dst, "messages")
	dst = appendMessages(dst, msgs)
	dst = boolean(dst, "more", more)
	return append(dst, '}')
}

// Presence states.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
)

// AppendPresence encodes `presence`.
func AppendPresence(dst []byte, room, user, name, state string) []byte {
	dst = begin(dst, "presence")
	dst = str(dst, "room", room)
	dst = str(dst, "user", user)
	dst = str(dst, "name", name)
	dst = str(dst, "state", state)
	return append(dst, '}')
}

// AppendTyping encodes `typing`.
func AppendTyping(dst []byte, room, user, name string) []byte {
	dst = begin(dst, "typing")
	dst = str(dst, "room", room)
	dst = str(dst, "user", user)
	dst = str(dst, "name", name)
	return append(dst, '}')
}

// AppendRefreshed encodes `refreshed`; exp is Unix seconds.
func AppendRefreshed(dst []byte, ref string, exp int64) []byte {
	dst = begin(dst, "refreshed")
	dst = optStr(dst, "ref", ref)
	dst = num(dst, "exp", exp)
	return append(dst, '}')
}

// AppendPong encodes `pong`.
func AppendPong(dst []byte, ref string) []byte {
	dst = begin(dst, "pong")
	dst = optStr(dst, "ref", ref)
	return append(dst, '}')
}

// AppendDraining encodes `draining`.
func AppendDraining(dst []byte, reconnectMS int64) []byte {
	dst = begin(dst, "draining")
	dst = num(dst, "reconnect_ms", reconnectMS)
	return append(dst, '}')
}

// AppendError encodes `error`; retry_ms is included for rate_limited.
func AppendError(dst []byte, ref string, e *Error) []byte {
	dst = begin(dst, "error")
	dst = optStr(dst, "ref", ref)
	dst = str(dst, "code", e.Code)
	dst = str(dst, "message", e.Message)
	if e.Code == CodeRateLimited {
		dst = num(dst, "retry_ms", e.RetryMS)
	}
	return append(dst, '}')
}
