package protocol

import (
	"bytes"
	"encoding/json"
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

// wireCommand is the JSON shape; pointers tell absent from empty.
type wireCommand struct {
	Type   *string         `json:"type"`
	Ref    *string         `json:"ref"`
	Room   *string         `json:"room"`
	Text   *string         `json:"text"`
	CID    *string         `json:"cid"`
	Since  *string         `json:"since"`
	Before *string         `json:"before"`
	Limit  json.RawMessage `json:"limit"`
	Token  *string         `json:"token"`
}

// ParseCommand decodes and validates one command. On error the returned
// Command still carries Ref when it could be read, so the error reply can
// echo it. maxText is the largest text in bytes.
func ParseCommand(data []byte, maxText int) (Command, *Error) {
	var cmd Command
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return cmd, Errorf(CodeBadRequest, "a command must be a JSON object")
	}
	var w wireCommand
	if err := json.Unmarshal(data, &w); err != nil {
		// Try to recover the ref for the reply.
		var r struct {
			Ref string `json:"ref"`
		}
		if json.Unmarshal(data, &r) == nil && len(r.Ref) <= MaxRefLen {
			cmd.Ref = r.Ref
		}
		return cmd, Errorf(CodeBadRequest, "invalid JSON: "+err.Error())
	}
	if w.Ref != nil {
		if len(*w.Ref) > MaxRefLen {
			return cmd, Errorf(CodeBadRequest, "ref is longer than 64 bytes")
		}
		cmd.Ref = *w.Ref
	}
	if w.Type == nil || *w.Type == "" {
		return cmd, Errorf(CodeBadRequest, "missing type")
	}
	cmd.Type = *w.Type
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	needRoom := func() *Error {
		if w.Room == nil {
			return Errorf(CodeBadRequest, "missing room")
		}
		if !ValidRoom(*w.Room) {
			return Errorf(CodeBadRequest, "room must match ^[A-Za-z0-9_.:-]{1,64}$")
		}
		cmd.Room = *w.Room
		return nil
	}
	switch cmd.Type {
	case TypeJoin:
		if err := needRoom(); err != nil {
			return cmd, err
		}
		if w.Since != nil {
			if _, ok := ParseID(*w.Since); !ok {
				return cmd, Errorf(CodeBadRequest, "since must be a message id like 1700000000000-0")
			}
			cmd.Since = *w.Since
		}
	case TypeLeave, TypeTyping:
		if err := needRoom(); err != nil {
			return cmd, err
		}
	case TypeSend:
		if err := needRoom(); err != nil {
			return cmd, err
		}
		if w.Text == nil || *w.Text == "" {
			return cmd, Errorf(CodeBadRequest, "missing text")
		}
		if len(*w.Text) > maxText {
			return cmd, &Error{Code: CodeTooLarge, Message: "text is longer than " + itoa(maxText) + " bytes"}
		}
		if !utf8.ValidString(*w.Text) {
			return cmd, Errorf(CodeBadRequest, "text is not valid UTF-8")
		}
		cmd.Text = *w.Text
		if cid := str(w.CID); len(cid) > MaxCIDLen {
			return cmd, Errorf(CodeBadRequest, "cid is longer than 64 bytes")
		}
		cmd.CID = str(w.CID)
	case TypeHistory:
		if err := needRoom(); err != nil {
			return cmd, err
		}
		if w.Before != nil {
			if _, ok := ParseID(*w.Before); !ok {
				return cmd, Errorf(CodeBadRequest, "before must be a message id like 1700000000000-0")
			}
			cmd.Before = *w.Before
		}
		cmd.Limit = DefaultHistoryLimit
		if len(w.Limit) > 0 && string(w.Limit) != "null" {
			var n int
			if err := json.Unmarshal(w.Limit, &n); err != nil || n < 1 || n > MaxHistoryLimit {
				return cmd, Errorf(CodeBadRequest, "limit must be an integer from 1 to 100")
			}
			cmd.Limit = n
		}
	case TypeRefresh:
		if str(w.Token) == "" {
			return cmd, Errorf(CodeBadRequest, "missing token")
		}
		cmd.Token = *w.Token
	case TypePing:
	default:
		return cmd, Errorf(CodeUnknownType, "unknown command type "+quoteShort(cmd.Type))
	}
	return cmd, nil
}

func quoteShort(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return string(AppendString(nil, s))
}
