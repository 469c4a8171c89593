//! Pages prepared ahead of the head, off the caller's path (issue 12).
//!
//! The first write to a page of the map takes a page fault: the kernel
//! finds or allocates the page-cache page and asks the file system to make
//! it writable (`page_mkwrite`). A page the kernel wrote back is
//! write-protected again, so it faults again at its next write. With
//! `Durability::None` or `Batch` a raise is otherwise a memory copy of a
//! fraction of a microsecond, and these faults (several microseconds each,
//! one per page) were the slowest raises: a p99 of 13.8 µs on a fresh
//! journal.
//!
//! So the journal keeps a window of the ring ahead of its head prepared: a
//! thread of its own (started at the first write that needs it) asks the
//! kernel to fault the pages in for writing (`MADV_POPULATE_WRITE`, through
//! the device's [`Syncer::prefault`]) before the head reaches them. The
//! caller's path only counts bytes and, once per [`CHUNK`] of records,
//! hands one range over a channel. Whatever the thread has not prepared in
//! time is faulted in by the write itself, as before: preparing is a hint,
//! never needed for correctness, and its errors are ignored (a kernel
//! before Linux 5.14 refuses the advice: every write faults, as without
//! it).
//!
//! Only for `None` and `Batch`: with `Sync`, every operation's msync
//! (about 100 µs) write-protects its pages anyway, and pages made dirty
//! ahead of the head could be written back early, adding device writes to
//! each raise.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use crate::journal::device::Syncer;

/// Ring bytes prepared per request: 256 KiB, about 2,000 records of 100
/// bytes. A request is made when less than half of it is left ahead of the
/// head, so the thread has the time of about 1,000 raises to prepare it.
pub(super) const CHUNK: u64 = 256 * 1024;

/// The window ahead of one journal's head, and the thread preparing it.
pub(super) struct Prefault {
    syncer: Arc<dyn Syncer>,
    /// Ring bytes after the head already requested.
    ahead: u64,
    /// Requests to the thread, once it runs; `None` before the first
    /// request, or after the thread could not be started.
    requests: Option<Sender<(usize, usize)>>,
    /// Starting the thread failed: no more tries.
    unavailable: bool,
}

impl Prefault {
    /// A window for the device whose syncer this is.
    pub(super) fn new(syncer: Arc<dyn Syncer>) -> Prefault {
        Prefault {
            syncer,
            ahead: 0,
            requests: None,
            unavailable: false,
        }
    }

    /// The head moved `placed` bytes forward and is now at ring position
    /// `head` of a ring of `size` bytes starting at file offset
    /// `data_offset`: requests the next chunk when the window runs low.
    pub(super) fn advanced(&mut self, placed: u64, head: u64, size: u64, data_offset: u64) {
        self.ahead = self.ahead.saturating_sub(placed);
        let chunk = CHUNK.min(size / 4);
        if self.unavailable || chunk == 0 || self.ahead >= chunk / 2 {
            return;
        }
        let start = (head + self.ahead) % size;
        self.ahead += chunk;
        // Split where the ring wraps.
        let first = chunk.min(size - start);
        self.request(data_offset + start, first);
        if first < chunk {
            self.request(data_offset, chunk - first);
        }
    }

    /// Hands `[offset, offset + len)` of the file to the thread.
    fn request(&mut self, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return;
        };
        if self.requests.is_none() {
            self.start();
        }
        if let Some(requests) = &self.requests {
            // The thread ended only if it panicked: the writes fault
            // themselves, as without it.
            if requests.send((offset, len)).is_err() {
                self.requests = None;
                self.unavailable = true;
            }
        }
    }

    /// Starts the thread. It ends when the journal drops its sender (the
    /// journal is closed or replaced), after the request it is preparing;
    /// it holds the map alive through the syncer until then.
    fn start(&mut self) {
        let (requests, received) = mpsc::channel::<(usize, usize)>();
        let syncer = Arc::clone(&self.syncer);
        let spawned = std::thread::Builder::new()
            .name("snp-prefault".into())
            .spawn(move || {
                while let Ok((offset, len)) = received.recv() {
                    syncer.prefault(offset, len);
                }
            });
        match spawned {
            Ok(_) => self.requests = Some(requests),
            // No thread (the process is out of threads or memory): fresh
            // pages fault on the writing thread, as without it.
            Err(_) => self.unavailable = true,
        }
    }
}
