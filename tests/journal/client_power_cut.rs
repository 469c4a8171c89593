//! Invariant: a power cut at any sync point of a CPL-2 client file with
//! `Durability::Sync` leaves every subscription's id as it was before or
//! after the interrupted operation (never garbage), and every other
//! subscription untouched; with `Durability::None` a cut may lose puts but
//! never yields an id that was not written for that name.
//!
//! The journal's map keeps a copy of what the device holds (each page as of
//! its last msync). A cut is simulated at a chosen msync: the file is
//! rebuilt from that copy, where each 512-byte sector written since its last
//! sync was either lost or (at random) written back by the kernel on its
//! own, and reopened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::Path;

use softnet_persistence::{ClientOptions, ClientStore, Durability, Failure, FailureKind, Level};
use tempfile::TempDir;
use testkit::{client_options, scratch_dir, PowerCut, Reports, Rng};

const SERVER: &str = "broker.local";
const KEY: &str = "power";

/// An id: often an extreme or small one, mostly any.
fn random_id(rng: &mut Rng) -> i64 {
    match rng.below(6) {
        0 => [i64::MIN, i64::MAX, 0, -1][rng.below(4) as usize],
        1 => rng.below(8) as i64,
        _ => rng.next_u64() as i64,
    }
}

/// A few names of different lengths (records of different sizes, so they
/// straddle sectors and wrap the ring at varied places); "Pinned" is put
/// once and never again, so the ring has to relocate it.
const NAMES: [&str; 6] = [
    "Temperature",
    "Door",
    "A",
    "Valve/7 flow rate (litres per minute) at the outlet of the second pump",
    "Level",
    "Alarm#3",
];

type State = BTreeMap<String, i64>;

// The device is simulated here, so real syncs would only cost time: the
// directories are `scratch_dir()`s, on tmpfs when there is one.

fn state(store: &ClientStore) -> State {
    store.entries().unwrap().into_iter().collect()
}

/// One step of the deterministic scenario; records every id written.
/// `resets`: one step in a hundred resets the store (which moves the ring's
/// tail up to its head, so long runs without it wrap the ring).
fn step(
    store: &ClientStore,
    rng: &mut Rng,
    resets: bool,
    written: &mut HashMap<String, BTreeSet<i64>>,
) {
    match rng.below(100) {
        0 if resets => store.reset().unwrap(),
        0 => store.flush().unwrap(),
        1..=3 => store.flush().unwrap(),
        4..=8 => {
            // The same id again: nothing to write.
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            if let Some(id) = store.get(name).unwrap() {
                store.put(name, id).unwrap();
            }
        }
        9..=11 => {
            // A few more subscriptions now and then (not enough to grow
            // the file: a resize starts a new map, and the simulated device
            // with it).
            let name = format!("Extra{}", rng.below(12));
            let id = random_id(rng);
            store.put(&name, id).unwrap();
            written.entry(name).or_default().insert(id);
        }
        _ => {
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            let id = random_id(rng);
            store.put(name, id).unwrap();
            written.entry(name.to_string()).or_default().insert(id);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    steps: u64,
    resets: bool,
}

struct Run {
    /// The store's state after each step (index 0: after the setup).
    states: Vec<State>,
    /// Sync count after each step, counted from the end of the setup.
    syncs: Vec<u64>,
    image: Option<Vec<u8>>,
    file_name: OsString,
}

/// Runs the scenario of `seed` for `steps` steps; with `cut = Some(k)` a
/// power cut is captured at the k-th sync after the setup and the run stops
/// after the step it happened in.
fn run(dir: &Path, seed: u64, scenario: Scenario, cut: Option<u64>) -> Run {
    let reports = Reports::default();
    let cut_device = PowerCut::new();
    let store = ClientStore::open_file(
        dir,
        SERVER,
        KEY,
        &on_device(Durability::Sync, &reports, &cut_device),
    )
    .expect("open");
    let mut written = HashMap::new();
    store.put("Pinned", -(seed as i64)).unwrap();
    let file_name = file_name_of(&store);
    let sync_count = || syncs(&store, &cut_device);
    let base = sync_count();
    if let Some(k) = cut {
        cut_device.arm(base + k, seed);
    }
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Run {
        states: vec![state(&store)],
        syncs: vec![0],
        image: None,
        file_name,
    };
    for _ in 0..scenario.steps {
        step(&store, &mut rng, scenario.resets, &mut written);
        out.states.push(state(&store));
        let syncs = sync_count() - base;
        out.syncs.push(syncs);
        if cut.is_some_and(|k| syncs >= k) {
            break;
        }
    }
    assert_eq!(store.level(), Level::Persistent, "seed {seed}: no fallback");
    assert!(reports.lock().unwrap().is_empty(), "seed {seed}");
    out.image = cut_device.take_image();
    out
}

fn file_name_of(store: &ClientStore) -> OsString {
    store.file_path().unwrap().file_name().unwrap().to_owned()
}

/// Syncs of the store's file so far (it must still be at level 2).
fn syncs(store: &ClientStore, cut: &PowerCut) -> u64 {
    assert_eq!(store.level(), Level::Persistent, "the store fell back");
    cut.sync_count()
}

/// `client_options(durability, reports)` with the file on `cut`'s
/// simulated device.
fn on_device(durability: Durability, reports: &Reports, cut: &PowerCut) -> ClientOptions {
    ClientOptions {
        device_layer: Some(cut.layer()),
        ..client_options(durability, reports)
    }
}

/// A fresh client file with `Durability::None`: its directory, the
/// reports, the store, the file's name and its simulated device.
fn open_unsynced() -> (TempDir, Reports, ClientStore, OsString, PowerCut) {
    let dir = scratch_dir();
    let reports = Reports::default();
    let cut = PowerCut::new();
    let store = ClientStore::open_file(
        dir.path(),
        SERVER,
        KEY,
        &on_device(Durability::None, &reports, &cut),
    )
    .unwrap();
    let file_name = file_name_of(&store);
    (dir, reports, store, file_name, cut)
}

/// Writes `image` as the client file of a fresh directory and opens it,
/// which must find it at level 2; returns what it holds and the reports.
fn reopen_image(image: &[u8], file_name: &OsString, context: &str) -> (State, Vec<Failure>) {
    let dir = scratch_dir();
    std::fs::write(dir.path().join(file_name), image).unwrap();
    let reports = Reports::default();
    let store = ClientStore::open_file(
        dir.path(),
        SERVER,
        KEY,
        &client_options(Durability::Sync, &reports),
    )
    .expect("open after a power cut");
    let got = state(&store);
    let level = store.level();
    drop(store);
    let reports = reports.lock().unwrap().clone();
    assert_eq!(level, Level::Persistent, "{context}: {reports:?}");
    (got, reports)
}

/// Checks a recovered state against the states before and after the step
/// a cut interrupted.
fn check_cut(got: &State, before: &State, after: &State, context: &str) {
    let names: BTreeSet<&String> = before
        .keys()
        .chain(after.keys())
        .chain(got.keys())
        .collect();
    for name in names {
        let (b, a, g) = (before.get(name), after.get(name), got.get(name));
        if b == a {
            assert_eq!(
                g, b,
                "{context}: {name} was not touched by the step but changed"
            );
        } else {
            assert!(
                g == b || g == a,
                "{context}: {name} is {g:?}; before the step {b:?}, after it {a:?}"
            );
        }
    }
    // Each step is one put or one reset: all of it or none of it.
    assert!(
        got == before || got == after,
        "{context}: half of the step survived ({} names before, {} after, {} recovered)",
        before.len(),
        after.len(),
        got.len()
    );
}

fn cut_at_random_syncs(seeds: std::ops::RangeInclusive<u64>, scenario: Scenario, cuts: u64) {
    let mut checked = 0;
    let mut reported = BTreeMap::<String, u64>::new();
    let mut mid_step = 0;
    for seed in seeds {
        let clean_dir = scratch_dir();
        let clean = run(clean_dir.path(), seed, scenario, None);
        let total = *clean.syncs.last().unwrap();
        assert!(total > scenario.steps / 2, "seed {seed}: {total} syncs");
        let mut rng = Rng(seed * 7919 + 1);
        for _ in 0..cuts {
            let k = 1 + rng.below(total);
            let dir = scratch_dir();
            let armed = run(dir.path(), seed, scenario, Some(k));
            let image = armed.image.expect("the armed sync happened");
            // The step during which sync k happened.
            let j = armed.syncs.iter().position(|&s| s >= k).unwrap();
            assert!(j >= 1);
            assert_eq!(
                armed.states[..=j],
                clean.states[..=j],
                "seed {seed}: the scenario is deterministic"
            );
            let (before, after) = (&armed.states[j - 1], &armed.states[j]);
            let context = format!("seed {seed}, cut at sync {k} during step {j}");
            let (got, reports) = reopen_image(&image, &armed.file_name, &context);
            for r in &reports {
                assert_ne!(r.kind, FailureKind::Fallback, "{context}: {r}");
                *reported.entry(format!("{:?}", r.kind)).or_default() += 1;
            }
            check_cut(&got, before, after, &context);
            if armed.syncs[j] > k || armed.syncs[j - 1] + 1 < k {
                mid_step += 1;
            }
            checked += 1;
        }
    }
    println!(
        "{checked} cuts checked ({mid_step} between two syncs of one step); reports {reported:?}"
    );
}

#[test]
fn a_cut_at_any_sync_keeps_each_id_old_or_new() {
    let scenario = Scenario {
        steps: 300,
        resets: true,
    };
    cut_at_random_syncs(1..=30, scenario, 20);
}

#[test]
fn a_cut_while_the_ring_is_busy_relocating_keeps_each_id_old_or_new() {
    // Long runs: the ring wraps many times, "Pinned" is relocated again and
    // again, and the header's tail moves.
    let scenario = Scenario {
        steps: 2000,
        resets: false,
    };
    cut_at_random_syncs(101..=106, scenario, 60);
}

#[test]
fn every_sync_of_one_run_is_a_safe_place_to_cut() {
    // One long run that laps the ring (tail moves, relocations), one with
    // resets in it.
    for (seed, steps, resets) in [(4242, 1200, false), (77, 400, true)] {
        let scenario = Scenario { steps, resets };
        let clean_dir = scratch_dir();
        let clean = run(clean_dir.path(), seed, scenario, None);
        let total = *clean.syncs.last().unwrap();
        for k in 1..=total {
            let dir = scratch_dir();
            let armed = run(dir.path(), seed, scenario, Some(k));
            let image = armed.image.expect("the armed sync happened");
            let j = armed.syncs.iter().position(|&s| s >= k).unwrap();
            let context = format!("seed {seed}, cut at sync {k} of {total} during step {j}");
            let (got, _) = reopen_image(&image, &armed.file_name, &context);
            check_cut(&got, &armed.states[j - 1], &armed.states[j], &context);
        }
    }
}

#[test]
fn without_sync_a_cut_never_yields_an_id_not_written_for_that_name() {
    let mut lossy = 0;
    let mut cases = 0;
    for seed in 1..=40u64 {
        let (_dir, _reports, store, file_name, cut) = open_unsynced();
        let mut written: HashMap<String, BTreeSet<i64>> = HashMap::new();
        store.put("Pinned", -(seed as i64)).unwrap();
        written
            .entry("Pinned".into())
            .or_default()
            .insert(-(seed as i64));
        let mut rng = Rng(seed | 1);
        let mut keep = Rng(seed ^ 0x5555_aaaa);
        for n in 1..=600u64 {
            step(&store, &mut rng, n > 300, &mut written);
            if !n.is_multiple_of(50) {
                continue;
            }
            // What a cut now would leave: each unsynced sector kept or lost.
            assert_eq!(store.level(), Level::Persistent);
            let image = cut.image_now(&mut |_| keep.below(2) == 0);
            let context = format!("seed {seed}, cut after step {n}");
            let (got, _) = reopen_image(&image, &file_name, &context);
            for (name, id) in &got {
                assert!(
                    written.get(name).is_some_and(|ids| ids.contains(id)),
                    "{context}: {name} = {id}, which was never written for it"
                );
            }
            if got != state(&store) {
                lossy += 1;
            }
            cases += 1;
        }
    }
    println!("{cases} cuts without sync, {lossy} lost something");
    assert!(
        lossy > 0,
        "a cut without sync never lost anything: is it real?"
    );
}

/// `Durability::None` promises nothing across a power cut except what
/// `flush()` made durable: a cut that keeps no unsynced sector brings back
/// exactly the state of the last flush.
#[test]
fn without_sync_a_cut_keeps_exactly_what_the_last_flush_made_durable() {
    let mut checked = 0;
    let mut lost = 0;
    for seed in 1..=30u64 {
        let (_dir, reports, store, file_name, cut) = open_unsynced();
        let mut written = HashMap::new();
        let mut rng = Rng(seed.wrapping_mul(31) | 1);
        let mut flushed = State::new();
        let syncs = || syncs(&store, &cut);
        let mut synced = syncs();
        for n in 1..=400u64 {
            // The scenario flushes now and then (and nothing else syncs).
            step(&store, &mut rng, seed.is_multiple_of(2), &mut written);
            if syncs() != synced {
                synced = syncs();
                flushed = state(&store);
            }
            if !n.is_multiple_of(40) {
                continue;
            }
            let image = cut.image_now(&mut |_| false);
            let context = format!("seed {seed}, cut after step {n}");
            let (got, _) = reopen_image(&image, &file_name, &context);
            assert_eq!(got, flushed, "{context}: the state of the last flush");
            if got != state(&store) {
                lost += 1;
            }
            checked += 1;
        }
        assert!(reports.lock().unwrap().is_empty());
    }
    println!("{checked} cuts checked against the last flush, {lost} lost unflushed puts");
    assert!(
        lost > checked / 2,
        "most cuts lose the puts made since the last flush"
    );
}
