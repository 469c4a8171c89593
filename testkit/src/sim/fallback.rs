//! A level-2 failure while the service is online: the device under the
//! SPL-2 journal starts failing while events are in flight, so the store
//! falls back to level 1 with a new storage uid (docs/BEHAVIOUR.md section
//! 5.1, docs/PROTOCOL.md section 2.9).
//!
//! The failing device is a layer over the power-cut layer: once switched
//! on, every check and sync of the journal's device fails, as a disk that
//! went away; reads of what is mapped still work, so the fallback can move
//! what is pending. It strikes in the next store call that writes: a call
//! of the controller (an ack, a raise), or, half the time, at once through
//! a `flush` of the application. The device works again when the service
//! app next opens its store (after a restart).

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use softnet_persistence::{Device, DeviceLayer, Level, ServiceStore, Uuid};

use super::accounting::Status;
use super::config::Fault;
use super::engine::{Ev, Sim};

/// Switches the service journal's device to failing.
#[derive(Clone, Default)]
pub(super) struct FailSwitch(Arc<AtomicBool>);

impl FailSwitch {
    /// `inner` (the power-cut layer), under a device that fails on command.
    pub(super) fn layer(&self, inner: Arc<dyn DeviceLayer>) -> Arc<dyn DeviceLayer> {
        Arc::new(FailLayer {
            inner,
            failing: self.0.clone(),
        })
    }

    pub(super) fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }
}

struct FailLayer {
    inner: Arc<dyn DeviceLayer>,
    failing: Arc<AtomicBool>,
}

impl DeviceLayer for FailLayer {
    fn wrap(&self, path: &Path, device: Box<dyn Device>) -> Box<dyn Device> {
        Box::new(FailDevice {
            inner: self.inner.wrap(path, device),
            failing: self.failing.clone(),
        })
    }
}

struct FailDevice {
    inner: Box<dyn Device>,
    failing: Arc<AtomicBool>,
}

impl FailDevice {
    fn up(&self) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated failure of the device"));
        }
        Ok(())
    }
}

impl Device for FailDevice {
    fn bytes(&self) -> &[u8] {
        self.inner.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.inner.bytes_mut()
    }

    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.up()?;
        self.inner.sync(offset, len)
    }

    fn check(&self) -> io::Result<()> {
        self.up()?;
        self.inner.check()
    }
}

/// Fallbacks of one run, as the simulator saw them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fallbacks {
    /// Level-2 failures injected (the device switched to failing).
    pub(super) injected: u64,
    /// Fallbacks seen (the store went from level 2 to level 1).
    pub(super) seen: u64,
    /// Events in flight just before each fallback.
    pub(super) in_flight: u64,
    /// Events pending just after each fallback (moved to memory).
    pub(super) moved: u64,
    /// Fallback reports' events lost, already matched with the view.
    pub(super) reported_seen: u64,
    /// Counted lost by a fallback report, yet removed by the call that
    /// failed (see [`Sim::check_fallback`]).
    pub(super) over_reported: u64,
}

/// The service store just before a call, at level 2: what the call is
/// checked against, should level 2 fail in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct BeforeCall {
    /// Events in flight.
    pub(super) in_flight: usize,
    /// Events in the simulator's view of the store, plus the one the call
    /// raises, if it does.
    pub(super) view: usize,
}

impl Sim {
    /// The fault strikes only at level 2, online, with events in flight;
    /// until then it waits (a few times a second).
    pub(super) fn device_fails(&mut self) {
        let Some(ctl) = self.svc.ctl.as_ref() else {
            return;
        };
        let store = ctl.store().clone();
        if store.level() != Level::Persistent || self.svc.switch_on {
            return;
        }
        if !ctl.is_online() || ctl.in_flight().is_empty() {
            if self.now < self.faults_end {
                let at = self.now + self.rng.range(10, 500);
                self.push(at, Ev::DeviceFails);
            }
            return;
        }
        let in_flight = ctl.in_flight().len();
        *self.stats.faults.entry(Fault::Level2Failure).or_default() += 1;
        self.svc.fallbacks.injected += 1;
        self.svc.switch.set(true);
        self.svc.switch_on = true;
        self.trace(|| format!("the journal's device fails ({in_flight} in flight)"));
        if self.rng.chance(1, 2) {
            // The application flushes the store: the fallback happens now,
            // outside the controller, which sees the new uid at its next
            // call.
            let before = BeforeCall {
                in_flight,
                view: self.svc.pending.len(),
            };
            let _ = store.flush();
            self.check_fallback(&store, Some(before));
        }
    }

    /// After a store call that returned: if the store was at level 2 before
    /// it (`before`) and is at level 1 now, it fell back. The pending
    /// events it did not move (`gone`) must all be counted in its report's
    /// events lost: nothing is lost silently.
    ///
    /// The report may count more, but only events that the failing call
    /// itself removed (acknowledged, rejected, superseded, dropped): the
    /// journal forgets a record whose removal then fails on the device,
    /// the fallback finds it gone and counts it unreadable, and the call
    /// completes the removal at level 1. Those are over-reported (never
    /// delivered twice, never lost), and counted apart.
    pub(super) fn check_fallback(&mut self, store: &ServiceStore, before: Option<BeforeCall>) {
        let Some(before) = before else {
            return;
        };
        if store.level() == Level::Persistent {
            return;
        }
        let held: HashSet<Uuid> = store
            .pending()
            .expect("pending")
            .iter()
            .map(|e| e.uid)
            .collect();
        let removed_by_call = before.view.saturating_sub(self.svc.pending.len()) as u64;
        let gone: Vec<Uuid> = self
            .svc
            .pending
            .iter()
            .filter(|u| !held.contains(u))
            .copied()
            .collect();
        let reported = self.svc.fallback_lost.load(Ordering::SeqCst);
        let new_reports = reported - self.svc.fallbacks.reported_seen;
        self.svc.fallbacks.reported_seen = reported;
        let over = new_reports.saturating_sub(gone.len() as u64);
        if gone.len() as u64 > new_reports || over > removed_by_call {
            self.violation(format!(
                "a fallback lost {} pending events ({gone:?}); its report says {new_reports}, \
                 the call that failed removed {removed_by_call}",
                gone.len()
            ));
        }
        let f = &mut self.svc.fallbacks;
        f.seen += 1;
        f.in_flight += before.in_flight as u64;
        f.moved += held.len() as u64;
        f.over_reported += over;
        for u in &gone {
            self.events.get_mut(u).expect("known").status = Status::LostInFallback;
        }
        self.svc.pending.retain(|u| held.contains(u));
        self.trace(|| {
            format!(
                "fell back to level 1 ({} in flight, {} moved, {} lost, {new_reports} reported \
                 lost): new uid {}",
                before.in_flight,
                held.len(),
                gone.len(),
                store.storage_uid()
            )
        });
    }
}
