//! Fault injection: outages, application restarts and power cuts (between
//! calls or inside a service store call), and bringing an endpoint back up.

use softnet_persistence::{ClientStore, ServiceStore, Uuid};

use super::config::Fault;
use super::engine::{Ev, Sim};
use crate::rng::Rng;

/// What an interrupted store call was doing.
#[derive(Default, Debug)]
pub(super) struct InDoubt {
    pub(super) raise: Option<Uuid>,
    pub(super) older: Vec<Uuid>,
    pub(super) newest: Option<Uuid>,
    pub(super) ack: Option<Uuid>,
    pub(super) reject: Option<Uuid>,
    /// Dropped for capacity by the interrupted raise (its report never
    /// reached the application: the process died in the call).
    pub(super) dropped: Vec<Uuid>,
}

impl Sim {
    pub(super) fn fault_down(&mut self, ep: usize, fault: Fault) {
        if !self.links[ep].app_up {
            return;
        }
        *self.stats.faults.entry(fault).or_default() += 1;
        if ep == 0
            && fault == Fault::PowerCut
            && self.cfg.mid_op_cuts
            && self.cfg.service_file
            && self.svc.armed.is_none()
            && self.arm_cut()
        {
            return;
        }
        self.bring_down(ep, fault, None, InDoubt::default());
    }

    /// Arms a power cut at one of the next syncs of the service journal
    /// (while it runs at level 2).
    fn arm_cut(&mut self) -> bool {
        let k = self.rng.range(1, 4);
        let seed = self.rng.next_u64();
        let Some(ctl) = self.svc.ctl.as_ref() else {
            return false;
        };
        if ctl.store().journal_path().is_none() {
            return false;
        }
        let at = self.svc.cut.sync_count() + k;
        self.svc.cut.arm(at, seed);
        self.svc.armed = Some(6);
        self.svc.cut_id += 1;
        let id = self.svc.cut_id;
        let at = self.now + self.rng.range(100, 5000);
        self.push(at, Ev::CutNow(id));
        true
    }

    /// The image an armed cut captured during the last call, if it struck.
    pub(super) fn cut_struck(&mut self) -> Option<Vec<u8>> {
        self.svc.armed?;
        self.svc.ctl.as_ref()?.store().journal_path()?;
        self.svc.cut.take_image()
    }

    /// The service journal as a power cut now leaves it (at level 2).
    pub(super) fn service_cut_image(&mut self, store: &ServiceStore) -> Option<Vec<u8>> {
        // Drawn first, at level 2 or not: every run draws the same numbers.
        let mut keep = Rng::new(self.rng.next_u64());
        store.journal_path()?;
        Some(self.svc.cut.image_now(&mut |_| keep.chance(1, 2)))
    }

    /// Client `c`'s file as a power cut now leaves it (at level 2).
    pub(super) fn client_cut_image(&mut self, c: usize, store: &ClientStore) -> Option<Vec<u8>> {
        // Drawn first, at level 2 or not: every run draws the same numbers.
        let mut keep = Rng::new(self.rng.next_u64());
        store.file_path()?;
        Some(self.clients[c].cut.image_now(&mut |_| keep.chance(1, 2)))
    }

    /// The application of `ep` goes down (restart or reboot); `image` is
    /// the service journal a mid-call power cut left.
    pub(super) fn bring_down(
        &mut self,
        ep: usize,
        fault: Fault,
        image: Option<Vec<u8>>,
        doubt: InDoubt,
    ) {
        self.teardown(ep, true);
        self.links[ep].app_up = false;
        if ep == 0 {
            self.service_down(fault, image, doubt);
        } else {
            self.client_down(ep - 1, fault);
        }
        let downtime = match fault {
            Fault::PowerCut => self.rng.range(2_000, 30_000),
            _ => self.rng.range(200, 10_000),
        };
        self.push(self.now + downtime, Ev::AppUp(ep));
    }

    pub(super) fn app_up(&mut self, ep: usize) {
        if self.links[ep].app_up {
            return;
        }
        if ep == 0 {
            self.service_up();
        } else {
            self.client_up(ep - 1);
        }
        self.links[ep].app_up = true;
        self.maybe_connect(ep);
    }

    pub(super) fn struck(&mut self, image: Vec<u8>, doubt: InDoubt) {
        self.stats.mid_op_cuts += 1;
        // The call never returned: what it asked to send is never sent.
        if let Some(ctl) = self.svc.ctl.as_mut() {
            ctl.drain_outputs();
        }
        self.bring_down(0, Fault::PowerCut, Some(image), doubt);
    }
}
