//! The Rust side of the Python binding benchmark (bindings/python/bench.py):
//! times the same raise + peek + ack round trip straight from the Rust API,
//! so the Python figures can be printed beside it and the binding's
//! overhead read off.
//!
//! ```sh
//! cargo run --release --example py_bench_reference -- [rounds]
//! ```
//! Prints one JSON object per line: `{"store": "...", "round_trip_us": ...,
//! "events_per_s": ..., "raise_us": ...}`. Workload as in docs/ARCHITECTURE.md, "Measuring":
//! a 16-byte name and 64-byte arguments, durability None for the file.

use std::time::Instant;

use softnet_persistence::{Durability, EventKind, ServiceOptions, ServiceStore, Uuid};

const NAME: &str = "Temperature_0001";
const ARGS: [u8; 64] = [b'x'; 64];

/// Median of `runs` timings of `rounds` round trips, in microseconds each.
fn time_round_trips(store: &ServiceStore, rounds: u32, runs: usize) -> f64 {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..rounds {
            store.raise(EventKind::Queueing, NAME, &ARGS).unwrap();
            let event = store.peek().unwrap().unwrap();
            store.ack(event.uid).unwrap();
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds));
    }
    median(samples)
}

/// Median time of one raise (storage mode, backlog growing then reset).
fn time_raises(store: &ServiceStore, rounds: u32, runs: usize) -> f64 {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        store.set_storage_mode().unwrap();
        let start = Instant::now();
        for _ in 0..rounds {
            store.raise(EventKind::Queueing, NAME, &ARGS).unwrap();
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds));
        store.reset().unwrap();
    }
    median(samples)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn report(label: &str, store: &ServiceStore, rounds: u32) {
    time_round_trips(store, rounds / 10, 1); // warm up
    let round_trip = time_round_trips(store, rounds, 5);
    let raise = time_raises(store, 2000, 5);
    println!(
        "{{\"store\": \"{label}\", \"round_trip_us\": {round_trip:.3}, \"events_per_s\": {:.0}, \
         \"raise_us\": {raise:.3}}}",
        1e6 / round_trip
    );
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("rounds must be a number"))
        .unwrap_or(100_000);
    let options = ServiceOptions {
        memory_capacity: 1 << 20,
        capacity: 1 << 20,
        durability: Durability::None,
        ..ServiceOptions::default()
    };
    let memory = ServiceStore::open_memory(&options).unwrap();
    report("memory", &memory, rounds);

    let dir = tempfile::tempdir().unwrap();
    let file = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &options).unwrap();
    report("file, durability none", &file, rounds);
}
