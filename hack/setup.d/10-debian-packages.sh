#!/usr/bin/env bash
# Debian packages the tests use: Buildah (builder), the distribution registry,
# skopeo (inspecting what was pushed), QEMU user emulation (other platforms),
# busybox-static (offline base images), htpasswd (registry auth), runc, openssl (PKI).
set -euo pipefail
packages=(buildah docker-registry skopeo qemu-user-static busybox-static apache2-utils
          runc openssl openssh-client uidmap netcat-openbsd git ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
