"""Per-call overhead of the Python binding: the raise_event + peek + ack round
trip from Python, beside the same loop run straight from the Rust API.

    target/venv-python/bin/python bindings/python/bench.py [--rounds N] [--no-rust]

(run bindings/python/run_tests.sh once first: it builds the module into
target/venv-python). The workload is docs/ARCHITECTURE.md, "Measuring"'s: a 16-byte name,
64-byte arguments; the file store uses durability "none", so the figures
are the cost of the code, not of the device. The Rust figures come from
``cargo run --release --example py_bench_reference``. Each figure is the
median of 5 runs; the target is a round trip of at most 3 us from Python.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable, Dict, List

import softnet_persistence as snp

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAME = "Temperature_0001"
ARGS = b"x" * 64
KIND = snp.EventKind.QUEUEING
TARGET_US = 3.0


def median_us(run: Callable[[int], None], rounds: int, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        run(rounds)
        samples.append((time.perf_counter_ns() - start) / 1000 / rounds)
    return statistics.median(samples)


def measure(store: snp.ServiceStore, rounds: int) -> Dict[str, float]:
    raise_event, peek, ack = store.raise_event, store.peek, store.ack

    def round_trips(n: int) -> None:
        for _ in range(n):
            raise_event(KIND, NAME, ARGS)
            event = peek()
            assert event is not None
            ack(event.uid)

    def raises(n: int) -> None:
        store.set_storage_mode()
        for _ in range(n):
            raise_event(KIND, NAME, ARGS)
        store.reset()

    round_trips(rounds // 10)  # warm up
    round_trip = median_us(round_trips, rounds)
    return {
        "round_trip_us": round_trip,
        "events_per_s": 1e6 / round_trip,
        "raise_us": median_us(raises, 2000),
    }


def rust_figures(rounds: int) -> Dict[str, Dict[str, float]]:
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "--example", "py_bench_reference", "--", str(rounds)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures = {}
    for line in out.splitlines():
        row = json.loads(line)
        figures[row.pop("store")] = row
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100_000)
    parser.add_argument("--no-rust", action="store_true", help="skip the Rust reference")
    options = parser.parse_args()

    results: Dict[str, Dict[str, float]] = {}
    memory = snp.ServiceStore.open_memory(capacity=1 << 20)
    results["memory"] = measure(memory, options.rounds)
    memory.close()
    with tempfile.TemporaryDirectory() as directory:
        with snp.ServiceStore.open_file(
            directory, uuid.uuid4(), capacity=1 << 20, durability="none"
        ) as store:
            results["file, durability none"] = measure(store, options.rounds)
    rust = {} if options.no_rust else rust_figures(options.rounds)

    print(f"raise_event + peek + ack round trip, {options.rounds} rounds, median of 5 runs")
    header = f"{'store':<24}{'':>10}{'round trip':>12}{'events/s':>12}{'raise':>10}"
    print(header)
    print("-" * len(header))
    worst: List[float] = []
    for label, py in results.items():
        rows = [("python", py)]
        if label in rust:
            rows.append(("rust", rust[label]))
        for side, r in rows:
            print(
                f"{label if side == 'python' else '':<24}{side:>10}"
                f"{r['round_trip_us']:>9.2f} us{r['events_per_s']:>12,.0f}{r['raise_us']:>7.2f} us"
            )
        if label in rust:
            overhead = py["round_trip_us"] - rust[label]["round_trip_us"]
            print(f"{'':<24}{'overhead':>10}{overhead:>9.2f} us per round trip (3 calls)")
        worst.append(py["round_trip_us"])
    verdict = "met" if max(worst) <= TARGET_US else "MISSED"
    print(f"target: round trip <= {TARGET_US} us from Python: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
