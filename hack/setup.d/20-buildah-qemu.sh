#!/usr/bin/env bash
# Machine-level steps for building with Buildah on other platforms and without the
# internet: the arm64 busybox-static package the test base images are made from (cached
# under $KILN_CACHE_DIR/debs), and QEMU aarch64 registered with binfmt_misc (with the F
# flag from Debian's qemu-user-static, so emulation works inside chroots). Idempotent.
set -euo pipefail
cache="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/debs"
mkdir -p "$cache"

# arm64 busybox-static .deb: the amd64 one is the installed /bin/busybox.
if ! ls "$cache"/busybox-static_*_arm64.deb >/dev/null 2>&1; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -q
  (cd "$cache" && apt-get download -q busybox-static:arm64)
fi

# binfmt_misc: mount once per boot, then register aarch64 unless already registered.
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt"
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
  grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf | grep . > "$binfmt/register"
fi
grep -qx enabled "$binfmt/qemu-aarch64"
echo "arm64 busybox-static: $(ls "$cache"/busybox-static_*_arm64.deb); qemu-aarch64 binfmt: enabled"
