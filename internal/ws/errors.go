package ws

import (
	"errors"
	"fmt"
	"strconv"
)

// MessageType is the type of a data message: Text or Binary.
type MessageType byte

// The two kinds of data message (RFC 6455 §5.6). Their values are the frame
// opcodes.
const (
	Text   MessageType = MessageType(opText)
	Binary MessageType = MessageType(opBinary)
)

func (t MessageType) String() string {
	switch t {
	case Text:
		return "text"
	case Binary:
		return "binary"
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// StatusCode is a close status code (RFC 6455 §7.4).
type StatusCode uint16

// Close status codes. 1005, 1006 and 1015 are reported locally but never
// sent in a close frame.
const (
	StatusNormalClosure      StatusCode = 1000
	StatusGoingAway          StatusCode = 1001
	StatusProtocolError      StatusCode = 1002
	StatusUnsupportedData    StatusCode = 1003
	StatusNoStatusReceived   StatusCode = 1005
	StatusAbnormalClosure    StatusCode = 1006
	StatusInvalidPayload     StatusCode = 1007
	StatusPolicyViolation    StatusCode = 1008
	StatusMessageTooBig      StatusCode = 1009
	StatusMandatoryExtension StatusCode = 1010
	StatusInternalError      StatusCode = 1011
	StatusServiceRestart     StatusCode = 1012
	StatusTryAgainLater      StatusCode = 1013
	StatusBadGateway         StatusCode = 1014
	StatusTLSHandshake       StatusCode = 1015
)

var statusNames = map[StatusCode]string{
	StatusNormalClosure:      "normal closure",
	StatusGoingAway:          "going away",
	StatusProtocolError:      "protocol error",
	StatusUnsupportedData:    "unsupported data",
	StatusNoStatusReceived:   "no status received",
	StatusAbnormalClosure:    "abnormal closure",
	StatusInvalidPayload:     "invalid payload data",
	StatusPolicyViolation:    "policy violation",
	StatusMessageTooBig:      "message too big",
	StatusMandatoryExtension: "mandatory extension",
	StatusInternalError:      "internal error",
	StatusServiceRestart:     "service restart",
	StatusTryAgainLater:      "try again later",
	StatusBadGateway:         "bad gateway",
	StatusTLSHandshake:       "TLS handshake failure",
}

func (c StatusCode) String() string {
	if s, ok := statusNames[c]; ok {
		return strconv.Itoa(int(c)) + " (" + s + ")"
	}
	return strconv.Itoa(int(c))
}

// validWireCode reports whether code may appear in a close frame on the
// wire: the registered codes of RFC 6455 §7.4.1 and the IANA registry, and
// the ranges for libraries (3000–3999) and applications (4000–4999).
func validWireCode(code StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CloseError says how a connection ended. ReadMessage and the write methods
// return it (possibly wrapped) once the connection is closed.
type CloseError struct {
	// Code is the status: the one the peer sent when Remote is true, the one
	// this side sent otherwise. 1005 means the peer's close frame had no
	// code; 1006 means the connection dropped without a close frame.
	Code StatusCode
	// Reason is the close frame's reason text.
	Reason string
	// Remote is true when the peer started the close.
	Remote bool
	// Err is the underlying cause when the close was not a clean handshake
	// (a read error, a protocol violation, a missed pong).
	Err error
}

func (e *CloseError) Error() string {
	who := "local"
	if e.Remote {
		who = "peer"
	}
	msg := fmt.Sprintf("ws: closed by %s: %s", who, e.Code)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *CloseError) Unwrap() error { return e.Err }

// CloseStatus returns the close code carried by err, or 0 when err is not
// (and does not wrap) a *CloseError.
func CloseStatus(err error) StatusCode {
	// errors.AsType, unlike errors.As, needs no target on the heap.
	if ce, ok := errors.AsType[*CloseError](err); ok {
		return ce.Code
	}
	return 0
}

// Errors for conditions that are not a close.
var (
	// ErrClosed is returned by writes after the close frame was sent.
	ErrClosed = errors.New("ws: connection closed")
	// ErrPongTimeout is the cause (CloseError.Err) when the peer did not
	// answer a keepalive ping in time.
	ErrPongTimeout = errors.New("ws: peer did not answer ping in time")
	// ErrCloseTimeout is the cause when the closing handshake did not
	// complete within CloseTimeout.
	ErrCloseTimeout = errors.New("ws: closing handshake timed out")
	// ErrReadLimit is the cause when a message exceeds the read limit.
	ErrReadLimit = errors.New("ws: message exceeds read limit")
)

// protocolError is a violation of RFC 6455 by the peer; it fails the
// connection with the given code (§7.1.7).
type protocolError struct {
	code StatusCode
	msg  string
	err  error // a sentinel such as ErrReadLimit, for errors.Is
}

func (e *protocolError) Error() string { return "ws: " + e.msg }

func (e *protocolError) Unwrap() error { return e.err }

func errProtocol(msg string) error { return &protocolError{code: StatusProtocolError, msg: msg} }
