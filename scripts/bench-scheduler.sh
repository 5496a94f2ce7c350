#!/usr/bin/env bash
# Scheduler benchmarks, compared only like with like.
#
# - pure: scheduler.Schedule on a prepared snapshot (manager/scheduler
#   BenchmarkSchedule). Reported alone: swarmkit has no benchmark of that scope.
# - store scope: tasks created in the store -> scheduling loop on store events
#   -> assignments committed and observed by a watcher (manager
#   BenchmarkStoreScope), the scope of swarmkit's BenchmarkScheduler, which is
#   built from github.com/moby/swarmkit/v2 v2.0.0 (module proxy, a temp dir,
#   never committed) and run in the same session, on the same machine and load.
# Goal (issue 8): store scope >= 10x swarmkit's.
set -euo pipefail
cd "$(dirname "$0")/.."

SWARMKIT_VERSION=v2.0.0
GOAL=10
BENCHTIME=${BENCHTIME:-3x}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo
echo "== pure Schedule() (no store; no swarmkit equivalent)"
go test -run XXX -bench BenchmarkSchedule -benchtime "$BENCHTIME" ./manager/scheduler/ | grep '^Benchmark'
echo
echo "== store scope: Shoal manager BenchmarkStoreScope"
shoal=$(go test -run XXX -bench BenchmarkStoreScope -benchtime "$BENCHTIME" ./manager/ | grep '^Benchmark')
echo "$shoal"
echo
echo "== store scope: swarmkit $SWARMKIT_VERSION manager/scheduler BenchmarkScheduler"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(
	cd "$tmp"
	go mod init skbench >/dev/null 2>&1
	GOFLAGS=-mod=mod go get "github.com/moby/swarmkit/v2@$SWARMKIT_VERSION" >/dev/null 2>&1
)
swarm=$(cd "$tmp" && GOFLAGS=-mod=mod GOWORK=off go test -run XXX \
	-bench 'BenchmarkScheduler1kNodes(1k|10k)Tasks$' -benchtime "$BENCHTIME" \
	github.com/moby/swarmkit/v2/manager/scheduler | grep '^Benchmark')
echo "$swarm"
echo
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# Ratios: tasks/s of each from ns/op (swarmkit reports only ns/op).
awk -v goal="$GOAL" '
	function rate(tasks, ns) { return tasks / (ns / 1e9) }
	/^BenchmarkStoreScope\/nodes=1000,tasks=1000-/  { s[1000] = rate(1000, $3) }
	/^BenchmarkStoreScope\/nodes=1000,tasks=10000-/ { s[10000] = rate(10000, $3) }
	/^BenchmarkScheduler1kNodes1kTasks-/  { k[1000] = rate(1000, $3) }
	/^BenchmarkScheduler1kNodes10kTasks-/ { k[10000] = rate(10000, $3) }
	END {
		short = 0
		for (n = 1000; n <= 10000; n *= 10) {
			if (!(n in s) || !(n in k)) { print "missing results for " n " tasks"; exit 1 }
			r = s[n] / k[n]
			printf "store scope 1k nodes x %5d tasks: shoal %8.0f tasks/s, swarmkit %8.0f tasks/s: %5.2fx  (goal %dx: %s)\n",
				n, s[n], k[n], r, goal, (r >= goal ? "ok" : "NOT REACHED")
			if (r < goal) short = 1
		}
		exit short
	}' <<<"$shoal
$swarm"
