//! Invariant: a damaged client file (truncated at any byte, bits flipped
//! anywhere, a foreign or garbage file) never makes open panic or fail and
//! never yields an id that was not written for that name; whatever is lost
//! or rolled back is reported (docs/BEHAVIOUR.md section 5), and the store continues at
//! level 2.
//!
//! The files under test are real: written through `open_file` with
//! `Durability::Sync`, then copied, damaged and opened again. In the first
//! fixture every put's record lies one after another from data offset 0
//! (the ring never wrapped): 8192 bytes of header pages, then per put a 32-byte
//! record header and the payload `[id: i64 LE][name]` padded to 8 bytes.
//! Old records of a name stay on disk (only the newest counts), so a cut or
//! a flip can bring back an older id of a name: allowed, but reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use softnet_persistence::{
    ClientOptions, ClientStore, Durability, EventKind, Failure, FailureKind, Level, ServiceOptions,
    ServiceStore, Uuid,
};
use testkit::{
    client_file_name, client_options, flip_random_bits, scratch_dir, u32_at, u64_at, Reports, Rng,
    Sweep, DATA_OFFSET, RECORD_HEADER, SLOT_LEN, SLOT_OFFSETS, STATE,
};

const SERVER: &str = "fe80::9";
const KEY: &str = "corruption";
const FLIP_CASES: u32 = 3000;

type State = BTreeMap<String, i64>;

fn file_name() -> String {
    client_file_name(SERVER, KEY)
}

fn options(reports: &Reports) -> ClientOptions {
    client_options(Durability::Sync, reports)
}

// ----- the files under test -------------------------------------------------------

/// One put and where its record lies (first fixture only).
struct Put {
    name: String,
    id: i64,
    /// Start of the record, relative to the data region.
    start: usize,
}

impl Put {
    fn payload_len(&self) -> usize {
        8 + self.name.len()
    }
    /// File offset one past the last payload byte.
    fn complete_at(&self) -> usize {
        DATA_OFFSET + self.start + RECORD_HEADER + self.payload_len()
    }
    fn end(&self) -> usize {
        DATA_OFFSET + self.start + (RECORD_HEADER + self.payload_len()).next_multiple_of(8)
    }
    fn state_at(&self) -> usize {
        DATA_OFFSET + self.start + STATE
    }
}

struct Fixture {
    bytes: Vec<u8>,
    puts: Vec<Put>,
    /// Per name, every id ever written for it.
    written: HashMap<String, BTreeSet<i64>>,
    /// What the intact file holds.
    last: State,
}

impl Fixture {
    /// The state after the first `n` puts.
    fn after(&self, n: usize) -> State {
        let mut s = State::new();
        for p in &self.puts[..n] {
            s.insert(p.name.clone(), p.id);
        }
        s
    }

    fn used_end(&self) -> usize {
        self.puts.last().map_or(DATA_OFFSET, Put::end)
    }
}

const NAMES: [&str; 8] = [
    "Temperature",
    "Door",
    "A",
    "Valve/7 flow (l/min)",
    "Level_of_the_tank_in_the_basement_next_to_the_boiler_room",
    "Alarm#3",
    "Pump.speed",
    "Z9",
];

fn some_id(rng: &mut Rng, n: usize) -> i64 {
    match rng.below(5) {
        0 => [i64::MIN, i64::MAX, 0, -1, 1 << 31][rng.below(5) as usize],
        1 => n as i64,
        _ => rng.next_u64() as i64,
    }
}

/// Puts `count` ids into a fresh file and returns its bytes; with
/// `layout` the file must not have wrapped and its records are checked.
fn build(count: usize, seed: u64, layout: bool) -> Fixture {
    let dir = scratch_dir();
    let reports = Reports::default();
    let store = ClientStore::open_file(dir.path(), SERVER, KEY, &options(&reports)).unwrap();
    let mut rng = Rng(seed);
    let mut puts = Vec::new();
    let mut written: HashMap<String, BTreeSet<i64>> = HashMap::new();
    let mut last = State::new();
    let mut start = 0;
    for n in 0..count {
        let name = NAMES[rng.below(NAMES.len() as u64) as usize].to_string();
        let mut id = some_id(&mut rng, n);
        if last.get(&name) == Some(&id) {
            // The same id again writes nothing; keep one record per put.
            id = id.wrapping_add(1);
        }
        store.put(&name, id).unwrap();
        written.entry(name.clone()).or_default().insert(id);
        last.insert(name.clone(), id);
        let put = Put { name, id, start };
        start += (RECORD_HEADER + put.payload_len()).next_multiple_of(8);
        puts.push(put);
    }
    assert_eq!(store.level(), Level::Persistent);
    assert!(reports.lock().unwrap().is_empty());
    let path = store.file_path().unwrap();
    drop(store);
    let fixture = Fixture {
        bytes: fs::read(path).unwrap(),
        puts,
        written,
        last,
    };
    if layout {
        check_layout(&fixture);
    }
    fixture
}

/// The records are where the put sizes say (so the sweeps know which puts
/// a cut or a flip can touch).
fn check_layout(fx: &Fixture) {
    let b = &fx.bytes;
    for (i, p) in fx.puts.iter().enumerate() {
        let at = DATA_OFFSET + p.start;
        assert_eq!(
            u32_at(b, at + 8) as usize,
            p.payload_len(),
            "put {i}: payload length"
        );
        assert_eq!(u64_at(b, at + 16), i as u64 + 1, "put {i}: sequence");
        assert_eq!(u64_at(b, at + 24), i as u64 + 1, "put {i}: record id");
        assert_eq!(b[p.state_at()], b'L', "put {i}: state byte");
        assert_eq!(
            u64_at(b, at + RECORD_HEADER) as i64,
            p.id,
            "put {i}: id in the payload"
        );
        assert_eq!(
            &b[at + RECORD_HEADER + 8..p.complete_at()],
            p.name.as_bytes(),
            "put {i}: name"
        );
    }
    let end = fx.used_end();
    assert!(
        b[end..end + RECORD_HEADER].iter().all(|&x| x == 0),
        "nothing after the last record"
    );
}

// ----- opening a damaged copy ---------------------------------------------------

struct Outcome {
    state: State,
    reports: Vec<Failure>,
    level: Level,
    failures_counted: u64,
    aside: Vec<Vec<u8>>,
}

impl Outcome {
    fn reported(&self) -> bool {
        self.reports.iter().any(|r| {
            matches!(
                r.kind,
                FailureKind::Corruption | FailureKind::InterruptedWrite
            )
        })
    }
}

/// Places `bytes` at the client file's path in the fresh directory `dir`,
/// opens it, reads it, and removes the directory.
/// `verify_repair`: also check that the repaired file takes a put that
/// survives a reopen (a second open; the sweeps do it for some cases).
fn open_copy(dir: &Path, bytes: &[u8], verify_repair: bool) -> Outcome {
    fs::create_dir(dir).unwrap();
    fs::write(dir.join(file_name()), bytes).unwrap();
    let out = open_dir(dir, verify_repair);
    fs::remove_dir_all(dir).unwrap();
    out
}

fn open_dir(dir: &Path, verify_repair: bool) -> Outcome {
    let reports = Reports::default();
    let store = ClientStore::open_file(dir, SERVER, KEY, &options(&reports))
        .unwrap_or_else(|e| panic!("open must not fail on a damaged file: {e}"));
    let state: State = store.entries().unwrap().into_iter().collect();
    for (name, id) in &state {
        assert_eq!(store.get(name).unwrap(), Some(*id));
    }
    let level = store.level();
    let failures_counted = store.stats().failures;
    if verify_repair {
        // The repaired file works: a put survives a reopen, without a report.
        store.put("After", 7).unwrap();
        drop(store);
        let quiet = Reports::default();
        let again = ClientStore::open_file(dir, SERVER, KEY, &options(&quiet)).unwrap();
        assert_eq!(
            again.get("After").unwrap(),
            Some(7),
            "the repaired file works"
        );
        assert!(
            quiet.lock().unwrap().is_empty(),
            "{:?}",
            quiet.lock().unwrap()
        );
    }
    let prefix = format!("{}.corrupt-", file_name());
    let mut aside = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            aside.push(fs::read(entry.path()).unwrap());
        }
    }
    let reports = reports.lock().unwrap().clone();
    Outcome {
        state,
        reports,
        level,
        failures_counted,
        aside,
    }
}

/// Every id is one written for its name; a changed or lost name is
/// reported (unless `silent_ok`).
fn check_outcome(fx: &Fixture, out: &Outcome, silent_ok: bool) {
    assert_eq!(out.level, Level::Persistent, "continues at level 2");
    for (name, id) in &out.state {
        assert!(
            fx.written.get(name).is_some_and(|ids| ids.contains(id)),
            "{name} = {id}: an id that was never written for it"
        );
    }
    assert_eq!(
        out.failures_counted,
        out.reports.len() as u64,
        "stats().failures counts every report: {:?}",
        out.reports
    );
    if out.state != fx.last && !silent_ok {
        let changed: Vec<String> = fx
            .last
            .iter()
            .filter(|(n, id)| out.state.get(*n) != Some(id))
            .map(|(n, id)| format!("{n}: {id} -> {:?}", out.state.get(n)))
            .collect();
        assert!(
            out.reported(),
            "{} subscription(s) lost or rolled back without a report: {changed:?} {:?}",
            changed.len(),
            out.reports
        );
    }
}

// ----- the sweeps ------------------------------------------------------------------

#[test]
fn truncation_at_every_offset_keeps_exactly_the_whole_records() {
    let fx = build(220, 0x5eed_0001, true);
    let root = scratch_dir();
    let mut sweep = Sweep::default();
    let len = fx.bytes.len();
    for cut in 0..=len {
        sweep.case(
            format_args!("file truncated to {cut} of {len} bytes"),
            || {
                let out = open_copy(
                    &root.path().join(cut.to_string()),
                    &fx.bytes[..cut],
                    cut.is_multiple_of(16),
                );
                check_outcome(&fx, &out, false);
                // The puts whose records are whole survive; nothing after them.
                let whole = if cut >= DATA_OFFSET {
                    fx.puts.iter().filter(|p| p.complete_at() <= cut).count()
                } else {
                    0
                };
                assert_eq!(
                    out.state,
                    fx.after(whole),
                    "the state after the {whole} whole puts"
                );
                if cut < len {
                    assert!(out.reported(), "a truncated file is reported");
                    assert_eq!(out.aside.len(), 1, "the damaged file is set aside once");
                    assert!(out.aside[0] == fx.bytes[..cut], "set aside as found");
                } else {
                    assert!(out.reports.is_empty(), "{:?}", out.reports);
                    assert!(out.aside.is_empty());
                }
            },
        );
    }
    sweep.finish();
}

/// Flips 1-4 random bits per case; returns the damaged bytes and whether
/// one state byte got more than one flip (two flipped bits can turn `L`
/// into another valid state: then a silent loss is within the format's
/// contract).
fn flip(fx: &Fixture, rng: &mut Rng, state_bytes: &[usize]) -> (Vec<u8>, Vec<u64>, bool) {
    let used = (fx.used_end() + RECORD_HEADER) as u64;
    let mut bytes = fx.bytes.clone();
    let bits = flip_random_bits(&mut bytes, used, rng);
    let mut per_byte = HashMap::<usize, u32>::new();
    for b in &bits {
        *per_byte.entry((b / 8) as usize).or_default() += 1;
    }
    let double_state = per_byte
        .iter()
        .any(|(at, n)| *n > 1 && state_bytes.contains(at));
    (bytes, bits, double_state)
}

fn state_bytes_of(fx: &Fixture) -> Vec<usize> {
    fx.puts.iter().map(Put::state_at).collect()
}

#[test]
fn random_bit_flips_never_yield_an_id_not_written_and_report_losses() {
    let fx = build(220, 0x5eed_0002, true);
    let root = scratch_dir();
    let states = state_bytes_of(&fx);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sweep = Sweep::default();
    let mut changed = 0;
    for n in 0..FLIP_CASES {
        let (bytes, bits, double_state) = flip(&fx, &mut rng, &states);
        sweep.case(format_args!("case {n}, bits flipped {bits:?}"), || {
            let out = open_copy(
                &root.path().join(n.to_string()),
                &bytes,
                n.is_multiple_of(4),
            );
            check_outcome(&fx, &out, double_state);
            if out.state != fx.last {
                changed += 1;
            }
        });
    }
    sweep.finish();
    assert!(changed > 0, "no flip changed anything: is the sweep real?");
}

/// One flipped bit in the state byte of each name's newest record: the
/// state byte is outside the CRC, and every valid state is two bits away
/// from `L`, so this must never roll a name back silently.
#[test]
fn one_flipped_bit_in_a_state_byte_is_kept_or_reported() {
    let fx = build(220, 0x5eed_0003, true);
    let root = scratch_dir();
    let mut sweep = Sweep::default();
    let mut newest: BTreeMap<&str, &Put> = BTreeMap::new();
    for p in &fx.puts {
        newest.insert(&p.name, p);
    }
    for (name, put) in newest {
        for bit in 0..8 {
            let mut bytes = fx.bytes.clone();
            bytes[put.state_at()] ^= 1 << bit;
            sweep.case(format_args!("{name}: state bit {bit}"), || {
                let dir = root.path().join(format!("{}-{bit}", put.start));
                let out = open_copy(&dir, &bytes, true);
                check_outcome(&fx, &out, false);
            });
        }
    }
    sweep.finish();
}

#[test]
fn damage_to_a_wrapped_ring_never_yields_an_id_not_written() {
    // Enough puts that the ring wrapped several times, records were
    // relocated and the header's tail moved: no layout to rely on.
    let fx = build(3000, 0x5eed_0004, false);
    let root = scratch_dir();
    let mut sweep = Sweep::default();
    let len = fx.bytes.len();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for cut in (0..=len).step_by(3) {
        sweep.case(
            format_args!("wrapped file truncated to {cut} bytes"),
            || {
                let out = open_copy(
                    &root.path().join(format!("t{cut}")),
                    &fx.bytes[..cut],
                    cut.is_multiple_of(48),
                );
                check_outcome(&fx, &out, false);
                if cut < len {
                    assert!(out.reported(), "a truncated file is reported");
                } else {
                    assert_eq!(out.state, fx.last);
                }
            },
        );
    }
    for n in 0..FLIP_CASES / 3 {
        let mut bytes = fx.bytes.clone();
        let mut bits = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let bit = rng.below(len as u64 * 8);
            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
            bits.push(bit);
        }
        // Two flips in one byte may turn a state into another valid one.
        let same_byte = bits
            .iter()
            .enumerate()
            .any(|(i, a)| bits[..i].iter().any(|b| a / 8 == b / 8));
        sweep.case(format_args!("wrapped file, bits {bits:?}"), || {
            let out = open_copy(
                &root.path().join(format!("f{n}")),
                &bytes,
                n.is_multiple_of(4),
            );
            check_outcome(&fx, &out, same_byte);
        });
    }
    sweep.finish();
}

// ----- other files at the client file's path ----------------------------------------

fn check_replaced(dir: &Path, what: &str) {
    let original = fs::read(dir.join(file_name())).unwrap();
    let out = open_dir(dir, true);
    assert_eq!(out.level, Level::Persistent, "{what}: continues at level 2");
    assert!(out.state.is_empty(), "{what}: a new, empty file");
    assert!(
        out.reports
            .iter()
            .any(|r| r.kind == FailureKind::Corruption),
        "{what}: reported: {:?}",
        out.reports
    );
    assert_eq!(out.aside.len(), 1, "{what}: set aside");
    assert!(out.aside[0] == original, "{what}: set aside as found");
}

#[test]
fn foreign_empty_and_garbage_files_are_set_aside() {
    let fx = build(40, 0x5eed_0005, true);
    // Another client's file (other key) renamed to ours.
    {
        let dir = scratch_dir();
        let other =
            ClientStore::open_file(dir.path(), SERVER, "other", &ClientOptions::default()).unwrap();
        other.put("Theirs", 1).unwrap();
        let path = other.file_path().unwrap();
        drop(other);
        fs::rename(path, dir.path().join(file_name())).unwrap();
        check_replaced(dir.path(), "another client's file");
    }
    // A service journal at the client file's path.
    {
        let dir = scratch_dir();
        let service = Uuid::new_v4();
        let store =
            ServiceStore::open_file(dir.path(), service, &ServiceOptions::default()).unwrap();
        store.raise(EventKind::Queueing, "Temp", b"1").unwrap();
        let path = store.journal_path().unwrap();
        drop(store);
        fs::rename(path, dir.path().join(file_name())).unwrap();
        check_replaced(dir.path(), "a service journal");
    }
    let mut rng = Rng(77);
    for len in [0usize, 1, 700, 4096, 5000, fx.bytes.len()] {
        let dir = scratch_dir();
        let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        fs::write(dir.path().join(file_name()), &garbage).unwrap();
        check_replaced(dir.path(), &format!("{len} bytes of garbage"));
    }
    // Both header slots destroyed.
    let dir = scratch_dir();
    let mut bytes = fx.bytes.clone();
    for at in SLOT_OFFSETS {
        bytes[at + SLOT_LEN / 2] ^= 0x10;
    }
    fs::write(dir.path().join(file_name()), &bytes).unwrap();
    check_replaced(dir.path(), "both header slots damaged");
}

// Two pairs never share a file name (the parts are encoded); a file of
// another pair at a client's name is the foreign file above. The pairs that
// shared a name under the old rule, and their files' migration, are tested
// in tests/client/file_names.rs.
