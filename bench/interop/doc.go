// Package interop holds the interoperability tests of chatd's WebSocket
// implementation (github.com/chatd/chatd/internal/ws) against
// gorilla/websocket, coder/websocket and a real headless Chromium. It has
// no code outside its tests; run them with
//
//	cd bench && go test -race ./interop/
package interop
