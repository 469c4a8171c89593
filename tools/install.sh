#!/usr/bin/env bash
# make install / make uninstall: the C and C++ library, its headers, the
# pkg-config file, the CMake package and the docs.
#
#   tools/install.sh install|uninstall|names
#
# Reads (the Makefile passes them): PREFIX, DESTDIR, BINDIR, LIBDIR,
# INCLUDEDIR, DOCDIR, PKGCONFIGDIR, CMAKEDIR, STRIP (strip, or true to keep symbols),
# PC_RPATH (auto, yes or no: whether the .pc file adds -Wl,-rpath,<libdir>;
# auto adds it when the dynamic loader does not search LIBDIR) and
# RELEASE_DIR (where the libraries to install are: make dist-lib's
# target/dist/lib) and CLI_BIN (the snp tool: make dist-cli's
# target/dist/snp).
#
# What gets installed, with N = SNP_ABI_VERSION (from the header, which the
# capi build script checks against capi/src/status.rs) and x.y the minor and
# patch of the capi crate's version:
#   LIBDIR/libsoftnet_persistence.so.N.x.y   the shared library, SONAME .so.N
#   LIBDIR/libsoftnet_persistence.so.N       -> .so.N.x.y (what programs load)
#   LIBDIR/libsoftnet_persistence.so         -> .so.N     (what -l finds)
#   LIBDIR/libsoftnet_persistence.a          debug info stripped
#   INCLUDEDIR/softnet_persistence.h, INCLUDEDIR/softnet/persistence.hpp
#   PKGCONFIGDIR/softnet-persistence.pc
#   CMAKEDIR/softnet-persistence-config.cmake, -config-version.cmake
#   DOCDIR/README.md, LICENSE-MIT, LICENSE-APACHE
#   BINDIR/snp                               the command-line tool (docs/TOOLS.md)
# The package version (pkg-config, CMake) is N.x.y, so that
# find_package(softnet-persistence N.0) means "ABI N".
#
# Hand-written rather than cargo-c's `cargo cinstall` (tried: 0.10.24).
# cargo-c takes the SONAME from the crate version (0.1.0 gives .so.0.1) or
# from a version written into Cargo.toml's metadata, a second copy of
# SNP_ABI_VERSION to keep in step by hand; it does not strip, has no
# uninstall, writes no CMake package (half of this file) and makes no
# rpath/ldconfig choice; it needs a `capi` feature in the crate and builds
# into target/<triple>/release, so the tests would build the library twice;
# and it is one more tool to build (22 minutes on a 2-core machine; its
# newest release needs a newer Rust than CI's). What it would save here is
# the install and ln lines and the .pc template.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
LIBDIR=${LIBDIR:-$PREFIX/lib}
INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/softnet-persistence}
PKGCONFIGDIR=${PKGCONFIGDIR:-$LIBDIR/pkgconfig}
CMAKEDIR=${CMAKEDIR:-$LIBDIR/cmake/softnet-persistence}
STRIP=${STRIP:-strip}
PC_RPATH=${PC_RPATH:-auto}
RELEASE_DIR=${RELEASE_DIR:-target/dist/lib}
CLI_BIN=${CLI_BIN:-target/dist/snp}
# The system libraries a static link needs (the .pc's Libs.private and the
# CMake static target's link interface).
STATIC_LIBS="-lpthread -ldl -lm"

abi=$(sed -n 's/^#define SNP_ABI_VERSION \([0-9][0-9]*\).*/\1/p' capi/include/softnet_persistence.h)
crate=$(sed -n 's/^version = "\([0-9.]*\)".*/\1/p' capi/Cargo.toml | head -1)
if [ -z "$abi" ] || [ -z "$crate" ]; then
    echo "install: cannot read SNP_ABI_VERSION or the crate version" >&2
    exit 1
fi
version="$abi.$(echo "$crate" | cut -d. -f2-3)"
soname="libsoftnet_persistence.so.$abi"
realname="libsoftnet_persistence.so.$version"

for dir in "$PREFIX" "$BINDIR" "$LIBDIR" "$INCLUDEDIR" "$DOCDIR" "$PKGCONFIGDIR" "$CMAKEDIR"; do
    case "$dir" in
        /*) ;;
        *) echo "install: $dir is not an absolute path" >&2; exit 1 ;;
    esac
done

# True when the dynamic loader finds libraries in $1 without an rpath or
# LD_LIBRARY_PATH: one of the directories ldconfig scans (its configuration
# and the built-in ones, as ldconfig -v lists them).
loader_searches() {
    local want ldconfig dir
    want=$(realpath -m "$1")
    ldconfig=$(find_ldconfig) || return 1
    while IFS= read -r dir; do
        [ "$(realpath -m "$dir")" = "$want" ] && return 0
    done < <("$ldconfig" -v -N -X 2>/dev/null | sed -n 's/^\([^[:space:]][^:]*\):.*/\1/p')
    return 1
}

find_ldconfig() {
    local c
    for c in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

# After installing or removing: refresh the loader's cache when that is
# what makes the library found (a system directory, no DESTDIR, as root);
# otherwise say what to do.
after() {
    [ -z "$DESTDIR" ] || return 0
    if loader_searches "$LIBDIR"; then
        if [ "$(id -u)" = 0 ]; then
            echo "ldconfig"
            "$(find_ldconfig)"
        elif [ "$1" = install ]; then
            echo "install: $LIBDIR is a system directory; run 'sudo ldconfig' so programs find $soname"
        fi
    elif [ "$1" = install ]; then
        echo "install: $LIBDIR is not searched by the dynamic loader: programs built with pkg-config" \
            "or CMake get an rpath to it; link others with -Wl,-rpath,$LIBDIR or run them with" \
            "LD_LIBRARY_PATH=$LIBDIR"
    fi
}

# $2 as seen from the prefix: ${prefix}/rest when $2 is under $1.
relative_to_prefix() {
    case "$2" in
        "$1"/*) echo "\${prefix}/${2#"$1"/}" ;;
        *) echo "$2" ;;
    esac
}

install_files() {
    local built="$RELEASE_DIR/libsoftnet_persistence.so" lib inc doc pc cm rpath="" built_soname
    local pointer=4 f
    for f in "$built" "$RELEASE_DIR/libsoftnet_persistence.a"; do
        [ -f "$f" ] || { echo "install: $f is missing: run make dist-lib first" >&2; exit 1; }
    done
    [ -f "$CLI_BIN" ] || { echo "install: $CLI_BIN is missing: run make dist-cli first" >&2; exit 1; }
    if grep -q 'Class:.*ELF64' <<<"$(readelf -h "$built")"; then pointer=8; fi
    built_soname=$(readelf -d "$built" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    if [ "$built_soname" != "$soname" ]; then
        echo "install: $built has SONAME '$built_soname', expected $soname (run make dist-lib)" >&2
        exit 1
    fi
    lib="$DESTDIR$LIBDIR" inc="$DESTDIR$INCLUDEDIR" doc="$DESTDIR$DOCDIR"
    pc="$DESTDIR$PKGCONFIGDIR" cm="$DESTDIR$CMAKEDIR" bin="$DESTDIR$BINDIR"
    set -x
    install -d "$lib" "$inc/softnet" "$doc" "$pc" "$cm" "$bin"
    install -m 0755 "$CLI_BIN" "$bin/snp"
    "$STRIP" "$bin/snp"
    install -m 0755 "$built" "$lib/$realname"
    "$STRIP" --strip-unneeded "$lib/$realname"
    ln -sfn "$realname" "$lib/$soname"
    ln -sfn "$soname" "$lib/libsoftnet_persistence.so"
    install -m 0644 "$RELEASE_DIR/libsoftnet_persistence.a" "$lib/libsoftnet_persistence.a"
    "$STRIP" --strip-debug "$lib/libsoftnet_persistence.a"
    install -m 0644 capi/include/softnet_persistence.h "$inc/softnet_persistence.h"
    install -m 0644 bindings/cpp/include/softnet/persistence.hpp "$inc/softnet/persistence.hpp"
    install -m 0644 README.md LICENSE-MIT LICENSE-APACHE "$doc/"
    { set +x; } 2>/dev/null
    # shellcheck disable=SC2016  # ${libdir} is pkg-config's variable
    case "$PC_RPATH" in
        yes) rpath=' -Wl,-rpath,${libdir}' ;;
        no) ;;
        auto) loader_searches "$LIBDIR" || rpath=' -Wl,-rpath,${libdir}' ;;
        *) echo "install: PC_RPATH is auto, yes or no, not '$PC_RPATH'" >&2; exit 1 ;;
    esac
    sed -e "s|@PREFIX@|$PREFIX|" \
        -e "s|@LIBDIR@|$(relative_to_prefix "$PREFIX" "$LIBDIR")|" \
        -e "s|@INCLUDEDIR@|$(relative_to_prefix "$PREFIX" "$INCLUDEDIR")|" \
        -e "s|@VERSION@|$version|" -e "s|@RPATH@|$rpath|" -e "s|@STATIC_LIBS@|$STATIC_LIBS|" \
        softnet-persistence.pc.in >"$pc/softnet-persistence.pc"
    sed -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@INCLUDEDIR@|$INCLUDEDIR|g" \
        -e "s|@REALNAME@|$realname|g" -e "s|@SONAME@|$soname|g" \
        -e "s|@STATIC_LIBS@|$(echo "$STATIC_LIBS" | sed 's/-l//g; s/ /;/g')|g" \
        capi/cmake/softnet-persistence-config.cmake.in >"$cm/softnet-persistence-config.cmake"
    sed -e "s|@VERSION@|$version|g" -e "s|@SIZEOF_VOID_P@|$pointer|g" \
        capi/cmake/softnet-persistence-config-version.cmake.in \
        >"$cm/softnet-persistence-config-version.cmake"
    echo "installed $realname (SONAME $soname), version $version, into ${DESTDIR}$PREFIX"
    after install
}

# Removes what install_files installs (this version's names), then the
# directories that are the package's own if they are empty.
uninstall_files() {
    local lib="$DESTDIR$LIBDIR" inc="$DESTDIR$INCLUDEDIR" doc="$DESTDIR$DOCDIR"
    local pc="$DESTDIR$PKGCONFIGDIR" cm="$DESTDIR$CMAKEDIR" bin="$DESTDIR$BINDIR"
    set -x
    rm -f "$bin/snp" "$lib/libsoftnet_persistence.so" "$lib/$soname" "$lib/$realname" \
        "$lib/libsoftnet_persistence.a" \
        "$inc/softnet_persistence.h" "$inc/softnet/persistence.hpp" \
        "$pc/softnet-persistence.pc" \
        "$cm/softnet-persistence-config.cmake" "$cm/softnet-persistence-config-version.cmake" \
        "$doc/README.md" "$doc/LICENSE-MIT" "$doc/LICENSE-APACHE"
    rmdir --ignore-fail-on-non-empty "$inc/softnet" "$cm" "$doc" 2>/dev/null || true
    { set +x; } 2>/dev/null
    after uninstall
}

case "${1:-}" in
    install) install_files ;;
    uninstall) uninstall_files ;;
    names) echo "$soname $realname $version" ;;
    *) echo "usage: $0 install|uninstall|names" >&2; exit 2 ;;
esac
