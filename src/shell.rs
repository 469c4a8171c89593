//! The store shell shared by [`ServiceStore`](crate::ServiceStore) and
//! [`ClientStore`](crate::ClientStore): the lock around a store's state, and
//! the reports that state queues, handed to the failure callback once the
//! lock is released (so the callback may call the store).
//!
//! Three things a caller could do to a store are refused here rather than
//! left to crash or corrupt it:
//! - a call from a forked child on its parent's handle (the journal is the
//!   parent's; see `journal/fork.rs`): [`Error::State`]; closing it is
//!   allowed and writes nothing;
//! - a call from inside the store's own custom backend, which runs under
//!   the store's lock (it would deadlock): [`Error::State`];
//! - a failure callback that calls the store, whose call causes another
//!   report, and so on (a callback that raises an event per capacity drop
//!   into a full store): reports are never delivered recursively. A report
//!   caused by a call the callback makes is queued and delivered after the
//!   callback returns; a report caused while such a queued report is being
//!   delivered is not delivered (that would loop for ever): it is counted
//!   in the statistics like every report, and one last report says how many
//!   were held back.
//!
//! A call whose journal handed its sync over (group commit,
//! `journal/group.rs`) returns only once its writes are durable: the shell
//! releases the lock, hands out the call's reports, then waits on the
//! call's ticket, leading the shared sync if none is running. If that sync
//! fails, it takes the lock again and tells the state, which falls back to
//! level 1 if that journal is still its level 2 (the call still returns
//! its result, now at level 1, as for any fallback).
//!
//! The readers (statistics, mode, level, uids, path) do not take the
//! store's lock: they read a copy of those values (the *view*) that every
//! call publishes before it releases the lock: its values as words behind
//! a sequence lock (`shell/published.rs`), and the file path, which only
//! ever goes away (a fallback, a close), behind a lock of its own taken
//! only then and never held while other code runs. So a reader never waits
//! for a call in progress (it sees the values as of the last call that
//! finished), may be called from inside the store's own backend, and in a
//! forked child cannot hang on a lock a parent thread held at the fork.

mod published;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use uuid::Uuid;

use self::published::Published;
pub(crate) use self::published::{Words, VIEW_WORDS};

use crate::error::{Error, Result};
use crate::journal::{fork_generation, SyncTicket};
use crate::report::{Failure, FailureCallback, FailureKind};

/// What the shell needs from a store's state.
pub(crate) trait StoreState {
    /// The reports queued since the last call, removed from the queue.
    fn take_reports(&mut self) -> Vec<Failure>;
    /// True once the store was closed.
    fn is_closed(&self) -> bool;
    /// What the readers return (see the module docs).
    type View: Copy;
    /// The view of the current state.
    fn view(&self) -> Self::View;
    /// `view` as words (those before the last, which the shell keeps), and
    /// back (a view comes back as it went in).
    fn to_words(view: &Self::View, words: &mut Words);
    fn from_words(words: &Words) -> Self::View;
    /// The store's file, while it has one (readers see it too). It only
    /// ever goes from a file to none (a fallback to level 1, a close),
    /// never to another file.
    fn path(&self) -> Option<&Path>;
    /// The ticket of the sync the last call handed over (group commit), to
    /// wait on once the lock is released; taken out of the state.
    fn take_ticket(&mut self) -> Option<SyncTicket> {
        None
    }
    /// The sync of `ticket` failed with `error`: fall back to level 1 if
    /// the ticket's journal is still the state's level 2.
    fn sync_failed(&mut self, ticket: &SyncTicket, error: std::io::Error) {
        let _ = (ticket, error);
    }
}

/// A store's state behind its lock, with its failure callback.
pub(crate) struct Shell<S: StoreState> {
    state: Mutex<Locked<S>>,
    /// The thread holding `state`'s lock ([`this_thread`]), 0 when none:
    /// written only by that thread, under the lock, so a thread that reads
    /// its own name here holds the lock (a call from inside the store's
    /// backend), and one that reads anything else does not.
    owner: AtomicUsize,
    view: Published,
    /// The file path readers see (see the module docs).
    path: Mutex<Option<PathBuf>>,
    on_failure: Option<FailureCallback>,
    /// The fork generation the store was opened in.
    fork_generation: u64,
}

/// What the store's lock guards: the state, and whether the readers were
/// last given a file path (a path only ever goes away, so that says
/// whether it changed; see `StoreState::path`).
struct Locked<S> {
    state: S,
    has_path: bool,
}

/// How far a thread is into delivering one store's reports.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Stage {
    /// Delivering the reports of a call made by the application.
    Direct,
    /// Delivering reports caused by calls made from the callback.
    Queued,
}

/// One store whose reports this thread is delivering.
struct Delivery {
    store: usize,
    stage: Stage,
    queued: Vec<Failure>,
    held_back: u64,
    held_back_lost: u64,
}

thread_local! {
    /// The stores whose reports this thread is delivering.
    static DELIVERING: RefCell<Vec<Delivery>> = const { RefCell::new(Vec::new()) };
    /// A byte whose address names this thread (see [`this_thread`]).
    static ME: u8 = const { 0 };
}

/// This thread's name for [`Shell`]'s `owner`: the address of a
/// thread-local, which no other live thread shares, and never 0.
fn this_thread() -> usize {
    ME.with(|me| me as *const u8 as usize)
}

/// The store's lock, held by this thread, which `owner` names until
/// dropped (it is cleared before the lock is released).
struct Owned<'a, S> {
    owner: &'a AtomicUsize,
    locked: MutexGuard<'a, Locked<S>>,
}

impl<S> Drop for Owned<'_, S> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Relaxed);
    }
}

/// Ends a delivery when dropped, also if a callback panics.
struct Delivering(usize);

impl Drop for Delivering {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.borrow_mut().retain(|x| x.store != self.0));
    }
}

impl<S: StoreState> Shell<S> {
    /// Wraps `state`, handing the reports it queued while opening to the
    /// callback.
    pub fn new(state: S, on_failure: Option<FailureCallback>) -> Shell<S> {
        let path = state.path().map(Path::to_path_buf);
        let has_path = path.is_some();
        let shell = Shell {
            view: Published::new(&view_words(&state, has_path)),
            path: Mutex::new(path),
            state: Mutex::new(Locked { state, has_path }),
            owner: AtomicUsize::new(0),
            on_failure,
            fork_generation: fork_generation(),
        };
        let (reports, ticket) = {
            let mut locked = shell.state.lock();
            (locked.state.take_reports(), locked.state.take_ticket())
        };
        shell.dispatch(reports);
        shell.settle(ticket);
        shell
    }

    fn id(&self) -> usize {
        self as *const Shell<S> as usize
    }

    /// Runs `op` under the lock (refused with [`Error::Closed`] once the
    /// store is closed), then hands the reports it queued to the callback.
    pub fn with<T>(&self, op: impl FnOnce(&mut S) -> Result<T>) -> Result<T> {
        self.with_any(|state| {
            if state.is_closed() {
                Err(Error::Closed)
            } else {
                op(state)
            }
        })?
    }

    /// As [`Shell::with`], also when the store is closed (for `close`).
    fn with_any<T>(&self, op: impl FnOnce(&mut S) -> T) -> Result<T> {
        let (result, reports, ticket) = {
            let mut owned = self.enter()?;
            let locked = &mut *owned.locked;
            let result = op(&mut locked.state);
            let ticket = locked.state.take_ticket();
            self.publish(locked);
            (result, locked.state.take_reports(), ticket)
        };
        self.dispatch(reports);
        self.settle(ticket);
        Ok(result)
    }

    /// Waits, without the lock, until the sync a call handed over is done
    /// (see the module docs); if it failed, tells the state under the lock
    /// and hands out what that reports.
    fn settle(&self, ticket: Option<SyncTicket>) {
        let Some(ticket) = ticket else {
            return;
        };
        let Err(error) = ticket.wait() else {
            return;
        };
        let reports = {
            let mut owned = self.own();
            let locked = &mut *owned.locked;
            locked.state.sync_failed(&ticket, error);
            self.publish(locked);
            locked.state.take_reports()
        };
        self.dispatch(reports);
    }

    /// Publishes the view of the state (see the module docs); under the
    /// store's lock, which makes this thread the only writer.
    fn publish(&self, locked: &mut Locked<S>) {
        let path = locked.state.path();
        self.view.write(&view_words(&locked.state, path.is_some()));
        // A path never changes to another one (`StoreState::path`), so
        // whether there is one says whether it changed, without comparing
        // the bytes on every call. It goes away after the view said so.
        if locked.has_path != path.is_some() {
            locked.has_path = path.is_some();
            *self.path.lock() = path.map(Path::to_path_buf);
        }
    }

    /// Reads the view (see the module docs).
    ///
    /// In a forked child on the parent's handle it returns the parent's
    /// values as of the fork; it panics if a parent thread was publishing
    /// the view at that instant (that would never end). The C ABI and
    /// Python check [`Shell::check_process`] first.
    pub fn read<T>(&self, op: impl FnOnce(&S::View) -> T) -> T {
        op(&S::from_words(&self.words()))
    }

    /// The published words (see [`Shell::read`]).
    fn words(&self) -> Words {
        let mut tries = 0u32;
        loop {
            if let Some(words) = self.view.try_read() {
                return words;
            }
            if fork_generation() != self.fork_generation {
                panic!("{FORKED_READ}");
            }
            // A call is publishing (a few stores): wait it out, letting the
            // processor go if the writer was preempted; in the end by
            // sleeping, as a writer of a lower priority than this thread
            // gets no processor from a yield.
            tries += 1;
            if tries < 100 {
                std::hint::spin_loop();
            } else if tries < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    /// The file path readers see (as [`Shell::read`]). The view says
    /// whether there is one, so that a reader never sees the path of a
    /// file the view's level or closed flag already left.
    pub fn read_path(&self) -> Option<PathBuf> {
        if self.words()[PATH_WORD] == 0 {
            return None;
        }
        if fork_generation() == self.fork_generation {
            return self.path.lock().clone();
        }
        self.path.try_lock().expect(FORKED_READ).clone()
    }

    /// Refuses ([`Error::State`]) a call from a forked child on its
    /// parent's handle.
    pub fn check_process(&self) -> Result<()> {
        if fork_generation() != self.fork_generation {
            return Err(Error::state(
                "this store was opened by the parent process and this is a forked child: a \
                 child must not use its parent's handle (it would write the parent's file \
                 behind its back). Open a store of the child's own, after the parent has \
                 closed it if it is the same file",
            ));
        }
        Ok(())
    }

    /// Runs `close` under the lock; in a forked child on the parent's
    /// handle does nothing (the file is the parent's) and returns `in_child`.
    pub fn close<T>(&self, in_child: T, close: impl FnOnce(&mut S) -> T) -> Result<T> {
        if self.check_process().is_err() {
            return Ok(in_child);
        }
        self.with_any(close)
    }

    /// Refuses a call from a forked child on its parent's handle, and a
    /// call from inside the store's own backend (this thread holds the
    /// lock already); otherwise takes the lock.
    fn enter(&self) -> Result<Owned<'_, S>> {
        self.check_process()?;
        if self.owner.load(Ordering::Relaxed) == this_thread() {
            return Err(Error::state(
                "the store was called from inside its own custom backend (or from a function \
                 the store is running): the backend runs under the store's lock, so the call \
                 would deadlock; a backend must only keep bytes",
            ));
        }
        Ok(self.own())
    }

    /// Takes the lock and names this thread its owner.
    fn own(&self) -> Owned<'_, S> {
        let locked = self.state.lock();
        self.owner.store(this_thread(), Ordering::Relaxed);
        Owned {
            owner: &self.owner,
            locked,
        }
    }

    /// Hands `reports` to the callback, or queues them if this thread is
    /// already delivering this store's reports (see the module docs).
    fn dispatch(&self, reports: Vec<Failure>) {
        for report in &reports {
            log_report(report);
        }
        let Some(callback) = &self.on_failure else {
            return;
        };
        if reports.is_empty() {
            return;
        }
        let id = self.id();
        let nested = DELIVERING.with(|d| {
            let mut d = d.borrow_mut();
            let Some(delivery) = d.iter_mut().find(|x| x.store == id) else {
                return false;
            };
            match delivery.stage {
                Stage::Direct => delivery.queued.extend(reports.iter().cloned()),
                Stage::Queued => {
                    delivery.held_back += reports.len() as u64;
                    delivery.held_back_lost += reports.iter().map(|r| r.events_lost).sum::<u64>();
                }
            }
            true
        });
        if nested {
            return;
        }
        DELIVERING.with(|d| {
            d.borrow_mut().push(Delivery {
                store: id,
                stage: Stage::Direct,
                queued: Vec::new(),
                held_back: 0,
                held_back_lost: 0,
            })
        });
        let _delivering = Delivering(id);
        for report in &reports {
            callback(report);
        }
        let queued = DELIVERING.with(|d| {
            let mut d = d.borrow_mut();
            let delivery = d.iter_mut().find(|x| x.store == id).expect("delivering");
            delivery.stage = Stage::Queued;
            std::mem::take(&mut delivery.queued)
        });
        for report in &queued {
            callback(report);
        }
        if let Some(summary) = held_back_summary(id) {
            callback(&summary);
        }
    }
}

/// The view word the shell keeps: 1 while the store has a file path (the
/// stores' own words are the ones before it).
const PATH_WORD: usize = VIEW_WORDS - 1;

/// The words of `state`'s view, and whether it has a file path.
fn view_words<S: StoreState>(state: &S, has_path: bool) -> Words {
    let mut words = [0; VIEW_WORDS];
    S::to_words(&state.view(), &mut words);
    words[PATH_WORD] = u64::from(has_path);
    words
}

/// A uid as two view words, and back.
pub(crate) fn uuid_words(uid: Uuid) -> (u64, u64) {
    let v = uid.as_u128();
    ((v >> 64) as u64, v as u64)
}

pub(crate) fn uuid_of_words(high: u64, low: u64) -> Uuid {
    Uuid::from_u128(u128::from(high) << 64 | u128::from(low))
}

const FORKED_READ: &str = "a forked child read its parent's store while a parent thread was \
                           using it: a child must not use its parent's handle";

/// The report of what a delivery held back, if anything.
fn held_back_summary(id: usize) -> Option<Failure> {
    let (count, lost) = DELIVERING.with(|d| {
        let d = d.borrow();
        let delivery = d.iter().find(|x| x.store == id).expect("delivering");
        (delivery.held_back, delivery.held_back_lost)
    });
    (count > 0).then(|| Failure {
        kind: FailureKind::CallbackLoop,
        message: format!(
            "{count} failure report(s) ({lost} event(s) lost) were caused by calls the failure \
             callback made while it handled earlier reports, and were not passed to it: \
             passing them on would loop (a callback that raises an event into a full store \
             causes one drop per raise). They are counted in the store's statistics"
        ),
        events_lost: 0,
    })
}

/// Writes a report to the `log` facade (target `softnet_persistence`):
/// `error` for a fallback to level 1 or a report that lost events, `info`
/// for events expired by the age limit, `warn` for the others. Every report goes there once, whether or not the store
/// has a callback, so that a store without one is not silent wherever the
/// application installed a logger.
fn log_report(report: &Failure) {
    let level = if report.kind == FailureKind::Fallback || report.events_lost > 0 {
        log::Level::Error
    } else if report.kind == FailureKind::Expired {
        log::Level::Info
    } else {
        log::Level::Warn
    };
    log::log!(target: "softnet_persistence", level, "{report}");
}
