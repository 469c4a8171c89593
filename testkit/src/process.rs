//! A test binary that is its own child: spawning it, killing it at random.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Spawns `child` (this test binary as its own child, stdout piped), reads
/// up to `rng.below(max_lines)` of its report lines, lets it run
/// `rng.below(max_delay_us)` microseconds more, so that the kill lands
/// anywhere inside an operation and not only between two, SIGKILLs it and
/// returns every line it printed.
pub fn kill_at_random(
    child: &mut Command,
    rng: &mut Rng,
    max_lines: u64,
    max_delay_us: u64,
) -> std::result::Result<String, String> {
    let mut child = child
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    let wanted = rng.below(max_lines);
    for _ in 0..wanted {
        if reader.read_line(&mut seen).map_err(|e| e.to_string())? == 0 {
            break;
        }
    }
    let spin = Instant::now();
    let delay = Duration::from_micros(rng.below(max_delay_us));
    while spin.elapsed() < delay {
        std::hint::spin_loop();
    }
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    reader
        .read_to_string(&mut seen)
        .map_err(|e| e.to_string())?;
    Ok(seen)
}

/// The number in the environment variable `key` (0 when unset or not a
/// number): how the parent passes a child its start and seed.
pub fn env_number(key: &str) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
