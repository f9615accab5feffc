#!/bin/sh
# Install what moed needs to build and test on Debian 12, if it is missing,
# and the tools that build and check its Debian packages (PKG_TOOLS;
# tests/package.sh installs debian/control's Build-Depends itself, with
# apt-get build-dep).  Runs apt-get as root (directly, or through sudo).
set -e
PKG_TOOLS="git dpkg-dev debhelper dh-python lintian"
PKGS="build-essential autoconf automake libtool pkg-config \
libuv1-dev libprotobuf-c-dev protobuf-c-compiler libopenblas-dev libinih-dev \
libjson-c-dev libcmocka-dev libsystemd-dev python3 python3-numpy \
python3-protobuf protobuf-compiler python3-pytest \
valgrind mandoc systemd util-linux \
libmicrohttpd-dev python3-prometheus-client prometheus chromium \
libopenmpi-dev openmpi-bin"
missing=
for p in $PKGS $PKG_TOOLS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
