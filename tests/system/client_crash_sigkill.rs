//! Invariant: a client process killed with SIGKILL at any moment loses no
//! id it reported as stored: after each kill every subscription's id is one
//! the child wrote for that name, and not older than the last one it
//! reported (it may be the one whose put was in progress).
//!
//! This test binary is its own child: with `SNP_CLIENT_CRASH_DIR` set it
//! runs the put loop on a real-disk file with `Durability::Sync`, printing
//! `P <name> <id>` after each put returned. Ids grow per name (they start
//! negative and cross zero) and encode which name they were written for.
//! Now and then the child subscribes to a new name, so the file also grows
//! (an atomic rewrite) under the kills.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use softnet_persistence::{ClientOptions, ClientStore, Durability, Failure, FailureKind, Level};
use testkit::{client_file_name, collect_into, env_number, kill_at_random, Reports, Rng};

const SERVER: &str = "fe80::2";
const KEY: &str = "crash-child";
const KILLS: u32 = 400;
/// The names every child writes to; a new name gets index `EXTRA`.
const NAMES: [&str; 8] = [
    "Temperature",
    "Door",
    "Valve/1",
    "Pump.speed",
    "A",
    "Alarm#12",
    "Level_of_the_tank_in_the_basement_next_to_the_boiler_room_number_three",
    "Z",
];
const EXTRA: i64 = 15;
/// Ids are `BASE + counter * 16 + name index`.
const BASE: i64 = -(1 << 24) * 16;

fn options() -> ClientOptions {
    ClientOptions {
        durability: Durability::Sync,
        on_failure: None,
        ..ClientOptions::default()
    }
}

fn id_for(counter: u64, index: i64) -> i64 {
    BASE + counter as i64 * 16 + index
}

/// (counter, name index) of an id.
fn decode(id: i64) -> (u64, i64) {
    let rel = id - BASE;
    (rel.div_euclid(16) as u64, rel.rem_euclid(16))
}

/// A new subscription's name: its counter, padded so that new names use
/// room quickly (the file has to grow).
fn extra_name(counter: u64) -> String {
    format!("Extra{counter:08}{}", "x".repeat(90))
}

/// Puts forever: one put per counter value, printing what completed.
fn child(dir: &str, start: u64, seed: u64) {
    let opts = ClientOptions {
        on_failure: Some(std::sync::Arc::new(|f: &Failure| {
            eprintln!("child report: {f}");
        })),
        ..options()
    };
    let store = ClientStore::open_file(dir, SERVER, KEY, &opts).expect("child open");
    let mut out = std::io::stdout().lock();
    let mut rng = Rng(seed | 1);
    let mut counter = start;
    loop {
        let (name, index) = if rng.below(20) == 0 {
            (extra_name(counter), EXTRA)
        } else {
            let i = rng.below(NAMES.len() as u64) as usize;
            (NAMES[i].to_string(), i as i64)
        };
        let id = id_for(counter, index);
        store.put(&name, id).expect("put");
        writeln!(out, "P {name} {id}").unwrap();
        out.flush().unwrap();
        if store.level() != Level::Persistent {
            writeln!(out, "FELL BACK").unwrap();
            return;
        }
        counter += 1;
    }
}

/// What the parent knows.
struct Known {
    /// Per name, the newest id the child reported as stored.
    reported: BTreeMap<String, i64>,
    /// The counter the next put (the one in progress at the kill) uses.
    next_counter: u64,
}

/// Applies the child's report lines.
fn apply(lines: &str, known: &mut Known) -> Result<(), String> {
    for line in lines.lines() {
        if line == "FELL BACK" {
            return Err("the child fell back to level 1".into());
        }
        let Some(rest) = line.strip_prefix("P ") else {
            continue;
        };
        let Some((name, id)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse::<i64>() else {
            continue; // a line cut by the kill
        };
        let (counter, index) = decode(id);
        if counter != known.next_counter {
            return Err(format!(
                "child reported counter {counter}, expected {}",
                known.next_counter
            ));
        }
        let expected_name = if index == EXTRA {
            extra_name(counter)
        } else {
            NAMES[index as usize].to_string()
        };
        if name != expected_name {
            return Err(format!("child reported {line:?}: name and id disagree"));
        }
        if let Some(&old) = known.reported.get(name) {
            if old >= id {
                return Err(format!("ids must grow per name: {name} {old} then {id}"));
            }
        }
        known.reported.insert(name.to_string(), id);
        known.next_counter += 1;
    }
    Ok(())
}

/// Reopens the file and checks every name against what the child reported.
fn check(dir: &Path, known: &mut Known) -> Result<(), String> {
    let reports = Reports::default();
    let opts = ClientOptions {
        on_failure: Some(collect_into(&reports)),
        ..options()
    };
    let store = ClientStore::open_file(dir, SERVER, KEY, &opts).map_err(|e| e.to_string())?;
    if store.level() != Level::Persistent {
        return Err(format!(
            "reopened at level 1: {:?}",
            reports.lock().unwrap()
        ));
    }
    for r in reports.lock().unwrap().iter() {
        // A put cut by the kill may leave a partial record; anything else
        // is damage the kill cannot have caused.
        if r.kind != FailureKind::InterruptedWrite {
            return Err(format!("unexpected report at reopen: {r}"));
        }
    }
    let entries = store.entries().map_err(|e| e.to_string())?;
    let in_progress = known.next_counter;
    let mut landed = None;
    for (name, id) in &entries {
        let (counter, index) = decode(*id);
        let written_for = if index == EXTRA {
            extra_name(counter)
        } else if (0..NAMES.len() as i64).contains(&index) {
            NAMES[index as usize].to_string()
        } else {
            return Err(format!("{name} holds {id}, which no put wrote"));
        };
        if written_for != *name {
            return Err(format!(
                "{name} holds {id}, which was written for {written_for}"
            ));
        }
        match known.reported.get(name) {
            Some(&last) if *id == last => {}
            Some(&last) if *id < last => {
                return Err(format!(
                    "{name} holds {id}, older than {last} which the child reported stored"
                ))
            }
            _ if counter == in_progress => landed = Some((name.clone(), *id)),
            Some(&last) => {
                return Err(format!(
                    "{name} holds {id} (counter {counter}): newer than the reported {last} \
                     but not the put in progress (counter {in_progress})"
                ))
            }
            None => {
                return Err(format!(
                    "{name} holds {id} (counter {counter}) but was never reported and is \
                     not the put in progress (counter {in_progress})"
                ))
            }
        }
    }
    for (name, last) in &known.reported {
        if !entries.iter().any(|(n, _)| n == name) {
            return Err(format!("{name} (reported {last}) is gone"));
        }
    }
    if let Some((name, id)) = landed {
        known.reported.insert(name, id);
    }
    // The put in progress either landed or never will: skip its counter.
    known.next_counter += 1;
    drop(store);
    let mut listing: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    listing.sort();
    if listing != [client_file_name(SERVER, KEY)] {
        return Err(format!("files left next to the client file: {listing:?}"));
    }
    Ok(())
}

fn parent() -> Result<(), String> {
    // Real disk: the child's puts pay a real msync each.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut known = Known {
        reported: BTreeMap::new(),
        next_counter: 0,
    };
    let mut rng = Rng(0x51ee_d00d_cafe_f00d);
    let started = Instant::now();
    let mut puts = 0usize;
    let mut landed_unreported = 0usize;
    for kill in 0..KILLS {
        // Land the kill anywhere inside a put, not only between them.
        let seen = kill_at_random(
            Command::new(&exe)
                .env("SNP_CLIENT_CRASH_DIR", dir.path())
                .env("SNP_CLIENT_CRASH_START", known.next_counter.to_string())
                .env("SNP_CLIENT_CRASH_SEED", (u64::from(kill) + 1).to_string()),
            &mut rng,
            80,
            600,
        )?;
        puts += seen.lines().count();
        apply(&seen, &mut known).map_err(|e| format!("kill {kill}: {e}"))?;
        let before = known.reported.clone();
        check(dir.path(), &mut known).map_err(|e| format!("kill {kill}: {e}"))?;
        if known.reported != before {
            landed_unreported += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "client_crash_sigkill: {KILLS} kills, {puts} reported puts, {landed_unreported} puts \
         stored but cut before their report, {} subscriptions at the end, {elapsed:.1} s",
        known.reported.len(),
    );
    if known.reported.len() <= NAMES.len() {
        return Err("no new subscription was added: the file never had to grow".into());
    }
    Ok(())
}

/// Runs the child's put loop if this process is that child.
pub fn child_from_env() -> bool {
    let Ok(dir) = std::env::var("SNP_CLIENT_CRASH_DIR") else {
        return false;
    };
    child(
        &dir,
        env_number("SNP_CLIENT_CRASH_START"),
        env_number("SNP_CLIENT_CRASH_SEED"),
    );
    true
}

/// The test: kills, reopens, checks.
pub fn test() -> Result<(), String> {
    parent()
}
