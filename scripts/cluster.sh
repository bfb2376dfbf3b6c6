#!/usr/bin/env bash
# The docker-compose topology without Docker: redis-server, three chatd
# nodes and HAProxy on loopback, from Debian's packages. Ctrl-C (or SIGTERM)
# stops them all: the chatd nodes drain their clients first.
#
#   make cluster            # or: scripts/cluster.sh
#   open http://localhost:8080
#
# Ports and the state directory can be changed through the environment:
# LB_PORT (8080), LB_TLS_PORT (8443), NODE_PORT_BASE (8081: nodes on
# 8081-8083), REDIS_PORT (6390), CLUSTER_DIR (a new temporary directory).
# The directory gets the logs and a file "pids" (name pid per line).
set -euo pipefail
cd "$(dirname "$0")/.."

LB_PORT=${LB_PORT:-8080}
LB_TLS_PORT=${LB_TLS_PORT:-8443}
NODE_PORT_BASE=${NODE_PORT_BASE:-8081}
REDIS_PORT=${REDIS_PORT:-6390}
CLUSTER_DIR=${CLUSTER_DIR:-$(mktemp -d -t chatd-cluster.XXXXXX)}
mkdir -p "$CLUSTER_DIR"

missing=()
for bin in redis-server haproxy go; do
	command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "cluster: missing ${missing[*]}; install with: apt-get install redis-server haproxy (and Go 1.26)" >&2
	exit 1
fi

echo "cluster: building chatd into $CLUSTER_DIR"
go build -o "$CLUSTER_DIR/chatd" ./cmd/chatd
"$CLUSTER_DIR/chatd" cert -host localhost,127.0.0.1 -out "$CLUSTER_DIR/localhost.pem"

pids=()
names=()
reported=()
started() { pids+=("$2"); names+=("$1"); echo "$1 $2" >> "$CLUSTER_DIR/pids"; }
: > "$CLUSTER_DIR/pids"

stop() {
	trap - INT TERM EXIT
	echo "cluster: stopping"
	# chatd nodes first (they drain), then the balancer and Redis.
	for i in "${!pids[@]}"; do
		case ${names[$i]} in chatd*) kill -TERM "${pids[$i]}" 2>/dev/null || true ;; esac
	done
	for i in "${!pids[@]}"; do
		case ${names[$i]} in chatd*) wait "${pids[$i]}" 2>/dev/null || true ;; esac
	done
	for i in "${!pids[@]}"; do
		case ${names[$i]} in chatd*) ;; *) kill -TERM "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true ;; esac
	done
	echo "cluster: stopped (logs in $CLUSTER_DIR)"
}
trap stop INT TERM EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$CLUSTER_DIR" \
	> "$CLUSTER_DIR/redis.log" 2>&1 &
started redis $!
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

set -a
# shellcheck disable=SC1091
. deploy/chatd.env
set +a
export CHATD_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export CHATD_TRUSTED_PROXIES=127.0.0.1
export CHATD_ALLOWED_ORIGINS="http://localhost:$LB_PORT,https://localhost:$LB_TLS_PORT,http://127.0.0.1:$LB_PORT"
for n in 1 2 3; do
	port=$((NODE_PORT_BASE + n - 1))
	CHATD_NODE_ID="chatd$n" CHATD_ADDR="127.0.0.1:$port" "$CLUSTER_DIR/chatd" > "$CLUSTER_DIR/chatd$n.log" 2>&1 &
	started "chatd$n" $!
	export "CHATD${n}_ADDR=127.0.0.1:$port"
done

export LB_HTTP_BIND="127.0.0.1:$LB_PORT" LB_HTTPS_BIND="127.0.0.1:$LB_TLS_PORT" LB_CERT="$CLUSTER_DIR/localhost.pem"
haproxy -W -db -f deploy/haproxy.cfg > "$CLUSTER_DIR/haproxy.log" 2>&1 &
started haproxy $!

for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$LB_PORT/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
echo "cluster: ready: http://localhost:$LB_PORT and https://localhost:$LB_TLS_PORT (self-signed)"
echo "cluster: nodes on 127.0.0.1:$NODE_PORT_BASE-$((NODE_PORT_BASE + 2)), Redis on 127.0.0.1:$REDIS_PORT, logs in $CLUSTER_DIR"
echo "cluster: Ctrl-C stops everything"
# Wait until a signal. A chatd node that exits (a rolling restart stops one
# with SIGTERM: its clients reconnect through the balancer to the others)
# leaves the rest running; the cluster stops when Redis or HAProxy exits, or
# when no chatd node is left.
alive_pids=("${pids[@]}")
while :; do
	wait -n "${alive_pids[@]}" || true
	alive_pids=()
	nodes_left=0
	for i in "${!pids[@]}"; do
		kill -0 "${pids[$i]}" 2>/dev/null && alive=1 || alive=0
		[ $alive = 1 ] && alive_pids+=("${pids[$i]}")
		case ${names[$i]} in
		chatd*)
			if [ $alive = 1 ]; then
				nodes_left=$((nodes_left + 1))
			elif [ -z "${reported[$i]:-}" ]; then
				reported[$i]=1
				echo "cluster: ${names[$i]} (pid ${pids[$i]}) exited; the other nodes keep serving (log: $CLUSTER_DIR/${names[$i]}.log)" >&2
			fi
			;;
		*)
			if [ $alive = 0 ]; then
				echo "cluster: ${names[$i]} exited; stopping the cluster (log: $CLUSTER_DIR/${names[$i]}.log)" >&2
				exit 1
			fi
			;;
		esac
	done
	if [ $nodes_left = 0 ]; then
		echo "cluster: no chatd node left; stopping" >&2
		exit 1
	fi
done
