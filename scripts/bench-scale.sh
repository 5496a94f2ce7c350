#!/usr/bin/env bash
# Measure the control plane at scale (needs root): 3 real manager processes
# on network-namespace hosts and hollow workers (cmd/shoal-sim, 1,000 by
# default) in one process on a fourth host. Prints a table and, last, one
# line `BENCH_SCALE {json}`:
#   a. service create --replicas 10000 -> all running: seconds, tasks/s
#   b. 100 nodes killed -> their tasks running elsewhere: seconds, p50 of rounds
#   c. leader and follower RSS and CPU % of a core, idle 60 s
#   d. raft log bytes per task created; log and snapshot after 3 create/remove cycles
#   e. established connections on the leader
#   f. leader kill -> first accepted write
# with the machine's load next to each figure. The full run wants a quiet machine.
#   scripts/bench-scale.sh            # 1,000 nodes, 10,000 replicas
#   QUICK=1 scripts/bench-scale.sh    # 100 nodes, 1,000 replicas, 10 killed, idle 15 s, 1 cycle
# Knobs (override either): SHOAL_BENCH_NODES, SHOAL_BENCH_REPLICAS, SHOAL_BENCH_KILL,
# SHOAL_BENCH_KILL_ROUNDS, SHOAL_BENCH_IDLE (s), SHOAL_BENCH_CYCLES, SHOAL_BENCH_PHASE_TIMEOUT (s),
# SHOAL_BENCH_MANAGER_FLAGS (default --raft-heartbeat-timeout 2s --raft-election-timeout 2s;
# set it, even empty, to replace them), SHOAL_BENCH_DOWN_GRACE.
# SHOAL_BIN / SHOAL_SIM_BIN measure those binaries instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
	: "${SHOAL_BENCH_NODES:=100}" "${SHOAL_BENCH_REPLICAS:=1000}" "${SHOAL_BENCH_KILL:=10}"
	: "${SHOAL_BENCH_IDLE:=15}" "${SHOAL_BENCH_CYCLES:=1}"
fi
export SHOAL_BENCH_NODES SHOAL_BENCH_REPLICAS SHOAL_BENCH_KILL SHOAL_BENCH_IDLE SHOAL_BENCH_CYCLES

if [ -z "${SHOAL_BIN:-}" ] || [ -z "${SHOAL_SIM_BIN:-}" ]; then
	mkdir -p bin
	go build -o bin/shoal ./cmd/shoal
	go build -o bin/shoal-sim ./cmd/shoal-sim
	SHOAL_BIN=$PWD/bin/shoal SHOAL_SIM_BIN=$PWD/bin/shoal-sim
fi
# Many hollow nodes hold two sockets each in one process.
ulimit -n 65536 2>/dev/null || true

echo "machine: $(nproc) cores, $(uptime)"
log=$(mktemp /tmp/bench-scale.XXXXXX.log)
set +e
SHOAL_BIN="$SHOAL_BIN" SHOAL_SIM_BIN="$SHOAL_SIM_BIN" SHOAL_BENCH_SCALE=1 \
	go test -count 1 -timeout 90m -run '^TestBenchScale$' -v ./e2e/ 2>&1 | tee "$log" | grep --line-buffered -E '^progress: '
status=${PIPESTATUS[0]}
set -e
if [ $status -ne 0 ]; then
	echo "--- test log (tail) ---"
	grep -vE '^BENCH_SCALE |^progress: ' "$log" | tail -40
fi
sed -n '/^bench-scale: [0-9]* hollow nodes, /,/^BENCH_SCALE /p' "$log"
echo "machine after: $(uptime)"
if [ $status -ne 0 ]; then
	echo "full log (with the managers' last lines): $log"
else
	rm -f "$log"
fi
exit $status
