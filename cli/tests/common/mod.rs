//! What the tests of `snp` share: running it, and journals made by the
//! library in scratch directories.
#![allow(dead_code)] // each test binary uses part of it

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use softnet_persistence::{
    ClientOptions, ClientStore, Durability, Event, EventKind, ServiceOptions, ServiceStore, Uuid,
};
use tempfile::TempDir;
use testkit::layout::Layout;

/// What a run of `snp` gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `snp` with `args`.
pub fn snp(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_snp"))
        .args(args)
        .output()
        .expect("snp runs");
    Run {
        code: out.status.code().expect("snp exits"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `snp` with a path argument.
pub fn snp_on(command: &str, path: &Path, more: &[&str]) -> Run {
    let path = path.to_str().unwrap();
    let mut args = vec![command, path];
    args.extend_from_slice(more);
    snp(&args)
}

pub const SERVICE: Uuid = Uuid::from_u128(0x5e41_1ce0_0000_4000_8000_0000_0000_0001);

pub fn service_options() -> ServiceOptions {
    ServiceOptions {
        durability: Durability::Sync,
        ..Default::default()
    }
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join(testkit::files::journal_name(SERVICE))
}

/// A service journal with events of several names and kinds; returns the
/// directory, the file, the pending events (delivery order) and the
/// storage uid.
pub fn service_journal() -> (TempDir, PathBuf, Vec<Event>, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let store = ServiceStore::open_file(dir.path(), SERVICE, &service_options()).unwrap();
    // One acknowledged (storage mode: the ack is for the event in flight).
    let acked = store.raise(EventKind::Queueing, "Acked", b"gone").unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, acked);
    store.ack(acked).unwrap();
    store
        .raise(EventKind::Queueing, "Temperature", b"21.5")
        .unwrap();
    store.raise(EventKind::Replacing, "Door", b"open").unwrap();
    store
        .raise(EventKind::Queueing, "Temperature", b"say \"hi\"\\")
        .unwrap();
    store
        .raise_private("Note", &[0, 1, 0xfe, b'\n'], -42)
        .unwrap();
    store
        .raise(EventKind::Replacing, "Door", b"closed")
        .unwrap();
    store
        .raise(EventKind::Queueing, "Temperature", b"23")
        .unwrap();
    store.raise(EventKind::ReplacingNull, "Alarm", b"").unwrap();
    let pending = store.pending().unwrap();
    let storage = store.storage_uid();
    drop(store);
    let path = journal_path(dir.path());
    (dir, path, pending, storage)
}

/// A client file with two subscriptions (one put twice).
pub fn client_file() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let options = ClientOptions {
        durability: Durability::Sync,
        ..Default::default()
    };
    let store =
        ClientStore::open_file(dir.path(), "broker.example.com", "client-1", &options).unwrap();
    store.put("Temperature", 5).unwrap();
    store.put("Door", 7).unwrap();
    store.put("Temperature", 9).unwrap();
    drop(store);
    let path = dir.path().join(testkit::files::client_file_name(
        "broker.example.com",
        "client-1",
    ));
    (dir, path)
}

/// Flips a payload byte of the `n`-th pending record; returns that record's
/// (ring offset, sequence number).
pub fn damage_live_record(path: &Path, n: usize) -> (u64, u64) {
    let mut bytes = fs::read(path).unwrap();
    let layout = Layout::parse(&bytes).unwrap();
    let rec = layout.live().nth(n).unwrap().clone();
    bytes[rec.payload_range().start + 2] ^= 0x55;
    fs::write(path, &bytes).unwrap();
    (rec.pos, rec.seq)
}

/// Every file in `dir`, with its bytes.
pub fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// `ms` since the Unix epoch in UTC, ISO 8601 to the millisecond
/// (docs/TOOLS.md), counted out year by year and month by month (not the
/// tool's arithmetic).
pub fn iso8601(ms: u64) -> String {
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let secs = ms / 1000;
    let mut days = secs / 86_400;
    let mut year = 1970;
    while days >= if leap(year) { 366 } else { 365 } {
        days -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let february = if leap(year) { 29 } else { 28 };
    let mut month = 1;
    for len in [31, february, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    let s = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        days + 1,
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms % 1000
    )
}

/// An event's raise time as `snp dump` shows it: ISO 8601, or `unknown`.
pub fn raised(e: &Event) -> String {
    e.raised_at_ms
        .map_or_else(|| "unknown".to_string(), iso8601)
}

/// The dump line of an event (`snp dump` without --json).
pub fn dump_line(id: u64, e: &Event) -> String {
    let args = match std::str::from_utf8(&e.args) {
        Ok(s) if !s.chars().any(char::is_control) => {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        _ => format!(
            "hex:{}",
            e.args
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    };
    let client = e
        .client_id
        .map_or(String::new(), |c| format!(" client={c}"));
    format!(
        "id={id} raised={} kind={} name=\"{}\" uid={}{client} args={args}",
        raised(e),
        e.kind,
        e.name,
        e.uid
    )
}

/// The id field of a dump line.
pub fn id_of(line: &str) -> u64 {
    let rest = line.strip_prefix("id=").unwrap();
    rest[..rest.find(' ').unwrap()].parse().unwrap()
}
