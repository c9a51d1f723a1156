#!/usr/bin/env bash
# Builds Kiln's two images offline, without a container engine or a registry to pull
# from: a Debian bookworm root filesystem made by mmdebstrap from Debian's packages (the
# same packages operator/Dockerfile and builder-pod/Dockerfile install on top of
# debian:bookworm-slim), plus the workspace's binary, assembled with `buildah from
# scratch` and written as an OCI archive that containerd imports (`ctr images import`) or
# skopeo copies to a registry.
#
#   hack/images.sh bases                       root filesystems only (cached; setup runs this)
#   hack/images.sh builder BINARY OUT [NAME]   kiln-builder image from BINARY into OUT
#   hack/images.sh operator BINARY OUT [NAME]  kiln-operator image from BINARY into OUT
#   hack/images.sh all [PROFILE]               both, from target/PROFILE (default release),
#                                              into target/kiln-images/*.oci.tar
#
# NAME defaults to docker.io/library/kiln-builder:dev / docker.io/library/kiln-operator:dev.
# The root filesystems are cached under $KILN_CACHE_DIR/image-bases, keyed by their
# package lists and hooks below; only that step needs the Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${KILN_CACHE_DIR:-$HOME/.cache/kiln}/image-bases
mkdir -p "$cache"

# What the Dockerfiles install, package for package.
builder_packages=buildah,skopeo,git,openssh-client,util-linux,ca-certificates,fuse-overlayfs
operator_packages=ca-certificates,git,openssh-client,libssl3
# The operator runs as 65532:65532 with its cache in /var/cache/kiln (operator/Dockerfile).
operator_hook='chroot "$1" groupadd --gid 65532 kiln && chroot "$1" useradd --uid 65532 --gid 65532 --home-dir /var/cache/kiln --no-create-home kiln && install -d -o 65532 -g 65532 "$1/var/cache/kiln"'
# Like debian:bookworm-slim: no documentation, man pages or apt lists.
slim_hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*'

base_tar() { # NAME PACKAGES HOOK -> path of the cached root filesystem tar
  local name=$1 packages=$2 hook=$3
  local key
  key=$(printf '%s\n%s\n%s\n' "$packages" "$hook" "$slim_hook" | sha256sum | cut -c1-16)
  local out=$cache/$name-$key.tar
  if [ ! -f "$out" ]; then
    exec 8>"$cache/.lock-$name"
    flock 8
    if [ ! -f "$out" ]; then
      echo "images: building the $name root filesystem with mmdebstrap ($packages)" >&2
      mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
        --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook="$hook" --customize-hook="$slim_hook" \
        bookworm "$out.tmp" >&2
      mv "$out.tmp" "$out"
    fi
    exec 8>&-
  fi
  echo "$out"
}

builder_base() { base_tar kiln-builder "$builder_packages" 'true'; }
operator_base() { base_tar kiln-operator "$operator_packages" "$operator_hook"; }

image() { # KIND BINARY OUT NAME
  local kind=$1 binary=$2 out=$3 name=$4 base
  [ -x "$binary" ] || { echo "images: $binary is not an executable (cargo build it first)" >&2; exit 1; }
  case $kind in
    builder) base=$(builder_base) ;;
    operator) base=$(operator_base) ;;
  esac
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "buildah --root '$tmp/storage' --runroot '$tmp/run' --storage-driver vfs rm -a >/dev/null 2>&1 || true; rm -rf '$tmp'" EXIT
  b() { buildah --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs "$@"; }
  local ctr mnt
  ctr=$(b from scratch)
  mnt=$(b mount "$ctr")
  tar -xf "$base" -C "$mnt"
  install -D -m 0755 "$binary" "$mnt/usr/local/bin/kiln-$kind"
  # Every library the binary links must come from the image's own Debian packages.
  local missing=0
  while read -r lib; do
    [ -e "$mnt$lib" ] || { echo "images: $lib (needed by $binary) is not in the image" >&2; missing=1; }
  done < <(ldd "$binary" | awk '/=> \//{print $3} /^\t\//{print $1}')
  [ "$missing" = 0 ] || exit 1
  b umount "$ctr" >/dev/null
  b config --os linux --arch amd64 --workingdir / "$ctr"
  case $kind in
    builder)
      b config --env BUILDAH_ISOLATION=chroot --env KILN_STORAGE_DRIVER=vfs \
        --entrypoint '["/usr/local/bin/kiln-builder"]' --cmd '[]' "$ctr" ;;
    operator)
      b config --env KILN_CACHE_DIR=/var/cache/kiln --user 65532:65532 --port 8080 \
        --entrypoint '["/usr/local/bin/kiln-operator"]' --cmd '["run"]' "$ctr" ;;
  esac
  b commit -q --format oci "$ctr" "$name" >/dev/null
  mkdir -p "$(dirname "$out")"
  rm -f "$out.tmp"
  # Uncompressed layers: the archive is imported on this machine, and unpacking skips gzip.
  b push -q --disable-compression "$name" "oci-archive:$out.tmp:$name"
  mv "$out.tmp" "$out"
  b rm -a >/dev/null 2>&1 || true
  rm -rf "$tmp"
  trap - EXIT
  echo "images: $name -> $out" >&2
}

case ${1:-} in
  bases)
    builder_base >/dev/null
    operator_base >/dev/null ;;
  builder|operator)
    image "$1" "${2:?binary}" "${3:?output archive}" "${4:-docker.io/library/kiln-$1:dev}" ;;
  all)
    profile=${2:-release}
    for kind in builder operator; do
      image "$kind" "target/$profile/kiln-$kind" "target/kiln-images/kiln-$kind.oci.tar" \
        "docker.io/library/kiln-$kind:dev"
    done ;;
  *)
    sed -n '2,20p' "$0" >&2
    exit 2 ;;
esac
