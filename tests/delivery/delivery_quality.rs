//! The delivery-quality table of docs/BEHAVIOUR.md section 6, measured:
//! one test per row.
//!
//! Each test runs the simulator of `testkit::sim` over 200 seeds (each run:
//! about 2000 events raised by one service, four clients, dozens of faults:
//! network outages, application restarts, reboots by power loss; row 8
//! adds a level-2 failure of the service while online) through the broker
//! model of `testkit::broker`, and checks the row's promise.
//!
//! What is counted as "lost" follows docs/BEHAVIOUR.md section 6, which
//! assumes the event is still in the broker's queue:
//! - Replacing instances superseded by design are **excluded** from "lost":
//!   in the store (a newer instance took the pending one's place) and in the
//!   broker (a newer instance replaced it in the queue before a client got
//!   it). Each test prints how many were excluded.
//! - Events evicted from a broker queue (max length) or expired (lifetime)
//!   are excluded too; the table runs keep queues long (1000) and lifetimes
//!   long (30 days), so there are none, and the tests check that.
//! - A raise that a power cut interrupted never returned: if its event is
//!   not in the store after the reboot it is "in doubt", not lost.
//!
//! "Exactly once" for the service-to-broker path means: every raised event
//! (not superseded) entered its broker queue once (the broker's uid rule
//! drops resends) and none is missing. For a client: every event queued for
//! it was handled once.
//!
//! Power cuts use real power-cut images: every store's file lies on a
//! simulated device (`testkit::PowerCut`, through the library's
//! `DeviceLayer`), which keeps what each sync made durable.

use std::sync::OnceLock;

use testkit::sim::{run, run_seeds, ClientTally, Fault, SimConfig, Totals};

const SEEDS: u64 = 200;

/// Subscriptions of a stateful client (6 Queueing, 3 Replacing, 1
/// Private) and of a stateless one (no Private).
const STATEFUL_SUBSCRIPTIONS: u64 = 10;

fn config(base_seed: u64, service_file: bool, faults: &[Fault]) -> SimConfig {
    SimConfig {
        service_file,
        faults: faults.to_vec(),
        ..SimConfig::new(base_seed)
    }
}

/// SPL-2 (sync durability), every fault mixed, power cuts also inside
/// store calls: shared by the SPL-2 row and the client rows.
fn mixed() -> &'static Totals {
    static SET: OnceLock<Totals> = OnceLock::new();
    SET.get_or_init(|| {
        let t = run_seeds(&config(1, true, &Fault::ALL), SEEDS);
        describe(
            "SPL-2 (sync) + every client kind, outages + restarts + power cuts",
            &t,
        );
        t
    })
}

/// SPL-1, network outages only: shared by the SPL-1 row and the client
/// rows' outage column.
fn outages() -> &'static Totals {
    static SET: OnceLock<Totals> = OnceLock::new();
    SET.get_or_init(|| {
        let t = run_seeds(&config(2, false, &[Fault::Outage]), SEEDS);
        describe("SPL-1 + every client kind, network outages only", &t);
        t
    })
}

fn describe(what: &str, t: &Totals) {
    let s = &t.service;
    println!(
        "== {what}: {} runs, faults {:?} ({} service power cuts inside a store call), \
         failure reports {:?}",
        t.runs, t.faults, t.mid_op_cuts, t.failures
    );
    println!(
        "   service -> broker: {} raised, {} delivered, {} duplicates, {} lost ({} pending at a \
         restart); excluded: {} superseded Replacing instances, {} raises interrupted by a \
         power cut; {} dropped for capacity (+{} dropped yet delivered), {} reported; {} resends \
         acked again by the broker's uid rule",
        s.raised,
        s.delivered,
        s.duplicates,
        s.lost,
        s.lost_pending_at_restart,
        s.superseded,
        s.in_doubt,
        s.dropped,
        s.dropped_yet_delivered,
        s.reported_drops,
        s.broker_duplicate_acks
    );
    if s.fallbacks > 0 {
        println!(
            "   level-2 failures: {} fallbacks to level 1 with {} events in flight, {} pending \
             events moved, {} lost; {} reported lost, of which {} had just been removed by the \
             call that failed (acknowledged, superseded...)",
            s.fallbacks,
            s.fallback_in_flight,
            s.fallback_moved,
            s.fallback_lost,
            s.fallback_reported_lost,
            s.fallback_over_reported
        );
    }
    for ((stateful, file), c) in &t.clients {
        println!(
            "   broker -> {} CPL-{}: {} queued, {} handled, {} duplicates, {} lost; excluded: {} \
             replaced in the broker queue before delivery, {} evicted/expired; {} restarts",
            if *stateful { "stateful" } else { "stateless" },
            if *file { 2 } else { 1 },
            c.expected,
            c.handled,
            c.duplicates,
            c.lost,
            c.replaced,
            c.evicted,
            c.restarts
        );
    }
}

fn no_violations(t: &Totals) {
    assert!(
        t.violations.is_empty(),
        "{} violations, the first: {:#?}",
        t.violations.len(),
        &t.violations[..t.violations.len().min(10)]
    );
}

fn check_power_cuts(t: &Totals) {
    assert!(t.mid_op_cuts > 0, "no power cut struck inside a store call");
}

/// The service path delivered every raised event once; superseded
/// Replacing instances are excluded (by design, not lost).
fn service_exactly_once(t: &Totals, what: &str) {
    let s = &t.service;
    assert_eq!(
        s.duplicates, 0,
        "{what}: events enqueued twice by the broker"
    );
    assert_eq!(s.lost, 0, "{what}: events that never reached the broker");
    assert_eq!(s.reported_drops, 0, "{what}: capacity drops in a table run");
    assert_eq!(
        s.delivered + s.superseded,
        s.raised,
        "{what}: every raised event was delivered, or superseded by design (excluded)"
    );
}

fn client_exactly_once(c: &ClientTally, what: &str) {
    assert!(c.expected > 0, "{what}: nothing was queued");
    assert_eq!(c.duplicates, 0, "{what}: handled twice");
    assert_eq!(c.lost, 0, "{what}: queued and never handled");
    assert_eq!(
        c.evicted, 0,
        "{what}: evictions in a table run (queues are long)"
    );
    assert_eq!(
        c.handled + c.replaced,
        c.expected,
        "{what}: every queued event was handled, or replaced in the broker queue first \
         (excluded)"
    );
}

/// Row 1. Service to broker, SPL-1: exactly once through a network outage;
/// an application restart or a reboot loses the events pending in memory
/// at that moment, and nothing else.
#[test]
fn row_1_spl1_exactly_once_through_outages_loses_only_events_pending_at_a_restart() {
    let t = outages();
    no_violations(t);
    assert!(t.faults[&Fault::Outage] >= SEEDS * 20);
    service_exactly_once(t, "SPL-1 through outages");

    let t = run_seeds(&config(3, false, &[Fault::Restart, Fault::PowerCut]), SEEDS);
    describe("SPL-1 + every client kind, restarts + reboots", &t);
    no_violations(&t);
    let s = &t.service;
    assert_eq!(s.duplicates, 0);
    assert!(
        s.lost > 0,
        "restarts with events pending lose them at SPL-1: is the simulation real?"
    );
    assert_eq!(
        s.lost, s.lost_pending_at_restart,
        "every lost event was pending in memory when the application went down"
    );
    assert_eq!(
        s.delivered + s.superseded + s.lost,
        s.raised,
        "superseded Replacing instances are excluded from lost"
    );
}

/// Row 2. Service to broker, SPL-2 with sync durability: exactly once
/// through outages, restarts and power cuts (including cuts inside a
/// store call): nothing whose raise returned is lost, nothing is enqueued
/// twice, no acknowledged event comes back.
#[test]
fn row_2_spl2_sync_exactly_once_through_outages_restarts_and_power_cuts() {
    let t = mixed();
    no_violations(t);
    check_power_cuts(t);
    for f in Fault::ALL {
        assert!(t.faults[&f] >= SEEDS * 5, "{f:?}: {:?}", t.faults);
    }
    service_exactly_once(t, "SPL-2");
    let s = &t.service;
    assert_eq!(s.resurrected, 0, "an acknowledged event came back");
    assert!(
        s.broker_duplicate_acks > 0,
        "no resend reached the broker twice: the uid rule was never tested"
    );
    assert!(s.superseded > 0);
    println!(
        "SPL-2: {} superseded Replacing instances excluded from lost (by design); {} events \
         whose raise a power cut interrupted (never returned) excluded as in doubt",
        s.superseded, s.in_doubt
    );
}

/// Row 3. Any level, store full: the oldest pending events are dropped and
/// every drop is reported through the failure callback; the events that
/// never reached the broker are exactly the reported ones.
///
/// The simulator attributes each reported drop to the oldest pending events
/// and compares its view with the store's `pending()` every 10 raises, at
/// each restart and at the end: a drop of anything but the oldest, or an
/// unreported disappearance, is a violation.
///
/// Power cuts here strike between store calls; a cut inside a raise that
/// drops is `power_cut_drop::power_cut_inside_a_raise_that_drops_for_room`
/// (a regression test: no event may be lost silently there).
#[test]
fn row_3_store_full_drops_the_oldest_and_reports_exactly_those() {
    let spl2 = SimConfig {
        capacity: 8 * 1024,
        mid_op_cuts: false,
        check_every: 10,
        faults_per_endpoint: 12,
        ..config(4, true, &Fault::ALL)
    };
    let spl1 = SimConfig {
        memory_capacity: 4 * 1024,
        check_every: 10,
        faults_per_endpoint: 12,
        ..config(5, false, &[Fault::Outage])
    };
    for (what, cfg) in [
        ("SPL-2, 8 KiB, every fault", spl2),
        ("SPL-1, 4 KiB, outages", spl1),
    ] {
        let t = run_seeds(&cfg, SEEDS);
        describe(what, &t);
        no_violations(&t);
        let s = &t.service;
        assert!(s.reported_drops > 0, "{what}: the store never filled up");
        assert_eq!(s.reported_drops, s.stats_drops, "{what}: callback vs stats");
        assert_eq!(
            s.reported_drops,
            s.dropped + s.dropped_yet_delivered + s.unknown_dropped,
            "{what}: every reported drop is a dropped event and vice versa"
        );
        assert_eq!(s.duplicates, 0, "{what}");
        assert_eq!(s.lost, 0, "{what}: lost without a report");
        assert_eq!(s.delivered + s.superseded + s.dropped, s.raised, "{what}");
        println!(
            "{what}: {} dropped and reported; {} more reported dropped had reached the broker \
             already ({} of them in flight when dropped): over-reported, never silent",
            s.dropped, s.dropped_yet_delivered, s.dropped_in_flight
        );
    }
}

/// Row 4. Broker to a stateful client, CPL-1: exactly once through
/// outages; after a restart or reboot, at most one duplicate per
/// subscription (the event in flight, handled but not acknowledged).
#[test]
fn row_4_stateful_cpl1_at_most_one_duplicate_per_subscription_per_restart() {
    client_exactly_once(&outages().client(true, false), "stateful CPL-1, outages");
    let t = mixed();
    no_violations(t);
    let c = t.client(true, false);
    assert!(c.restarts >= SEEDS, "{c:?}");
    assert_eq!(c.lost, 0);
    assert_eq!(
        c.unexplained_duplicates, 0,
        "a duplicate beyond the first of a subscription since the last restart"
    );
    assert!(c.duplicates <= c.restarts * STATEFUL_SUBSCRIPTIONS);
    assert!(
        c.duplicates > 0,
        "restarts never caused a duplicate: is the simulation real?"
    );
    println!(
        "stateful CPL-1: {} duplicates over {} restarts ({} subscriptions each)",
        c.duplicates, c.restarts, STATEFUL_SUBSCRIPTIONS
    );
}

/// Row 5. Broker to a stateful client, CPL-2: exactly once through
/// outages, restarts and power cuts.
#[test]
fn row_5_stateful_cpl2_exactly_once() {
    let t = mixed();
    no_violations(t);
    check_power_cuts(t);
    let c = t.client(true, true);
    assert!(c.restarts >= SEEDS, "{c:?}");
    client_exactly_once(&c, "stateful CPL-2");
    client_exactly_once(&outages().client(true, true), "stateful CPL-2, outages");
}

/// Row 6. Broker to a stateless client, CPL-1: exactly once through
/// outages; the first connect after a restart re-delivers (at most) each
/// subscription's whole current queue.
#[test]
fn row_6_stateless_cpl1_redelivers_at_most_the_current_queues_after_a_restart() {
    client_exactly_once(&outages().client(false, false), "stateless CPL-1, outages");
    let t = mixed();
    no_violations(t);
    let c = t.client(false, false);
    assert!(c.restarts >= SEEDS, "{c:?}");
    assert_eq!(c.lost, 0);
    assert_eq!(
        c.unexplained_duplicates, 0,
        "a duplicate that was not in a queue redelivered from its head since the last restart"
    );
    assert!(c.duplicates > 0 && c.duplicates <= c.redeliverable, "{c:?}");
    println!(
        "stateless CPL-1: {} duplicates; the queues redelivered from their head after restarts \
         held {} events",
        c.duplicates, c.redeliverable
    );
}

/// Row 7. Broker to a stateless client, CPL-2: exactly once through
/// outages, restarts and power cuts.
#[test]
fn row_7_stateless_cpl2_exactly_once() {
    let t = mixed();
    no_violations(t);
    check_power_cuts(t);
    let c = t.client(false, true);
    assert!(c.restarts >= SEEDS, "{c:?}");
    client_exactly_once(&c, "stateless CPL-2");
    client_exactly_once(&outages().client(false, true), "stateless CPL-2, outages");
}

/// Row 8. Service to broker, SPL-2, level 2 failing while online: the
/// device under the journal starts failing while events are in flight, and
/// the store falls back to level 1 with a new storage uid (docs/PROTOCOL.md
/// section 2.9), amid network outages. Every event whose raise returned
/// reaches the broker exactly once: the new uid, which resets the broker's
/// duplicate detection, is told only once nothing stored under the old uid
/// is in flight. Events not moved to memory (none, with the memory
/// capacity of these runs) are exactly those the fallback reported lost.
#[test]
fn row_8_spl2_level2_failure_while_online_exactly_once() {
    let t = run_seeds(
        &config(7, true, &[Fault::Outage, Fault::Level2Failure]),
        SEEDS,
    );
    describe(
        "SPL-2, a level-2 failure while online + network outages",
        &t,
    );
    no_violations(&t);
    let s = &t.service;
    assert!(
        s.fallbacks >= SEEDS * 9 / 10,
        "level 2 failed in {} of {SEEDS} runs",
        s.fallbacks
    );
    assert_eq!(s.fallbacks, t.faults[&Fault::Level2Failure]);
    assert!(s.fallback_in_flight >= s.fallbacks, "{s:?}");
    assert_eq!(
        s.fallback_lost + s.fallback_over_reported,
        s.fallback_reported_lost,
        "lost in a fallback: what the reports said, but for the events the failing call \
         removed (over-reported)"
    );
    assert_eq!(s.duplicates, 0, "events enqueued twice by the broker");
    assert_eq!(s.lost, 0, "events that never reached the broker");
    assert_eq!(s.reported_drops, 0, "capacity drops in a table run");
    assert_eq!(
        s.delivered + s.superseded + s.fallback_lost,
        s.raised,
        "every raised event was delivered, superseded by design or reported lost"
    );
    assert!(
        s.broker_duplicate_acks > 0,
        "no resend reached the broker twice: the uid rule was never tested"
    );
    println!(
        "level-2 failure while online: {} fallbacks, {} events in flight at them, {} raised, \
         {} delivered once, {} duplicates",
        s.fallbacks, s.fallback_in_flight, s.raised, s.delivered, s.duplicates
    );
}

/// The yardstick is real: without sync durability, power cuts do lose
/// events and ids (so the exactly-once results above are not for free).
#[test]
fn without_sync_power_cuts_lose_something() {
    use softnet_persistence::Durability;

    let cfg = SimConfig {
        durability: Durability::None,
        ..config(6, true, &[Fault::PowerCut])
    };
    let t = run_seeds(&cfg, 20);
    describe("SPL-2 + CPL-2 without sync, power cuts", &t);
    let s = &t.service;
    let client_dups = t.client(true, true).duplicates + t.client(false, true).duplicates;
    assert!(
        s.lost + s.duplicates > 0 && client_dups > 0,
        "{s:?}, client duplicates {client_dups}"
    );
}

/// Same seed, same run.
#[test]
fn the_simulation_is_deterministic() {
    let a = run(&SimConfig::new(42));
    let b = run(&SimConfig::new(42));
    assert_eq!(format!("{:?}", a.service), format!("{:?}", b.service));
    assert_eq!(format!("{:?}", a.clients), format!("{:?}", b.clients));
    assert_eq!(a.sim_time, b.sim_time);
}
