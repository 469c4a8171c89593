//! The counters: what one run measured, per path, and the sum of many runs
//! (what the delivery table shows).

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{ClientConfig, Fault};

/// The service-to-broker path of one or more runs.
#[derive(Debug, Default, Clone)]
pub struct ServiceTally {
    /// Events raised whose name the site defines (raise returned).
    pub raised: u64,
    /// Of those, accepted into a broker queue at least once.
    pub delivered: u64,
    /// Extra acceptances of an event already accepted.
    pub duplicates: u64,
    /// Never accepted and not excluded below.
    pub lost: u64,
    /// Of `lost`: pending in the store when the application restarted or
    /// the device rebooted (what SPL-1 is allowed to lose).
    pub lost_pending_at_restart: u64,
    /// Excluded: Replacing instances superseded in the store by design.
    pub superseded: u64,
    /// Excluded: the raise call was interrupted by a power cut (it never
    /// returned) and the event is not in the store after the reboot.
    pub in_doubt: u64,
    /// Dropped for capacity (drop-oldest) and never accepted.
    pub dropped: u64,
    /// Dropped for capacity (and reported lost), but the broker had it
    /// already: it was in flight, or its ack was lost in an outage.
    pub dropped_yet_delivered: u64,
    /// Of those, in flight when dropped.
    pub dropped_in_flight: u64,
    /// Dropped for capacity by a raise that a power cut interrupted after
    /// the new event was stored: the drop report died with the process.
    /// (Included in `dropped` or `dropped_yet_delivered`.)
    pub dropped_unreported: u64,
    /// Capacity drops reported through the failure callback (events_lost).
    pub reported_drops: u64,
    /// Capacity drops in the stores' statistics.
    pub stats_drops: u64,
    /// Ancient events invalidated by the storage-uid handshake.
    pub invalidated: u64,
    /// Raises of names the site does not define.
    pub unknown_raised: u64,
    /// Of those, reported as rejected by the controller.
    pub unknown_rejected: u64,
    /// Of those, pending at a restart (SPL-1) and gone, or in a call a
    /// power cut interrupted.
    pub unknown_lost_at_restart: u64,
    /// Of those, dropped for capacity before the broker could reject them.
    pub unknown_dropped: u64,
    /// Repeats the broker acked again without enqueueing.
    pub broker_duplicate_acks: u64,
    /// Events found in the store after a reboot that had been acknowledged
    /// or superseded before it (sent again; the broker's uid rule must drop
    /// them).
    pub resurrected: u64,
    /// Fallbacks to level 1 (level-2 failures that struck).
    pub fallbacks: u64,
    /// Events in flight when level 2 failed, summed over the fallbacks.
    pub fallback_in_flight: u64,
    /// Pending events moved to memory by the fallbacks.
    pub fallback_moved: u64,
    /// Events gone in a fallback (not moved), never delivered.
    pub fallback_lost: u64,
    /// Events lost as the fallback reports said.
    pub fallback_reported_lost: u64,
    /// Of those, events the call that failed removed (acknowledged,
    /// rejected, superseded or dropped) and the report counted lost too:
    /// over-reported, never lost.
    pub fallback_over_reported: u64,
}

/// The broker-to-client path of one client (or a sum).
#[derive(Debug, Default, Clone)]
pub struct ClientTally {
    /// Events queued for this client.
    pub expected: u64,
    /// Of those, handled at least once.
    pub handled: u64,
    /// Extra handlings of an event already handled.
    pub duplicates: u64,
    /// Still in the broker's queue, never handled.
    pub lost: u64,
    /// Excluded: replaced in the broker queue (Replacing) before this
    /// client handled them.
    pub replaced: u64,
    /// Excluded: evicted (queue full) or expired before this client
    /// handled them.
    pub evicted: u64,
    /// Application restarts and reboots of this client.
    pub restarts: u64,
    /// Stateless: events the broker redelivered from the head of a queue
    /// after a restart (the bound for duplicates).
    pub redeliverable: u64,
    /// Duplicates a restart does not explain: for a stateful client, a
    /// second duplicate in a subscription since the last restart, or one
    /// before any restart; for a stateless client, one that was not in a
    /// queue redelivered from the head since the last restart.
    pub unexplained_duplicates: u64,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// The run's seed.
    pub seed: u64,
    /// The service-to-broker path.
    pub service: ServiceTally,
    /// Per client, in configuration order.
    pub clients: Vec<(ClientConfig, ClientTally)>,
    /// Faults injected, by kind (restarts and power cuts count only when
    /// the application was up).
    pub faults: BTreeMap<Fault, u64>,
    /// Service power cuts that struck inside a store call.
    pub mid_op_cuts: u64,
    /// Failure reports other than capacity drops (kind: message).
    pub failures: Vec<String>,
    /// Broken invariants of the simulation itself (the store's contents
    /// disagreeing with what its calls said, an event invented, the run not
    /// draining, duplicates no fault explains), each with its context.
    pub violations: Vec<String>,
    /// Simulated time at the end.
    pub sim_time: Duration,
}

impl ServiceTally {
    /// Adds another tally.
    pub fn add(&mut self, o: &ServiceTally) {
        self.raised += o.raised;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.lost += o.lost;
        self.lost_pending_at_restart += o.lost_pending_at_restart;
        self.superseded += o.superseded;
        self.in_doubt += o.in_doubt;
        self.dropped += o.dropped;
        self.dropped_yet_delivered += o.dropped_yet_delivered;
        self.dropped_in_flight += o.dropped_in_flight;
        self.dropped_unreported += o.dropped_unreported;
        self.reported_drops += o.reported_drops;
        self.stats_drops += o.stats_drops;
        self.invalidated += o.invalidated;
        self.unknown_raised += o.unknown_raised;
        self.unknown_rejected += o.unknown_rejected;
        self.unknown_lost_at_restart += o.unknown_lost_at_restart;
        self.unknown_dropped += o.unknown_dropped;
        self.broker_duplicate_acks += o.broker_duplicate_acks;
        self.resurrected += o.resurrected;
        self.fallbacks += o.fallbacks;
        self.fallback_in_flight += o.fallback_in_flight;
        self.fallback_moved += o.fallback_moved;
        self.fallback_lost += o.fallback_lost;
        self.fallback_reported_lost += o.fallback_reported_lost;
        self.fallback_over_reported += o.fallback_over_reported;
    }
}

impl ClientTally {
    /// Adds another tally.
    pub fn add(&mut self, o: &ClientTally) {
        self.expected += o.expected;
        self.handled += o.handled;
        self.duplicates += o.duplicates;
        self.lost += o.lost;
        self.replaced += o.replaced;
        self.evicted += o.evicted;
        self.restarts += o.restarts;
        self.redeliverable += o.redeliverable;
        self.unexplained_duplicates += o.unexplained_duplicates;
    }
}

/// The sum of many runs.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Runs summed.
    pub runs: u64,
    /// The service-to-broker path.
    pub service: ServiceTally,
    /// Per client configuration (stateful, file).
    pub clients: BTreeMap<(bool, bool), ClientTally>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<Fault, u64>,
    /// Service power cuts inside a store call.
    pub mid_op_cuts: u64,
    /// Failure reports by kind (capacity drops aside).
    pub failures: BTreeMap<String, u64>,
    /// Every violation of every run.
    pub violations: Vec<String>,
}

impl Totals {
    /// Sums `runs`.
    pub fn of(runs: &[RunStats]) -> Totals {
        let mut t = Totals::default();
        for r in runs {
            t.runs += 1;
            t.service.add(&r.service);
            for (cfg, tally) in &r.clients {
                t.clients
                    .entry((cfg.stateful, cfg.file))
                    .or_default()
                    .add(tally);
            }
            for (f, n) in &r.faults {
                *t.faults.entry(*f).or_default() += n;
            }
            t.mid_op_cuts += r.mid_op_cuts;
            for f in &r.failures {
                let kind = f.split(':').next().unwrap_or("?").to_string();
                *t.failures.entry(kind).or_default() += 1;
            }
            t.violations.extend(r.violations.iter().cloned());
        }
        t
    }

    /// The tally of the clients with this configuration.
    pub fn client(&self, stateful: bool, file: bool) -> ClientTally {
        self.clients
            .get(&(stateful, file))
            .cloned()
            .unwrap_or_default()
    }
}
