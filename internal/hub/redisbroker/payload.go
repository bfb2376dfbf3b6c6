package redisbroker

import (
	"errors"
	"strconv"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
)

// Pub/sub payloads. A room's channel carries its messages (built by the
// publish script, so that the id in the payload is the stream id) and its
// ephemeral events; a node's probe channel carries probes. Every payload
// is one kind byte followed by length-prefixed fields, "<len>:<bytes>",
// so that any text survives and decoding is a few slice operations rather
// than a JSON parse per message:
//
//	m <id> <from> <name> <text> <cid>      a stored message
//	e <kind> <user> <name> <state>         an event, kind "p" or "t"
//	p <token>                              a probe
const (
	kindMessage = 'm'
	kindEvent   = 'e'
	kindProbe   = 'p'
)

// errPayload is returned for a payload that is not one of ours.
var errPayload = errors.New("redisbroker: malformed pub/sub payload")

func appendField(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// encodeEvent builds an event payload.
func encodeEvent(ev hub.Event) string {
	kind := "t"
	if ev.Kind == hub.EventPresence {
		kind = "p"
	}
	b := make([]byte, 0, 16+len(ev.User)+len(ev.Name)+len(ev.State))
	b = append(b, kindEvent)
	b = appendField(b, kind)
	b = appendField(b, ev.User)
	b = appendField(b, ev.Name)
	b = appendField(b, ev.State)
	return string(b)
}

// encodeMessage builds a message payload; the publish script builds the
// same bytes in Lua, and the tests check that both agree.
func encodeMessage(m protocol.Message) string {
	b := make([]byte, 0, 32+len(m.ID)+len(m.From)+len(m.Name)+len(m.Text)+len(m.CID))
	b = append(b, kindMessage)
	for _, f := range [...]string{m.ID, m.From, m.Name, m.Text, m.CID} {
		b = appendField(b, f)
	}
	return string(b)
}

func encodeProbe(token string) string {
	return string(appendField([]byte{kindProbe}, token))
}

// fields splits a payload body into exactly n length-prefixed fields.
// The strings share the payload's memory.
func fields(p string, out []string) error {
	for i := range out {
		colon := -1
		for j := 0; j < len(p) && j < 11; j++ {
			if p[j] == ':' {
				colon = j
				break
			}
			if p[j] < '0' || p[j] > '9' {
				return errPayload
			}
		}
		if colon <= 0 {
			return errPayload
		}
		n, err := strconv.Atoi(p[:colon])
		if err != nil || n < 0 || n > len(p)-colon-1 {
			return errPayload
		}
		out[i] = p[colon+1 : colon+1+n]
		p = p[colon+1+n:]
	}
	if p != "" {
		return errPayload
	}
	return nil
}

// payload is a decoded pub/sub payload.
type payload struct {
	kind  byte
	msg   protocol.Message // kindMessage; Room is left for the caller
	id    protocol.ID      // kindMessage
	event hub.Event        // kindEvent; Room is left for the caller
	token string           // kindProbe
}

// decodePayload parses a payload of any kind.
func decodePayload(p string) (payload, error) {
	if p == "" {
		return payload{}, errPayload
	}
	out := payload{kind: p[0]}
	switch p[0] {
	case kindMessage:
		var f [5]string
		if err := fields(p[1:], f[:]); err != nil {
			return payload{}, err
		}
		id, ok := protocol.ParseID(f[0])
		if !ok {
			return payload{}, errPayload
		}
		out.id = id
		out.msg = protocol.Message{ID: f[0], From: f[1], Name: f[2], Text: f[3], CID: f[4], TS: int64(id.MS)}
	case kindEvent:
		var f [4]string
		if err := fields(p[1:], f[:]); err != nil {
			return payload{}, err
		}
		switch f[0] {
		case "p":
			out.event.Kind = hub.EventPresence
		case "t":
			out.event.Kind = hub.EventTyping
		default:
			return payload{}, errPayload
		}
		out.event.User, out.event.Name, out.event.State = f[1], f[2], f[3]
	case kindProbe:
		var f [1]string
		if err := fields(p[1:], f[:]); err != nil {
			return payload{}, err
		}
		out.token = f[0]
	default:
		return payload{}, errPayload
	}
	return out, nil
}
