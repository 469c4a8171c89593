//! One focused case for each of the subtler parts of the promise the
//! sweeps check: damage to records that held no pending event costs
//! nothing, damage that hides a live record is counted, and a doubtful
//! state byte never costs a pending event.

use std::collections::HashSet;

use softnet_persistence::{FailureKind, Uuid};
use testkit::{scratch_dir, Sweep};

use super::subjects::{laid_from_zero, many_pending, open_damaged, wrapped, Outcome, Subject};
use super::{damaged, XOR};

fn kinds(out: &Outcome) -> Vec<(FailureKind, u64)> {
    out.reports
        .iter()
        .map(|r| (r.kind, r.events_lost))
        .collect()
}

/// Every live event of `s` came back.
fn all_live_back(s: &Subject, out: &Outcome) {
    let back: HashSet<Uuid> = out.events.iter().map(|e| e.uid).collect();
    let lost: Vec<u64> = s
        .layout
        .live()
        .filter(|r| !back.contains(&s.uid(r)))
        .map(|r| r.id)
        .collect();
    assert!(
        lost.is_empty(),
        "live records {lost:?} lost: {:?}",
        out.reports
    );
}

/// The original of a relocated record (still `L` on disk, retired by its
/// copy later in the chain) holds no pending event: a damaged original
/// whose relocated copy was kept costs nothing. Every live event comes
/// back and the Corruption report counts no event lost.
#[test]
fn a_damaged_original_of_a_relocated_record_is_not_counted_lost() {
    let s = wrapped();
    let original = s
        .layout
        .records
        .iter()
        .find(|r| !r.is_marker() && !r.live && r.state == b'L')
        .expect("the wrapped ring has a relocated record's original in its chain");
    let at = original.payload_range().start + 20;
    let root = scratch_dir();
    let out = open_damaged(&s, &root.path().join("x"), &damaged(&s, &[(at, 1)], None));
    all_live_back(&s, &out);
    assert_eq!(
        kinds(&out),
        [(FailureKind::Corruption, 0)],
        "{:?}",
        out.reports
    );
}

/// A removed record (state `S`: superseded) with its type byte damaged:
/// its state byte still says it held no pending event, so it costs
/// nothing. Every live event comes back and the Corruption report counts
/// no event lost.
#[test]
fn a_removed_record_with_a_damaged_type_byte_is_not_counted_lost() {
    let s = laid_from_zero();
    let removed = s
        .layout
        .records
        .iter()
        .find(|r| !r.live && r.state == b'S')
        .expect("the fixture has a superseded record");
    let at = removed.start() + 12;
    let root = scratch_dir();
    let out = open_damaged(&s, &root.path().join("x"), &damaged(&s, &[(at, 1)], None));
    all_live_back(&s, &out);
    assert_eq!(
        kinds(&out),
        [(FailureKind::Corruption, 0)],
        "{:?}",
        out.reports
    );
}

/// Zeroes over a live record's header (a lost sector or page reads as
/// zeroes) make it look like a wrap marker (`len = 0`, `id = 0`): the
/// record is not taken for one. It alone is lost, and the Corruption
/// report counts it.
#[test]
fn a_live_record_with_a_zeroed_header_is_counted_lost() {
    let s = many_pending(1000);
    let start = s.layout.records[499].start();
    let root = scratch_dir();
    let bytes = damaged(&s, &[(start, 64)], Some(&[0]));
    let out = open_damaged(&s, &root.path().join("x"), &bytes);
    assert_eq!(out.events.len(), 999, "only record 500 is lost");
    assert_eq!(
        kinds(&out),
        [(FailureKind::Corruption, 1)],
        "{:?}",
        out.reports
    );
}

/// A damaged state byte (outside the CRC) makes a removed record doubtful.
/// It is kept as pending when it fits beside the pending events (allowed:
/// a repeat); in a full store it is left out instead and counted as
/// possibly lost, in one Corruption report saying it "did not fit". Either
/// way every live event comes back and nothing is dropped for room.
#[test]
fn a_damaged_state_byte_never_costs_a_live_event() {
    let s = wrapped();
    let root = scratch_dir();
    let mut sweep = Sweep::default();
    let (mut cases, mut left_out) = (0, 0);
    let removed = s
        .layout
        .records
        .iter()
        .filter(|r| !r.is_marker() && !r.live);
    for r in removed {
        let at = r.state_at();
        let bytes = damaged(&s, &[(at, 1)], None);
        sweep.case(
            format_args!("state byte of record id {} ^ {XOR:#04x}", r.id),
            || {
                let out = open_damaged(&s, &root.path().join(at.to_string()), &bytes);
                all_live_back(&s, &out);
                assert_eq!(out.count(FailureKind::CapacityDrop), 0, "{:?}", out.reports);
                if left_out_is_reported(&out) {
                    left_out += 1;
                }
            },
        );
        cases += 1;
    }
    sweep.finish();
    eprintln!("{cases} removed records' state bytes damaged: {left_out} left out as not fitting");
}

/// Only Corruption reports; a doubtful record left out is reported as
/// one that "did not fit" and counted, and nothing else is counted lost.
/// Returns whether it was left out.
fn left_out_is_reported(out: &Outcome) -> bool {
    let corrupt = out.count(FailureKind::Corruption);
    assert_eq!(corrupt, out.reports.len(), "{:?}", out.reports);
    let left_out: Vec<u64> = out
        .reports
        .iter()
        .filter(|r| r.message.contains("did not fit"))
        .map(|r| r.events_lost)
        .collect();
    assert!(left_out.len() <= 1, "one report: {:?}", out.reports);
    let lost = out.lost_to(|_| true);
    assert_eq!(lost, left_out.len() as u64, "{:?}", out.reports);
    assert_eq!(left_out.iter().sum::<u64>(), lost, "{:?}", out.reports);
    !left_out.is_empty()
}
