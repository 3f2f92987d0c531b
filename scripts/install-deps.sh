#!/bin/sh
# Install what dfa needs to build and test on a Debian machine (run as root, or with sudo).
# nvcc is optional: when the CUDA toolkit is present the CUDA sources are compiled too.
set -e
PKGS="cmake make gcc pkg-config libcjson-dev libpng-dev libopenblas-dev libomp-dev clang libclang-rt-14-dev python3"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
echo "dependencies present:$PKGS"
