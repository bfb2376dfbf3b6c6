// Package conformance checks chatd against its wire contract, PROTOCOL.md,
// from the outside: it builds the real chatd binary, starts it as separate
// processes on loopback ports, and speaks to it only through the network.
//
// Every check runs in two topologies: one node with the in-memory broker,
// and two nodes sharing one redis-server started by the test. In the second,
// the members of a room are spread over both nodes, so each check also
// proves that a member on one node sees what a member on the other sees:
// the same messages in the same order, presence across nodes, cluster-wide
// members, history and recovery, cid retries and the per-user rate limit.
//
// The checks are written from PROTOCOL.md and, where it is silent, from
// docs/protocol.md; none of them reads chatd's code. A check that shows
// chatd disagreeing with those pages is a finding: it stays in the suite,
// skipped unless CHATD_CONFORMANCE_FINDINGS=1, with the finding named in
// its skip message, so that CI stays green and every finding can be
// reproduced with
//
//	CHATD_CONFORMANCE_FINDINGS=1 go test -race ./internal/conformance/
//
// When redis-server is not installed the two-node checks are skipped,
// except under CI=true, where that is a failure.
//
// The package has no code of its own.
package conformance
