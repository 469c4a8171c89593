//! Invariant (issue 12, group commit): with several threads raising into
//! one `Sync` store, a process killed with SIGKILL at any moment loses no
//! event whose raise returned in any thread: after each kill the journal
//! holds every event a thread reported raised (and not acknowledged since),
//! in each thread's raise order, once, plus at most one raise in progress
//! per thread (the next one that thread would have reported).
//!
//! The concurrent case of `crash_sigkill.rs`: here the threads' raises share
//! syncs (one leader syncs the records of several threads, outside the
//! store's lock), and the kill lands anywhere in that. This test binary is
//! its own child: with `SNP_CRASH_THREADS_DIR` set it runs the raising
//! threads, each printing a line per raise that returned.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use softnet_persistence::{Durability, EventKind, ServiceOptions, ServiceStore, Uuid};
use testkit::{kill_at_random, Rng};

const SERVICE: Uuid = Uuid::from_u128(0x0c0a_5e12);
const THREADS: u64 = 6;
const KILLS: u32 = 150;
/// Pending events above which the parent acknowledges them all between
/// two kills (so the store never drops for room).
const DRAIN_ABOVE: usize = 3000;

fn options() -> ServiceOptions {
    ServiceOptions {
        capacity: 1 << 20,
        durability: Durability::Sync,
        ..ServiceOptions::default()
    }
}

/// Arguments: the thread, then its raise index.
fn args(thread: u64, index: u64) -> Vec<u8> {
    let mut args = thread.to_le_bytes().to_vec();
    args.extend_from_slice(&index.to_le_bytes());
    args
}

fn thread_and_index(args: &[u8]) -> (u64, u64) {
    let word = |at: usize| u64::from_le_bytes(args[at..at + 8].try_into().expect("16 bytes"));
    (word(0), word(8))
}

/// `THREADS` threads raise forever, thread `t` from index `starts[t]`;
/// each prints `R <thread> <index> <uid>` once its raise returned.
fn child(dir: &str, starts: &[u64]) {
    let store = ServiceStore::open_file(dir, SERVICE, &options()).expect("child open");
    std::thread::scope(|s| {
        for (t, &start) in starts.iter().enumerate() {
            let store = &store;
            s.spawn(move || {
                for index in start.. {
                    let uid = store
                        .raise(EventKind::Queueing, "Counter", &args(t as u64, index))
                        .expect("raise");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "R {t} {index} {uid}").unwrap();
                    out.flush().unwrap();
                    if store.stats().dropped_events > 0 {
                        writeln!(out, "DROPPED").unwrap();
                        std::process::exit(0);
                    }
                }
            });
        }
    });
}

/// What the parent knows: the pending events by thread, in order, and
/// each thread's next index.
struct Round {
    pending: Vec<Vec<(u64, Uuid)>>,
    next: Vec<u64>,
}

/// Applies the child's report lines.
fn apply(lines: &str, round: &mut Round) -> Result<(), String> {
    for line in lines.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let bad = || format!("bad line {line}");
        match parts.as_slice() {
            ["R", t, index, uid] => {
                let t: usize = t.parse().map_err(|_| bad())?;
                let index: u64 = index.parse().map_err(|_| bad())?;
                let uid: Uuid = uid.parse().map_err(|_| bad())?;
                if t >= THREADS as usize || index != round.next[t] {
                    return Err(format!("thread {t} reported index {index} out of turn"));
                }
                round.pending[t].push((index, uid));
                round.next[t] = index + 1;
            }
            ["DROPPED"] => return Err("the child dropped events: capacity too small".into()),
            // A line cut by the kill: that raise did not report.
            _ => {}
        }
    }
    Ok(())
}

/// Reopens the store and checks it against `round`; the raise each thread
/// had in progress may be there too (then it counts from now on).
fn check(dir: &Path, round: &mut Round) -> Result<(), String> {
    let store = ServiceStore::open_file(dir, SERVICE, &options()).map_err(|e| e.to_string())?;
    let stats = store.stats();
    if stats.events_lost != 0 || stats.dropped_events != 0 {
        return Err(format!("reopen reported losses: {stats:?}"));
    }
    // A record cut short by the kill is an interrupted write; nothing may
    // look damaged.
    let aside = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        })
        .count();
    if aside > 0 {
        return Err("the journal was set aside as damaged".into());
    }
    let mut found: Vec<Vec<(u64, Uuid)>> = vec![Vec::new(); THREADS as usize];
    let mut seen = HashSet::new();
    for e in store.pending().map_err(|e| e.to_string())? {
        let (t, index) = thread_and_index(&e.args);
        if t >= THREADS || !seen.insert(e.uid) {
            return Err(format!("invented or repeated event {t}/{index} {}", e.uid));
        }
        found[t as usize].push((index, e.uid));
    }
    for (t, actual) in found.into_iter().enumerate() {
        let expected = &round.pending[t];
        let prefix_ok = actual.len() >= expected.len() && actual[..expected.len()] == expected[..];
        // At most the raise in progress, with the next index, after them.
        let extra = &actual[expected.len().min(actual.len())..];
        let extra_ok = extra.is_empty() || (extra.len() == 1 && extra[0].0 == round.next[t]);
        if !prefix_ok || !extra_ok {
            return Err(format!(
                "thread {t}: pending events differ (raises that returned must all be there, \
                 in order):\n  expected {expected:?} (+ maybe index {})\n  actual   {actual:?}",
                round.next[t]
            ));
        }
        if let Some(&(index, _)) = extra.first() {
            round.next[t] = index + 1;
        }
        round.pending[t] = actual;
    }
    if round.pending.iter().map(Vec::len).sum::<usize>() > DRAIN_ABOVE {
        while let Some(e) = store.peek().map_err(|e| e.to_string())? {
            store.ack(e.uid).map_err(|e| e.to_string())?;
        }
        round.pending.iter_mut().for_each(Vec::clear);
    }
    Ok(())
}

fn parent() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut round = Round {
        pending: vec![Vec::new(); THREADS as usize],
        next: vec![0; THREADS as usize],
    };
    let mut rng = Rng(0x7ead_5eed_0000_0001);
    let started = Instant::now();
    let mut raises = 0usize;
    for kill in 0..KILLS {
        let starts: Vec<String> = round.next.iter().map(u64::to_string).collect();
        let seen = kill_at_random(
            Command::new(&exe)
                .env("SNP_CRASH_THREADS_DIR", dir.path())
                .env("SNP_CRASH_THREADS_STARTS", starts.join(",")),
            &mut rng,
            200,
            3000,
        )?;
        raises += seen.lines().count();
        apply(&seen, &mut round).map_err(|e| format!("kill {kill}: {e}"))?;
        check(dir.path(), &mut round).map_err(|e| format!("kill {kill}: {e}"))?;
    }
    println!(
        "crash_sigkill_threads: {KILLS} kills of {THREADS} raising threads, {raises} reported \
         raises, all kept in order, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the child's raising threads if this process is that child.
pub fn child_from_env() -> bool {
    let Ok(dir) = std::env::var("SNP_CRASH_THREADS_DIR") else {
        return false;
    };
    let starts: Vec<u64> = std::env::var("SNP_CRASH_THREADS_STARTS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    child(&dir, &starts);
    true
}

/// The test: kills, reopens, checks.
pub fn test() -> Result<(), String> {
    parent()
}
