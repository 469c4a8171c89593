//! Group commit (`group.rs`): one leader syncs at a time, every ticket is
//! resolved, a sync covers what was handed over while the previous one
//! ran, and a failure reaches exactly the tickets its sync covered.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::journal::device::Syncer;
use crate::journal::group::{Group, SyncTicket};

/// A syncer that records its calls, may hold them until released, and
/// fails the calls whose number (from 1) is listed.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(usize, usize)>>,
    running: AtomicBool,
    overlapped: AtomicBool,
    fail: Vec<usize>,
    /// Calls wait for a message each when set.
    gate: Option<Mutex<mpsc::Receiver<()>>>,
    /// Sent when a call starts (its number).
    started: Option<Mutex<mpsc::Sender<usize>>>,
    delay: Duration,
}

impl Syncer for Fake {
    fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        if self.running.swap(true, Ordering::SeqCst) {
            self.overlapped.store(true, Ordering::SeqCst);
        }
        let number = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((offset, len));
            calls.len()
        };
        if let Some(started) = &self.started {
            started.lock().unwrap().send(number).unwrap();
        }
        if let Some(gate) = &self.gate {
            gate.lock().unwrap().recv().unwrap();
        }
        thread::sleep(self.delay);
        self.running.store(false, Ordering::SeqCst);
        if self.fail.contains(&number) {
            return Err(io::Error::other(format!("sync {number} failed")));
        }
        Ok(())
    }
}

fn ticket(group: &Arc<Group>, number: u64) -> SyncTicket {
    SyncTicket {
        group: Arc::clone(group),
        number,
    }
}

#[test]
fn a_thread_alone_leads_one_sync_per_operation() {
    let fake = Arc::new(Fake::default());
    let group = Group::new(Some(fake.clone()), 1);
    assert!(group.concurrent());
    for op in 0..5u64 {
        let start = 100 * op as usize;
        let t = group.hand_over((start, start + 40), op + 2, None);
        ticket(&group, t).wait().unwrap();
        assert_eq!(group.durable_seq(), op + 2);
    }
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls, (0..5).map(|op| (100 * op, 40)).collect::<Vec<_>>());
}

#[test]
fn threads_share_syncs_one_leader_at_a_time_and_every_ticket_is_synced() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(2),
        ..Fake::default()
    });
    let group = Group::new(Some(fake.clone()), 1);
    // The store's lock: records are appended (here: spans and sequence
    // numbers handed out) in call order under it.
    let store = Arc::new(Mutex::new(1u64));
    let (threads, ops) = (8, 40);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (group, store) = (Arc::clone(&group), Arc::clone(&store));
            thread::spawn(move || {
                for _ in 0..ops {
                    let (t, seq) = {
                        let mut next = store.lock().unwrap();
                        let seq = *next;
                        *next += 1;
                        let at = 64 * seq as usize;
                        (group.hand_over((at, at + 64), seq + 1, None), seq)
                    };
                    ticket(&group, t).wait().unwrap();
                    assert!(
                        group.durable_seq() > seq,
                        "returned before its record was synced"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(
        !fake.overlapped.load(Ordering::SeqCst),
        "two leaders synced at once"
    );
    let calls = fake.calls.lock().unwrap().clone();
    let total = threads * ops;
    assert!(
        calls.len() < total,
        "{} syncs for {total} operations: no grouping",
        calls.len()
    );
    // Every span handed over was synced by some call.
    for seq in 1..=total {
        let at = 64 * seq;
        assert!(
            calls.iter().any(|&(o, l)| o <= at && at + 64 <= o + l),
            "span of record {seq} never synced"
        );
    }
    assert_eq!(group.durable_seq(), total as u64 + 1);
}

#[test]
fn a_thread_left_alone_after_a_shared_sync_still_syncs_its_record() {
    let fake = Arc::new(Fake {
        delay: Duration::from_millis(1),
        ..Fake::default()
    });
    let group = Group::new(Some(fake.clone()), 1);
    // Two operations in one sync: the next leader expects two again and
    // holds its sync back for the other, which never comes.
    let first = group.hand_over((0, 64), 2, None);
    let second = group.hand_over((64, 128), 3, None);
    ticket(&group, second).wait().unwrap();
    ticket(&group, first).wait().unwrap();
    let alone = group.hand_over((128, 192), 4, None);
    ticket(&group, alone).wait().unwrap();
    assert_eq!(group.durable_seq(), 4);
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls, vec![(0, 128), (128, 64)]);
}

#[test]
fn an_operation_that_commits_twice_waits_on_one_ticket() {
    let fake = Arc::new(Fake::default());
    let group = Group::new(Some(fake.clone()), 1);
    // One store call, two commits (an ack, then a peek's expiry): one
    // ticket. Two would make a thread alone a batch of two, and its next
    // call, a batch of one, would hold its own sync back for a second
    // operation that never comes.
    let first = group.hand_over((0, 64), 2, None);
    let again = group.hand_over((64, 128), 3, Some(first));
    assert_eq!(again, first);
    ticket(&group, again).wait().unwrap();
    assert_eq!(group.committing(), 1, "one operation is a batch of one");
    // Its sync is done: committing again needs a new ticket.
    let later = group.hand_over((128, 192), 4, Some(first));
    assert_eq!(later, first + 1);
    // Another ticket was issued since (another operation): not joined.
    let other = group.hand_over((192, 256), 5, None);
    let mine = group.hand_over((256, 320), 6, Some(later));
    assert_eq!(mine, other + 1);
    ticket(&group, mine).wait().unwrap();
    assert!(group.is_resolved(later) && group.is_resolved(other));
    assert_eq!(group.durable_seq(), 6);
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls, vec![(0, 128), (128, 192)]);
}

#[test]
fn a_journal_operation_that_commits_twice_hands_over_one_ticket() {
    use crate::backend::RecordLog;
    use crate::journal::{Durability, Journal, JournalConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        kind: "test journal",
        magic: *b"SNPTEST1",
        owner: uuid::Uuid::from_u128(14),
        capacity: 8192,
        durability: Durability::Sync,
        device_layer: None,
    };
    let mut j = Journal::open(&dir.path().join("twice.j"), &config)
        .unwrap()
        .0;
    j.append(&[1; 40]).unwrap();
    j.commit().unwrap();
    j.append(&[2; 40]).unwrap();
    j.commit().unwrap();
    let t = j.take_ticket().unwrap();
    assert_eq!(t.number, 1, "both commits share the operation's ticket");
    let group = Arc::clone(&t.group);
    t.wait().unwrap();
    assert_eq!(group.committing(), 1);
    j.append(&[3; 40]).unwrap();
    j.commit().unwrap();
    assert_eq!(j.take_ticket().unwrap().number, 2);
}

/// A fake whose calls wait for `release` and announce themselves.
fn gated(fail: Vec<usize>) -> (Arc<Fake>, mpsc::Sender<()>, mpsc::Receiver<usize>) {
    let (release, gate) = mpsc::channel();
    let (started, starts) = mpsc::channel();
    let fake = Arc::new(Fake {
        fail,
        gate: Some(Mutex::new(gate)),
        started: Some(Mutex::new(started)),
        ..Fake::default()
    });
    (fake, release, starts)
}

fn waiter(group: &Arc<Group>, number: u64) -> thread::JoinHandle<io::Result<()>> {
    let t = ticket(group, number);
    thread::spawn(move || t.wait())
}

#[test]
fn a_failed_sync_fails_exactly_the_tickets_it_covered() {
    let (fake, release, starts) = gated(vec![2]);
    let group = Group::new(Some(fake.clone()), 1);
    let t1 = group.hand_over((0, 64), 2, None);
    let w1 = waiter(&group, t1);
    assert_eq!(starts.recv().unwrap(), 1, "the first waiter leads");
    // Handed over while sync 1 runs: the next sync covers both.
    let t2 = group.hand_over((64, 128), 3, None);
    let t3 = group.hand_over((128, 192), 4, None);
    let (w2, w3) = (waiter(&group, t2), waiter(&group, t3));
    release.send(()).unwrap();
    assert_eq!(starts.recv().unwrap(), 2);
    release.send(()).unwrap();
    assert!(w1.join().unwrap().is_ok());
    let e2 = w2.join().unwrap().unwrap_err();
    assert!(e2.to_string().contains("sync 2 failed"), "{e2}");
    assert!(w3.join().unwrap().is_err());
    assert_eq!(
        group.durable_seq(),
        2,
        "a failed sync proves nothing durable"
    );
    let t4 = group.hand_over((192, 256), 5, None);
    let w4 = waiter(&group, t4);
    assert_eq!(starts.recv().unwrap(), 3);
    release.send(()).unwrap();
    assert!(w4.join().unwrap().is_ok(), "later tickets are not failed");
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(calls, vec![(0, 64), (64, 128), (192, 64)]);
    // Resolved tickets keep their outcome.
    assert!(ticket(&group, t2).wait().is_err());
    assert!(ticket(&group, t1).wait().is_ok());
}

#[test]
fn the_next_sync_expects_every_operation_that_waited_when_the_last_ended() {
    let (fake, release, starts) = gated(vec![]);
    let group = Group::new(Some(fake), 1);
    let t1 = group.hand_over((0, 64), 2, None);
    let w1 = waiter(&group, t1);
    assert_eq!(starts.recv().unwrap(), 1);
    // Two more operations wait while sync 1 runs: with the one it covers,
    // three threads commit together, and the next sync is held back for
    // three (counting only the one sync 1 covered alternates large and
    // small batches).
    let (t2, t3) = (
        group.hand_over((64, 128), 3, None),
        group.hand_over((128, 192), 4, None),
    );
    let (w2, w3) = (waiter(&group, t2), waiter(&group, t3));
    release.send(()).unwrap();
    w1.join().unwrap().unwrap();
    assert_eq!(group.committing(), 3);
    assert_eq!(starts.recv().unwrap(), 2);
    release.send(()).unwrap();
    w2.join().unwrap().unwrap();
    w3.join().unwrap().unwrap();
    assert_eq!(group.committing(), 2, "sync 2 ended with t2 and t3 waiting");
    assert_eq!(group.durable_seq(), 4);
}

#[test]
fn a_sync_under_the_lock_waits_for_the_leader_and_covers_what_was_handed_over() {
    let (fake, release, starts) = gated(Vec::new());
    let group = Group::new(Some(fake.clone()), 1);
    let t1 = group.hand_over((4096, 4160), 2, None);
    let w1 = waiter(&group, t1);
    assert_eq!(starts.recv().unwrap(), 1);
    // Handed over while sync 1 runs; its waiter comes later.
    let t2 = group.hand_over((8192, 8256), 3, None);
    let under_lock = {
        let group = Arc::clone(&group);
        thread::spawn(move || {
            let done = AtomicUsize::new(0);
            group
                .sync_all(Some((100, 120)), 5, |start, len| {
                    done.store(start + len, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
            done.load(Ordering::SeqCst)
        })
    };
    thread::sleep(Duration::from_millis(50));
    assert!(
        !under_lock.is_finished(),
        "it must wait for the running sync"
    );
    release.send(()).unwrap();
    // The union of its own span and the one handed over: [100, 8256).
    assert_eq!(under_lock.join().unwrap(), 8256);
    assert!(w1.join().unwrap().is_ok());
    assert!(
        ticket(&group, t2).wait().is_ok(),
        "ticket 2 synced by the sync under the lock"
    );
    assert_eq!(
        fake.calls.lock().unwrap().len(),
        1,
        "no leader synced ticket 2 again"
    );
    assert_eq!(group.durable_seq(), 5);
}

#[test]
fn retiring_releases_every_waiter_without_a_sync() {
    let fake = Arc::new(Fake::default());
    let group = Group::new(Some(fake.clone()), 1);
    let t1 = group.hand_over((0, 64), 2, None);
    group.retire();
    assert!(ticket(&group, t1).wait().is_ok());
    assert!(fake.calls.lock().unwrap().is_empty());
    assert_eq!(group.durable_seq(), 1, "nothing was synced");
    // A failed sync under the lock fails the tickets it covered, too.
    let t2 = group.hand_over((0, 64), 3, None);
    let result = group.sync_all(None, 3, |_, _| Err(io::Error::other("disk gone")));
    assert!(result.is_err());
    assert!(ticket(&group, t2).wait().is_err());
}

struct Panics;

impl Syncer for Panics {
    fn sync(&self, _: usize, _: usize) -> io::Result<()> {
        panic!("a syncer that panics");
    }
}

#[test]
fn a_panicking_sync_fails_its_tickets_instead_of_leaving_them_waiting() {
    let group = Group::new(Some(Arc::new(Panics)), 1);
    let t1 = group.hand_over((0, 64), 2, None);
    let t2 = group.hand_over((64, 128), 3, None);
    // The leader's call panics, as it would have under the lock.
    assert!(waiter(&group, t1).join().is_err());
    let e = ticket(&group, t2).wait().unwrap_err();
    assert!(e.to_string().contains("panicked"), "{e}");
    // The group goes on: nothing is left marked as syncing.
    let own = group.sync_all(Some((0, 8)), 4, |_, _| Ok(()));
    assert!(own.is_ok());
}
