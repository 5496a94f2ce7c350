#!/usr/bin/env bash
# Benchmark one node's assignments answer after a task changes, at 1,000
# nodes x 10,000 tasks on the routing mesh: the hub (per-node task index,
# network state built once per change and shared) against the legacy path
# (a read of every node, task, service and network per node), which stays
# in the test as the baseline. Wall times include this machine's load; the
# ratio is measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(go test -run '^$' -bench BenchmarkAssignments -benchtime "${BENCHTIME:-20x}" ./manager/dispatcher/)
echo "$out"
echo
echo "$out" | awk '
	/^BenchmarkAssignments\// {
		name = $1; sub(/^BenchmarkAssignments\//, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) {
			if ($(i+1) == "ns/node-answer") ns[name] = $i
			if ($(i+1) == "cpu-ns/node-answer") cpu[name] = $i
		}
	}
	END {
		if (!("legacy" in ns) || !("hub" in ns)) { print "no BenchmarkAssignments results"; exit 1 }
		printf "per-node answer after a change: legacy %.1f ms, hub %.1f us: %.0fx faster\n",
			ns["legacy"] / 1e6, ns["hub"] / 1e3, ns["legacy"] / ns["hub"]
		printf "same in CPU time: legacy %.1f ms, hub %.1f us: %.0fx less\n",
			cpu["legacy"] / 1e6, cpu["hub"] / 1e3, cpu["legacy"] / cpu["hub"]
		printf "one change answered to all 1,000 nodes: legacy %.1f s, hub %.1f ms (CPU)\n",
			cpu["legacy"] * 1000 / 1e9, cpu["hub"] * 1000 / 1e6
	}'
