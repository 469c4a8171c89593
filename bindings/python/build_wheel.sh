#!/usr/bin/env bash
# Builds the Python wheel that is shipped (make wheel) into target/wheels/,
# then proves it stands on its own: installed into a fresh venv by a
# process whose PATH has no cargo or rustc, it imports and round-trips an
# event through a journal file.
#
#   bindings/python/build_wheel.sh
#
# The wheel: `maturin build` with pyproject.toml's profile ("dist": fat LTO,
# one codegen unit, opt-level "s") and strip = true; one abi3 wheel for
# CPython 3.8 and later. maturin comes from target/venv-python (made by
# run_tests.sh) when it is there, else from a venv of its own with the same
# pinned version (requirements-dev.txt).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/wheels"
python="${PYTHON:-python3}"

maturin="$root/target/venv-python/bin/maturin"
if [ ! -x "$maturin" ]; then
    venv="$root/target/venv-wheel"
    maturin="$venv/bin/maturin"
    pin="$(grep '^maturin==' "$here/requirements-dev.txt")"
    if [ ! -x "$maturin" ] || [ "$("$maturin" --version | awk '{print "maturin==" $2}')" != "$pin" ]; then
        echo "== installing $pin into $venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pin"
    fi
fi

rm -rf "$out"
mkdir -p "$out"
echo "== maturin build (profile and strip from pyproject.toml)"
(cd "$here" && "$maturin" build --quiet --out "$out")
wheels=("$out"/*.whl)
if [ "${#wheels[@]}" -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    echo "make wheel: expected one wheel in $out, found: ${wheels[*]}" >&2
    exit 1
fi
wheel="${wheels[0]}"

# The extension inside the wheel: stripped (no symbol table, no debug
# info), and nothing else binary beside it.
check="$out/check"
mkdir -p "$check"
"$python" - "$wheel" "$check" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    sos = [i for i in z.infolist() if i.filename.endswith(".so")]
    if [i.filename for i in sos] != ["softnet_persistence/_native.abi3.so"]:
        sys.exit(f"make wheel: unexpected extension modules in the wheel: {[i.filename for i in sos]}")
    z.extract(sos[0], dest)
EOF
ext="$check/softnet_persistence/_native.abi3.so"
if readelf -S "$ext" | grep -Eq '\.symtab|\.debug_'; then
    echo "make wheel: $ext is not stripped" >&2
    exit 1
fi

# Install and import with no Rust toolchain reachable: PATH without any
# directory that has cargo or rustc, and the interpreter called by its
# real path (not through a shim that needs PATH).
interpreter="$("$python" -c 'import sys; print(sys.executable)')"
no_rust_path=""
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
    if [ -n "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ]; then
        no_rust_path="${no_rust_path:+$no_rust_path:}$d"
    fi
done
fresh="$out/venv-install-check"
echo "== installing the wheel into a fresh venv, without cargo or rustc on PATH"
env -i HOME="$HOME" PATH="$no_rust_path" LANG=C.UTF-8 bash -c '
    set -euo pipefail
    if command -v cargo >/dev/null || command -v rustc >/dev/null; then
        echo "make wheel: cargo or rustc is still on PATH" >&2; exit 1
    fi
    "$1" -m venv "$2"
    "$2/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps "$3"
    cd /
    "$2/bin/python" - <<EOF
import tempfile, uuid
import softnet_persistence as snp
service_uid = uuid.uuid4()
with tempfile.TemporaryDirectory() as d:
    with snp.ServiceStore.open_file(d, service_uid) as store:
        uid = store.raise_event(snp.EventKind.QUEUEING, "Temperature", b"21.5")
    with snp.ServiceStore.open_file(d, service_uid) as store:
        event = store.peek()
        assert event is not None and event.uid == uid and event.args == b"21.5", event
        store.ack(event.uid)
print("the wheel works without a Rust toolchain:", snp.__file__)
EOF
' _ "$interpreter" "$fresh" "$wheel"
rm -rf "$fresh" "$check"

size=$(stat -c %s "$wheel")
ext_size=$("$python" -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("softnet_persistence/_native.abi3.so").file_size)' "$wheel")
echo "wheel: $(basename "$wheel"): $size bytes ($((size / 1024)) KiB); the extension in it: $ext_size bytes ($((ext_size / 1024)) KiB), stripped"
