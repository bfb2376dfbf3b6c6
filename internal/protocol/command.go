package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Command is a decoded, validated client command.
type Command struct {
	Type   string
	Ref    string
	Room   string
	Text   string
	CID    string
	Since  string
	Before string
	Limit  int // history: 1..100, DefaultHistoryLimit when absent
	Token  string
}

// ParseCommand decodes and validates one command. On error the returned
// Command still carries Ref when it could be read, so the error reply can
// echo it. maxText is the largest text in bytes.
//
// Field names match exactly: "type", never "Type" (encoding/json on its
// own matches struct fields in any case, which would make the contract
// looser than PROTOCOL.md). A field set to null counts as absent, a
// repeated field counts once (the last, as in encoding/json), and fields
// the command does not use are ignored, so that clients may send fields of
// later versions.
func ParseCommand(data []byte, maxText int) (Command, *Error) {
	var cmd Command
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return cmd, Errorf(CodeBadRequest, "a command must be a JSON object")
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // only for its message
		if err == nil {
			return cmd, Errorf(CodeBadRequest, "invalid JSON")
		}
		return cmd, Errorf(CodeBadRequest, "invalid JSON: "+err.Error())
	}
	var f fields
	f.scan(data)
	ref, _, err := f.str(f.ref, "ref")
	if err != nil {
		return cmd, err
	}
	if len(ref) > MaxRefLen {
		return cmd, Errorf(CodeBadRequest, "ref is longer than 64 bytes")
	}
	cmd.Ref = ref
	typ, ok, err := f.typeName(f.typ)
	if err != nil {
		return cmd, err
	}
	if !ok || typ == "" {
		return cmd, Errorf(CodeBadRequest, "missing type")
	}
	cmd.Type = typ
	if err := cmd.parse(&f, maxText); err != nil {
		return cmd, err
	}
	return cmd, nil
}

// fields are the raw JSON values of the members of a command object that
// any command uses; nil is absent.
type fields struct {
	typ, ref, room, text, cid, since, before, limit, token []byte
}

// scan fills f from data, a JSON object that json.Valid accepted, so the
// scan need not check the syntax again. It is a few hundred nanoseconds
// where decoding into a map costs microseconds and dozens of allocations,
// on every command.
func (f *fields) scan(data []byte) {
	i := skipSpace(data, 1)
	for i < len(data) && data[i] != '}' {
		kEnd := skipString(data, i)
		key := data[i+1 : kEnd-1]
		i = skipSpace(data, kEnd) + 1 // the colon
		i = skipSpace(data, i)
		vEnd := skipValue(data, i)
		if dst := f.field(key); dst != nil {
			*dst = data[i:vEnd]
		}
		i = skipSpace(data, vEnd)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
}

// field returns where the value of the member named key goes, or nil.
func (f *fields) field(key []byte) *[]byte {
	if bytes.IndexByte(key, '\\') >= 0 {
		// An escaped name ("ty\u0070e") is the name it spells.
		var s string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &s) != nil {
			return nil
		}
		key = []byte(s)
	}
	switch string(key) {
	case "type":
		return &f.typ
	case "ref":
		return &f.ref
	case "room":
		return &f.room
	case "text":
		return &f.text
	case "cid":
		return &f.cid
	case "since":
		return &f.since
	case "before":
		return &f.before
	case "limit":
		return &f.limit
	case "token":
		return &f.token
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at data[i].
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// skipValue returns the index after the value that starts at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = skipString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	j := i
	for j < len(data) && bytes.IndexByte([]byte(",}] \t\n\r"), data[j]) < 0 {
		j++
	}
	return j
}

// str decodes the string value raw of the member name; ok is false when
// it is absent or null.
func (f *fields) str(raw []byte, name string) (string, bool, *Error) {
	if raw == nil || string(raw) == "null" {
		return "", false, nil
	}
	if raw[0] != '"' {
		return "", false, Errorf(CodeBadRequest, name+" must be a string")
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body), true, nil // the usual case: nothing to unescape
	}
	return unquote(raw, name)
}

// unquote decodes the JSON string raw with escapes or invalid UTF-8 in it
// (which encoding/json turns into U+FFFD). It is apart from str so that
// the variable whose address json.Unmarshal takes, and which therefore
// lives on the heap, is allocated only in this rare case.
func unquote(raw []byte, name string) (string, bool, *Error) {
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return "", false, Errorf(CodeBadRequest, name+" must be a string")
	}
	return v, true, nil
}

// knownTypes are the command types, returned by typeName without
// allocating a copy of the name on every command.
var knownTypes = [...]string{TypeJoin, TypeLeave, TypeSend, TypeHistory, TypeTyping, TypeRefresh, TypePing}

// typeName is str for the member "type": a known type written without
// escapes is the constant, anything else is decoded by str.
func (f *fields) typeName(raw []byte) (string, bool, *Error) {
	if len(raw) > 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		body := raw[1 : len(raw)-1]
		for _, t := range knownTypes {
			if string(body) == t {
				return t, true, nil
			}
		}
	}
	return f.str(raw, "type")
}

// parse reads and checks the fields of cmd.Type.
func (cmd *Command) parse(f *fields, maxText int) *Error {
	room := func() *Error {
		r, ok, err := f.str(f.room, "room")
		switch {
		case err != nil:
			return err
		case !ok:
			return Errorf(CodeBadRequest, "missing room")
		case !ValidRoom(r):
			return Errorf(CodeBadRequest, "room must match ^[A-Za-z0-9_.:-]{1,64}$")
		}
		cmd.Room = r
		return nil
	}
	id := func(raw []byte, name string) (string, *Error) {
		v, ok, err := f.str(raw, name)
		if err != nil {
			return "", err
		}
		if _, valid := ParseID(v); ok && !valid {
			return "", Errorf(CodeBadRequest, name+" must be a message id like 1700000000000-0")
		}
		return v, nil
	}
	var err *Error
	switch cmd.Type {
	case TypeJoin:
		if err = room(); err != nil {
			return err
		}
		cmd.Since, err = id(f.since, "since")
		return err
	case TypeLeave, TypeTyping:
		return room()
	case TypeSend:
		if err = room(); err != nil {
			return err
		}
		text, ok, err := f.str(f.text, "text")
		switch {
		case err != nil:
			return err
		case !ok || text == "":
			return Errorf(CodeBadRequest, "missing text")
		case len(text) > maxText:
			return &Error{Code: CodeTooLarge, Message: "text is longer than " + itoa(maxText) + " bytes"}
		case !utf8.ValidString(text):
			// Unreachable (str replaces invalid UTF-8 like encoding/json);
			// kept because the store must never hold it.
			return Errorf(CodeBadRequest, "text is not valid UTF-8")
		}
		cmd.Text = text
		cid, _, err := f.str(f.cid, "cid")
		if err != nil {
			return err
		}
		if len(cid) > MaxCIDLen {
			return Errorf(CodeBadRequest, "cid is longer than 64 bytes")
		}
		cmd.CID = cid
		return nil
	case TypeHistory:
		if err = room(); err != nil {
			return err
		}
		if cmd.Before, err = id(f.before, "before"); err != nil {
			return err
		}
		cmd.Limit = DefaultHistoryLimit
		if raw := f.limit; raw != nil && string(raw) != "null" {
			// An integer in JSON's syntax (no 1e1, no 10.0, no "10").
			n, perr := strconv.Atoi(string(raw))
			if perr != nil || n < 1 || n > MaxHistoryLimit {
				return Errorf(CodeBadRequest, "limit must be an integer from 1 to 100")
			}
			cmd.Limit = n
		}
		return nil
	case TypeRefresh:
		tok, _, err := f.str(f.token, "token")
		if err != nil {
			return err
		}
		if tok == "" {
			return Errorf(CodeBadRequest, "missing token")
		}
		cmd.Token = tok
		return nil
	case TypePing:
		return nil
	}
	return Errorf(CodeUnknownType, "unknown command type "+quoteShort(cmd.Type))
}

func quoteShort(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return string(AppendString(nil, s))
}
