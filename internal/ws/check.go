package ws

import "net/http"

// CheckRequest validates the WebSocket parts of an upgrade request (method,
// Upgrade and Connection headers, version, key) without answering it, so
// that a server can authenticate and admit the request before calling
// Accept, and answer each failure its own way. It does not check Origin.
func CheckRequest(r *http.Request) *HandshakeError {
	_, _, _, herr := checkUpgrade(r, &AcceptOptions{CheckOrigin: func(*http.Request) bool { return true }})
	return herr
}
