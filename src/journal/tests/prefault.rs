//! Pages prepared ahead of the head (`prefault.rs`): the requested ranges
//! follow the head around the ring, one after the other, never outside the
//! ring; and a journal whose pages are prepared keeps every record intact.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::journal::device::Syncer;
use crate::journal::prefault::{Prefault, CHUNK};

/// Records the ranges it is asked to prepare.
struct Recorder(Mutex<mpsc::Sender<(usize, usize)>>);

impl Syncer for Recorder {
    fn sync(&self, _offset: usize, _len: usize) -> io::Result<()> {
        Ok(())
    }

    fn prefault(&self, offset: usize, len: usize) {
        self.0.lock().unwrap().send((offset, len)).unwrap();
    }
}

/// Moves a head around a ring of `size` bytes at file offset `base` in
/// steps of `step`, and returns the ranges prepared, in order.
fn requests(size: u64, base: u64, step: u64, steps: u64) -> Vec<(usize, usize)> {
    let (sent, received) = mpsc::channel();
    let mut prefault = Prefault::new(Arc::new(Recorder(Mutex::new(sent))));
    let mut head = 0;
    let mut expected = 0;
    let chunk = CHUNK.min(size / 4);
    let mut ahead = 0u64;
    for _ in 0..steps {
        head = (head + step) % size;
        prefault.advanced(step, head, size, base);
        // The model: a chunk is requested whenever less than half of one
        // is left ahead of the head; it is one range, or two at the wrap.
        ahead = ahead.saturating_sub(step);
        if ahead < chunk / 2 {
            let start = (head + ahead) % size;
            expected += if start + chunk > size { 2 } else { 1 };
            ahead += chunk;
        }
    }
    drop(prefault);
    (0..expected)
        .map(|_| received.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect()
}

#[test]
fn ranges_follow_the_head_around_the_ring_without_gaps() {
    let (size, base) = (3 * CHUNK + 12_345, 8192u64);
    let steps = 40_000;
    let step = 119;
    let got = requests(size, base, step, steps);
    assert!(got.len() > 18, "{} requests", got.len());
    // Every range inside the ring; each starts where the last one ended
    // (wrapping to the ring's start); together they run ahead of the head.
    let mut next = base as usize + step as usize;
    let mut covered = 0u64;
    for &(offset, len) in &got {
        assert!(offset >= base as usize && offset + len <= (base + size) as usize);
        assert!(len > 0);
        if next == (base + size) as usize {
            next = base as usize;
        }
        assert_eq!(offset, next, "ranges {got:?}");
        next = offset + len;
        covered += len as u64;
    }
    let moved = steps * step;
    assert!(
        covered >= moved,
        "prepared {covered} bytes, the head moved {moved}"
    );
    assert!(
        covered <= moved + 2 * CHUNK,
        "prepared {covered}, the head moved {moved}"
    );
}

#[test]
fn a_small_ring_is_prepared_a_quarter_at_a_time() {
    let size = 64 * 1024;
    let got = requests(size, 8192, 100, 2_000);
    assert!(got.iter().all(|&(_, len)| len as u64 <= size / 4));
    assert!(got.iter().map(|&(_, len)| len as u64).sum::<u64>() >= 200_000);
}

/// Panics when asked to prepare.
struct Panicker;

impl Syncer for Panicker {
    fn sync(&self, _offset: usize, _len: usize) -> io::Result<()> {
        Ok(())
    }

    fn prefault(&self, _offset: usize, _len: usize) {
        panic!("prefault failed");
    }
}

#[test]
fn a_thread_that_panicked_is_not_asked_again_and_the_writer_goes_on() {
    let mut prefault = Prefault::new(Arc::new(Panicker));
    let (size, step) = (64 * CHUNK, 4096);
    let mut head = 0;
    let started = std::time::Instant::now();
    // The first request starts the thread, which panics on it; a later
    // request finds it ended and stops asking.
    while !prefault.unavailable() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the ended thread was never noticed"
        );
        head = (head + step) % size;
        prefault.advanced(step, head, size, 8192);
        std::thread::yield_now();
    }
    for _ in 0..1000 {
        head = (head + step) % size;
        prefault.advanced(step, head, size, 8192);
    }
    assert!(prefault.unavailable());
}
