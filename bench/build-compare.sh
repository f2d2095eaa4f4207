#!/bin/bash
# build-compare.sh STRATA DEMO_DOCKER_TAR: builds one 10-step Dockerfile with
# strata, docker build (a dockerd of its own, classic builder: Debian's
# docker.io 20.10 has no buildx) and buildah bud --isolation chroot (its own
# --root/--runroot), on the same context and base image, cold (--no-cache)
# then fully cached, interleaved, one run each. Prints "MODE TOOL SECONDS".
set -euo pipefail
STRATA=${1:?strata binary}; TAR=${2:?docker-archive of demo:latest}
W=$(mktemp -d /tmp/strata-build-bench-XXXXXX)
D=$W/docker B=$W/buildah S=$W/store
mkdir -p $W/ctx $D $B
cleanup() {
  [ -f $D/pid ] && kill "$(cat $D/pid)" 2>/dev/null && sleep 2
  buildah --root $B/root --runroot $B/run rm -a >/dev/null 2>&1 || true
  umount -R $D/data/overlay2 2>/dev/null || true
  rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT
cd $W
for i in 1 2 3; do head -c 200000 /dev/urandom > ctx/f$i.bin; done
echo hi > ctx/a.txt
cat > ctx/Dockerfile <<'DF'
FROM demo:latest
ENV A=1
WORKDIR /bench
COPY a.txt /bench/a.txt
COPY f1.bin f2.bin f3.bin /bench/bin/
RUN echo step > /bench/step1
RUN ls -la /bench > /bench/listing
ADD a.txt /bench/added.txt
RUN cat /bench/a.txt /bench/added.txt > /bench/both
LABEL org.example.bench=build
CMD ["/bin/sh"]
DF
dockerd --data-root $D/data --exec-root $D/exec --pidfile $D/pid -H unix://$D/sock \
  --iptables=false --bridge=none --storage-driver=overlay2 > $D/log 2>&1 &
for _ in $(seq 50); do docker -H unix://$D/sock info >/dev/null 2>&1 && break; sleep 0.2; done
docker -H unix://$D/sock load -i "$TAR" >/dev/null
buildah --root $B/root --runroot $B/run pull -q docker-archive:"$TAR" >/dev/null
buildah --root $B/root --runroot $B/run tag "$(buildah --root $B/root --runroot $B/run images -q | head -1)" demo:latest
STRATA_ROOT=$S "$STRATA" load -q -i "$TAR" >/dev/null
t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; echo "$(date +%s.%N) - $s" | bc; }
for mode in cold cached; do
  nc=""; [ $mode = cold ] && nc=--no-cache
  echo "$mode strata $(STRATA_ROOT=$S t "$STRATA" build $nc --network none -t bench:1 ctx)"
  echo "$mode docker $(DOCKER_BUILDKIT=0 t docker -H unix://$D/sock build $nc --network none -t bench:1 ctx)"
  echo "$mode buildah $(t buildah --root $B/root --runroot $B/run bud --isolation chroot --layers $nc -t bench:1 ctx)"
done
