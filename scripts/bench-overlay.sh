#!/usr/bin/env bash
# Measure overlay throughput (needs root): the underlay, a raw kernel VXLAN
# made by hand and Shoal's overlay between the same two test hosts, each
# ROUNDS times (default 3) for 5 s, alternating; prints the medians and the
# ratios. Goal: Shoal's overlay loses under 5% to raw VXLAN.
#   scripts/bench-overlay.sh [ROUNDS]
# SHOAL_BIN=PATH measures that binary instead of building bin/shoal.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-${SHOAL_E2E_BENCH_ROUNDS:-3}}

if ! command -v iperf3 >/dev/null; then
	echo "installing iperf3"
	DEBIAN_FRONTEND=noninteractive apt-get install -y iperf3 >/dev/null
fi
if [ -z "${SHOAL_BIN:-}" ]; then
	mkdir -p bin
	go build -o bin/shoal ./cmd/shoal
	SHOAL_BIN=$PWD/bin/shoal
fi

out=$(SHOAL_BIN="$SHOAL_BIN" SHOAL_E2E_BENCH=1 SHOAL_E2E_BENCH_ROUNDS="$ROUNDS" \
	go test -count 1 -timeout 15m -run '^TestOverlayThroughput$' -v ./e2e/ 2>&1) || {
	echo "$out"
	exit 1
}
echo "$out" | grep -E 'round [0-9]+/|^--- |^(ok|FAIL)'
echo
echo "$out" | grep -E '^overlay throughput|^  (underlay|raw vxlan|shoal overlay)'
echo "$out" | awk '
	/^overlay throughput ratios:/ {
		for (i = 1; i <= NF; i++) if ($i == "overlay/raw") r = $(i+1)
		found = 1
	}
	END {
		if (!found) { print "no throughput result"; exit 1 }
		printf "loss vs raw vxlan: %.1f%% (goal < 5%%): %s\n", 100 * (1 - r), (r >= 0.95 ? "ok" : "ABOVE GOAL")
	}'
