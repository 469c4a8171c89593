//! The service endpoint: the service app raising events through its
//! controller and store, and feeding it what the broker sends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use softnet_persistence::{Event, EventKind, Level, ServiceOptions, ServiceStore, Uuid};
use softnet_persistence::{ServiceController, DEFAULT_RESEND_TIMEOUT};

use super::config::Fault;
use super::engine::{Ev, Sim};
use super::fallback::{BeforeCall, FailSwitch, Fallbacks};
use super::faults::InDoubt;
use super::site::{PRIVATE, QUEUEING, REPLACING, UNKNOWN};
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
    /// Makes the journal's device fail (a level-2 failure).
    pub(super) switch: FailSwitch,
    /// The device is failing (until the store is next opened).
    pub(super) switch_on: bool,
    pub(super) fallbacks: Fallbacks,
    /// Events lost reported by fallback reports.
    pub(super) fallback_lost: Arc<AtomicU64>,
    /// The store ran at level 1 when the app last went down (SPL-1, or
    /// after a fallback): what was pending is lost, as at SPL-1.
    pub(super) level1_at_down: bool,
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
        self.svc.level1_at_down = store.level() == Level::Memory;
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
        // A failed device works again (replaced, or the fault went away).
        // A fallback report from the last store's `close` (its device had
        // failed, no call had written since) is not matched with the view.
        self.svc.switch.set(false);
        self.svc.switch_on = false;
        self.svc.fallbacks.reported_seen = self.svc.fallback_lost.load(Ordering::SeqCst);
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
            seq: 0,
            raised_at_ms: None,
        }
    }

    /// Feeds the service controller one input at the current time (after
    /// its tick); see `service_ops` for each call. Nothing happens while
    /// the service app is down. A call a power cut struck never returned:
    /// what it asked to send is never sent.
    pub(super) fn svc_op(&mut self, op: SvcOp) {
        let now = Duration::from_millis(self.now);
        let Some(ctl) = self.svc.ctl.as_mut() else {
            return;
        };
        ctl.tick(now);
        // A handle on the store for the whole op: it outlives the
        // controller if a power cut brings the service down in the op.
        let store = ctl.store().clone();
        // At level 2: what the call is checked against, should it fall back.
        let raises = usize::from(matches!(op, SvcOp::Raise(_)));
        let before = (store.level() == Level::Persistent).then(|| BeforeCall {
            in_flight: ctl.in_flight().len(),
            view: self.svc.pending.len() + raises,
        });
        let resets_drain = matches!(op, SvcOp::Online(_) | SvcOp::Disconnected);
        let returned = match op {
            SvcOp::Raise(event) => self.svc_raise(&store, event),
            SvcOp::Online(broker_uid) => self.svc_online(&store, broker_uid),
            SvcOp::Ack(uid) => self.svc_answer(uid, true),
            SvcOp::Rejected(uid) => self.svc_answer(uid, false),
            SvcOp::Tick => true,
            SvcOp::Disconnected => {
                let in_flight = ctl.in_flight();
                self.trace(|| format!("disconnected, in flight {in_flight:?}"));
                let ctl = self.svc.ctl.as_mut().expect("up");
                ctl.disconnected().expect("disconnected");
                true
            }
        };
        if returned {
            self.check_fallback(&store, before);
            self.svc_after_op(resets_drain);
        }
    }
}

/// An input of the service controller.
pub(super) enum SvcOp {
    Raise(Event),
    Online(Option<Uuid>),
    Ack(Uuid),
    Rejected(Uuid),
    Tick,
    Disconnected,
}
