package main

import "net/http"

// webHandler serves the browser client; until it exists, a pointer to the
// protocol.
func webHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("chatd is running. Connect a WebSocket client to /ws (subprotocol \"chat\"); see docs/protocol.md.\n"))
	})
}
