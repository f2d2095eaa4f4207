#!/usr/bin/env bash
# Compare strata's hot-path Go benchmarks at two revisions:
#
#   bench/compare.sh OLD [NEW] [COUNT]     e.g. bench/compare.sh HEAD~3 HEAD 10
#
# NEW defaults to the working tree ("."), COUNT to 10. Each revision is
# checked out in a temporary worktree and its test binaries built once; the
# runs then alternate old, new, old, new... so that a noisy machine's drift
# falls on both sides. Results go to bench/out/compare/{old,new}.txt, which
# benchstat compares (go install golang.org/x/perf/cmd/benchstat@latest).
# The FUSE benchmarks need root and /dev/fuse and skip themselves otherwise.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
old=${1:?usage: bench/compare.sh OLD [NEW] [COUNT]}
new=${2:-.}
count=${3:-10}
bench=${BENCH:-'BenchmarkTree|BenchmarkObjectOpen|BenchmarkFUSERead'}
pkgs=(layerstore bench)
out=bench/out/compare
tmp=$(mktemp -d)
trap 'for w in "$tmp"/wt-*; do [ -d "$w" ] && git worktree remove --force "$w"; done; rm -rf "$tmp"' EXIT
mkdir -p "$out"

build() { # build REV NAME: test binaries in $tmp/NAME
	local src=$1
	if [ "$1" != . ]; then
		src=$tmp/wt-$2
		git worktree add --detach -q "$src" "$1"
	fi
	mkdir -p "$tmp/$2"
	for p in "${pkgs[@]}"; do
		if [ -d "$src/$p" ]; then
			(cd "$src" && go test -c -o "$tmp/$2/$p.test" "./$p/")
		fi
	done
	echo "$src" >"$tmp/$2.src"
}
run() { # run NAME: one count of every benchmark, appended to $out/NAME.txt
	local src
	src=$(cat "$tmp/$1.src")
	for p in "${pkgs[@]}"; do
		[ -x "$tmp/$1/$p.test" ] || continue
		(cd "$src/$p" && "$tmp/$1/$p.test" -test.run '^$' -test.bench "$bench" -test.benchmem -test.count 1) >>"$out/$1.txt"
	done
}

build "$old" old
build "$new" new
: >"$out/old.txt"
: >"$out/new.txt"
for i in $(seq "$count"); do
	echo "round $i/$count" >&2
	run old
	run new
done
if command -v benchstat >/dev/null; then
	benchstat "$out/old.txt" "$out/new.txt"
else
	echo "wrote $out/old.txt and $out/new.txt; compare them with: benchstat $out/old.txt $out/new.txt" >&2
fi
