//! Invariant: a process killed with SIGKILL at any moment loses nothing it
//! reported as stored: after each kill the journal holds exactly the events
//! the child reported raised and not acknowledged, in order, once, plus at
//! most the one raise in progress (and minus at most the one ack in
//! progress).
//!
//! This test binary is its own child: with `SNP_CRASH_CHILD_DIR` set it runs
//! the raising loop, reporting each completed operation on stdout.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use softnet_persistence::{Durability, EventKind, ServiceOptions, ServiceStore, Uuid};
use testkit::{env_number, kill_at_random, Rng};

const SERVICE: Uuid = Uuid::from_u128(0x0c0a_5e11);
const KILLS: u32 = 400;

fn options() -> ServiceOptions {
    ServiceOptions {
        capacity: 64 * 1024,
        durability: Durability::Sync,
        ..ServiceOptions::default()
    }
}

/// The event's arguments: its index, then filler of varying length.
fn args_for(index: u64, rng: &mut Rng) -> Vec<u8> {
    let mut args = index.to_le_bytes().to_vec();
    args.resize(8 + rng.below(200) as usize, 0xa5);
    args
}

fn index_of(args: &[u8]) -> u64 {
    u64::from_le_bytes(args[..8].try_into().expect("index in arguments"))
}

/// Raises and acknowledges forever, printing what completed:
/// `R <index> <uid>` after a raise returned, `B <uid>` before an ack,
/// `A <uid>` after it returned.
fn child(dir: &str, start: u64, seed: u64) {
    let store = ServiceStore::open_file(dir, SERVICE, &options()).expect("child open");
    let mut out = std::io::stdout().lock();
    let mut rng = Rng(seed | 1);
    let mut index = start;
    loop {
        let pending = store.stats().pending_events;
        if pending > 0 && (pending > 120 || rng.below(100) < 45) {
            let e = store.peek().expect("peek").expect("pending event");
            writeln!(out, "B {}", e.uid).unwrap();
            out.flush().unwrap();
            store.ack(e.uid).expect("ack");
            writeln!(out, "A {}", e.uid).unwrap();
        } else {
            let uid = store
                .raise(EventKind::Queueing, "Counter", &args_for(index, &mut rng))
                .expect("raise");
            writeln!(out, "R {index} {uid}").unwrap();
            index += 1;
        }
        out.flush().unwrap();
        if store.stats().dropped_events > 0 {
            writeln!(out, "DROPPED").unwrap();
            return;
        }
    }
}

struct Round {
    expected: VecDeque<(u64, Uuid)>,
    next_index: u64,
}

/// Applies the child's report lines to the expected pending list; returns
/// the uid of an ack begun but not completed.
fn apply(lines: &str, round: &mut Round) -> Result<Option<Uuid>, String> {
    let mut acking = None;
    for line in lines.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["R", index, uid] => {
                let index: u64 = index.parse().map_err(|_| format!("bad line {line}"))?;
                let uid: Uuid = uid.parse().map_err(|_| format!("bad line {line}"))?;
                round.expected.push_back((index, uid));
                round.next_index = index + 1;
                acking = None;
            }
            ["B", uid] => acking = Some(uid.parse().map_err(|_| format!("bad line {line}"))?),
            ["A", uid] => {
                let uid: Uuid = uid.parse().map_err(|_| format!("bad line {line}"))?;
                match round.expected.pop_front() {
                    Some((_, front)) if front == uid => {}
                    other => return Err(format!("child acked {uid}, expected {other:?}")),
                }
                acking = None;
            }
            ["DROPPED"] => return Err("the child dropped events: capacity too small".into()),
            // A line cut by the kill: the operation did not report.
            _ => {}
        }
    }
    Ok(acking)
}

fn check(dir: &Path, round: &mut Round, acking: Option<Uuid>) -> Result<(), String> {
    let store = ServiceStore::open_file(dir, SERVICE, &options()).map_err(|e| e.to_string())?;
    let stats = store.stats();
    if stats.events_lost != 0 || stats.dropped_events != 0 {
        return Err(format!("reopen reported losses: {stats:?}"));
    }
    let actual: Vec<(u64, Uuid)> = store
        .pending()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| (index_of(&e.args), e.uid))
        .collect();
    let mut expected: Vec<(u64, Uuid)> = round.expected.iter().copied().collect();
    // The ack in progress may have completed.
    if let Some(uid) = acking {
        if expected.first().map(|e| e.1) == Some(uid) && actual.first().map(|e| e.1) != Some(uid) {
            expected.remove(0);
        }
    }
    // The raise in progress may have completed: one more event, the next index.
    if actual.len() == expected.len() + 1 {
        let extra = actual[actual.len() - 1];
        if extra.0 != round.next_index {
            return Err(format!("unexpected extra event {extra:?}"));
        }
        expected.push(extra);
        round.next_index += 1;
    }
    if actual != expected {
        return Err(format!(
            "pending events differ:\n  expected {expected:?}\n  actual   {actual:?}"
        ));
    }
    round.expected = actual.into_iter().collect();
    Ok(())
}

fn parent() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut round = Round {
        expected: VecDeque::new(),
        next_index: 0,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut operations = 0usize;
    for kill in 0..KILLS {
        // Land the kill anywhere inside an operation, not only between them.
        let seen = kill_at_random(
            Command::new(&exe)
                .env("SNP_CRASH_CHILD_DIR", dir.path())
                .env("SNP_CRASH_START", round.next_index.to_string())
                .env("SNP_CRASH_SEED", (kill as u64 + 1).to_string()),
            &mut rng,
            120,
            400,
        )?;
        operations += seen.lines().count();
        let acking = apply(&seen, &mut round).map_err(|e| format!("kill {kill}: {e}"))?;
        check(dir.path(), &mut round, acking).map_err(|e| format!("kill {kill}: {e}"))?;
    }
    println!(
        "crash_sigkill: {KILLS} kills, {operations} reported operations, {} events pending at \
         the end, {:.1} s",
        round.expected.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the child's raising loop if this process is that child.
pub fn child_from_env() -> bool {
    let Ok(dir) = std::env::var("SNP_CRASH_CHILD_DIR") else {
        return false;
    };
    child(
        &dir,
        env_number("SNP_CRASH_START"),
        env_number("SNP_CRASH_SEED"),
    );
    true
}

/// The test: kills, reopens, checks.
pub fn test() -> Result<(), String> {
    parent()
}
