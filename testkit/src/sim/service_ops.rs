//! The service controller's calls, one function per input, and what each
//! call says about the store: the simulator's view of it (`pending`) and
//! each event's status follow the calls, and a power cut that strikes
//! inside a call leaves what it did in doubt, for the reopen to settle.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use softnet_persistence::{
    Event, EventKind, Mode, ServiceOutput, ServiceStats, ServiceStore, Uuid,
};

use super::accounting::{Info, Status};
use super::config::Fault;
use super::engine::{ms, Ev, Sim};
use super::faults::InDoubt;
use super::network::Up;
use super::site::UNKNOWN;
use crate::broker::FromService;

/// The counters a raise is judged by, taken just before the call.
struct BeforeRaise {
    stats: ServiceStats,
    /// Capacity drops reported through the callback so far.
    drops: u64,
}

impl Sim {
    /// `raise_event`: the event is recorded as raised, then the call must
    /// supersede exactly the pending Replacing instances of its name that
    /// are not in flight, and report every drop it makes. False if a power
    /// cut struck inside the call (it never returned).
    pub(super) fn svc_raise(&mut self, store: &ServiceStore, event: Event) -> bool {
        let uid = event.uid;
        self.record_raise(&event);
        let in_flight = self.svc.ctl.as_ref().expect("up").in_flight();
        let candidates = self.supersede_candidates(&event, &in_flight);
        let before = BeforeRaise {
            stats: store.stats(),
            drops: self.svc.drops.load(Ordering::SeqCst),
        };
        let ctl = self.svc.ctl.as_mut().expect("up");
        ctl.raise_event(&event).expect("raise");
        if let Some(image) = self.cut_struck() {
            self.raise_struck(store, image, uid, &candidates, before);
            return false;
        }
        self.raise_returned(store, &event, &in_flight, &candidates, before);
        true
    }

    /// The event enters the accounting, pending, in raise order.
    fn record_raise(&mut self, event: &Event) {
        let uid = event.uid;
        let known = event.name != UNKNOWN;
        self.order.push(uid);
        self.events.insert(
            uid,
            Info {
                kind: event.kind,
                name: event.name.clone(),
                known,
                status: Status::Pending,
                accepted: 0,
                dropped_in_flight: false,
                rejected_reported: false,
                target: None,
            },
        );
    }

    /// The pending instances a raise of `event` supersedes: those of a
    /// Replacing event of the same name, except those in flight (the
    /// broker may hold them already).
    fn supersede_candidates(&self, event: &Event, in_flight: &[Uuid]) -> Vec<Uuid> {
        if !event.kind.is_replacing() {
            return Vec::new();
        }
        self.svc
            .pending
            .iter()
            .filter(|u| {
                let i = &self.events[u];
                i.kind.is_replacing() && i.name == event.name && !in_flight.contains(u)
            })
            .copied()
            .collect()
    }

    /// A power cut struck inside the raise of `uid`: whether the event,
    /// the instances it supersedes and those it dropped are still stored
    /// is in doubt until the reopen.
    fn raise_struck(
        &mut self,
        store: &ServiceStore,
        image: Vec<u8>,
        uid: Uuid,
        candidates: &[Uuid],
        before: BeforeRaise,
    ) {
        let (newest, older) = match candidates.split_last() {
            Some((n, o)) => (Some(*n), o.to_vec()),
            None => (None, Vec::new()),
        };
        // The call ran to its end in memory: its drop report
        // reached the callback, but the process died in the
        // call, so it never did.
        let dropped_now = self.svc.drops.load(Ordering::SeqCst) - before.drops;
        self.svc.drops.fetch_sub(dropped_now, Ordering::SeqCst);
        self.svc.struck_stats_drops += store.stats().dropped_events - before.stats.dropped_events;
        let dropped = self
            .svc
            .pending
            .iter()
            .filter(|u| !candidates.contains(u))
            .take(dropped_now as usize)
            .copied()
            .collect();
        let doubt = InDoubt {
            raise: Some(uid),
            older,
            newest,
            dropped,
            ..InDoubt::default()
        };
        self.struck(image, doubt);
    }

    /// The raise returned: its statistics must agree with its drop reports
    /// and with the instances it was to supersede; then the view follows.
    fn raise_returned(
        &mut self,
        store: &ServiceStore,
        event: &Event,
        in_flight: &[Uuid],
        candidates: &[Uuid],
        before: BeforeRaise,
    ) {
        let uid = event.uid;
        let s0 = before.stats;
        let s1 = store.stats();
        let dropped = self.svc.drops.load(Ordering::SeqCst) - before.drops;
        self.trace(|| {
            format!(
                "raise {uid} {:?} '{}' -> {} pending, mode {:?}, superseded {}, dropped \
                 {}, in flight {in_flight:?}",
                event.kind,
                event.name,
                s1.pending_events,
                s1.mode,
                s1.superseded_events - s0.superseded_events,
                s1.dropped_events - s0.dropped_events
            )
        });
        let superseded = s1.superseded_events - s0.superseded_events;
        if s1.dropped_events - s0.dropped_events != dropped {
            self.violation(format!(
                "raise of {uid}: {} drops in the statistics, {dropped} reported",
                s1.dropped_events - s0.dropped_events
            ));
        }
        if superseded != candidates.len() as u64 {
            self.violation(format!(
                "raise of {uid} ('{}'): {superseded} superseded, expected {} \
                 ({candidates:?}; in flight {in_flight:?})",
                event.name,
                candidates.len()
            ));
        }
        self.apply_raise(uid, in_flight, candidates, dropped);
        if self.cfg.check_every > 0 && self.svc.raises.is_multiple_of(self.cfg.check_every) {
            self.check_store(store, "during the run");
        }
    }

    /// The view after a raise of `uid` that returned: the superseded
    /// instances leave it, the `dropped` oldest events leave it (the store
    /// drops oldest first), and the new event joins it at the end.
    fn apply_raise(&mut self, uid: Uuid, in_flight: &[Uuid], candidates: &[Uuid], dropped: u64) {
        for c in candidates {
            self.svc.pending.retain(|u| u != c);
            self.events.get_mut(c).expect("known").status = Status::Superseded;
        }
        for _ in 0..dropped {
            if self.svc.pending.is_empty() {
                break;
            }
            let gone = self.svc.pending.remove(0);
            let info = self.events.get_mut(&gone).expect("known");
            info.status = Status::Dropped;
            info.dropped_in_flight = in_flight.contains(&gone);
        }
        self.svc.pending.push(uid);
    }

    /// `online`: the events the store held when it was opened (ancient)
    /// are invalidated if the broker no longer knows the storage uid; the
    /// count must match. False if a power cut struck inside the call.
    pub(super) fn svc_online(&mut self, store: &ServiceStore, broker_uid: Option<Uuid>) -> bool {
        let before = store.stats().invalidated_events;
        self.trace(|| format!("online, the broker remembers {broker_uid:?}"));
        let ctl = self.svc.ctl.as_mut().expect("up");
        ctl.online(broker_uid).expect("online");
        if let Some(image) = self.cut_struck() {
            self.struck(image, InDoubt::default());
            return false;
        }
        let invalidated = store.stats().invalidated_events - before;
        if invalidated > 0 {
            let ancient: Vec<Uuid> = self
                .svc
                .pending
                .iter()
                .filter(|u| self.svc.ancient.contains(u))
                .copied()
                .collect();
            if ancient.len() as u64 != invalidated {
                self.violation(format!(
                    "{invalidated} ancient events invalidated, {} were ancient",
                    ancient.len()
                ));
            }
            for u in &ancient {
                self.events.get_mut(u).expect("known").status = Status::Invalidated;
            }
            self.svc.pending.retain(|u| !ancient.contains(u));
            self.invalidated += invalidated;
        }
        // Ancient means held at the open, until the first online after it.
        self.svc.ancient.clear();
        true
    }

    /// `ack` (`acked`) or `rejected` of `uid` from the broker: unless the
    /// controller counted it stale, the event leaves the view. False if a
    /// power cut struck inside the call.
    pub(super) fn svc_answer(&mut self, uid: Uuid, acked: bool) -> bool {
        let ctl = self.svc.ctl.as_mut().expect("up");
        let stale = ctl.stale_acks();
        if acked {
            ctl.ack(uid).expect("ack");
        } else {
            ctl.rejected(uid).expect("rejected");
        }
        if let Some(image) = self.cut_struck() {
            let doubt = if acked {
                InDoubt {
                    ack: Some(uid),
                    ..InDoubt::default()
                }
            } else {
                InDoubt {
                    reject: Some(uid),
                    ..InDoubt::default()
                }
            };
            self.struck(image, doubt);
            return false;
        }
        let ctl = self.svc.ctl.as_ref().expect("up");
        let is_stale = ctl.stale_acks() != stale;
        self.trace(|| format!("ack {uid} stale {is_stale}"));
        let ctl = self.svc.ctl.as_ref().expect("up");
        if ctl.stale_acks() == stale && self.svc.pending.contains(&uid) {
            self.svc.pending.retain(|u| *u != uid);
            self.events.get_mut(&uid).expect("known").status = if acked {
                Status::Acked
            } else {
                Status::Rejected
            };
        }
        true
    }

    /// After a call that returned: what the controller asks to send is
    /// routed (after checking the in-flight rules), its next deadline is
    /// scheduled, and an armed power cut comes one call closer.
    /// `resets_drain`: the call was `online` or `disconnected`, after
    /// which a drain starts afresh.
    pub(super) fn svc_after_op(&mut self, resets_drain: bool) {
        let ctl = self.svc.ctl.as_mut().expect("up");
        let outputs = ctl.drain_outputs();
        let deadline = ctl.next_deadline();
        let in_flight = ctl.in_flight();
        let storage_mode = ctl.store().mode() == Mode::Storage;
        if resets_drain {
            self.drain_last = None;
        }
        self.check_in_flight(storage_mode, &in_flight);
        for out in outputs {
            self.route_service_output(out, storage_mode);
        }
        if let Some(d) = deadline {
            let at = ms(d).max(self.now);
            if self.service_timer.is_none_or(|t| at < t) {
                self.service_timer = Some(at);
                self.push(at, Ev::ServiceTimer);
            }
        }
        if let Some(left) = self.svc.armed {
            if left <= 1 {
                self.bring_down(0, Fault::PowerCut, None, InDoubt::default());
            } else {
                self.svc.armed = Some(left - 1);
            }
        }
    }

    /// docs/PROTOCOL.md section 2: one event in flight while draining; then one per name.
    fn check_in_flight(&mut self, storage_mode: bool, in_flight: &[Uuid]) {
        if storage_mode && in_flight.len() > 1 {
            self.violation(format!(
                "storage mode with {} events in flight",
                in_flight.len()
            ));
        }
        let mut names = HashSet::new();
        for u in in_flight {
            if let Some(i) = self.events.get(u) {
                let pipeline = (i.kind.is_replacing(), i.kind == EventKind::Private, &i.name);
                if !names.insert(pipeline) {
                    let name = i.name.clone();
                    self.violation(format!("two events of '{name}' in flight: {in_flight:?}"));
                    break;
                }
            }
        }
    }

    /// Sends what the controller asked to send to the broker; a rejection
    /// reported to the application is noted for the accounting.
    fn route_service_output(&mut self, out: ServiceOutput, storage_mode: bool) {
        self.trace(|| match &out {
            ServiceOutput::SendEvent(e) => format!("-> send {} '{}'", e.uid, e.name),
            other => format!("-> {other:?}"),
        });
        match out {
            ServiceOutput::SendEvent(e) => {
                // The drain goes strictly in raise order (a resend
                // repeats the same event).
                let seq = e.uid.as_u128() as u64;
                if storage_mode {
                    if self.drain_last.is_some_and(|l| seq < l) {
                        let last = self.drain_last;
                        self.violation(format!("drain sent raise #{seq} after raise #{last:?}"));
                    }
                    self.drain_last = Some(seq);
                }
                self.send_up(0, Up::Service(FromService::Event(e)));
            }
            ServiceOutput::SendStorageUid(u) => {
                self.send_up(0, Up::Service(FromService::StorageUid(u)));
            }
            ServiceOutput::Rejected(e) => {
                if let Some(info) = self.events.get_mut(&e.uid) {
                    info.rejected_reported = true;
                }
            }
        }
    }
}
