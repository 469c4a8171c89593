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
//! queues one range for the thread. Whatever the thread has not prepared in
//! time is faulted in by the write itself, as before: preparing is a hint,
//! never needed for correctness, and its errors are ignored (a kernel
//! before Linux 5.14 refuses the advice: every write faults, as without
//! it).
//!
//! Only for `None` and `Batch`: with `Sync`, every operation's msync
//! (about 100 µs) write-protects its pages anyway, and pages made dirty
//! ahead of the head could be written back early, adding device writes to
//! each raise.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

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
    /// The queue the thread serves, once it runs; `None` before the first
    /// request, or after the thread could not be started.
    requests: Option<Arc<Queue>>,
    /// Starting the thread failed, or it ended: no more tries.
    unavailable: bool,
}

/// The ranges the journal asked for and the thread has not taken yet.
/// (A mutex and a condvar rather than `std::sync::mpsc`: the channel's
/// code was 8 KiB of the shipped library, for one message per 256 KiB.)
#[derive(Default)]
struct Queue {
    state: Mutex<Requests>,
    changed: Condvar,
}

#[derive(Default)]
struct Requests {
    /// (file offset, length), oldest first.
    ranges: Vec<(usize, usize)>,
    /// The journal let go (closed or replaced): the thread ends once it
    /// has prepared what was queued (at most a chunk or two).
    closed: bool,
    /// The thread ended (only if it panicked while the journal was open).
    ended: bool,
}

impl Queue {
    /// The thread's loop: prepares each range queued until the journal
    /// lets go.
    fn serve(&self, syncer: &dyn Syncer) {
        /// Marks the thread as ended, also if `prefault` panics.
        struct Ended<'a>(&'a Queue);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                self.0.state.lock().ended = true;
            }
        }
        let _ended = Ended(self);
        loop {
            let ranges = {
                let mut state = self.state.lock();
                while state.ranges.is_empty() && !state.closed {
                    self.changed.wait(&mut state);
                }
                if state.ranges.is_empty() {
                    return;
                }
                std::mem::take(&mut state.ranges)
            };
            for (offset, len) in ranges {
                syncer.prefault(offset, len);
            }
        }
    }
}

impl Drop for Prefault {
    fn drop(&mut self) {
        if let Some(queue) = &self.requests {
            queue.state.lock().closed = true;
            queue.changed.notify_one();
        }
    }
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

    /// True once no range will be prepared any more (the thread could not
    /// be started, or ended).
    #[cfg(test)]
    pub(super) fn unavailable(&self) -> bool {
        self.unavailable
    }

    /// Hands `[offset, offset + len)` of the file to the thread.
    fn request(&mut self, offset: u64, len: u64) {
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return;
        };
        if self.requests.is_none() {
            self.start();
        }
        let Some(queue) = &self.requests else {
            return;
        };
        let mut state = queue.state.lock();
        if state.ended {
            // The thread ended only if it panicked: the writes fault
            // themselves, as without it.
            drop(state);
            self.requests = None;
            self.unavailable = true;
            return;
        }
        state.ranges.push((offset, len));
        drop(state);
        queue.changed.notify_one();
    }

    /// Starts the thread. It ends when the journal drops this window (the
    /// journal is closed or replaced), once the queue is empty; it holds
    /// the map alive through the syncer until then.
    fn start(&mut self) {
        let queue = Arc::new(Queue::default());
        let (served, syncer) = (Arc::clone(&queue), Arc::clone(&self.syncer));
        let spawned = std::thread::Builder::new()
            .name("snp-prefault".into())
            .spawn(move || served.serve(&*syncer));
        match spawned {
            Ok(_) => self.requests = Some(queue),
            // No thread (the process is out of threads or memory): fresh
            // pages fault on the writing thread, as without it.
            Err(_) => self.unavailable = true,
        }
    }
}
