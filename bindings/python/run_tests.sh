#!/usr/bin/env bash
# Builds the softnet_persistence Python module into a virtual environment of
# its own (target/venv-python) and runs its checks: pytest, the stubs check
# (mypy.stubtest) and mypy --strict on the package and the Python examples.
#
#   bindings/python/run_tests.sh [extra pytest arguments]
#   bindings/python/run_tests.sh --build-only   the venv and the module, no tests
#                                               (make mqtt-demo)
#
# Idempotent: the venv and its pinned tools (requirements-dev.txt) are made
# once and reinstalled only when the pins change; cargo rebuilds only what
# changed. PYTHON picks the interpreter for a new venv (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/venv-python"
requirements="$here/requirements-dev.txt"
stamp="$venv/.requirements-dev.txt"

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
if ! cmp -s "$requirements" "$stamp"; then
    echo "== installing the pinned tools"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"
cd "$here"

echo "== maturin develop --release"
maturin develop --release --quiet
if [ "${1:-}" = --build-only ]; then exit 0; fi

echo "== pytest"
python -m pytest -q "$@"

echo "== stubs check"
python -m mypy.stubtest softnet_persistence --allowlist "$here/stubtest-allowlist.txt"
python -m mypy --strict --cache-dir "$root/target/mypy-cache" \
    python/softnet_persistence "$root/examples/python"
