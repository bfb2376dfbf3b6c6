package server_test

import (
	"fmt"
	"sort"
	"strings"
)

// Field kinds of an event schema.
const (
	fString   = "string"
	fNumber   = "number"
	fBool     = "bool"
	fMembers  = "members"  // list of {user, name}
	fMessages = "messages" // list of message objects
	fID       = "id"       // a message id string
	optional  = "?"        // suffix: the field may be absent
)

// eventSchemas are the server events of PROTOCOL.md §4: every field, its
// kind, and whether it is optional. An event with a field not listed here
// is a violation too.
var eventSchemas = map[string]map[string]string{
	"welcome":   {"user": fString, "name": fString, "node": fString, "conn": fString, "heartbeat": fNumber},
	"joined":    {"ref": fString + optional, "room": fString, "members": fMembers, "history": fMessages, "recovered": fBool},
	"left":      {"ref": fString + optional, "room": fString},
	"sent":      {"ref": fString + optional, "room": fString, "id": fID, "ts": fNumber},
	"message":   {"room": fString, "id": fID, "from": fString, "name": fString, "text": fString, "ts": fNumber, "cid": fString + optional},
	"draining":  {"reconnect_ms": fNumber},
	"history":   {"ref": fString + optional, "room": fString, "messages": fMessages, "more": fBool},
	"presence":  {"room": fString, "user": fString, "name": fString, "state": fString},
	"typing":    {"room": fString, "user": fString, "name": fString},
	"refreshed": {"ref": fString + optional, "exp": fNumber},
	"pong":      {"ref": fString + optional},
	"error":     {"ref": fString + optional, "code": fString, "message": fString, "retry_ms": fNumber + optional},
}

// errorCodes are the error codes of PROTOCOL.md §4.
var errorCodes = map[string]bool{
	"bad_request": true, "unknown_type": true, "forbidden": true, "not_joined": true,
	"rate_limited": true, "too_large": true, "unavailable": true, "internal": true,
}

// checkEvent reports how m breaks PROTOCOL.md §4, or nil.
func checkEvent(m msg) error {
	typ, ok := m["type"].(string)
	if !ok {
		return fmt.Errorf("no type: %v", m)
	}
	schema, ok := eventSchemas[typ]
	if !ok {
		return fmt.Errorf("unknown event type %q", typ)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k != "type" && schema[k] == "" {
			return fmt.Errorf("%s: unexpected field %q in %v", typ, k, m)
		}
	}
	for field, kind := range schema {
		kind, opt := strings.CutSuffix(kind, optional)
		v, present := m[field]
		if !present {
			if opt {
				continue
			}
			return fmt.Errorf("%s: missing %q in %v", typ, field, m)
		}
		if err := checkKind(v, kind); err != nil {
			return fmt.Errorf("%s.%s: %w", typ, field, err)
		}
	}
	switch typ {
	case "presence":
		if s := m.str("state"); s != "join" && s != "leave" {
			return fmt.Errorf("presence state %q", s)
		}
	case "error":
		code := m.str("code")
		if !errorCodes[code] {
			return fmt.Errorf("error code %q is not in PROTOCOL.md", code)
		}
		if _, has := m["retry_ms"]; has != (code == "rate_limited") {
			return fmt.Errorf("retry_ms goes with rate_limited only: %v", m)
		}
		if code == "rate_limited" && m.num("retry_ms") < 1 {
			return fmt.Errorf("retry_ms %v", m["retry_ms"])
		}
	case "welcome":
		if m.num("heartbeat") < 1 {
			return fmt.Errorf("heartbeat %v", m["heartbeat"])
		}
	case "draining":
		if m.num("reconnect_ms") < 0 {
			return fmt.Errorf("reconnect_ms %v", m["reconnect_ms"])
		}
	}
	if ref, ok := m["ref"].(string); ok && (ref == "" || len(ref) > 64) {
		return fmt.Errorf("%s: ref %q is empty or longer than 64 bytes", typ, ref)
	}
	return nil
}

func checkKind(v any, kind string) error {
	switch kind {
	case fString:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%v is not a string", v)
		}
	case fID:
		s, ok := v.(string)
		if !ok || !idPattern.MatchString(s) {
			return fmt.Errorf("%v is not a message id", v)
		}
	case fNumber:
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			return fmt.Errorf("%v is not an integer", v)
		}
	case fBool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%v is not a bool", v)
		}
	case fMembers:
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%v is not a list", v)
		}
		for _, e := range list {
			o, ok := e.(map[string]any)
			if !ok || len(o) != 2 || checkKind(o["user"], fString) != nil || checkKind(o["name"], fString) != nil {
				return fmt.Errorf("member %v is not {user, name}", e)
			}
		}
	case fMessages:
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%v is not a list", v)
		}
		for _, e := range list {
			o, ok := e.(map[string]any)
			if !ok {
				return fmt.Errorf("%v is not an object", e)
			}
			if err := checkEvent(msg(o)); err != nil || o["type"] != "message" {
				return fmt.Errorf("history entry %v: %v", e, err)
			}
		}
	}
	return nil
}
