//! The service endpoint: the service app raising events through its
//! controller and store, and feeding it what the broker sends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use softnet_persistence::{Event, EventKind, Mode, ServiceOptions, ServiceStore, Uuid};
use softnet_persistence::{ServiceController, ServiceOutput, DEFAULT_RESEND_TIMEOUT};

use super::accounting::{Info, Status};
use super::config::Fault;
use super::engine::{ms, Ev, Sim};
use super::faults::InDoubt;
use super::network::Up;
use super::site::{PRIVATE, QUEUEING, REPLACING, UNKNOWN};
use crate::broker::FromService;
use crate::power_cut::PowerCut;

pub(super) struct ServiceSide {
    pub(super) dir: tempfile::TempDir,
    pub(super) uid: Uuid,
    pub(super) options: ServiceOptions,
    /// The journal's simulated device.
    pub(super) cut: PowerCut,
    pub(super) ctl: Option<ServiceController>,
    /// Capacity drops reported through the callback.
    pub(super) drops: Arc<AtomicU64>,
    pub(super) failures: Arc<Mutex<Vec<String>>>,
    /// What the store holds, in raise order, as its calls said.
    pub(super) pending: Vec<Uuid>,
    /// Pending when the store was opened.
    pub(super) ancient: HashSet<Uuid>,
    /// A power cut is armed: service calls left before it strikes between
    /// calls anyway.
    pub(super) armed: Option<u32>,
    pub(super) cut_id: u64,
    pub(super) in_doubt: InDoubt,
    pub(super) stats_drops: u64,
    /// Drops counted in the statistics by calls a power cut interrupted.
    pub(super) struck_stats_drops: u64,
    pub(super) raises: u32,
}

impl Sim {
    pub(super) fn service_down(&mut self, fault: Fault, image: Option<Vec<u8>>, doubt: InDoubt) {
        self.trace(|| format!("service {fault:?} (image {}) {doubt:?}", image.is_some()));
        let ctl = self.svc.ctl.take().expect("service app is up");
        let store = ctl.store().clone();
        let struck = image.is_some();
        if !struck {
            self.check_store(&store, "before the restart");
        }
        let image = match image {
            Some(i) => Some(i),
            None if fault == Fault::PowerCut && self.cfg.service_file => {
                self.service_cut_image(&store)
            }
            None => None,
        };
        self.svc.stats_drops += store.stats().dropped_events;
        let path = store.journal_path();
        drop(ctl);
        drop(store);
        if let (Some(image), Some(path)) = (image, path) {
            std::fs::write(path, image).expect("write the power-cut image");
        }
        self.svc.armed = None;
        self.svc.in_doubt = doubt;
        self.drain_last = None;
    }

    pub(super) fn service_up(&mut self) {
        let store = if self.cfg.service_file {
            ServiceStore::open_file(self.svc.dir.path(), self.svc.uid, &self.svc.options)
        } else {
            ServiceStore::open_memory(&self.svc.options)
        }
        .expect("open the service store");
        self.reconcile(&store);
        self.svc.ctl = Some(ServiceController::with_timeout(
            Arc::new(store),
            DEFAULT_RESEND_TIMEOUT,
        ));
    }

    pub(super) fn raise_tick(&mut self) {
        if self.now >= self.faults_end || self.svc.raises >= self.cfg.events {
            return;
        }
        let burst = if self.rng.chance(1, 25) {
            self.rng.range(2, 12)
        } else {
            1
        };
        for _ in 0..burst {
            if self.svc.raises >= self.cfg.events {
                break;
            }
            let event = self.next_event();
            if self.links[0].app_up {
                self.svc.raises += 1;
                self.svc_op(SvcOp::Raise(event));
            }
        }
        let gap = self.rng.range(1, 2 * self.cfg.mean_gap_ms);
        self.push(self.now + gap, Ev::Raise);
    }

    fn next_event(&mut self) -> Event {
        self.raised_seq += 1;
        let n = self.raised_seq;
        let uid = Uuid::from_u128((u128::from(self.cfg.seed) << 64) | u128::from(n));
        let stateful: Vec<i64> = self
            .clients
            .iter()
            .filter(|c| c.cfg.stateful)
            .map(|c| c.client_id)
            .collect();
        let r = self.rng.below(1000);
        let (kind, name, client_id) = if self.cfg.unknown_names && r < 5 {
            (EventKind::Queueing, UNKNOWN, None)
        } else if r < 600 {
            let name = QUEUEING[self.rng.below(QUEUEING.len() as u64) as usize];
            (EventKind::Queueing, name, None)
        } else if r < 880 || stateful.is_empty() {
            let kind = if self.rng.chance(1, 4) {
                EventKind::ReplacingNull
            } else {
                EventKind::Replacing
            };
            let name = REPLACING[self.rng.below(REPLACING.len() as u64) as usize];
            (kind, name, None)
        } else {
            let target = stateful[self.rng.below(stateful.len() as u64) as usize];
            (EventKind::Private, PRIVATE, Some(target))
        };
        let args = if kind == EventKind::ReplacingNull {
            Vec::new()
        } else {
            let len = self.rng.below(48);
            (0..len).map(|i| (n as u8) ^ (i as u8)).collect()
        };
        Event {
            kind,
            name: name.to_string(),
            args,
            client_id,
            uid,
        }
    }

    pub(super) fn svc_op(&mut self, op: SvcOp) {
        let now = Duration::from_millis(self.now);
        let Some(ctl) = self.svc.ctl.as_mut() else {
            return;
        };
        ctl.tick(now);
        let store = ctl.store().clone();
        let op_kind = match &op {
            SvcOp::Online(_) => OpKind::Online,
            SvcOp::Disconnected => OpKind::Disconnected,
            _ => OpKind::Other,
        };
        match op {
            SvcOp::Raise(event) => {
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
                let in_flight = ctl.in_flight();
                let candidates: Vec<Uuid> = if event.kind.is_replacing() {
                    self.svc
                        .pending
                        .iter()
                        .filter(|u| {
                            let i = &self.events[u];
                            i.kind.is_replacing() && i.name == event.name && !in_flight.contains(u)
                        })
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                };
                let s0 = store.stats();
                let d0 = self.svc.drops.load(Ordering::SeqCst);
                ctl.raise_event(&event).expect("raise");
                if let Some(image) = self.cut_struck() {
                    let (newest, older) = match candidates.split_last() {
                        Some((n, o)) => (Some(*n), o.to_vec()),
                        None => (None, Vec::new()),
                    };
                    // The call ran to its end in memory: its drop report
                    // reached the callback, but the process died in the
                    // call, so it never did.
                    let dropped_now = self.svc.drops.load(Ordering::SeqCst) - d0;
                    self.svc.drops.fetch_sub(dropped_now, Ordering::SeqCst);
                    self.svc.struck_stats_drops += store.stats().dropped_events - s0.dropped_events;
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
                    return;
                }
                let s1 = store.stats();
                let dropped = self.svc.drops.load(Ordering::SeqCst) - d0;
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
                for c in &candidates {
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
                if self.cfg.check_every > 0 && self.svc.raises.is_multiple_of(self.cfg.check_every)
                {
                    self.check_store(&store, "during the run");
                }
            }
            SvcOp::Online(broker_uid) => {
                let before = store.stats().invalidated_events;
                ctl.online(broker_uid).expect("online");
                if let Some(image) = self.cut_struck() {
                    self.struck(image, InDoubt::default());
                    return;
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
                self.svc.ancient.clear();
            }
            SvcOp::Ack(uid) | SvcOp::Rejected(uid) => {
                let stale = ctl.stale_acks();
                if matches!(op, SvcOp::Ack(_)) {
                    ctl.ack(uid).expect("ack");
                } else {
                    ctl.rejected(uid).expect("rejected");
                }
                if let Some(image) = self.cut_struck() {
                    let doubt = if matches!(op, SvcOp::Ack(_)) {
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
                    return;
                }
                let ctl = self.svc.ctl.as_ref().expect("up");
                let is_stale = ctl.stale_acks() != stale;
                self.trace(|| format!("ack {uid} stale {is_stale}"));
                let ctl = self.svc.ctl.as_ref().expect("up");
                if ctl.stale_acks() == stale && self.svc.pending.contains(&uid) {
                    self.svc.pending.retain(|u| *u != uid);
                    self.events.get_mut(&uid).expect("known").status =
                        if matches!(op, SvcOp::Ack(_)) {
                            Status::Acked
                        } else {
                            Status::Rejected
                        };
                }
            }
            SvcOp::Tick => {}
            SvcOp::Disconnected => ctl.disconnected().expect("disconnected"),
        }
        let ctl = self.svc.ctl.as_mut().expect("up");
        let outputs = ctl.drain_outputs();
        let deadline = ctl.next_deadline();
        let in_flight = ctl.in_flight();
        let storage_mode = ctl.store().mode() == Mode::Storage;
        if matches!(op_kind, OpKind::Online | OpKind::Disconnected) {
            self.drain_last = None;
        }
        // docs/PROTOCOL.md section 2: one event in flight while draining; then one per name.
        if storage_mode && in_flight.len() > 1 {
            self.violation(format!(
                "storage mode with {} events in flight",
                in_flight.len()
            ));
        }
        let mut names = HashSet::new();
        for u in &in_flight {
            if let Some(i) = self.events.get(u) {
                let pipeline = (i.kind.is_replacing(), i.kind == EventKind::Private, &i.name);
                if !names.insert(pipeline) {
                    let name = i.name.clone();
                    self.violation(format!("two events of '{name}' in flight: {in_flight:?}"));
                    break;
                }
            }
        }
        for out in outputs {
            match out {
                ServiceOutput::SendEvent(e) => {
                    // The drain goes strictly in raise order (a resend
                    // repeats the same event).
                    let seq = e.uid.as_u128() as u64;
                    if storage_mode {
                        if self.drain_last.is_some_and(|l| seq < l) {
                            let last = self.drain_last;
                            self.violation(format!(
                                "drain sent raise #{seq} after raise #{last:?}"
                            ));
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
}

#[derive(PartialEq, Eq)]
enum OpKind {
    Online,
    Disconnected,
    Other,
}

pub(super) enum SvcOp {
    Raise(Event),
    Online(Option<Uuid>),
    Ack(Uuid),
    Rejected(Uuid),
    Tick,
    Disconnected,
}
