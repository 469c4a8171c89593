//! `snp` on a journal that another process writes while it reads: every
//! answer is a consistent snapshot or "busy", never a half record.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use softnet_persistence::{Event, EventKind, ServiceOptions, ServiceStore, Uuid};

const WRITER_DIR: &str = "SNP_TEST_WRITER_DIR";
/// Set (to anything) for a writer with `Durability::None` and no pause
/// between events: the file changes every few microseconds.
const WRITER_FAST: &str = "SNP_TEST_WRITER_FAST";
/// `verify` and `inspect` runs after the dumps.
const VERIFY_RUNS: u32 = 100;
const UID_BASE: u128 = 0xabcd_0000_0000_4000_8000_0000_0000_0000;

/// The writer, run in a child process (this test binary, with
/// `WRITER_DIR` set): raises numbered events in a small journal (so the
/// ring wraps, the tail moves and the oldest events are dropped for
/// capacity), acknowledging some, until it is killed.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(WRITER_DIR) else {
        return;
    };
    let fast = std::env::var(WRITER_FAST).is_ok();
    let mut options = ServiceOptions {
        capacity: softnet_persistence::MIN_FILE_CAPACITY,
        ..service_options()
    };
    if fast {
        options.durability = softnet_persistence::Durability::None;
    }
    let store = ServiceStore::open_file(&dir, SERVICE, &options).unwrap();
    std::fs::write(Path::new(&dir).join("ready"), b"").unwrap();
    let started = Instant::now();
    let mut n: u128 = 0;
    while started.elapsed() < Duration::from_secs(120) {
        n += 1;
        let event = Event {
            kind: EventKind::Queueing,
            name: "Tick".to_string(),
            args: n.to_string().into_bytes(),
            client_id: None,
            uid: Uuid::from_u128(UID_BASE + n),
            seq: 0,
            raised_at_ms: None,
        };
        let _ = store.raise_event(&event);
        if n.is_multiple_of(3) {
            if let Ok(Some(oldest)) = store.peek() {
                let _ = store.ack(oldest.uid);
            }
        }
        if !fast {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_writer(dir: &Path, fast: bool) -> Writer {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR, dir);
    if fast {
        command.env(WRITER_FAST, "1");
    }
    let child = command.spawn().unwrap();
    let writer = Writer(child);
    let started = Instant::now();
    while !dir.join("ready").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the writer did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    writer
}

/// The value of `"key":` in a JSON line of `snp dump --json` (a number, or
/// a string without escapes).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    let rest = &line[at + key.len() + 3..];
    if let Some(s) = rest.strip_prefix('"') {
        &s[..s.find('"').unwrap()]
    } else {
        &rest[..rest.find([',', '}']).unwrap()]
    }
}

/// Checks one dump: every event whole (its uid is the one raised with its
/// number), in raise order, with nothing missing between the oldest and
/// newest except what the writer acknowledged or dropped (which only ever
/// removes the oldest).
fn check_dump(out: &str) -> usize {
    let mut last: Option<(u64, u128)> = None;
    let mut count = 0;
    for line in out.lines() {
        assert!(
            line.starts_with("{\"record\":\"event\",") && line.ends_with('}'),
            "{line}"
        );
        assert_eq!(field(line, "name"), "Tick");
        let id: u64 = field(line, "id").parse().unwrap();
        let n: u128 = field(line, "args").parse().unwrap();
        let uid = Uuid::parse_str(field(line, "uid")).unwrap();
        assert_eq!(uid, Uuid::from_u128(UID_BASE + n), "a whole event: {line}");
        if let Some((id0, n0)) = last {
            assert!(
                id > id0 && n > n0,
                "in order: {line} after id {id0}, n {n0}"
            );
        }
        last = Some((id, n));
        count += 1;
    }
    count
}

/// Runs `snp dump --json` for `seconds` against a running writer, then
/// `verify` and `inspect`; returns (consistent, busy) answers.
fn read_while_writing(fast: bool, seconds: u64) -> (u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let _writer = start_writer(dir.path(), fast);
    let path = journal_path(dir.path());
    let (mut consistent, mut busy) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let run = snp_on("dump", &path, &["--json"]);
        match run.code {
            0 => {
                assert!(
                    check_dump(&run.stdout) > 0,
                    "the writer keeps events pending"
                );
                consistent += 1;
            }
            3 => {
                assert!(run.stderr.contains(": busy: "), "{}", run.stderr);
                busy += 1;
            }
            code => panic!("exit {code}: {}{}", run.stdout, run.stderr),
        }
    }
    for _ in 0..VERIFY_RUNS {
        let run = snp_on("verify", &path, &[]);
        assert!(matches!(run.code, 0 | 3), "{}{}", run.stdout, run.stderr);
        let run = snp_on("inspect", &path, &[]);
        assert!(matches!(run.code, 0 | 3), "{}{}", run.stdout, run.stderr);
        if run.code == 0 {
            assert!(
                run.stdout.contains("in use:       yes: locked by pid"),
                "{}",
                run.stdout
            );
            assert!(
                run.stdout.contains("condition:    intact"),
                "{}",
                run.stdout
            );
        }
    }
    eprintln!("fast writer {fast}: {consistent} consistent dumps, {busy} busy");
    (consistent, busy)
}

#[test]
fn reads_while_a_writer_runs_are_consistent_or_busy() {
    // A writer that syncs each event (the file is quiet while it syncs):
    // the reads find quiet moments.
    let (consistent, busy) = read_while_writing(false, 2);
    assert!(consistent > 0, "no dump found a quiet moment ({busy} busy)");
}

#[test]
fn reads_while_a_fast_writer_runs_are_consistent_or_busy() {
    // A writer that changes the file every few microseconds: busy is a
    // fine answer, a mixture is not.
    read_while_writing(true, 2);
}
