#!/usr/bin/env bash
# demo-stop.sh: stop the demo cluster made by demo.sh and remove all of it:
# shoal daemons, task containers (tasks, shims, cgroups, runc state),
# containerd daemons, the registry, the hosts' mount namespaces, mounts,
# network namespaces (the hosts' and the tasks', with their links and nft
# tables), state. Then it checks that nothing is left, prints what is, and
# exits 1 if anything is. Touches only what demo.sh creates; safe to run
# when no demo (or half a demo) exists.
set -euo pipefail

STATE=${SHOAL_DEMO_STATE:-/tmp/shoal-demo}
RUN=${SHOAL_DEMO_RUN:-/run/shoal-demo}
PREFIX=shoal-demo
CTR_NS=shoal              # containerd namespace of shoal's task containers
RUNC_ROOT=/run/containerd/runc # runc's default root, shared by every containerd

say() { echo "demo-stop: $*"; }
[ "$(id -u)" -eq 0 ] || { echo "demo-stop: needs root" >&2; exit 1; }
case "$STATE$RUN" in
*shoal-demo*shoal-demo*) ;;
*) echo "demo-stop: $STATE and $RUN must be shoal-demo directories" >&2; exit 1 ;;
esac

# cmdline PID: the process's command line, words separated by spaces.
cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# stop PID...: SIGTERM, up to 10 s to exit, then SIGKILL.
stop() {
	local pid
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# pids_of PATTERN: processes whose command line holds PATTERN (a demo path).
pids_of() {
	local p
	for p in /proc/[0-9]*; do
		case " $(cmdline "${p#/proc/}") " in
		*"$1"*) echo "${p#/proc/}" ;;
		esac
	done
}

# from_pidfile FILE WORD: the pid in FILE if that process still runs a
# command line holding WORD.
from_pidfile() {
	local pid
	[ -e "$1" ] || return 0
	pid=$(cat "$1")
	case "$(cmdline "$pid")" in *"$2"*) echo "$pid" ;; esac
}

# uniq_pids PID...: each pid once.
uniq_pids() { [ $# -eq 0 ] || printf '%s\n' "$@" | sort -un; }

# 0. what to check at the end: the network namespaces of the hosts and of
# their tasks (those are mounted in the hosts' mount namespaces, under
# /run/netns there) and the hosts' mount namespaces, by inode. This script
# holds each open until the check, so that no new namespace can take a
# freed one's inode number and pass for a leftover.
holders=()
for h in h1 h2 h3; do
	mapfile -t -O ${#holders[@]} holders < <(from_pidfile "$STATE/$h-mnt.pid" "$PREFIX-mnt-")
done
mapfile -t -O ${#holders[@]} holders < <(pids_of "$PREFIX-mnt-")
mapfile -t holders < <(uniq_pids "${holders[@]}")
held=()
# hold LIST FILE: keep the namespace FILE open (in this shell, not a
# subshell) and add its inode to the array named LIST.
hold() {
	local fd
	[ -r "$2" ] || return 0
	exec {fd}<"$2" || return 0 # no 2>: on exec it would stay for the script
	held+=("$fd")
	local -n list=$1
	list+=("$(stat -L -c %i "/proc/$$/fd/$fd")")
}
netns_inodes=()
for ns in $(ip netns list | awk -v p="^$PREFIX-" '$1 ~ p {print $1}'); do
	hold netns_inodes "/run/netns/$ns"
done
mnt_inodes=()
for pid in "${holders[@]}"; do
	hold mnt_inodes "/proc/$pid/ns/mnt"
	# /proc/PID/root walks the holder's mounts: its /run/netns.
	for f in "/proc/$pid/root/run/netns"/*; do
		[ -e "$f" ] && hold netns_inodes "$f"
	done
done

# in_mntns INODE...: processes whose mount namespace is one of INODE.
in_mntns() {
	[ $# -gt 0 ] || return 0
	local p i
	for p in /proc/[0-9]*; do
		i=$(stat -L -c %i "$p/ns/mnt" 2>/dev/null) || continue
		case " $* " in *" $i "*) echo "${p#/proc/}" ;; esac
	done
}

# 1. shoal daemons first, so that no new task starts.
pids=()
for h in h1 h2 h3; do
	mapfile -t -O ${#pids[@]} pids < <(from_pidfile "$STATE/$h.pid" shoal)
done
mapfile -t -O ${#pids[@]} pids < <(pids_of " --data-dir $STATE/")
mapfile -t pids < <(uniq_pids "${pids[@]}")
if [ ${#pids[@]} -gt 0 ]; then
	say "stopping shoal (${#pids[@]} processes)"
	stop "${pids[@]}"
fi

# 2. task containers, through their containerd while it answers.
ids=()
for sock in "$RUN"/h*.sock; do
	[ -S "$sock" ] || continue
	c() { timeout 20 ctr -a "$sock" -n "$CTR_NS" "$@"; }
	mapfile -t -O ${#ids[@]} ids < <(c containers ls -q 2>/dev/null || true)
	for id in $(c tasks ls -q 2>/dev/null || true); do
		c tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
		c tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	for id in $(c containers ls -q 2>/dev/null || true); do
		c containers delete "$id" >/dev/null 2>&1 || true
	done
done
[ ${#ids[@]} -eq 0 ] || say "removed ${#ids[@]} task containers"

# 3. the registry and the containerd daemons.
pids=()
mapfile -t -O ${#pids[@]} pids < <(from_pidfile "$STATE/registry.pid" docker-registry)
mapfile -t -O ${#pids[@]} pids < <(pids_of "$STATE/registry/config.yml")
for h in h1 h2 h3; do
	mapfile -t -O ${#pids[@]} pids < <(from_pidfile "$STATE/containerd-$h.pid" containerd)
done
mapfile -t -O ${#pids[@]} pids < <(pids_of "--config $STATE/containerd-")
mapfile -t pids < <(uniq_pids "${pids[@]}")
if [ ${#pids[@]} -gt 0 ]; then
	say "stopping containerd and the registry (${#pids[@]} processes)"
	stop "${pids[@]}"
fi

# 4. whatever containerd left: shims, container processes (found by the
# bundles in its state directory), their cgroups and runc state.
shims=$(pids_of "-address $RUN/")
if [ -n "$shims" ]; then
	say "killing leftover shims: $(echo $shims)"
	kill -KILL $shims 2>/dev/null || true
fi
for cfg in "$STATE"/containerd-*/state/io.containerd.runtime.v2.task/*/*/config.json; do
	[ -e "$cfg" ] || continue
	b=$(dirname "$cfg")
	id=$(basename "$b")
	ids+=("$id")
	if [ -e "$b/init.pid" ]; then kill -KILL "$(cat "$b/init.pid")" 2>/dev/null || true; fi
done
for id in $(printf '%s\n' "${ids[@]}" | sort -u); do
	[ -n "$id" ] || continue
	# containerd's default cgroups path is /NAMESPACE/ID, in each v1
	# hierarchy or the v2 tree.
	for cg in /sys/fs/cgroup/"$CTR_NS/$id" /sys/fs/cgroup/*/"$CTR_NS/$id"; do
		[ -d "$cg" ] || continue
		for _ in $(seq 1 50); do
			procs=$(cat "$cg/cgroup.procs" 2>/dev/null || true)
			[ -n "$procs" ] || break
			kill -KILL $procs 2>/dev/null || true
			sleep 0.1
		done
		rmdir "$cg" 2>/dev/null || true
	done
	rm -rf "${RUNC_ROOT:?}/$CTR_NS/$id"
done

# 5. the hosts' mount namespaces, with anything still in them (their task
# network namespaces go with them).
mapfile -t pids < <(in_mntns "${mnt_inodes[@]}")
mapfile -t pids < <(uniq_pids "${holders[@]}" "${pids[@]}")
if [ ${#pids[@]} -gt 0 ]; then
	say "stopping the hosts' mount namespaces (${#pids[@]} processes)"
	stop "${pids[@]}"
fi

# 6. network namespaces, with anything still running in them.
for ns in $(ip netns list | awk -v p="^$PREFIX-" '$1 ~ p {print $1}'); do
	for pid in $(ip netns pids "$ns" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	ip netns del "$ns"
	say "removed namespace $ns"
done

# 7. mounts under the demo directories (deepest first), then the files.
n=0
for dir in "$STATE" "$RUN"; do
	for m in $(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null && n=$((n + 1)) || true
	done
done
[ "$n" -eq 0 ] || say "unmounted $n leftover mounts"
rm -rf "$STATE" "$RUN"

# 8. check: nothing of the demo may be left.
left=()
for pid in $(pids_of "$STATE/") $(pids_of "$RUN/") $(pids_of "$PREFIX-mnt-") $(in_mntns "${mnt_inodes[@]}"); do
	left+=("process $pid: $(cmdline "$pid")")
done
for ns in $(ip netns list | awk -v p="^$PREFIX-" '$1 ~ p {print $1}'); do
	left+=("network namespace $ns")
done
for m in $(awk -v s="$STATE" -v r="$RUN" '$5 == s || index($5, s "/") == 1 || $5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo); do
	left+=("mount $m")
done
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep '^sdemo-' || true); do
	left+=("link $l in this namespace")
done
# A network namespace lives while a process is in it, a file descriptor or
# a mount holds it; its links, bridges and nft tables live as long as it.
if [ ${#netns_inodes[@]} -gt 0 ]; then
	for p in /proc/[0-9]*; do
		i=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
		case " ${netns_inodes[*]} " in *" $i "*) left+=("process ${p#/proc/} in a demo network namespace: $(cmdline "${p#/proc/}")") ;; esac
	done
	# Open descriptors of other processes (this shell's are the holds).
	# A descriptor names the file it was opened by, so match the namespace
	# file system's device and the inode.
	fds=$(mktemp)
	nsdev=$(stat -L -c %d /proc/self/ns/net)
	procs=(/proc/[0-9]*/fd) # here, not in the pipeline's subshells, which inherit the holds
	find -L "${procs[@]}" -mindepth 1 -maxdepth 1 -printf '%h %D %i\n' 2>/dev/null |
		awk -v d="$nsdev" -v self="/proc/$$/fd" '$2 == d && $1 != self {print $1, $3}' >"$fds" || true
	for i in "${netns_inodes[@]}"; do
		n=$(awk -v i="$i" '$2 == i' "$fds" | wc -l)
		[ "$n" -eq 0 ] || left+=("network namespace $i held open by $n file descriptors: $(awk -v i="$i" '$2 == i {print $1}' "$fds" | head -3 | tr '\n' ' ')")
		if grep -l "net:\[$i\]" /proc/[0-9]*/mountinfo >/dev/null 2>&1; then
			left+=("network namespace $i still mounted: $(grep -l "net:\[$i\]" /proc/[0-9]*/mountinfo 2>/dev/null | head -3 | tr '\n' ' ')")
		fi
	done
	rm -f "$fds"
fi
for fd in "${held[@]}"; do exec {fd}<&-; done
if [ ${#left[@]} -gt 0 ]; then
	echo "demo-stop: left behind:" >&2
	printf '  %s\n' "${left[@]}" >&2
	exit 1
fi
say "done: no process, mount, namespace (${#netns_inodes[@]} network namespaces checked, with their links and nft tables) left"
