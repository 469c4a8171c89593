//! When written data is forced to the storage device, and what is waiting
//! for it.

use std::time::{Duration, Instant};

/// How soon a file-backed store forces its writes to the device.
///
/// Whatever the setting, every write is in the page cache when the call
/// returns, so it survives the process being killed. The setting decides
/// what survives a power cut or a kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every operation is on the device before its call returns (the
    /// default): one `msync` per raise and per ack.
    #[default]
    Sync,
    /// Sync once `max_ops` operations are pending or the oldest pending one
    /// is `max_delay` old. Checked on each call and by `flush()`: there is no
    /// background thread, so an idle store syncs at its next call or flush.
    Batch {
        /// Operations after which a sync happens (0 is treated as 1).
        max_ops: u32,
        /// Age of the oldest unsynced operation after which a sync happens.
        max_delay: Duration,
    },
    /// Never sync on our own (only on `flush()`): survives a process crash,
    /// not a power cut.
    None,
}

/// Counts unsynced operations and says when the durability setting wants a
/// sync.
#[derive(Debug)]
pub(crate) struct SyncPolicy {
    durability: Durability,
    pending_ops: u32,
    oldest_pending: Option<Instant>,
}

impl SyncPolicy {
    pub(crate) fn new(durability: Durability) -> SyncPolicy {
        SyncPolicy {
            durability,
            pending_ops: 0,
            oldest_pending: None,
        }
    }

    pub(crate) fn durability(&self) -> Durability {
        self.durability
    }

    /// Records one finished operation; true when it must be synced now.
    pub(crate) fn operation_done(&mut self) -> bool {
        match self.durability {
            Durability::Sync => true,
            Durability::None => false,
            Durability::Batch { max_ops, max_delay } => {
                self.pending_ops += 1;
                let oldest = *self.oldest_pending.get_or_insert_with(Instant::now);
                self.pending_ops >= max_ops.max(1) || oldest.elapsed() >= max_delay
            }
        }
    }

    /// True when ordering writes (barriers, header updates) must sync: every
    /// setting but `None`, which promises nothing across a power cut.
    pub(crate) fn orders_writes(&self) -> bool {
        self.durability != Durability::None
    }

    /// Records that everything was synced.
    pub(crate) fn synced(&mut self) {
        self.pending_ops = 0;
        self.oldest_pending = None;
    }
}

/// The span of the file written since the last sync. One span, synced by
/// one `msync`: the kernel writes only the dirty pages inside it, and every
/// `msync` call costs a device flush of its own, so several small calls
/// cost more than one wide one.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    span: Option<(usize, usize)>,
}

impl Dirty {
    pub(crate) fn add(&mut self, start: usize, len: usize) {
        let end = start + len;
        self.span = Some(match self.span {
            Some((a, b)) => (a.min(start), b.max(end)),
            None => (start, end),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.span.is_none()
    }
}

impl Dirty {
    /// The span written since the last sync, forgetting it.
    pub(crate) fn take(&mut self) -> Option<(usize, usize)> {
        self.span.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_syncs_after_max_ops() {
        let mut p = SyncPolicy::new(Durability::Batch {
            max_ops: 3,
            max_delay: Duration::from_secs(3600),
        });
        assert!(!p.operation_done());
        assert!(!p.operation_done());
        assert!(p.operation_done());
        p.synced();
        assert!(!p.operation_done());
    }

    #[test]
    fn batch_syncs_after_max_delay() {
        let mut p = SyncPolicy::new(Durability::Batch {
            max_ops: 1000,
            max_delay: Duration::ZERO,
        });
        assert!(p.operation_done());
    }

    #[test]
    fn sync_and_none() {
        assert!(SyncPolicy::new(Durability::Sync).operation_done());
        let mut none = SyncPolicy::new(Durability::None);
        assert!(!none.operation_done());
        assert!(!none.orders_writes());
    }
}
