#!/usr/bin/env bash
# Prints the sizes of what is shipped (make size, after make dist-lib and
# make wheel), with the settings that made them:
#   - the stripped shared library, target/dist/lib/libsoftnet_persistence.so
#     (DIST_LIB; make size SMALL=1: the nightly build for size), and what a
#     raise through it costs (capi/size/raise_cost.c), so that a smaller
#     build's price in speed is printed beside its size;
#   - what the static library adds to a small C program: capi/size/static_demo.c
#     built with and without its library calls (cc -O2, both stripped), linked
#     as the README says (the .a, -lpthread -ldl -lm), and once more with
#     -Wl,--gc-sections;
#   - the Python extension inside the wheel, and the wheel.
# The static demo also runs once (a journal and a client file in a scratch
# directory), so the shipped .a is known to work.
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
dist=${DIST_LIB:-target/dist/lib}
so=$dist/libsoftnet_persistence.so
a=$dist/libsoftnet_persistence.a
for f in "$so" "$so.debug" "$a"; do
    [ -f "$f" ] || { echo "make size: $f is missing (make dist-lib)" >&2; exit 1; }
done
wheels=(target/wheels/*.whl)
[ -f "${wheels[0]}" ] || { echo "make size: no wheel in target/wheels (make wheel)" >&2; exit 1; }
wheel=${wheels[0]}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
demo=capi/size/static_demo.c
$CC -O2 -Icapi/include "$demo" -o "$work/without"
$CC -O2 -Icapi/include -DSNP_SIZE_WITH_LIBRARY "$demo" "$a" -lpthread -ldl -lm -o "$work/with"
$CC -O2 -Icapi/include -DSNP_SIZE_WITH_LIBRARY "$demo" "$a" -lpthread -ldl -lm \
    -Wl,--gc-sections -o "$work/with-gc"
strip "$work/without" "$work/with" "$work/with-gc"
mkdir "$work/run"
"$work/with" "$work/run" >/dev/null || { echo "make size: the static demo failed" >&2; exit 1; }
$CC -std=c11 -Wall -Wextra -Werror -O2 -Icapi/include capi/size/raise_cost.c -L"$dist" \
    -lsoftnet_persistence -o "$work/raise_cost"
mkdir "$work/cost"
read -r raise_ns sync_us < <(LD_LIBRARY_PATH="$PWD/$dist" "$work/raise_cost" "$work/cost") ||
    { echo "make size: capi/size/raise_cost.c failed" >&2; exit 1; }

bytes() { stat -c %s "$1"; }
kib() { awk -v b="$1" 'BEGIN { printf "%7.1f KiB", b / 1024 }'; }
verdict() { # bytes, target KiB
    if [ "$1" -le $(($2 * 1024)) ]; then echo "target <= $2 KiB: met"; else
        echo "target <= $2 KiB: over by $(( ($1 - $2 * 1024 + 1023) / 1024 )) KiB"; fi
}
so_size=$(bytes "$so")
base=$(bytes "$work/without")
grow=$(( $(bytes "$work/with") - base ))
grow_gc=$(( $(bytes "$work/with-gc") - base ))
ext_size=$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("softnet_persistence/_native.abi3.so").file_size)' "$wheel")
wheel_size=$(bytes "$wheel")

settings() { # the keys of a [profile.NAME] of Cargo.toml, on one line
    awk -v p="[profile.$1]" '$0 == p { on = 1; next } /^\[/ { on = 0 }
        on && /^[a-z]/ { gsub(/ /, ""); printf "%s%s", sep, $0; sep = ", " }' Cargo.toml
}
profile=$(settings dist)
release_debug=$(settings release | tr ',' '\n' | grep '^ *debug=' | tr -d ' ' || true)
if [ -n "${SMALL:-}" ]; then
    echo "Sizes of the SMALL=1 build ($(rustup run "${NIGHTLY:-$(make -s print-nightly)}" rustc --version 2>/dev/null | cut -d' ' -f1-4), $(uname -m)), in $dist"
    echo "  profile dist-small: $(settings dist-small), over dist: $profile; panic=unwind"
    echo "  std compiled with it: -Zbuild-std=std,panic_unwind -Zbuild-std-features=panic-unwind,optimize_for_size"
    echo "  (no backtrace symbolizer); -Zlocation-detail=none (panic messages without file:line)"
else
    echo "Sizes of the shipped artifacts ($(rustc --version 2>/dev/null | cut -d' ' -f1-2), $(uname -m))"
    echo "  profile dist: $profile; panic=unwind; std as the toolchain ships it"
fi
echo "  ${release_debug:-debug=0} (from release), split into a .debug file"
echo "  shared library (objcopy --strip-unneeded), static demo ($CC -O2, stripped): $demo"
echo
printf '  %-52s %9d bytes %s   %s\n' "libsoftnet_persistence.so, stripped" "$so_size" "$(kib "$so_size")" "$(verdict "$so_size" 400)"
printf '  %-52s %9d bytes %s   %s\n' "static C demo: growth from libsoftnet_persistence.a" "$grow" "$(kib "$grow")" "$(verdict "$grow" 500)"
printf '  %-52s %9d bytes %s\n' "  the same, linked with -Wl,--gc-sections" "$grow_gc" "$(kib "$grow_gc")"
printf '  %-52s %9s ns\n' "  raise through it, page cache (a)" "$raise_ns"
printf '  %-52s %9s us\n' "  raise through it, Sync, p50 (b)" "$sync_us"
printf '  %-52s %9d bytes %s\n' "Python extension _native.abi3.so (in the wheel)" "$ext_size" "$(kib "$ext_size")"
printf '  %-52s %9d bytes %s\n' "the wheel (target/wheels/)" "$wheel_size" "$(kib "$wheel_size")"
printf '    %s\n' "$(basename "$wheel")"
echo
printf '  %-52s %9d bytes %s\n' "libsoftnet_persistence.so.debug (not shipped)" "$(bytes "$so.debug")" "$(kib "$(bytes "$so.debug")")"
printf '  %-52s %9d bytes %s\n' "libsoftnet_persistence.a (debug info stripped)" "$(bytes "$a")" "$(kib "$(bytes "$a")")"
echo
echo "  (a) capi/size/raise_cost.c: SNP_DURABILITY_NONE, fresh 256 MiB journal, 16-byte name,"
echo "      64-byte arguments; best of 3 passes of 1,000,000 raises, mean ns per raise"
echo "  (b) the same event, SNP_DURABILITY_SYNC: median of 2,000 raises (the device dominates)"
