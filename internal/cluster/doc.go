// Package cluster holds the end-to-end tests of chatd as a cluster: real
// redis-server processes (standalone and a three-master Redis Cluster),
// three chatd nodes in the test process on loopback listeners, each with
// its own Redis broker and limiter, and WebSocket clients moving between
// them. It has no code of its own.
package cluster
