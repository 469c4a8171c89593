//! What `fork()` does to the library, and how the library knows it runs in
//! a forked child.
//!
//! A child process starts with a copy of every store its parent had open:
//! the same journal file descriptors (so the same open file descriptions
//! and the same `flock`), the same map, the same generator state. Left
//! alone, a child using such a handle writes the parent's journal behind
//! its back, keeps the lock after the parent closes (so the parent cannot
//! reopen until the child exits), and draws the same uids as its siblings.
//!
//! So the library registers a `pthread_atfork` child handler, once, before
//! it opens anything. In the child it:
//! - bumps a fork generation: the stores and the uid generator remember
//!   the generation they were made in; a store refuses every call from
//!   another generation (the handle belongs to the parent), and the uid
//!   generator reseeds from the operating system;
//! - points every registered journal descriptor of the child at
//!   `/dev/null` (`dup3`), so the child holds no reference to the parent's
//!   open file description: the lock is the parent's alone, and is released
//!   when the parent closes. The descriptor numbers stay valid in the
//!   child, so dropping the copied handles closes `/dev/null`, never a
//!   descriptor the child has reused for something else.
//! - replaces every registered journal map with anonymous memory at the
//!   same address (`sigbus.rs`): a shared map holds the open file
//!   description too, and with it the lock.
//!
//! The child runs that handler when it is first scheduled, which may be
//! after the parent has gone on; so the parent also releases its lock
//! explicitly when it closes a file (`file.rs`), which releases it for a
//! child still sharing the open file description.
//!
//! The handler uses only async-signal-safe calls (`open`, `dup3`, `close`,
//! `mmap`)
//! and atomics, as a handler run in the child of a multi-threaded process
//! must. The registry is a fixed array of atomics: registering never blocks,
//! and a full registry (more than `SLOTS` open files) only means those
//! files keep the old behaviour in a child (their lock lasts until the child
//! exits), which the stores still refuse to use.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

use uuid::Uuid;

/// Journal files open at once that a fork detaches in the child.
const SLOTS: usize = 4096;

static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Each slot holds a registered descriptor plus one, 0 when free: zero
/// initialised, the table takes no room in the library file (`.bss`).
static FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static REGISTER: Once = Once::new();

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a NUL-terminated path and flags; `open` is async-signal-safe.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null >= 0 {
        detach_fds(null);
    }
    crate::journal::sigbus::detach_maps_in_child();
}

/// Points every registered descriptor at `null`, then closes `null`.
fn detach_fds(null: RawFd) {
    for slot in &FDS {
        let fd = slot.load(Ordering::SeqCst) - 1;
        if fd >= 0 {
            // SAFETY: `fd` is a descriptor this process had open at the fork
            // (registered until just before it is closed); `dup3` replaces
            // what it refers to and is async-signal-safe.
            unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
        }
    }
    // SAFETY: `null` is the descriptor opened by the caller, ours to close.
    unsafe { libc::close(null) };
}

fn ensure_registered() {
    REGISTER.call_once(|| {
        // SAFETY: registers a child handler that only uses async-signal-safe
        // calls and atomics; no prepare or parent handler.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        // ENOMEM is the only documented failure: then forks are not
        // detected, as before this module existed.
        debug_assert_eq!(rc, 0);
    });
}

/// The fork generation of this process: 0 in a process that was not forked
/// from one that used the library, one more in each forked child.
pub(crate) fn generation() -> u64 {
    ensure_registered();
    GENERATION.load(Ordering::SeqCst)
}

/// A journal descriptor registered for detaching in forked children, until
/// dropped. Drop it before the descriptor is closed.
#[derive(Debug)]
pub(crate) struct Detached {
    slot: Option<usize>,
    generation: u64,
}

impl Detached {
    /// True in the process that registered the descriptor; false in a
    /// forked child, which must not release the parent's lock or remove
    /// the parent's files when it drops its copy.
    pub(crate) fn in_owner(&self) -> bool {
        generation() == self.generation
    }
}

/// Registers `fd` (see [`Detached`]).
pub(crate) fn detach_in_children(fd: RawFd) -> Detached {
    ensure_registered();
    let slot = FDS.iter().position(|s| {
        s.compare_exchange(0, fd + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    Detached {
        slot,
        generation: GENERATION.load(Ordering::SeqCst),
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            FDS[slot].store(0, Ordering::SeqCst);
        }
    }
}

/// A per-thread generator of random uids, reseeded from the operating
/// system in a forked child (xoshiro256**: uids must be unique, not
/// secret; the 256-bit seed comes from the OS).
struct UidGen {
    generation: u64,
    state: [u64; 4],
}

impl UidGen {
    fn seeded() -> UidGen {
        // Two OS-random v4 uids (uuid draws them from getrandom).
        let a = Uuid::new_v4().as_u64_pair();
        let b = Uuid::new_v4().as_u64_pair();
        UidGen {
            generation: GENERATION.load(Ordering::SeqCst),
            state: [a.0, a.1 | 1, b.0, b.1],
        }
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

thread_local! {
    static UIDS: Cell<Option<UidGen>> = const { Cell::new(None) };
}

/// A new random (version 4) uid, unique across threads and forked
/// processes.
pub(crate) fn new_uid() -> Uuid {
    let generation = generation();
    UIDS.with(|cell| {
        let mut gen = match cell.take() {
            Some(g) if g.generation == generation => g,
            _ => UidGen::seeded(),
        };
        let (hi, lo) = (gen.next(), gen.next());
        cell.set(Some(gen));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_le_bytes());
        bytes[8..].copy_from_slice(&lo.to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_version_4_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let uid = new_uid();
            assert_eq!(uid.get_version_num(), 4);
            assert!(seen.insert(uid));
        }
    }

    #[test]
    fn threads_draw_different_uids() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| new_uid()).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::HashSet::new();
        for h in handles {
            for uid in h.join().unwrap() {
                assert!(all.insert(uid));
            }
        }
    }
}
