#!/usr/bin/env bash
# Debian packages the tests use: Buildah (builder), the distribution registry,
# skopeo (inspecting what was pushed), QEMU user emulation (other platforms),
# busybox-static (offline base images), htpasswd (registry auth), runc, openssl (PKI),
# fuse-overlayfs (the builder's overlay storage without kernel overlay), jq (scripts read
# the local stack's info.json), GNU time (build figures), util-linux (flock, unshare),
# containerd, the CNI plugins and iptables (the local cluster's real node), gcc and libc6-dev
# (the node's static pause binary), mmdebstrap (the images' Debian root filesystems).
# Every tool the scripts and tests call is listed here: a bare machine has none of them.
set -euo pipefail
packages=(buildah docker-registry skopeo qemu-user-static busybox-static apache2-utils
          runc openssl openssh-client uidmap netcat-openbsd git ca-certificates
          fuse-overlayfs jq time util-linux procps iproute2 iptables
          containerd containernetworking-plugins gcc libc6-dev mmdebstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
