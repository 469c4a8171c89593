#!/usr/bin/env bash
# make install-test: install into a scratch prefix, check the SONAME, the
# links and the stripping, build the README's C program with pkg-config and
# the README's C and C++ programs with CMake (shared and static targets),
# run them all without LD_LIBRARY_PATH, then make uninstall and check that
# nothing is left. Needs cmake, pkg-config and readelf; fails (never skips)
# when one is missing.
#
# The programs are taken from README.md ("C API at a glance", "C++ API at a
# glance") as they are, except that their journal directory,
# /var/lib/gateway, becomes one under the scratch directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
MAKE=${MAKE:-make}
CC=${CC:-cc}
CXX=${CXX:-c++}
work="$root/target/install-test"
prefix="$work/prefix"

fail() { echo "install-test: $*" >&2; exit 1; }
for tool in cmake:cmake pkg-config:pkg-config readelf:binutils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 ||
        fail "${tool%%:*} is missing; install it with: sudo apt-get install ${tool#*:}"
done

# The fenced block of language $2 that follows the heading $1 in README.md.
readme_block() {
    awk -v heading="$1" -v fence="\`\`\`$2" '
        $0 == heading { section = 1; next }
        section && $0 == fence { copy = 1; next }
        copy && $0 == "```" { exit }
        copy { print }' README.md
}
# The block, with its journal directory moved into the scratch directory.
readme_program() {
    local out=$3
    readme_block "$1" "$2" >"$out"
    [ "$(grep -c '"/var/lib/gateway"' "$out")" = 1 ] ||
        fail "README.md's block under '$1' changed: expected one \"/var/lib/gateway\""
    sed -i "s|\"/var/lib/gateway\"|\"$work/journal\"|" "$out"
}
# Runs a built program without LD_LIBRARY_PATH, with a fresh journal
# directory: it must print $2 and nothing on stderr (no failure report: the
# journal opened at level 2).
run() {
    local out
    echo "== run $(basename "$1")"
    rm -rf "$work/journal" && mkdir "$work/journal"
    out=$(env -u LD_LIBRARY_PATH "$1" 2>"$work/stderr") || fail "$1 failed: $(cat "$work/stderr")"
    echo "$out"
    grep -q "$2" <<<"$out" || fail "$1 did not print '$2'"
    [ ! -s "$work/stderr" ] || fail "$1 reported: $(cat "$work/stderr")"
    compgen -G "$work/journal/*.ssp" >/dev/null || fail "$1 left no journal in $work/journal"
}
# $1 loads the installed shared library, found through its RUNPATH.
check_shared() {
    local dynamic loaded
    dynamic=$(readelf -d "$1")
    loaded=$(env -u LD_LIBRARY_PATH ldd "$1")
    grep -q "(NEEDED).*\[$soname\]" <<<"$dynamic" || fail "$1 does not need $soname"
    grep -Eq "\((RUNPATH|RPATH)\).*$prefix/lib" <<<"$dynamic" || fail "$1 has no RUNPATH to $prefix/lib"
    grep -q "$soname => $prefix/lib/$soname" <<<"$loaded" ||
        fail "$1 does not load $prefix/lib/$soname: $(grep softnet <<<"$loaded")"
}
check_static() {
    if grep -q softnet_persistence <<<"$(readelf -d "$1")"; then fail "$1 is linked dynamically"; fi
}

rm -rf "$work"
mkdir -p "$work"
abi=$(sed -n 's/^#define SNP_ABI_VERSION \([0-9][0-9]*\).*/\1/p' capi/include/softnet_persistence.h)
read -r soname realname version < <(tools/install.sh names)
[ "$soname" = "libsoftnet_persistence.so.$abi" ] || fail "SONAME $soname is not the header's ABI $abi"

echo "== make install PREFIX=$prefix"
"$MAKE" --no-print-directory install PREFIX="$prefix"
lib="$prefix/lib"
echo "== SONAME, links, stripping"
dynamic=$(readelf -d "$lib/$realname")
grep "(SONAME)" <<<"$dynamic"
grep -q "(SONAME).*\[$soname\]" <<<"$dynamic" || fail "$realname: SONAME is not $soname"
if [ ! -f "$lib/$realname" ] || [ -L "$lib/$realname" ]; then fail "$realname is not a file"; fi
[ "$(readlink "$lib/$soname")" = "$realname" ] || fail "$soname does not point to $realname"
[ "$(readlink "$lib/libsoftnet_persistence.so")" = "$soname" ] ||
    fail "libsoftnet_persistence.so does not point to $soname"
if grep -Eq '\.(debug_|symtab)' <<<"$(readelf -S "$lib/$realname")"; then fail "$realname is not stripped"; fi
if grep -q '\.debug_' <<<"$(readelf -S "$lib/libsoftnet_persistence.a")"; then
    fail "libsoftnet_persistence.a has debug info"
fi
for f in include/softnet_persistence.h include/softnet/persistence.hpp \
    lib/pkgconfig/softnet-persistence.pc \
    lib/cmake/softnet-persistence/softnet-persistence-config.cmake \
    lib/cmake/softnet-persistence/softnet-persistence-config-version.cmake \
    share/doc/softnet-persistence/README.md share/doc/softnet-persistence/LICENSE-MIT \
    share/doc/softnet-persistence/LICENSE-APACHE; do
    [ -f "$prefix/$f" ] || fail "$f is not installed"
done
ls -l "$lib"
echo "== snp"
[ -x "$prefix/bin/snp" ] || fail "bin/snp is not installed"
"$prefix/bin/snp" --help | grep -q "usage: snp COMMAND" || fail "bin/snp --help does not print its usage"

readme_program "## C API at a glance" c "$work/readme.c"
readme_program "## C++ API at a glance" cpp "$work/readme.cpp"

echo "== the README's C program with pkg-config"
export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion softnet-persistence)" = "$version" ] || fail "pkg-config version"
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror "$work/readme.c" -o "$work/readme_pkgconfig" \
    $(pkg-config --cflags --libs softnet-persistence)
check_shared "$work/readme_pkgconfig"
run "$work/readme_pkgconfig" "send Temperature (4 bytes, raised at 1"
# The installed tool reads the journal the program left.
"$prefix/bin/snp" verify "$(compgen -G "$work/journal/*.ssp")" || fail "snp verify failed on the README program's journal"

echo "== the README's C and C++ programs with CMake (find_package(softnet-persistence 1.0))"
cmake -S capi/tests/install -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
    -DREADME_C="$work/readme.c" -DREADME_CPP="$work/readme.cpp"
cmake --build "$work/cmake" -j "$(nproc)"
for kind in shared static; do
    for lang in c cpp; do
        "check_$kind" "$work/cmake/readme_${lang}_$kind"
    done
    run "$work/cmake/readme_c_$kind" "send Temperature (4 bytes, raised at 1"
    run "$work/cmake/readme_cpp_$kind" "send door/opened"
done

echo "== make uninstall PREFIX=$prefix"
"$MAKE" --no-print-directory uninstall PREFIX="$prefix"
left=$(find "$prefix" ! -type d)
[ -z "$left" ] || fail "left after make uninstall: $left"
for d in include/softnet lib/cmake/softnet-persistence share/doc/softnet-persistence; do
    [ ! -e "$prefix/$d" ] || fail "$d is left after make uninstall"
done
echo "install-test: OK (SONAME $soname, version $version; pkg-config and CMake, shared and static)"
