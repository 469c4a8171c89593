//! The simulator's view of the service store (what its calls said it
//! holds) against what the store holds, after a reopen and at checks.

use std::collections::HashSet;

use softnet_persistence::{ServiceStore, Uuid};

use super::accounting::Status;
use super::engine::Sim;
use super::faults::InDoubt;

/// The store's counters not yet used to explain an event gone at a
/// reopen: each explains one event at most.
struct Unexplained {
    superseded: u64,
    dropped: u64,
}

impl Sim {
    /// After a reopen: what the store holds now against what it held.
    pub(super) fn reconcile(&mut self, store: &ServiceStore) {
        let now: Vec<Uuid> = store
            .pending()
            .expect("pending after reopen")
            .iter()
            .map(|e| e.uid)
            .collect();
        let now_set: HashSet<Uuid> = now.iter().copied().collect();
        let before = std::mem::take(&mut self.svc.pending);
        let before_set: HashSet<Uuid> = before.iter().copied().collect();
        let doubt = std::mem::take(&mut self.svc.in_doubt);
        let stats = store.stats();
        self.trace(|| {
            format!(
                "service reopened: {} pending, was {}; {stats:?}",
                now.len(),
                before.len()
            )
        });
        let mut left = Unexplained {
            superseded: stats.superseded_events,
            dropped: stats.dropped_events,
        };
        for uid in before {
            if now_set.contains(&uid) {
                continue;
            }
            let status = self.vanished_status(uid, &now, &now_set, &doubt, &mut left);
            self.events.get_mut(&uid).expect("known").status = status;
        }
        if let Some(r) = doubt.raise {
            if !now_set.contains(&r) {
                self.events.get_mut(&r).expect("known").status = Status::InDoubt;
            }
        }
        self.adopt_reopened(&now, &before_set, &doubt);
        self.svc.pending = now;
        self.svc.ancient = now_set;
    }

    /// What became of `uid`, pending before the reopen and gone after it
    /// (`now`): what an interrupted call was doing explains it first; then
    /// a level-1 store (SPL-1, or fallen back) loses everything; then the
    /// store's counters explain it (superseded only by a newer instance
    /// still there); anything else is a violation.
    fn vanished_status(
        &mut self,
        uid: Uuid,
        now: &[Uuid],
        now_set: &HashSet<Uuid>,
        doubt: &InDoubt,
        left: &mut Unexplained,
    ) -> Status {
        let (kind, name) = {
            let i = &self.events[&uid];
            (i.kind, i.name.clone())
        };
        let newer_same_name = now.iter().any(|u| {
            let i = &self.events[u];
            i.kind.is_replacing() && i.name == name && u.as_u128() > uid.as_u128()
        });
        if let Some(status) = self.in_doubt_status(uid, &name, doubt, now_set) {
            status
        } else if !self.cfg.service_file || self.svc.level1_at_down {
            Status::LostAtRestart
        } else if left.superseded > 0 && kind.is_replacing() && newer_same_name {
            left.superseded -= 1;
            Status::Superseded
        } else if left.dropped > 0 {
            left.dropped -= 1;
            Status::Dropped
        } else {
            self.violation(format!(
                "event {uid} ('{name}') was pending in the SPL-2 store and is gone after the \
                 reopen"
            ));
            Status::LostAtRestart
        }
    }

    /// The status of `uid` (of `name`), gone at the reopen, if the call a
    /// power cut interrupted explains it. The raise's own supersession and
    /// drops stand only if its event was stored: the store must not lose
    /// an old event for a new one it did not keep.
    fn in_doubt_status(
        &mut self,
        uid: Uuid,
        name: &str,
        doubt: &InDoubt,
        now_set: &HashSet<Uuid>,
    ) -> Option<Status> {
        let raise_stored = doubt.raise.is_some_and(|r| now_set.contains(&r));
        let status = if doubt.older.contains(&uid) {
            Status::Superseded
        } else if doubt.newest == Some(uid) {
            if raise_stored {
                Status::Superseded
            } else {
                self.violation(format!(
                    "a power cut during the raise of {:?} lost both it and the instance \
                     {uid} it supersedes ('{name}')",
                    doubt.raise
                ));
                Status::LostAtRestart
            }
        } else if doubt.dropped.contains(&uid) {
            if raise_stored {
                self.struck_drops += 1;
                Status::Dropped
            } else {
                self.violation(format!(
                    "a power cut during the raise of {:?} lost {uid} ('{name}'), which that \
                     raise dropped to make room, though the new event was not stored: \
                     nothing was reported",
                    doubt.raise
                ));
                Status::LostAtRestart
            }
        } else if doubt.ack == Some(uid) {
            Status::Acked
        } else if doubt.reject == Some(uid) {
            // The rejection was being recorded: its report never came.
            Status::InDoubt
        } else {
            return None;
        };
        Some(status)
    }

    /// The events the store holds after the reopen that it did not hold
    /// before are pending again; one the simulator never raised is a
    /// violation. Apart from an interrupted raise's own event, each is
    /// counted as resurrected.
    fn adopt_reopened(&mut self, now: &[Uuid], before_set: &HashSet<Uuid>, doubt: &InDoubt) {
        for uid in now {
            if before_set.contains(uid) {
                continue;
            }
            match self.events.get_mut(uid) {
                None => {
                    let uid = *uid;
                    self.violation(format!("the store holds {uid}, which was never raised"));
                }
                Some(info) => {
                    if doubt.raise != Some(*uid) {
                        self.resurrected += 1;
                    }
                    info.status = Status::Pending;
                }
            }
        }
    }

    /// Compares the simulator's view of the store with the store.
    pub(super) fn check_store(&mut self, store: &ServiceStore, when: &str) {
        let actual: Vec<Uuid> = store
            .pending()
            .expect("pending")
            .iter()
            .map(|e| e.uid)
            .collect();
        if actual == self.svc.pending {
            return;
        }
        let actual_set: HashSet<Uuid> = actual.iter().copied().collect();
        let view_set: HashSet<Uuid> = self.svc.pending.iter().copied().collect();
        let vanished: Vec<Uuid> = self
            .svc
            .pending
            .iter()
            .filter(|u| !actual_set.contains(u))
            .copied()
            .collect();
        let extra: Vec<Uuid> = actual
            .iter()
            .filter(|u| !view_set.contains(u))
            .copied()
            .collect();
        self.violation(format!(
            "{when}: the store holds {} events, its calls said {}; gone without a word: \
             {vanished:?}; there without a word: {extra:?}",
            actual.len(),
            self.svc.pending.len()
        ));
        for uid in vanished {
            self.events.get_mut(&uid).expect("known").status = Status::Vanished;
        }
        self.svc.pending = actual;
    }
}
