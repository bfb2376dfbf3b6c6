// Package compare holds the comparison benchmarks of chatd's WebSocket
// implementation (github.com/chatd/chatd/internal/ws) against
// gorilla/websocket, coder/websocket and gobwas/ws, run on the same
// machine in one run: echo of 16 B, 1 KiB and 64 KiB messages, one message
// broadcast to 10,000 connections, and heap+stack per idle server
// connection with 10,000 connections open. It has no code outside its
// tests; run them with
//
//	cd bench && go test -run '^$' -bench . -benchmem ./compare/
//
// Every server is driven by the same minimal client, so that the figures
// differ only by the server library. The 10,000 client ends live in a
// child process (the test binary run again), because both ends in one
// process would need 20,000 descriptors, the per-process limit here.
package compare
