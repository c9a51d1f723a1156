#!/usr/bin/env bash
# The Debian root filesystems of Kiln's two images (kiln-builder, kiln-operator), made by
# mmdebstrap from Debian's packages and cached under $KILN_CACHE_DIR/image-bases, so that
# hack/images.sh (and the e2e tests, which build the images from the workspace's
# binaries) never need the Debian mirror afterwards. About 1-2 minutes the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/images.sh bases
