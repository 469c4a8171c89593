//! Invariant: the journal's ring reuses its space under any pattern of
//! removals (in order, out of order, a record pinned at the tail for
//! ever): an append always succeeds while the live records fit the
//! capacity, and after every reopen the live records are exactly the ones
//! appended and not removed, in order, with their bytes. Property tests of
//! the ring through a real file.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;

use crate::backend::{RecordLog, Removal};
use crate::journal::{Durability, Journal, JournalConfig};

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        cases,
        ..ProptestConfig::default()
    }
}

/// On tmpfs when there is one: these runs need no real syncs.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temporary directory")
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    /// Remove the live record at this position (modulo the count).
    Remove(usize),
    /// Remove the oldest live record, except the pinned one.
    RemoveOldest,
    Reopen,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2400).prop_map(Op::Append),
        3 => any::<usize>().prop_map(Op::Remove),
        3 => Just(Op::RemoveOldest),
        1 => Just(Op::Reopen),
        1 => Just(Op::Clear),
    ]
}

fn config(capacity: u64) -> JournalConfig {
    JournalConfig {
        kind: "test journal",
        magic: *b"SNPTEST1",
        owner: Uuid::from_u128(7),
        capacity,
        durability: Durability::None,
        device_layer: None,
    }
}

fn live(j: &mut Journal) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    j.scan(&mut |id, p| {
        out.push((id, p.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

fn record_len(len: usize) -> u64 {
    (32 + len as u64).next_multiple_of(8)
}

/// What the journal must hold: id -> payload.
type Model = BTreeMap<u64, Vec<u8>>;

fn used(m: &Model) -> u64 {
    m.values().map(|p| record_len(p.len())).sum()
}

/// Appends `len` bytes, making room first as the store would: oldest
/// first, never the pinned record unless it is all that is left.
fn append(
    j: &mut Journal,
    model: &mut Model,
    pinned: &mut Option<u64>,
    capacity: u64,
    payload: Vec<u8>,
) -> Result<u64, TestCaseError> {
    let len = payload.len();
    while used(model) + record_len(len) > capacity {
        let victim = match model.keys().find(|&&id| Some(id) != *pinned) {
            Some(&id) => id,
            // Only the pinned record is left and still too big.
            None => pinned.take().unwrap(),
        };
        j.remove(victim, Removal::Dropped).unwrap();
        model.remove(&victim);
    }
    let id = j.append(&payload).map_err(|e| {
        TestCaseError::fail(format!(
            "append of {len} failed with {} bytes live of {capacity}: {e}",
            used(model)
        ))
    })?;
    prop_assert!(model.keys().all(|&k| k < id), "ids grow");
    model.insert(id, payload);
    Ok(id)
}

/// Removes one record the test chose, never the pinned one.
fn remove(j: &mut Journal, model: &mut Model, pinned: Option<u64>, pick: impl Fn(&[u64]) -> u64) {
    let ids: Vec<u64> = model
        .keys()
        .copied()
        .filter(|&k| Some(k) != pinned)
        .collect();
    if !ids.is_empty() {
        let id = pick(&ids);
        j.remove(id, Removal::Acknowledged).unwrap();
        model.remove(&id);
    }
}

fn run(capacity: u64, ops: &[Op], pin: bool) -> Result<(), TestCaseError> {
    let dir = scratch_dir();
    let path = dir.path().join("journal.ssp");
    let (mut j, reports) = Journal::open(&path, &config(capacity)).unwrap();
    prop_assert!(reports.is_empty());
    let mut model = Model::new();
    let mut pinned: Option<u64> = None;
    let mut counter = 0u8;
    for op in ops {
        match op {
            Op::Append(len) => {
                counter = counter.wrapping_add(1);
                let id = append(
                    &mut j,
                    &mut model,
                    &mut pinned,
                    capacity,
                    vec![counter; *len],
                )?;
                if pin && pinned.is_none() {
                    pinned = Some(id);
                }
            }
            Op::Remove(i) => remove(&mut j, &mut model, pinned, |ids| ids[i % ids.len()]),
            Op::RemoveOldest => remove(&mut j, &mut model, pinned, |ids| ids[0]),
            Op::Reopen => {
                drop(j);
                let (reopened, reports) = Journal::open(&path, &config(capacity)).unwrap();
                prop_assert!(reports.is_empty(), "clean reopen reported {reports:?}");
                j = reopened;
            }
            Op::Clear => {
                j.clear().unwrap();
                model.clear();
                pinned = None;
            }
        }
        let expected: Vec<(u64, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
        prop_assert_eq!(live(&mut j), expected);
    }
    drop(j);
    let (mut j, _) = Journal::open(&path, &config(capacity)).unwrap();
    let expected: Vec<(u64, Vec<u8>)> = model.into_iter().collect();
    prop_assert_eq!(live(&mut j), expected);
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(96))]

    #[test]
    fn ring_reuse_any_removal_order(ops in prop::collection::vec(op(), 1..400)) {
        run(8192, &ops, false)?;
    }

    #[test]
    fn ring_reuse_with_a_record_pinned_at_the_tail(ops in prop::collection::vec(op(), 1..400)) {
        run(8192, &ops, true)?;
    }

    #[test]
    fn ring_reuse_at_a_tiny_capacity(ops in prop::collection::vec(op(), 1..300)) {
        run(2500, &ops, true)?;
    }
}

#[test]
fn a_long_run_with_a_pinned_record_keeps_relocating() {
    // 20,000 appends of 100..600 bytes through an 8 KiB journal whose first
    // record is never removed.
    let mut ops = Vec::new();
    for i in 0..20_000usize {
        ops.push(Op::Append(100 + (i * 37) % 500));
        if i % 3 != 0 {
            ops.push(Op::RemoveOldest);
        }
        if i % 5000 == 4999 {
            ops.push(Op::Reopen);
        }
    }
    run(8192, &ops, true).unwrap();
}
