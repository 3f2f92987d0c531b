#!/bin/sh
# On a GPU machine that cannot reach a package registry: unpack the Debian packages carried in
# .devdeps/ (made here by `scripts/device-deps.sh fetch`) into /opt/dfa-deps and print the
# environment that points CMake at them. usage:
#   sh scripts/device-deps.sh fetch             # here, with apt: download the .debs
#   eval "$(sh scripts/device-deps.sh env)"     # there: unpack + export CMAKE_PREFIX_PATH etc.
set -e
PKGS="pkgconf pkgconf-bin libpkgconf3 libcjson1 libcjson-dev libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libopenblas0 libgfortran5 libpng-dev libpng16-16 zlib1g-dev"
case "${1:-env}" in
fetch)
    # download, unpack, drop static libraries and docs, keep one small tarball (the device call's
    # working tree is limited to 64 MiB and the bundled model takes 37 MB of it)
    T=$(mktemp -d)
    (cd $T && apt-get download $PKGS >/dev/null && for f in *.deb; do dpkg -x "$f" root; done)
    find $T/root -name "*.a" -delete; rm -f $T/root/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack*
    rm -rf $T/root/usr/share/doc $T/root/usr/share/man $T/root/usr/share/lintian
    rm -rf .devdeps && mkdir -p .devdeps && tar -C $T/root -cJf .devdeps/deps.tar.xz .
    rm -rf $T
    ls -la .devdeps ;;
env)
    P=${DFA_DEPS_PREFIX:-/opt/dfa-deps}
    if [ ! -d $P ]; then
        mkdir -p $P
        python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .devdeps/deps.tar.xz $P
        # the -dev symlinks point at the Debian alternatives; make them direct
        so=$(ls $P/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r*.so | head -1)
        ln -sf "$so" $P/usr/lib/x86_64-linux-gnu/libopenblas.so
        [ -f $P/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] &&
            ln -sf $P/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h $P/usr/include/cblas.h
        [ -f $P/usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h ] &&
            ln -sf $P/usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h $P/usr/include/openblas_config.h
    fi >&2
    L=$P/usr/lib/x86_64-linux-gnu
    echo "export PKG_CONFIG_SYSROOT_DIR=$P PATH=$P/usr/bin:\$PATH CMAKE_PREFIX_PATH=$P/usr PKG_CONFIG_PATH=$L/pkgconfig:$P/usr/share/pkgconfig LD_LIBRARY_PATH=$L:$L/openblas-pthread:\${LD_LIBRARY_PATH:-} LIBRARY_PATH=$L:$L/openblas-pthread CPATH=$P/usr/include"
    ;;
esac
