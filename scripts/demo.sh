#!/usr/bin/env bash
# demo.sh: a 3-host shoal cluster on this machine, each host a network
# namespace on a bridge (like the e2e harness): h1 runs `shoal init`, h2 joins
# as a manager, h3 as a worker. `make demo-stop` (scripts/demo-stop.sh)
# removes everything. Needs root and iproute2.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BIN=${SHOAL_BIN:-$root/bin/shoal}
STATE=${SHOAL_DEMO_STATE:-/tmp/shoal-demo}
PREFIX=shoal-demo
SUBNET=10.124.0
SW=$PREFIX-sw
HOSTS=(h1 h2 h3)

die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
command -v ip >/dev/null || die "needs ip (iproute2)"
[ -x "$BIN" ] || die "no binary at $BIN (run make build)"

if [ -e "$STATE" ] || ip netns list | grep -q "^$PREFIX-"; then
	echo "demo: removing the previous demo first"
	"$here/demo-stop.sh"
fi
mkdir -p "$STATE"

ns() { echo "$PREFIX-$1"; }
ip_of() { echo "$SUBNET.${1#h}"; }
shoal() { local h=$1; shift; ip netns exec "$(ns "$h")" "$BIN" --data-dir "$STATE/$h" "$@"; }

# --- network: a switch namespace with a bridge, a veth pair per host -------
ip netns add "$SW"
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for h in "${HOSTS[@]}"; do
	ip netns add "$(ns "$h")"
	ip -n "$(ns "$h")" link set lo up
	ip -n "$SW" link add "sdemo-$h" type veth peer name eth0 netns "$(ns "$h")"
	ip -n "$SW" link set "sdemo-$h" master br0 up
	ip -n "$(ns "$h")" addr add "$(ip_of "$h")/24" dev eth0
	ip -n "$(ns "$h")" link set eth0 up
	mkdir -p "$STATE/$h"
done

# --- containerd per host ----------------------------------------------------
# Not started yet: the daemons are pointed at a socket that does not exist, so
# their engine shows unavailable. A later change starts one containerd per
# host here (own root, state and socket under $STATE/$h/containerd).
containerd_sock() { echo "$STATE/$1/containerd/containerd.sock"; }

# start HOST ARGS...: run a shoal daemon in HOST's namespace, in the background.
start() {
	local h=$1; shift
	nohup ip netns exec "$(ns "$h")" "$BIN" "$@" >"$STATE/$h.log" 2>&1 </dev/null &
	echo $! >"$STATE/$h.pid"
}

# wait_serving HOST: until the daemon answers on its socket.
wait_serving() {
	local h=$1
	for _ in $(seq 1 300); do
		if shoal "$h" info >/dev/null 2>&1; then return 0; fi
		if ! kill -0 "$(cat "$STATE/$h.pid")" 2>/dev/null; then
			tail -n 20 "$STATE/$h.log" >&2
			die "shoal on $h exited (log: $STATE/$h.log)"
		fi
		sleep 0.1
	done
	tail -n 20 "$STATE/$h.log" >&2
	die "shoal on $h is not serving after 30s (log: $STATE/$h.log)"
}

common() { echo --advertise-addr "$(ip_of "$1")" --data-dir "$STATE/$1" --hostname "$1" --containerd-address "$(containerd_sock "$1")"; }

echo "demo: starting shoal init on h1 ($(ip_of h1))"
# shellcheck disable=SC2046
start h1 init $(common h1)
wait_serving h1
manager_token=$(shoal h1 join-token manager -q)
worker_token=$(shoal h1 join-token worker -q)

echo "demo: joining h2 as a manager, h3 as a worker"
# shellcheck disable=SC2046
start h2 join --token "$manager_token" $(common h2) "$(ip_of h1):2377"
wait_serving h2
# shellcheck disable=SC2046
start h3 join --token "$worker_token" $(common h3) "$(ip_of h1):2377"
wait_serving h3

ready=0
for _ in $(seq 1 300); do
	ready=$(shoal h1 node ls --format json 2>/dev/null | grep -o '"state": *"ready"' | wc -l || true)
	[ "$ready" -eq 3 ] && break
	sleep 0.1
done
[ "$ready" -eq 3 ] || die "only $ready of 3 nodes ready after 30s (logs in $STATE)"

# --- demo service -------------------------------------------------------------
# A later change deploys a demo service here (and prints how to reach it).

echo
shoal h1 node ls
cat <<MSG

The demo cluster is up: hosts h1 h2 h3 are network namespaces $PREFIX-h1..h3
($SUBNET.1-3); h1 and h2 are managers, h3 a worker. State and logs: $STATE.

Use it from any host, e.g.:
  ip netns exec $PREFIX-h1 $BIN --data-dir $STATE/h1 node ls
  ip netns exec $PREFIX-h2 $BIN --data-dir $STATE/h2 info
  ip netns exec $PREFIX-h1 $BIN --data-dir $STATE/h1 join-token worker

Stop it and remove everything:
  make demo-stop
MSG
