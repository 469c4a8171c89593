//! Accounting: what became of each raised event, and the run's tallies
//! made from that at the end.

use std::sync::atomic::Ordering;

use softnet_persistence::{EventKind, Uuid};

use super::engine::Sim;
use super::tally::{RunStats, ServiceTally};
use crate::broker::Gone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// In the store (as far as its calls said).
    Pending,
    Acked,
    Rejected,
    Superseded,
    Dropped,
    LostAtRestart,
    InDoubt,
    Invalidated,
    /// Not moved to memory when level 2 failed (reported lost).
    LostInFallback,
    /// Gone from the store without any call saying so.
    Vanished,
}

pub(super) struct Info {
    pub(super) kind: EventKind,
    pub(super) name: String,
    pub(super) known: bool,
    pub(super) status: Status,
    pub(super) accepted: u32,
    pub(super) dropped_in_flight: bool,
    pub(super) rejected_reported: bool,
    pub(super) target: Option<usize>,
}

impl Sim {
    /// The run's tallies, once its event loop ended: everything must have
    /// drained; then what became of each raised event is counted, for the
    /// service and per client.
    pub(super) fn finish(mut self) -> RunStats {
        self.check_drained();
        self.stats.service = self.service_tally();
        self.client_tallies();
        self.stats.failures = self.svc.failures.lock().unwrap().clone();
        self.stats
    }

    /// At the end nothing is in transit, the service is idle with an empty
    /// store (its view must match it), and every client caught up.
    fn check_drained(&mut self) {
        let in_transit = self
            .links
            .iter()
            .any(|l| !l.up.is_empty() || !l.down.is_empty());
        let svc_idle = match self.svc.ctl.as_ref() {
            Some(ctl) => {
                ctl.in_flight().is_empty()
                    && ctl.store().pending().map(|p| p.is_empty()).unwrap_or(false)
            }
            None => false,
        };
        if in_transit || !svc_idle || !self.broker.caught_up() {
            self.violation(format!(
                "did not drain: in transit {in_transit}, service idle {svc_idle}, clients \
                 caught up {}",
                self.broker.caught_up()
            ));
        }
        if let Some(ctl) = self.svc.ctl.as_ref() {
            let store = ctl.store().clone();
            self.check_store(&store, "at the end");
            self.svc.stats_drops += store.stats().dropped_events;
        }
    }

    /// Service to broker: each raised event counted once, in raise order;
    /// what the rules cannot explain is a violation.
    fn service_tally(&mut self) -> ServiceTally {
        let mut t = ServiceTally {
            reported_drops: self.svc.drops.load(Ordering::SeqCst),
            stats_drops: self.svc.stats_drops - self.svc.struck_stats_drops,
            broker_duplicate_acks: self.broker_dup_acks,
            resurrected: self.resurrected,
            invalidated: self.invalidated,
            dropped_unreported: self.struck_drops,
            fallbacks: self.svc.fallbacks.seen,
            fallback_in_flight: self.svc.fallbacks.in_flight,
            fallback_moved: self.svc.fallbacks.moved,
            fallback_reported_lost: self.svc.fallback_lost.load(Ordering::SeqCst),
            fallback_over_reported: self.svc.fallbacks.over_reported,
            ..ServiceTally::default()
        };
        let mut lost_detail = Vec::new();
        for uid in &self.order {
            let i = &self.events[uid];
            if i.known {
                count_known(&mut t, uid, i, &mut lost_detail);
            } else {
                count_unknown(&mut t, uid, i, &mut lost_detail);
            }
        }
        for d in lost_detail {
            self.violation(d);
        }
        t
    }

    /// Broker to each client: every event accepted for it is handled once,
    /// or left its queue before it got it; it handles nothing else.
    fn client_tallies(&mut self) {
        for (c, cs) in self.clients.iter().enumerate() {
            let mut tally = cs.tally.clone();
            for uid in &self.accepted_order {
                let i = &self.events[uid];
                if i.target.is_some_and(|t| t != c) {
                    continue;
                }
                tally.expected += 1;
                match cs.handled.get(uid).copied().unwrap_or(0) {
                    0 => match self.gone.get(uid) {
                        Some(Gone::Replaced) => tally.replaced += 1,
                        Some(Gone::Evicted | Gone::Expired) => tally.evicted += 1,
                        None => tally.lost += 1,
                    },
                    n => {
                        tally.handled += 1;
                        tally.duplicates += u64::from(n - 1);
                    }
                }
            }
            for uid in cs.handled.keys() {
                if self.events.get(uid).is_none_or(|i| i.accepted == 0) {
                    let msg = format!("client {c} handled {uid}, which the broker never queued");
                    self.stats.violations.push(msg);
                }
            }
            self.stats.clients.push((cs.cfg, tally));
        }
    }
}

/// An event of a name the site does not define: the broker must never
/// accept it; it is rejected, dropped for capacity or lost at a restart.
fn count_unknown(t: &mut ServiceTally, uid: &Uuid, i: &Info, lost_detail: &mut Vec<String>) {
    t.unknown_raised += 1;
    if i.accepted > 0 {
        lost_detail.push(format!("unknown-name event {uid} was accepted"));
    } else if i.status == Status::LostInFallback {
        t.fallback_lost += 1;
    } else if i.status == Status::Dropped {
        // Dropped for capacity (and reported so), whether or
        // not the broker's rejection came back meanwhile.
        t.unknown_dropped += 1;
    } else if i.rejected_reported {
        t.unknown_rejected += 1;
    } else if matches!(i.status, Status::LostAtRestart | Status::InDoubt) {
        t.unknown_lost_at_restart += 1;
    } else {
        lost_detail.push(format!(
            "unknown-name event {uid} neither rejected nor lost at a restart \
             ({:?})",
            i.status
        ));
    }
}

/// An event of a defined name: delivered (perhaps more than once), or
/// excluded by the rules (in doubt, superseded, dropped, invalidated), or
/// lost; a loss no rule explains is also a violation.
fn count_known(t: &mut ServiceTally, uid: &Uuid, i: &Info, lost_detail: &mut Vec<String>) {
    if i.status == Status::InDoubt && i.accepted == 0 {
        t.in_doubt += 1;
        return;
    }
    t.raised += 1;
    if i.accepted > 0 {
        t.delivered += 1;
        t.duplicates += u64::from(i.accepted - 1);
        if i.status == Status::Dropped {
            t.dropped_yet_delivered += 1;
            if i.dropped_in_flight {
                t.dropped_in_flight += 1;
            }
        }
        return;
    }
    match i.status {
        Status::Superseded => t.superseded += 1,
        Status::Dropped => t.dropped += 1,
        Status::Invalidated => {}
        Status::LostInFallback => t.fallback_lost += 1,
        Status::LostAtRestart => {
            t.lost += 1;
            t.lost_pending_at_restart += 1;
        }
        other => {
            t.lost += 1;
            lost_detail.push(format!(
                "event {uid} ('{}', {:?}) never reached the broker ({other:?})",
                i.name, i.kind
            ));
        }
    }
}
