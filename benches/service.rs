//! Service store benchmarks.
fn main() {}
