#!/usr/bin/env bash
# Benchmark the scheduler and compare its throughput with swarmkit's
# (~4,500 tasks/s at 1,000 nodes x 10,000 tasks) and our goal (50,000 tasks/s).
set -euo pipefail
cd "$(dirname "$0")/.."

SWARMKIT=4500
GOAL=50000

out=$(go test -run XXX -bench BenchmarkSchedule -benchtime 5x ./manager/scheduler/)
echo "$out"
echo
echo "$out" | awk -v swarmkit="$SWARMKIT" -v goal="$GOAL" '
	/^BenchmarkSchedule\// {
		name = $1; sub(/^BenchmarkSchedule\//, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) {
			if ($(i+1) == "tasks/s") rate = $i
			if ($(i+1) == "tasks/s-with-snapshot") withsnap = $i
		}
		printf "%-24s %10.0f tasks/s  %6.1fx swarmkit  %5.2fx goal  %s  (%.0f tasks/s with snapshot build)\n",
			name, rate, rate / swarmkit, rate / goal, (rate >= goal ? "ok" : "BELOW GOAL"), withsnap
		if (rate < goal) short = 1
		n++
	}
	END {
		if (n == 0) { print "no BenchmarkSchedule results"; exit 1 }
		exit short
	}'
