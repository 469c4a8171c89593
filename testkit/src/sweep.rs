//! Sweeps: many cases run in one test, their failures collected; and the
//! damage a sweep does to a file.

use std::any::Any;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::rng::Rng;

/// Flips 1 to 4 random bits of `bytes`, each one half the time anywhere
/// and half the time in the first `used` bytes (where the header and the
/// records are: most of a file is unused ring); returns the bit numbers.
pub fn flip_random_bits(bytes: &mut [u8], used: u64, rng: &mut Rng) -> Vec<u64> {
    let len = bytes.len() as u64;
    let mut bits = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let span = if rng.next_u64() & 1 == 0 { len } else { used };
        let bit = rng.below(span * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        bits.push(bit);
    }
    bits
}

/// The message of a caught panic, if it has one.
pub fn panic_message(payload: &(dyn Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
}

/// Runs the cases of a sweep and collects their failures, each with the
/// case that failed, so that one run shows all of them (up to a limit).
#[derive(Default)]
pub struct Sweep {
    failures: Vec<String>,
    cases: usize,
    skipped: usize,
}

impl Sweep {
    const LIMIT: usize = 12;

    pub fn case(&mut self, what: impl Display, f: impl FnOnce()) {
        self.cases += 1;
        if self.failures.len() >= Sweep::LIMIT {
            self.skipped += 1;
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            let msg =
                panic_message(&*payload).unwrap_or_else(|| "(panic without a message)".to_string());
            self.failures.push(format!("{what}: {msg}"));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed{}:\n  {}",
            self.failures.len(),
            self.cases,
            if self.skipped > 0 {
                format!(" ({} cases not run after the first failures)", self.skipped)
            } else {
                String::new()
            },
            self.failures.join("\n  ")
        );
    }
}
