//! Group commit: the syncs of `Durability::Sync` operations shared between
//! the threads of one store (issue 12).
//!
//! Without it, every raise, put or ack holds the store's lock through its
//! own `msync`, so threads raising together get the rate of one. Instead,
//! an operation that ends with written bytes to make durable (the journal's
//! `commit`) hands its dirty span to the journal's [`Group`] and gets a
//! ticket; the store's lock is released (`shell.rs`), and the thread then
//! waits on the ticket, outside the lock:
//!
//! - if no sync is running, it becomes the *leader*: it takes every span
//!   handed over so far (its own and those of the threads that committed
//!   while the previous sync ran), makes it durable with one sync through
//!   the device's [`Syncer`], marks every ticket it covered as synced and
//!   wakes the others;
//! - otherwise it waits until a leader has synced its ticket (or, if the
//!   running sync began before its span was handed over, until that sync
//!   ends, and then it may lead the next one).
//!
//! Records are still appended under the store's lock, in call order; only
//! the sync is shared. A thread alone is always the leader: one sync per
//! operation, as without groups.
//!
//! Two things make the batches large when several threads raise at once
//! (examples/group_commit.rs, 8 threads, 2-processor VM: 3.3x one thread's
//! rate, 0.20 syncs per raise without them; about 5x, 0.125 with them):
//!
//! - a would-be leader that sees fewer operations waiting than waited when
//!   the last sync ended (those it covered and those handed over while it
//!   ran: every thread committing) holds its sync back for the others (at
//!   most three times the last sync's time, and 1 ms); the thread whose
//!   hand-over completes the batch leads it at once (counting only those
//!   the last sync covered, large and small batches alternated: 0.13 to
//!   0.20 syncs per raise at 8 threads, at about the same rate);
//! - a waiter first spins, yielding the processor, before it parks (at
//!   most four times the last sync's time, and 500 us): a parked thread
//!   woke 30 to 50 us after its sync ended (an idle processor of the VM
//!   being woken), too late for the next sync. This costs processor time
//!   while threads wait: at 8 threads one processor's worth instead of
//!   half of one, for 1.5x the raises. A thread alone never waits so.
//!
//! A sync that must be made under the lock (an ordering barrier, a wrap
//! marker, the header's tail, flush, close) goes through
//! [`Group::sync_all`]: it waits for a running leader to finish (two
//! concurrent `msync`s of one file could each see only part of a
//! write-back error), then syncs the union of the caller's span and every
//! span handed over, so that "everything written so far is durable" holds
//! after it as before groups existed, and resolves every ticket.
//!
//! Every ticket is resolved exactly once, in ticket order: synced, failed
//! (the sync that covered it returned an error, which its waiter hands to
//! the store: a fallback to level 1), or abandoned (the journal was closed
//! or replaced before a sync covered it; see [`Group::retire`]).
//!
//! The group also keeps the *durable watermark*: the lowest sequence number
//! not yet known durable. Each record carries how far it is above it
//! (docs/FORMAT.md, record bytes 13..16), so that recovery can tell a group
//! that a power cut tore (a later record on the device without an earlier
//! one that was never confirmed) from damage to a durable record.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::journal::device::Syncer;

/// A span of the file: (first byte, end).
type Span = (usize, usize);

/// How a ticket was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolution {
    /// The sync covering it failed with this error.
    Failed(io::ErrorKind, String),
    /// The journal was closed or replaced first.
    Abandoned,
}

/// The tickets `from..=to` were resolved as `how`.
#[derive(Debug)]
struct Range {
    from: u64,
    to: u64,
    how: Resolution,
}

#[derive(Debug, Default)]
struct State {
    /// The last ticket handed out (0: none yet).
    issued: u64,
    /// Spans handed over and not yet taken by a sync.
    pending: Option<Span>,
    /// The durable watermark reached once `pending` is synced.
    pending_seq: u64,
    /// A sync is running (a leader's, or one under the lock).
    syncing: bool,
    /// Every ticket up to this one is resolved.
    resolved: u64,
    /// Tickets resolved otherwise than synced (rare: each leads to a
    /// fallback or belongs to a retired journal).
    exceptions: Vec<Range>,
    /// Every record with a lower sequence number is durable.
    durable_seq: u64,
    /// How many operations (each a thread) waited on a ticket when the last
    /// sync ended: those it covered and those handed over while it ran.
    committing: u64,
    /// Threads parked in `wait` until the next [`wake`]. Unparked each by
    /// its own call, outside the lock, rather than by a condvar's
    /// notify_all, which hands the woken the mutex one after another.
    sleepers: Vec<std::thread::Thread>,
    /// The would-be leader holding the next sync back for the threads the
    /// last one released (see [`Group::wait`]), by the ticket it waits on;
    /// woken with the sleepers.
    gatherer: Option<(u64, std::thread::Thread)>,
    /// How long the last leader's sync took.
    last_sync: Duration,
}

impl State {
    /// Resolves every ticket up to `through` not resolved yet: synced, or
    /// as `how`; `seq` is the watermark a successful sync reached.
    fn resolve(&mut self, through: u64, how: Option<Resolution>, seq: u64) {
        if how.is_none() {
            self.durable_seq = self.durable_seq.max(seq);
        }
        if through <= self.resolved {
            return;
        }
        if let Some(how) = how {
            self.exceptions.push(Range {
                from: self.resolved + 1,
                to: through,
                how,
            });
        }
        self.resolved = through;
    }

    /// How the resolved ticket `ticket` was resolved (`None`: synced).
    fn resolution(&self, ticket: u64) -> Option<&Resolution> {
        self.exceptions
            .iter()
            .find(|r| (r.from..=r.to).contains(&ticket))
            .map(|r| &r.how)
    }
}

fn union(a: Option<Span>, b: Option<Span>) -> Option<Span> {
    match (a, b) {
        (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
        (a, b) => a.or(b),
    }
}

/// Wakes every thread waiting in [`Group::wait`] (those spinning see
/// `wakes` change; those parked are unparked): each rechecks its ticket
/// (resolved: it returns; not yet: it may lead the next sync, or waits
/// again). Called with the state locked, after every change a waiter waits
/// for (a sync ended, tickets resolved).
fn wake(wakes: &AtomicU64, state: &mut MutexGuard<'_, State>) {
    wakes.fetch_add(1, Ordering::Release);
    let mut threads = std::mem::take(&mut state.sleepers);
    threads.extend(state.gatherer.take().map(|(_, thread)| thread));
    if !threads.is_empty() {
        // Unlocked: a thread woken while the lock is held would only block
        // on it again.
        MutexGuard::unlocked(state, || threads.iter().for_each(|t| t.unpark()));
    }
}

fn failed(e: &io::Error) -> Resolution {
    Resolution::Failed(e.kind(), e.to_string())
}

/// A gatherer holds a sync back for at most this many times the last sync
/// took, and never longer than [`MAX_GATHER`] (see [`Group::wait`]).
const GATHER_SYNCS: u32 = 3;
const MAX_GATHER: Duration = Duration::from_millis(1);

/// A waiter spins (yielding) for at most `GATHER_SYNCS + 1` times the last
/// sync took (a gatherer's hold and the sync after it), and never longer
/// than this, before it parks (see [`Group::sleep`]).
const MAX_SPIN: Duration = Duration::from_micros(500);

/// The shared syncs of one journal file: see the module docs.
pub(crate) struct Group {
    /// How a leader syncs; without one, nothing is handed over and every
    /// sync is made under the lock.
    syncer: Option<Arc<dyn Syncer>>,
    state: Mutex<State>,
    changed: Condvar,
    /// How many times [`wake`] ran: what a spinning waiter watches.
    wakes: AtomicU64,
}

impl Group {
    /// A group for a file whose records below `durable_seq` are durable.
    pub(crate) fn new(syncer: Option<Arc<dyn Syncer>>, durable_seq: u64) -> Arc<Group> {
        Arc::new(Group {
            syncer,
            state: Mutex::new(State {
                durable_seq,
                ..State::default()
            }),
            changed: Condvar::new(),
            wakes: AtomicU64::new(0),
        })
    }

    /// True when syncs can be handed over (the device has a syncer).
    pub(crate) fn concurrent(&self) -> bool {
        self.syncer.is_some()
    }

    /// The lowest sequence number not known durable.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.state.lock().durable_seq
    }

    /// Takes what was written below `seq` as durable without a sync: for a
    /// file that is published only once it is durable as a whole.
    pub(crate) fn assume_durable(&self, seq: u64) {
        let mut state = self.state.lock();
        state.durable_seq = state.durable_seq.max(seq);
    }

    /// Hands `span` over to the next leader; once it is synced, every
    /// record below `seq` is durable. Returns the ticket to wait on.
    ///
    /// `previous`: the ticket the same operation was given by an earlier
    /// hand-over (one store call can commit twice, e.g. an ack and then the
    /// expiry of a peek). If nothing was issued since and no sync has taken
    /// its span yet, the span joins it and the ticket is reused: one
    /// operation, one ticket. Otherwise a thread alone would count as two
    /// operations committing, and its next operation, one ticket short of
    /// that, would hold its own sync back for the other (see `wait`).
    pub(crate) fn hand_over(&self, span: Span, seq: u64, previous: Option<u64>) -> u64 {
        let mut state = self.state.lock();
        // Tickets are issued under the store's lock and `pending` is
        // emptied only by a sync that resolves every ticket issued: both
        // true means `previous` is the last ticket and still waits.
        let join = previous == Some(state.issued) && state.pending.is_some();
        state.pending = union(state.pending, Some(span));
        state.pending_seq = state.pending_seq.max(seq);
        if !join {
            state.issued += 1;
        }
        state.issued
    }

    /// A sync under the store's lock (see the module docs): waits for a
    /// running sync, then makes `own` and every span handed over durable
    /// with `sync`, and resolves every ticket. Once it returns `Ok`, every
    /// record below `seq` is durable.
    pub(crate) fn sync_all(
        &self,
        own: Option<Span>,
        seq: u64,
        sync: impl FnOnce(usize, usize) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut state = self.state.lock();
        while state.syncing {
            self.changed.wait(&mut state);
        }
        let span = union(own, state.pending.take());
        let through = state.issued;
        match span {
            Some((start, end)) => {
                self.sync_unlocked(&mut state, (through, seq), || sync(start, end - start))
            }
            None => {
                state.resolve(through, None, seq);
                Ok(())
            }
        }
    }

    /// Runs `sync` with the state unlocked (marked as syncing meanwhile),
    /// then resolves the tickets up to `through` by its result and wakes
    /// the waiters. A panic in `sync` fails those tickets before it goes
    /// on, so that no waiter waits for ever.
    fn sync_unlocked(
        &self,
        state: &mut MutexGuard<'_, State>,
        (through, seq): (u64, u64),
        sync: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        state.syncing = true;
        let outcome = MutexGuard::unlocked(state, || panic::catch_unwind(AssertUnwindSafe(sync)));
        state.syncing = false;
        state.committing = state.issued - state.resolved;
        let result = match &outcome {
            Ok(result) => result.as_ref().map_err(failed).err(),
            Err(_) => Some(Resolution::Failed(
                io::ErrorKind::Other,
                "the sync panicked".to_string(),
            )),
        };
        state.resolve(through, result, seq);
        self.changed.notify_all();
        wake(&self.wakes, state);
        match outcome {
            Ok(result) => result,
            Err(payload) => MutexGuard::unlocked(state, || panic::resume_unwind(payload)),
        }
    }

    /// Resolves every ticket not resolved yet as abandoned: the journal is
    /// closed or replaced (its records are durable in the file that
    /// replaced it, or were moved to memory by a fallback, or the store was
    /// closed). A leader still syncing finishes harmlessly; its map stays
    /// alive through its syncer.
    pub(crate) fn retire(&self) {
        let mut state = self.state.lock();
        state.pending = None;
        let through = state.issued;
        let seq = state.durable_seq;
        state.resolve(through, Some(Resolution::Abandoned), seq);
        self.changed.notify_all();
        wake(&self.wakes, &mut state);
    }

    /// Waits until `ticket` is resolved, leading syncs while it is not
    /// (see the module docs). `Err`: the sync covering it failed.
    ///
    /// When the last sync ended, `committing` operations waited: those it
    /// released are about to append again, and those handed over while it
    /// ran wait for the next. While fewer wait than that, the
    /// first would-be leader (the *gatherer*) holds the sync back, parked,
    /// for at most `GATHER_SYNCS` times the last sync's time; the thread whose
    /// hand-over makes the batch whole leads it at once. A thread alone (a
    /// batch of one) never waits: one sync per operation, as without
    /// groups.
    ///
    /// The thread's handle (`std::thread::current`, which allocates on a
    /// thread std did not start, such as a C program's) is taken only to
    /// park: a thread alone never does.
    fn wait(&self, ticket: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let mut until: Option<Instant> = None;
        loop {
            if state.resolved >= ticket {
                return match state.resolution(ticket) {
                    Some(Resolution::Failed(kind, message)) => {
                        Err(io::Error::new(*kind, message.clone()))
                    }
                    Some(Resolution::Abandoned) | None => Ok(()),
                };
            }
            let gatherer = state.gatherer.as_ref().map(|(t, _)| *t == ticket);
            let short = state.issued - state.resolved < state.committing;
            if state.syncing || state.pending.is_none() || (short && gatherer == Some(false)) {
                self.sleep(&mut state);
                continue;
            }
            if short {
                let hold = (state.last_sync * GATHER_SYNCS).min(MAX_GATHER);
                let until = *until.get_or_insert_with(|| Instant::now() + hold);
                let left = until.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    state.gatherer = Some((ticket, std::thread::current()));
                    MutexGuard::unlocked(&mut state, || std::thread::park_timeout(left));
                    continue;
                }
            }
            if gatherer == Some(true) {
                state.gatherer = None;
            }
            self.lead(&mut state);
        }
    }

    /// Waits for the next [`wake`] (a running sync ends, or the one the
    /// gatherer holds back does): first spinning, yielding the processor,
    /// then parked (see the module docs).
    fn sleep(&self, state: &mut MutexGuard<'_, State>) {
        let seen = self.wakes.load(Ordering::Acquire);
        let limit = Instant::now() + (state.last_sync * (GATHER_SYNCS + 1)).min(MAX_SPIN);
        let woken = MutexGuard::unlocked(state, || self.spin(seen, limit));
        // `wake` counts with the state locked: unchanged here, it has not
        // run, and it will find this thread among the sleepers.
        if !woken && self.wakes.load(Ordering::Acquire) == seen {
            state.sleepers.push(std::thread::current());
            MutexGuard::unlocked(state, std::thread::park);
        }
    }

    /// Yields the processor until [`wake`] has run since it counted `seen`
    /// (true) or `limit` has passed (false).
    fn spin(&self, seen: u64, limit: Instant) -> bool {
        loop {
            if self.wakes.load(Ordering::Acquire) != seen {
                return true;
            }
            if Instant::now() >= limit {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Syncs every span handed over, with the lock of the state released
    /// meanwhile, and resolves the tickets it covered.
    fn lead(&self, state: &mut MutexGuard<'_, State>) {
        let Some((start, end)) = state.pending.take() else {
            return;
        };
        let covered = (state.issued, state.pending_seq);
        let began = Instant::now();
        // The outcome reaches the waiters through the state.
        let _ = self.sync_unlocked(state, covered, || match &self.syncer {
            Some(syncer) => syncer.sync(start, end - start),
            None => Err(io::Error::other("the device has no syncer")),
        });
        state.last_sync = began.elapsed();
    }

    /// How many operations waited when the last sync ended.
    #[cfg(test)]
    pub(crate) fn committing(&self) -> u64 {
        self.state.lock().committing
    }

    /// Whether `ticket` is resolved (its sync is done, or failed, or the
    /// journal was retired).
    pub(crate) fn is_resolved(&self, ticket: u64) -> bool {
        self.state.lock().resolved >= ticket
    }
}

/// Room freed by removals whose state bytes are not yet known durable.
///
/// A removal frees room that the store then counts on for later records.
/// If a record that needed that room reached the device and the removal
/// did not (both in one shared sync, torn by a power cut), the file would
/// hold more pending records than its capacity, and the store would drop
/// the oldest at open: an event whose raise returned, if the removal was
/// not of the oldest (a cache-mode ack). So an append that needs room freed
/// by removals still in a shared sync first syncs under the lock
/// (`Journal::append`); one that fits without that room does not wait.
#[derive(Debug, Default)]
pub(crate) struct Freed {
    /// Bytes removed by the operation in progress (not handed over yet).
    now: u64,
    /// (ticket, bytes) handed over and not known resolved.
    handed: Vec<(u64, u64)>,
}

impl Freed {
    /// A record of `bytes` was removed.
    pub(crate) fn removed(&mut self, bytes: u64) {
        self.now += bytes;
    }

    /// The removals so far went into the sync of `ticket`.
    pub(crate) fn handed_over(&mut self, ticket: u64) {
        if self.now > 0 {
            self.handed.push((ticket, std::mem::take(&mut self.now)));
        }
    }

    /// Everything written is durable.
    pub(crate) fn synced(&mut self) {
        self.now = 0;
        self.handed.clear();
    }

    /// Bytes freed by removals handed to `group` and not yet resolved.
    pub(crate) fn in_flight(&mut self, group: &Group) -> u64 {
        if !self.handed.is_empty() {
            self.handed.retain(|&(t, _)| !group.is_resolved(t));
        }
        self.handed.iter().map(|&(_, bytes)| bytes).sum()
    }
}

/// What an operation that handed its sync over waits on, outside the
/// store's lock (`shell.rs`).
pub(crate) struct SyncTicket {
    pub(super) group: Arc<Group>,
    pub(super) number: u64,
}

impl SyncTicket {
    /// Returns once the operation's writes are durable, leading syncs as
    /// needed. `Err`: the sync failed; the store must fall back to level 1
    /// if the journal of this ticket is still its level 2.
    pub(crate) fn wait(&self) -> io::Result<()> {
        self.group.wait(self.number)
    }

    /// Whether this ticket belongs to `group`.
    pub(crate) fn is_of(&self, group: &Arc<Group>) -> bool {
        Arc::ptr_eq(&self.group, group)
    }
}
