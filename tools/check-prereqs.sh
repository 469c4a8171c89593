#!/usr/bin/env bash
# Checks what `make demo`, `make test`, `make cross` or a SMALL=1 build
# needs before anything is built, and names each missing tool on a line of
# its own with the command that installs it on Debian/Ubuntu.
#
#   tools/check-prereqs.sh demo|test|cross|small        exit 1 when something is missing
#   tools/check-prereqs.sh --apt demo|test|cross|small  print the missing Debian packages
#                                                       (.ci/run installs them)
#
# CC and CXX name the compilers (as in the Makefile); CROSS_TARGETS the Rust
# targets of `make cross` (docs/CROSS.md); NIGHTLY the toolchain of a
# SMALL=1 build. A new requirement is one `has ... || lack ...` line below.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

apt_only=0
if [ "${1:-}" = --apt ]; then apt_only=1; shift; fi
goal=${1:-test}
case "$goal" in demo | test | cross | small) ;; *) echo "usage: $0 [--apt] demo|test|cross|small" >&2; exit 2 ;; esac

lines=()
packages=()
# lack WHAT DEBIAN-PACKAGE|- INSTALL-COMMAND
lack() {
    lines+=("$1 is missing; install it with: $3")
    if [ "$2" != - ]; then packages+=("$2"); fi
}
has() { command -v "$1" >/dev/null 2>&1; }

rust_want=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if ! has cargo || ! has rustc; then
    lack "Rust (cargo, rustc >= $rust_want)" - \
        "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
else
    rust_have=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$rust_want" "${rust_have%%-*}" | sort -V | head -1)" != "$rust_want" ]; then
        lack "rustc >= $rust_want (found $rust_have)" - "rustup update stable"
    fi
fi
has "${CC:-cc}" || lack "a C compiler (${CC:-cc})" gcc "sudo apt-get install gcc"

if [ "$goal" = cross ]; then
    for t in ${CROSS_TARGETS:-armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu}; do
        # Debian's names: cross compiler prefix, libc architecture, qemu-user binary.
        case "$t" in
            armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf arch=armhf qemu=qemu-arm ;;
            aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu arch=arm64 qemu=qemu-aarch64 ;;
            *) continue ;; # tools/cross.sh names the targets it knows
        esac
        # The target's standard library, where this rustc looks for it.
        if has rustc && ! ls "$(rustc --print target-libdir --target "$t" 2>/dev/null)"/libstd-*.rlib \
            >/dev/null 2>&1; then
            if has rustup; then
                lack "the Rust standard library for $t" - "rustup target add $t"
            else
                lack "the Rust standard library for $t (this Rust has no rustup)" - \
                    "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh && rustup target add $t"
            fi
        fi
        has "$gnu-gcc" || lack "$gnu-gcc" "gcc-$gnu" "sudo apt-get install gcc-$gnu"
        [ -f "/usr/$gnu/include/stdio.h" ] ||
            lack "the $arch C library for cross builds (/usr/$gnu)" "libc6-dev-$arch-cross" \
                "sudo apt-get install libc6-dev-$arch-cross"
        { has "$qemu" || has "$qemu-static"; } ||
            lack "$qemu (qemu-user)" qemu-user "sudo apt-get install qemu-user"
    done
fi

if [ "$goal" = small ]; then
    # make dist-lib SMALL=1 compiles the standard library from source: a
    # nightly toolchain (for -Zbuild-std) and its rust-src component.
    nightly=${NIGHTLY:-$(make -s print-nightly)} # the Makefile pins it
    install_nightly="rustup toolchain install $nightly --profile minimal --component rust-src"
    if ! has rustup; then
        lack "rustup (a SMALL=1 build needs the $nightly toolchain)" - \
            "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh && $install_nightly"
    elif ! sysroot=$(rustup run "$nightly" rustc --print sysroot 2>/dev/null); then
        lack "the Rust toolchain $nightly" - "$install_nightly"
    elif [ ! -f "$sysroot/lib/rustlib/src/rust/library/std/Cargo.toml" ]; then
        lack "the rust-src component of $nightly" - "rustup component add rust-src --toolchain $nightly"
    fi
fi

if [ "$goal" = test ]; then
    has "${CXX:-c++}" || lack "a C++ compiler (${CXX:-c++})" g++ "sudo apt-get install g++"
    if has cargo; then
        cargo fmt --version >/dev/null 2>&1 || lack rustfmt - "rustup component add rustfmt"
        cargo clippy --version >/dev/null 2>&1 || lack clippy - "rustup component add clippy"
        cargo fuzz --version >/dev/null 2>&1 ||
            lack cargo-fuzz - "cargo install cargo-fuzz --locked --version 0.13.2"
    fi
    if ! has python3; then
        lack python3 "python3 python3-venv" "sudo apt-get install python3 python3-venv"
    elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        lack "python3's venv with pip (ensurepip)" python3-venv "sudo apt-get install python3-venv"
    fi
    has valgrind || lack valgrind valgrind "sudo apt-get install valgrind"
    # The MQTT tests (bindings/python/tests/test_mqtt*.py) start their own
    # broker; Debian puts it in /usr/sbin, often not on a user's PATH.
    { has mosquitto || [ -x /usr/sbin/mosquitto ]; } ||
        lack "mosquitto (the MQTT broker of the Python MQTT tests)" mosquitto \
            "sudo apt-get install mosquitto"
    # The C MQTT examples (make mqtt-examples, run by the MQTT interop test)
    # link Paho C's MQTTAsync.
    echo '#include <MQTTAsync.h>' | "${CC:-cc}" -E -x c - >/dev/null 2>&1 ||
        lack "Paho C (MQTTAsync.h, the C MQTT examples' client library)" libpaho-mqtt-dev \
            "sudo apt-get install libpaho-mqtt-dev"
    has pkg-config || lack pkg-config pkg-config "sudo apt-get install pkg-config"
    has cmake || lack cmake cmake "sudo apt-get install cmake"
    { has readelf && has nm && has strip; } ||
        lack "binutils (readelf, nm, strip)" binutils "sudo apt-get install binutils"
fi

if [ "$apt_only" = 1 ]; then
    [ "${#packages[@]}" = 0 ] || printf '%s\n' "${packages[@]}" | sort -u | tr '\n' ' '
    exit 0
fi
label="make $goal"
if [ "$goal" = small ]; then label="make ... SMALL=1"; fi
if [ "${#lines[@]}" = 0 ]; then
    echo "$label: prerequisites found"
    exit 0
fi
for line in "${lines[@]}"; do echo "$label: $line" >&2; done
echo "$label: ${#lines[@]} missing prerequisite(s), listed above; nothing was built" >&2
exit 1
