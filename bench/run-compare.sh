#!/usr/bin/env bash
# Time container starts beside their peers, interleaved, as RESULTS.md's
# Containers section does:
#
#   bench/run-compare.sh bundle IMAGE DIR
#       makes DIR, a runc bundle (`runc spec`, "args": ["/bin/true"]) whose
#       rootfs is a plain copy of IMAGE's merged root (a strata mount of it)
#   bench/run-compare.sh ROUNDS NAME=COMMAND... [REF]
#       runs each COMMAND (a bash command line, eval'd) once a round, ROUNDS rounds,
#       in an order rotated (and reversed every other round) so that a
#       loaded machine's drift falls on all of them; prints per command the
#       median wall time, the median CPU (user+system of its whole process
#       tree), both as ratios to the medians of REF (a NAME; default the
#       last command, the peer, e.g. runc alone), and "paired": the median
#       of the per-round ratios of its wall time to REF's in the same round.
#       A failed run counts no sample; the script says how many failed and
#       exits 1.
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
	mounted=
	# A failing copy leaves no strata mount behind.
	trap '[ -z "$mounted" ] || strata umount "$mnt" || true; rmdir "$mnt" 2>/dev/null || true' EXIT
	strata mount -d "$img" "$mnt" >/dev/null
	mounted=1
	cp -a "$mnt/." "$dir/rootfs/"
	strata umount "$mnt"
	mounted=
	(cd "$dir" && rm -f config.json && runc spec)
	sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' "$dir/config.json"
	grep -q '"/bin/true"' "$dir/config.json" || { echo "run-compare: $dir/config.json: args not set" >&2; exit 1; }
	exit 0
fi

usage='usage: bench/run-compare.sh ROUNDS NAME=COMMAND... [REF]'
rounds=${1:?$usage}
shift
names=() cmds=() refname=
for a in "$@"; do
	if [ "${a#*=}" = "$a" ]; then
		[ -z "$refname" ] || { echo "run-compare: $a: not NAME=COMMAND (REF is $refname already)" >&2; exit 2; }
		refname=$a
		continue
	fi
	names+=("${a%%=*}")
	cmds+=("${a#*=}")
done
n=${#names[@]}
[ "$n" -gt 0 ] || { echo "$usage" >&2; exit 2; }
ref=$((n - 1))
if [ -n "$refname" ]; then
	ref=
	for i in "${!names[@]}"; do [ "${names[$i]}" != "$refname" ] || ref=$i; done
	[ -n "$ref" ] || { echo "run-compare: REF $refname: no command of that name" >&2; exit 2; }
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
TIMEFORMAT='%3R %3U %3S'
one() { # one I ROUND: runs command I once, appends "round wall cpu" (ms) to $out/I
	local t
	# eval (in the substitution's subshell): the command line's quotes
	# hold, and no bash is started on top of each run.
	if ! t=$({ time { eval "${cmds[$1]}"; } >/dev/null 2>&1; } 2>&1); then
		echo "run-compare: ${names[$1]} failed (round $2)" >&2
		echo >>"$out/failed"
		return
	fi
	awk -v r="$2" -v t="$t" 'BEGIN { split(t, f, " "); printf "%s %.3f %.3f\n", r, f[1] * 1000, (f[2] + f[3]) * 1000 }' >>"$out/$1"
}
for i in $(seq 0 $((n - 1))); do one "$i" warm-up; done
rm -f "$out"/*
for i in $(seq 0 $((n - 1))); do : >"$out/$i"; done
for r in $(seq 0 $((rounds - 1))); do
	order=()
	for k in $(seq 0 $((n - 1))); do order+=($(((k + r) % n))); done
	if [ $((r % 2)) = 1 ]; then
		for ((k = n - 1; k >= 0; k--)); do one "${order[$k]}" "$r"; done
	else
		for k in "${order[@]}"; do one "$k" "$r"; done
	fi
done
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rw=$(cut -d' ' -f2 "$out/$ref" | median)
rc=$(cut -d' ' -f3 "$out/$ref" | median)
echo "load $(cut -d' ' -f1 /proc/loadavg), $rounds rounds"
for i in $(seq 0 $((n - 1))); do
	w=$(cut -d' ' -f2 "$out/$i" | median)
	c=$(cut -d' ' -f3 "$out/$i" | median)
	# Rounds where both ran: this command's wall time over REF's.
	p=$(awk 'NR == FNR { t[$1] = $2; next } ($1 in t) && t[$1] > 0 { print $2 / t[$1] }' "$out/$ref" "$out/$i" | median)
	np=$(awk 'NR == FNR { t[$1] = 1; next } ($1 in t)' "$out/$ref" "$out/$i" | wc -l)
	awk -v n="${names[$i]}" -v w="$w" -v c="$c" -v rw="$rw" -v rc="$rc" -v r="${names[$ref]}" -v p="$p" -v np="$np" -v k="$(wc -l <"$out/$i")" \
		'BEGIN { printf "%-24s wall %7.1f ms (%.2fx %s, paired %.2fx of %d)   cpu %6.1f ms (%.2fx)   %d runs\n", n, w, w / rw, r, p, np, c, c / rc, k }'
done
if [ -s "$out/failed" ]; then
	echo "run-compare: $(wc -l <"$out/failed") runs failed: not counted" >&2
	exit 1
fi
