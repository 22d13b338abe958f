#!/usr/bin/env bash
# Builds the hello example's image without a registry or docker: a tarball of Debian's
# static busybox (scripts/build-test-image.sh), named localhost/orc-hello:1. Import it
# into the node's containerd with `orc images import`, or drop it into
# /var/lib/orc/agent/images/ (imported at agent start).
#
#   examples/hello/build-image.sh [OUT.tar]        (default /tmp/orc-hello.tar)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/tmp/orc-hello.tar}
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    [[ $(id -u) -eq 0 ]] || { echo "build-image.sh: needs busybox-static: sudo apt-get install busybox-static" >&2; exit 1; }
    echo "build-image.sh: installing busybox-static with apt" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
"$here/../../scripts/build-test-image.sh" "$out" localhost/orc-hello:1
echo "$out"
