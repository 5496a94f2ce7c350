#!/usr/bin/env bash
# demo-stop.sh: stop the demo cluster made by demo.sh and remove its
# namespaces and state. Touches only what demo.sh creates.
set -euo pipefail

STATE=${SHOAL_DEMO_STATE:-/tmp/shoal-demo}
PREFIX=shoal-demo

[ "$(id -u)" -eq 0 ] || { echo "demo-stop: needs root" >&2; exit 1; }

# Stop the daemons gracefully first, then kill what remains.
pids=()
for f in "$STATE"/*.pid; do
	[ -e "$f" ] || continue
	pid=$(cat "$f")
	if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q shoal; then
		kill -TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
	fi
done
for pid in "${pids[@]}"; do
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
done

for ns in $(ip netns list | awk -v p="^$PREFIX-" '$1 ~ p {print $1}'); do
	for pid in $(ip netns pids "$ns" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	ip netns del "$ns"
	echo "demo-stop: removed namespace $ns"
done

case "$STATE" in
*shoal-demo*) rm -rf "$STATE" ;;
*) echo "demo-stop: leaving $STATE in place (not a shoal-demo directory)" ;;
esac
echo "demo-stop: done"
