#!/usr/bin/env bash
# demo.sh: a 3-host shoal cluster on this machine, each host a network
# namespace on a bridge (like the e2e harness) with its own containerd: h1
# runs `shoal init` and a plain-HTTP image registry, h2 joins as a manager,
# h3 as a worker. It then deploys a stack from a compose file: a busybox
# httpd service web with port 8080 published that asks a backend service by
# its name over an overlay network, and fetches the page from every host's
# address. `make demo-stop`
# (scripts/demo-stop.sh) removes everything. Needs root; installs what is
# missing with apt-get.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BIN=${SHOAL_BIN:-$root/bin/shoal}
PUSHIMAGE=${SHOAL_PUSHIMAGE:-$root/bin/pushimage}
GO=${GO:-go}
STATE=${SHOAL_DEMO_STATE:-/tmp/shoal-demo}
RUN=${SHOAL_DEMO_RUN:-/run/shoal-demo} # containerd sockets
PREFIX=shoal-demo
SUBNET=10.124.0
SW=$PREFIX-sw
HOSTS=(h1 h2 h3)
STACK=demo
PORT=8080
# Where a step waits at most, in tenths of a second.
WAIT_START=300 WAIT_TASKS=1800

say() { echo "demo: $*"; }
die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, containerd)"

# --- what the demo needs ------------------------------------------------------
# command:package pairs; busybox must be Debian's static one at /bin/busybox,
# the image is made of that single binary.
missing=()
for need in ip:iproute2 nsenter:util-linux unshare:util-linux curl:curl containerd:containerd ctr:containerd \
	containerd-shim-runc-v2:containerd runc:runc docker-registry:docker-registry; do
	command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
done
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
	missing+=(busybox-static)
fi
if [ ${#missing[@]} -gt 0 ]; then
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	say "installing what is missing: ${missing[*]}"
	command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} by hand"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "${missing[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; } ||
		die "apt-get install ${missing[*]} failed"
fi

# `make demo` has built both; run alone, the script builds what is missing.
if [ ! -x "$BIN" ] && command -v "$GO" >/dev/null 2>&1; then
	say "building $BIN"
	make -C "$root" build GO="$GO" >/dev/null
fi
if [ ! -x "$PUSHIMAGE" ] && command -v "$GO" >/dev/null 2>&1; then
	say "building $PUSHIMAGE"
	(cd "$root" && "$GO" build -o "$PUSHIMAGE" ./testimage/pushimage)
fi
[ -x "$BIN" ] || die "no binary at $BIN (run make build)"
[ -x "$PUSHIMAGE" ] || die "no binary at $PUSHIMAGE (go build -o $PUSHIMAGE ./testimage/pushimage)"

if [ -e "$STATE" ] || [ -e "$RUN" ] || ip netns list | grep -q "^$PREFIX-"; then
	say "removing the previous demo first"
	"$here/demo-stop.sh"
fi

# From here on a failure removes the half-made demo (after showing why),
# unless SHOAL_DEMO_KEEP=1.
on_exit() {
	local rc=$?
	[ "$rc" -eq 0 ] && return
	if [ -n "${SHOAL_DEMO_KEEP:-}" ]; then
		echo "demo: failed; kept for inspection in $STATE (make demo-stop removes it)" >&2
	else
		echo "demo: failed; removing the partial demo (SHOAL_DEMO_KEEP=1 keeps it)" >&2
		"$here/demo-stop.sh" >/dev/null 2>&1 || true
	fi
}
trap on_exit EXIT
# fail LOG MESSAGE: show the end of LOG, then die.
fail() { echo "--- $1:" >&2; tail -n 20 "$1" >&2 || true; die "$2"; }

mkdir -p "$STATE" "$RUN"

ns() { echo "$PREFIX-$1"; }
ip_of() { echo "$SUBNET.${1#h}"; }
shoal() { local h=$1; shift; ip netns exec "$(ns "$h")" "$BIN" --data-dir "$STATE/$h" "$@"; }
REGISTRY=$(ip_of h1):5000
IMAGE=$REGISTRY/busybox:latest

# --- network: a switch namespace with a bridge, a veth pair per host -------
# The switch's bridge has an address too ($SUBNET.254): the demo's client,
# outside the cluster, fetches the published port from there.
say "network: namespaces $PREFIX-h1..h3 on a bridge, $SUBNET.1-3"
ip netns add "$SW"
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge
ip -n "$SW" addr add "$SUBNET.254/24" dev br0
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

# --- a mount namespace per host ----------------------------------------------
# A host's shoal and containerd run in one mount namespace of the host's own,
# as on a machine: there /run/netns is the directory $STATE/HOST-netns, so
# containerd sees the task namespaces shoal mounts (with shoal under `ip netns
# exec` alone they are mounted where containerd cannot see them and runc
# fails: "can't get final child's PID from pipe"), and the demo's task
# namespaces stay out of this machine's /run/netns. A process named
# $PREFIX-mnt-HOST holds the namespace until demo-stop. Both daemons enter it
# with nsenter --mount after `ip netns exec` (which alone would remount /sys
# and hide the cgroup hierarchies runc needs).
mnt_pid() { cat "$STATE/$1-mnt.pid"; }
for h in "${HOSTS[@]}"; do
	mkdir -p "$STATE/$h-netns"
	rm -f "$STATE/$h-mnt.ready"
	nohup unshare --mount --propagation slave bash -c \
		'mount --bind "$1" /run/netns && touch "$2" && exec -a "$3" sleep infinity' \
		bash "$STATE/$h-netns" "$STATE/$h-mnt.ready" "$PREFIX-mnt-$h" >"$STATE/$h-mnt.log" 2>&1 </dev/null &
	echo $! >"$STATE/$h-mnt.pid"
done
for h in "${HOSTS[@]}"; do
	for i in $(seq 1 $WAIT_START); do
		[ -e "$STATE/$h-mnt.ready" ] && break
		kill -0 "$(mnt_pid "$h")" 2>/dev/null || fail "$STATE/$h-mnt.log" "mount namespace of $h: unshare exited"
		[ "$i" -lt $WAIT_START ] || fail "$STATE/$h-mnt.log" "mount namespace of $h not ready after 30s"
		sleep 0.1
	done
done
# on_host HOST CMD...: CMD in HOST's network and mount namespaces, in the
# background, immune to the terminal's hangup.
on_host() {
	local h=$1; shift
	nohup ip netns exec "$(ns "$h")" nsenter --mount="/proc/$(mnt_pid "$h")/ns/mnt" -- "$@" &
}

# --- containerd per host ----------------------------------------------------
# Each has its own root and state under $STATE/containerd-HOST and its socket
# in $RUN.
ctd_dir() { echo "$STATE/containerd-$1"; }
containerd_sock() { echo "$RUN/$1.sock"; }

for h in "${HOSTS[@]}"; do
	d=$(ctd_dir "$h")
	sock=$(containerd_sock "$h")
	mkdir -p "$d"
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
	on_host "$h" containerd --config "$d/config.toml" --log-level warn >"$d.log" 2>&1 </dev/null
	echo $! >"$d.pid"
done
say "containerd: one per host, sockets $RUN/h1.sock..h3.sock"
for h in "${HOSTS[@]}"; do
	d=$(ctd_dir "$h")
	for i in $(seq 1 $WAIT_START); do
		ctr -a "$(containerd_sock "$h")" --timeout 1s version >/dev/null 2>&1 && break
		kill -0 "$(cat "$d.pid")" 2>/dev/null || fail "$d.log" "containerd on $h exited"
		[ "$i" -lt $WAIT_START ] || fail "$d.log" "containerd on $h does not answer after 30s"
		sleep 0.1
	done
done

# --- image registry on h1 -----------------------------------------------------
say "registry: docker-registry on $REGISTRY (h1), pushing $IMAGE"
mkdir -p "$STATE/registry/data"
cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
http:
  addr: $REGISTRY
EOF
nohup ip netns exec "$(ns h1)" docker-registry serve "$STATE/registry/config.yml" \
	>"$STATE/registry.log" 2>&1 </dev/null &
echo $! >"$STATE/registry.pid"
for i in $(seq 1 $WAIT_START); do
	ip netns exec "$(ns h1)" bash -c "exec 3<>/dev/tcp/${REGISTRY%:*}/${REGISTRY#*:}" 2>/dev/null && break
	kill -0 "$(cat "$STATE/registry.pid")" 2>/dev/null || fail "$STATE/registry.log" "registry exited"
	[ "$i" -lt $WAIT_START ] || fail "$STATE/registry.log" "registry not listening after 30s"
	sleep 0.1
done
ip netns exec "$(ns h1)" "$PUSHIMAGE" --registry "$REGISTRY" --ref busybox:latest 2>"$STATE/pushimage.log" ||
	fail "$STATE/pushimage.log" "push to $REGISTRY failed"

# --- shoal ----------------------------------------------------------------------
# start HOST ARGS...: run a shoal daemon in HOST's namespace, in the background.
start() {
	local h=$1; shift
	on_host "$h" "$BIN" "$@" >"$STATE/$h.log" 2>&1 </dev/null
	echo $! >"$STATE/$h.pid"
}

# wait_serving HOST: until the daemon answers on its socket.
wait_serving() {
	local h=$1
	for _ in $(seq 1 $WAIT_START); do
		if shoal "$h" info >/dev/null 2>&1; then return 0; fi
		kill -0 "$(cat "$STATE/$h.pid")" 2>/dev/null || fail "$STATE/$h.log" "shoal on $h exited"
		sleep 0.1
	done
	fail "$STATE/$h.log" "shoal on $h is not serving after 30s"
}

common() {
	echo --advertise-addr "$(ip_of "$1")" --data-dir "$STATE/$1" --hostname "$1" \
		--containerd-address "$(containerd_sock "$1")" --insecure-registry "$REGISTRY"
}

say "shoal: init on h1 ($(ip_of h1))"
# shellcheck disable=SC2046
start h1 init $(common h1)
wait_serving h1
manager_token=$(shoal h1 join-token manager -q)
worker_token=$(shoal h1 join-token worker -q)

say "shoal: joining h2 as a manager, h3 as a worker"
# shellcheck disable=SC2046
start h2 join --token "$manager_token" $(common h2) "$(ip_of h1):2377"
wait_serving h2
# shellcheck disable=SC2046
start h3 join --token "$worker_token" $(common h3) "$(ip_of h1):2377"
wait_serving h3

ready=0
for _ in $(seq 1 $WAIT_START); do
	ready=$(shoal h1 node ls --format json 2>/dev/null | grep -o '"state": *"ready"' | wc -l || true)
	[ "$ready" -eq 3 ] && break
	sleep 0.1
done
[ "$ready" -eq 3 ] || die "only $ready of 3 nodes ready after 30s (logs in $STATE)"

# --- demo stack -----------------------------------------------------------------
# A compose file as for docker stack deploy: web (3 replicas, port $PORT
# published) asks backend (2 replicas) by its name over the overlay network
# STACK_back every second and serves what it said; stack deploy waits until
# every task runs and is healthy.
cat >"$STATE/stack.yml" <<'YAML'
version: "3.8"
services:
  web:
    image: ${IMAGE}
    command:
      - sh
      - -c
      - |
        mkdir -p /www
        while true; do
          b=$$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 backend 80 | tail -n 1)
          echo "web task $$(hostname), backend says: $${b:-no answer}" >/www/new && mv /www/new /www/index.html
          sleep 1
        done &
        exec httpd -f -p 80 -h /www
    ports: ["${PORT}:80"]
    networks: [back]
    healthcheck:
      test: ["CMD-SHELL", "grep -q 'backend task' /www/index.html"]
      interval: 1s
    deploy:
      replicas: 3
      update_config: {parallelism: 1, order: start-first}
  backend:
    image: ${IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo \"backend task $$(hostname)\" >/www/index.html && exec httpd -f -p 80 -h /www"]
    networks: [back]
    deploy:
      replicas: 2
networks:
  back: {}
YAML
say "stack: deploying $STACK from $STATE/stack.yml (web on port $PORT, backend reached by name)"
export IMAGE PORT # the file takes them from the environment
shoal h1 stack deploy --timeout 3m -c "$STATE/stack.yml" "$STACK" >"$STATE/stack-deploy.log" 2>&1 ||
	fail "$STATE/stack-deploy.log" "stack deploy failed"
sed 's/^/  /' "$STATE/stack-deploy.log"

# The routing mesh: every host answers on the published port, whether or not
# it runs a task; the client is outside the cluster, on the switch.
say "routing mesh: GET http://HOST:$PORT/ from outside the cluster ($SUBNET.254)"
answers=()
for h in "${HOSTS[@]}"; do
	url="http://$(ip_of "$h"):$PORT/"
	page=""
	for _ in $(seq 1 $WAIT_START); do
		page=$(ip netns exec "$SW" curl -sf --max-time 2 "$url" 2>/dev/null || true)
		[ -n "$page" ] && break
		sleep 0.1
	done
	[ -n "$page" ] || die "$url did not answer after 30s (logs in $STATE)"
	answers+=("$h ($url): $page")
done

echo
echo "\$ shoal stack services $STACK"
shoal h1 stack services "$STACK"
echo
echo "\$ shoal stack ps $STACK"
shoal h1 stack ps "$STACK"
echo
echo "\$ shoal node ls"
shoal h1 node ls
echo
echo "GET on each host's address, port $PORT, from $SUBNET.254:"
printf '  %s\n' "${answers[@]}"
echo
cat <<MSG
The demo cluster is up: hosts h1 h2 h3 are network namespaces $PREFIX-h1..h3
($SUBNET.1-3), each with its own containerd ($RUN/h1.sock..h3.sock); h1 and h2
are managers, h3 a worker. h1 also runs the image registry $REGISTRY.
Stack $STACK ($STATE/stack.yml) runs ${STACK}_web (3 replicas, port $PORT published
on every host: the routing mesh) and ${STACK}_backend (2 replicas); web reaches
backend by its name over the overlay network ${STACK}_back.
State and logs: $STATE.

Reach it from outside the cluster (each answer names the web and backend task):
  ip netns exec $SW curl -s http://$(ip_of h3):$PORT/

Use it from any host, e.g.:
  ip netns exec $PREFIX-h1 $BIN --data-dir $STATE/h1 stack ps $STACK
  ip netns exec $PREFIX-h2 $BIN --data-dir $STATE/h2 service scale ${STACK}_web=6
  IMAGE=$IMAGE PORT=$PORT ip netns exec $PREFIX-h1 $BIN --data-dir $STATE/h1 stack deploy -c $STATE/stack.yml $STACK
  ip netns exec $PREFIX-h1 $BIN --data-dir $STATE/h1 stack rm $STACK

Stop it and remove everything:
  make demo-stop
MSG
