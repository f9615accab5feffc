#!/bin/sh
# Install what the benchmarks need beyond tools/deps.sh, if it is missing:
# Debian's python3-torch (1.13) for the PyTorch peer of make bench and
# make bench-v3 (bench/torch_peer.py under /usr/bin/python3).  Not needed to
# build or to pass make check (tests/bench/harness.sh checks the peer only
# where torch is installed).  Runs apt-get as root (directly, or through sudo).
set -e
sh "$(dirname "$0")/deps.sh"
/usr/bin/python3 -c 'import torch' 2>/dev/null && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "bench-deps: installing python3-torch"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch
