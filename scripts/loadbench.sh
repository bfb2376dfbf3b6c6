#!/usr/bin/env bash
# A short load run (under a minute): builds chatd and chatbench, starts one
# chatd on a free loopback port with the limits a load run needs (see
# docs/chatbench.md), runs a small fanout and a small idle scenario against
# it with -pid, prints chatbench's tables, and stops chatd by its PID.
# `make bench` runs it after the microbenchmarks; docs/performance.md has
# the full-size runs.
#
#   scripts/loadbench.sh            # or: MEMBERS=500 IDLE=5000 scripts/loadbench.sh
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
MEMBERS=${MEMBERS:-200}   # fanout: members of one room
RATE=${RATE:-50}          # fanout: messages per second
IDLE=${IDLE:-2000}        # idle: connections, in IDLE/100 rooms

work=$(mktemp -d)
chatd_pid=""
cleanup() {
	if [ -n "$chatd_pid" ] && kill -0 "$chatd_pid" 2>/dev/null; then
		kill "$chatd_pid"
		wait "$chatd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building chatd and chatbench"
$GO build -o "$work/chatd" ./cmd/chatd
$GO build -o "$work/chatbench" ./cmd/chatbench

CHATD_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
export CHATD_JWT_SECRET

# Info level and JSON for the line that says where chatd listens; nothing
# is logged per connection at that level.
"$work/chatd" -addr 127.0.0.1:0 -log-level info -log-format json \
	-upgrade-rate 1000000 -upgrade-burst 1000000 \
	-send-rate 100000 -send-burst 100000 -user-rate 100000 -user-burst 100000 \
	-command-rate 100000 -command-burst 100000 2>"$work/chatd.log" &
chatd_pid=$!

addr=""
for _ in $(seq 1 100); do
	addr=$(sed -n 's/.*"addr":"\([^"]*\)".*"chatd listening.*/\1/p' "$work/chatd.log" | head -n 1)
	[ -n "$addr" ] && break
	if ! kill -0 "$chatd_pid" 2>/dev/null; then
		cat "$work/chatd.log" >&2
		echo "chatd exited" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$addr" ]; then
	cat "$work/chatd.log" >&2
	echo "chatd did not say where it listens" >&2
	exit 1
fi
url="ws://$addr/ws"
echo "== chatd pid $chatd_pid at $url; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# Idle first, while the process is fresh: its RSS per connection is then
# what a node's connections cost, not what is left over from the fanout.
echo "== idle: $IDLE connections in $((IDLE / 100)) rooms, held 10 s"
"$work/chatbench" idle -url "$url" -conns "$IDLE" -rooms $((IDLE / 100)) -duration 10s -pid "$chatd_pid" -q

echo "== fanout: 1 room x $MEMBERS members, $RATE msg/s for 10 s"
"$work/chatbench" fanout -url "$url" -members "$MEMBERS" -rooms 1 -rate "$RATE" -duration 10s -pid "$chatd_pid" -q
