#!/usr/bin/env bash
# Time container starts beside their peers, interleaved, as RESULTS.md's
# Containers section does:
#
#   bench/run-compare.sh bundle IMAGE DIR
#       makes DIR, a runc bundle (`runc spec`, "args": ["/bin/true"]) whose
#       rootfs is a plain copy of IMAGE's merged root (a strata mount of it)
#   bench/run-compare.sh ROUNDS NAME=COMMAND... [REF]
#       runs each COMMAND once a round, ROUNDS rounds, in an order rotated
#       (and reversed every other round) so that a loaded machine's drift
#       falls on all of them; prints per command the median wall time, the
#       median CPU (user+system of its whole process tree) and both as
#       ratios to the last command's (the peer, e.g. runc alone)
#
# e.g. (as root; strata and runc on PATH, the demo image loaded):
#   bench/run-compare.sh bundle demo /tmp/b-demo
#   bench/run-compare.sh 30 "strata=strata run --rm --network none --entrypoint /bin/true demo" \
#       "runc=runc --root /tmp/b-runc run -b /tmp/b-demo r1"
set -euo pipefail

if [ "${1:-}" = bundle ]; then
	img=${2:?usage: bench/run-compare.sh bundle IMAGE DIR}
	dir=${3:?usage: bench/run-compare.sh bundle IMAGE DIR}
	mkdir -p "$dir/rootfs"
	mnt=$(mktemp -d)
	strata mount -d "$img" "$mnt" >/dev/null
	cp -a "$mnt/." "$dir/rootfs/"
	strata umount "$mnt"
	rmdir "$mnt"
	(cd "$dir" && rm -f config.json && runc spec)
	sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' "$dir/config.json"
	grep -q '"/bin/true"' "$dir/config.json" || { echo "run-compare: $dir/config.json: args not set" >&2; exit 1; }
	exit 0
fi

rounds=${1:?usage: bench/run-compare.sh ROUNDS NAME=COMMAND...}
shift
names=() cmds=()
for a in "$@"; do
	names+=("${a%%=*}")
	cmds+=("${a#*=}")
done
n=${#names[@]}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
TIMEFORMAT='%3R %3U %3S'
one() { # one I: runs command I once, appends "wall cpu" (ms) to $out/I
	local t
	t=$({ time ${cmds[$1]} >/dev/null 2>&1; } 2>&1) || echo "run-compare: ${names[$1]} failed" >&2
	awk -v t="$t" 'BEGIN { split(t, f, " "); printf "%.3f %.3f\n", f[1] * 1000, (f[2] + f[3]) * 1000 }' >>"$out/$1"
}
for i in $(seq 0 $((n - 1))); do one "$i"; : >"$out/$i"; done # warm-up
for r in $(seq 0 $((rounds - 1))); do
	order=()
	for k in $(seq 0 $((n - 1))); do order+=($(((k + r) % n))); done
	if [ $((r % 2)) = 1 ]; then
		for ((k = n - 1; k >= 0; k--)); do one "${order[$k]}"; done
	else
		for k in "${order[@]}"; do one "$k"; done
	fi
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ref=$((n - 1))
rw=$(cut -d' ' -f1 "$out/$ref" | median)
rc=$(cut -d' ' -f2 "$out/$ref" | median)
echo "load $(cut -d' ' -f1 /proc/loadavg), $rounds rounds"
for i in $(seq 0 $((n - 1))); do
	w=$(cut -d' ' -f1 "$out/$i" | median)
	c=$(cut -d' ' -f2 "$out/$i" | median)
	awk -v n="${names[$i]}" -v w="$w" -v c="$c" -v rw="$rw" -v rc="$rc" -v r="${names[$ref]}" \
		'BEGIN { printf "%-24s wall %7.1f ms (%.2fx %s)   cpu %6.1f ms (%.2fx)\n", n, w, w / rw, r, c, c / rc }'
done
