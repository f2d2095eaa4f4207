#!/usr/bin/env bash
# The main job, end to end, on a fresh machine (as root): installs the tools,
# builds a 5-layer demo image from files already on the machine (busybox,
# with umoci and skopeo), loads it into the default store, lists it, mounts it
# as a directory, looks inside and runs the image's shell there, writes to the
# ephemeral top layer, unmounts, runs the image as a container under runc,
# and checks the store.
#
#   bash .ci/demo.sh            # store: $STRATA_ROOT, else /var/lib/strata
#   KEEP_MOUNTED=1 bash .ci/demo.sh   # leave the mount up at /tmp/strata-demo/mnt
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
work=${STRATA_DEMO_DIR:-/tmp/strata-demo}
mnt=$work/mnt

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v setfattr >/dev/null || need+=(attr)
command -v runc >/dev/null || need+=(runc)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
  apt-get update -qq >/dev/null
  NEEDRESTART_MODE=a DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" </dev/null >/dev/null
fi

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

mkdir -p "$work"
go build -o "$work/strata" ./cmd/strata
# strata-mount beside strata serves "strata mount -d": a small server,
# static (no libc to load) as README's Build says.
CGO_ENABLED=0 go build -o "$work/strata-mount" ./cmd/strata-mount
strata=$work/strata
fixtures=${STRATA_FIXTURES:-$work/fixtures}
[ -e "$fixtures/demo.docker.tar" ] || bash internal/fixtures/make-fixtures.sh "$fixtures" >/dev/null

if grep -qs " $mnt " /proc/mounts; then "$strata" umount "$mnt" || umount -l "$mnt"; fi
step "$strata" load -i "$fixtures/demo.docker.tar"
step "$strata" load -i "$fixtures/oci-zstd"
step "$strata" images
step "$strata" history demo
step "$strata" system df
mkdir -p "$mnt"
step "$strata" mount -d demo "$mnt"
step ls -l "$mnt" "$mnt/bin"
step cat "$mnt/etc/motd" "$mnt/usr/share/doc/demo/README"
step chroot "$mnt" /bin/sh -c 'echo "hello from a shell in the image: $(id)"; ls /app; echo written > /tmp/new-file'
step "$strata" mounts
step "$strata" diff "$mnt"
if [ -n "${KEEP_MOUNTED:-}" ]; then
  echo; echo "mounted at $mnt; unmount with: $strata umount $mnt"
  exit 0
fi
step "$strata" umount "$mnt"
step "$strata" run --rm --name demo-run demo -c 'echo "hello from a container: $(id -u)@$(hostname), $(ls /sys/class/net | tr "\n" " ")"'
step "$strata" check
[ ! -e "$mnt/tmp/new-file" ] || { echo "top layer survived unmount" >&2; exit 1; }
echo; echo "demo ok: image loaded, mounted, written, unmounted, run as a container; store clean"
