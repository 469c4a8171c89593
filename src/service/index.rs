//! The store's in-memory index of pending events: global raise order (for
//! storage mode and capacity), per-name pipelines (for cache mode and
//! Replacing collapse), and what is in flight. Every lookup by name is a
//! hash map access, every lookup by id a binary search.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

use crate::event::EventKind;

/// Marks an entry whose pipeline is not known yet (names not built).
pub(crate) const NO_PIPE: u32 = u32::MAX;

/// One pending (or, until compaction, removed) event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Backend sequence number; raise order.
    pub id: u64,
    /// Bytes it counts against the capacity.
    pub size: u32,
    /// Its pipeline, or [`NO_PIPE`].
    pub pipe: u32,
}

/// Set in an entry's size once it is removed (until compaction drops it):
/// 16 bytes an entry instead of 24 with a flag of its own, which at open
/// is one fresh page of memory less per 512 pending events. Sizes are far
/// below it (an event takes at most a few KiB).
const DEAD: u32 = 1 << 31;

const _: () = assert!(std::mem::size_of::<Entry>() == 16);

impl Entry {
    fn live(&self) -> bool {
        self.size & DEAD == 0
    }
}

/// The pending events of one name (per kind family), oldest first.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    pub ids: VecDeque<u64>,
    /// Uid of the front event while it is in flight (cache mode).
    pub in_flight: Option<Uuid>,
}

impl Pipe {
    fn remove(&mut self, id: u64) {
        if self.ids.front() == Some(&id) {
            self.ids.pop_front();
            self.in_flight = None;
        } else if let Some(i) = self.ids.iter().position(|&x| x == id) {
            self.ids.remove(i);
        }
    }
}

/// Name -> pipeline, one map per kind family (Replacing, Queueing, Private).
#[derive(Debug, Default)]
struct Names {
    maps: [HashMap<Box<str>, u32>; 3],
    pipes: Vec<Pipe>,
}

fn family(kind: EventKind) -> usize {
    match kind.pipeline() {
        EventKind::Replacing | EventKind::ReplacingNull => 0,
        EventKind::Queueing => 1,
        EventKind::Private => 2,
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Index {
    order: VecDeque<Entry>,
    /// Highest id ever pushed: backends must keep numbering above it.
    max_id: u64,
    dead: usize,
    live: u64,
    used: u64,
    names: Option<Names>,
    /// The storage-mode event in flight: (id, uid).
    pub storage_in_flight: Option<(u64, Uuid)>,
    /// Ids up to this one were in the store when it was opened ("ancient");
    /// 0 when there are none.
    pub ancient_max: u64,
}

impl Index {
    /// Pending events.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Bytes of pending events.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Highest id ever pushed (kept across `clear`).
    pub fn max_id(&self) -> u64 {
        self.max_id
    }

    /// Makes room for `additional` more entries at once.
    pub fn reserve(&mut self, additional: usize) {
        self.order.reserve(additional);
    }

    /// Adds an event raised (or loaded) last; ids only grow.
    pub fn push(&mut self, id: u64, size: u32, pipe: u32) {
        debug_assert!(id > self.max_id);
        self.max_id = id;
        // An impossible length (a corrupt record, discarded right after
        // loading) must not read as the flag.
        let size = size.min(DEAD - 1);
        self.order.push_back(Entry { id, size, pipe });
        self.live += 1;
        self.used += u64::from(size);
        if pipe != NO_PIPE {
            if let Some(names) = self.names.as_mut() {
                names.pipes[pipe as usize].ids.push_back(id);
            }
        }
    }

    /// The oldest pending event.
    pub fn front(&self) -> Option<Entry> {
        self.order.front().copied()
    }

    /// Pending events in raise order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.order.iter().filter(|e| e.live()).copied()
    }

    /// The pending event with this id.
    pub fn get(&self, id: u64) -> Option<Entry> {
        // The newest and the oldest are the usual questions (a raise checks
        // its own event, an ack the front): no search through a long queue.
        let found = match (self.order.back(), self.order.front()) {
            (Some(back), _) if back.id == id => Some(*back),
            (_, Some(front)) if front.id == id => Some(*front),
            _ => {
                let i = self.order.binary_search_by_key(&id, |e| e.id).ok()?;
                Some(self.order[i])
            }
        };
        found.filter(|e| e.live())
    }

    /// Forgets a pending event (after the backend removed it).
    pub fn remove(&mut self, id: u64) -> Option<Entry> {
        let i = if self.order.front().map(|e| e.id) == Some(id) {
            0
        } else {
            self.order.binary_search_by_key(&id, |e| e.id).ok()?
        };
        let entry = self.order[i];
        if !entry.live() {
            return None;
        }
        self.order[i].size |= DEAD;
        self.dead += 1;
        self.live -= 1;
        self.used -= u64::from(entry.size);
        if self.storage_in_flight.map(|f| f.0) == Some(id) {
            self.storage_in_flight = None;
        }
        if let Some(names) = self.names.as_mut() {
            if let Some(pipe) = names.pipes.get_mut(entry.pipe as usize) {
                pipe.remove(id);
            }
        }
        while self.order.front().is_some_and(|e| !e.live()) {
            self.order.pop_front();
            self.dead -= 1;
        }
        // Removals out of order (cache mode) leave dead entries behind a
        // live front; compact once they outnumber the live ones.
        if self.dead > 1024 && self.dead > self.order.len() / 2 {
            self.order.retain(|e| e.live());
            self.dead = 0;
        }
        Some(entry)
    }

    /// Forgets everything pending (names stay interned).
    pub fn clear(&mut self) {
        self.order.clear();
        self.dead = 0;
        self.live = 0;
        self.used = 0;
        self.storage_in_flight = None;
        self.ancient_max = 0;
        if let Some(names) = self.names.as_mut() {
            for pipe in &mut names.pipes {
                pipe.ids.clear();
                pipe.in_flight = None;
            }
        }
    }

    /// True once the name index exists (it is built on first need).
    pub fn names_built(&self) -> bool {
        self.names.is_some()
    }

    /// Forgets a half-built name index (its build failed).
    pub fn drop_names(&mut self) {
        self.names = None;
    }

    /// Starts the name index; the caller then assigns every pending entry
    /// in raise order with [`Index::assign`].
    pub fn start_names(&mut self) {
        self.names = Some(Names::default());
    }

    /// Puts a pending entry (loaded before the names existed) in its pipeline.
    pub fn assign(&mut self, id: u64, pipe: u32) {
        if let Ok(i) = self.order.binary_search_by_key(&id, |e| e.id) {
            self.order[i].pipe = pipe;
            if let Some(names) = self.names.as_mut() {
                names.pipes[pipe as usize].ids.push_back(id);
            }
        }
    }

    /// The pipeline of a name, if it ever had an event.
    pub fn pipe_of(&self, kind: EventKind, name: &str) -> Option<u32> {
        self.names.as_ref()?.maps[family(kind)].get(name).copied()
    }

    /// The pipeline of a name, made if new. Names must be built.
    pub fn intern(&mut self, kind: EventKind, name: &str) -> u32 {
        let Some(names) = self.names.as_mut() else {
            return NO_PIPE;
        };
        let map = &mut names.maps[family(kind)];
        if let Some(&p) = map.get(name) {
            return p;
        }
        let p = names.pipes.len() as u32;
        names.pipes.push(Pipe::default());
        map.insert(name.into(), p);
        p
    }

    /// A pipeline.
    pub fn pipe(&self, pipe: u32) -> Option<&Pipe> {
        self.names.as_ref()?.pipes.get(pipe as usize)
    }

    /// A pipeline, writable.
    pub fn pipe_mut(&mut self, pipe: u32) -> Option<&mut Pipe> {
        self.names.as_mut()?.pipes.get_mut(pipe as usize)
    }

    /// Every pending Replacing instance that has a newer pending instance of
    /// the same name. Names must be built.
    pub fn older_replacing_instances(&self) -> Vec<u64> {
        let Some(names) = self.names.as_ref() else {
            return Vec::new();
        };
        let mut out: Vec<u64> = names.maps[family(EventKind::Replacing)]
            .values()
            .filter_map(|&p| names.pipes.get(p as usize))
            .flat_map(|pipe| pipe.ids.iter().rev().skip(1).copied())
            .collect();
        out.sort_unstable();
        out
    }

    /// Ends every cache-mode flight (back to storage mode).
    pub fn clear_in_flight(&mut self) {
        self.storage_in_flight = None;
        if let Some(names) = self.names.as_mut() {
            for pipe in &mut names.pipes {
                pipe.in_flight = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_pipes_and_removal() {
        let mut ix = Index::default();
        ix.start_names();
        let a = ix.intern(EventKind::Replacing, "A");
        let b = ix.intern(EventKind::Queueing, "B");
        assert_eq!(ix.intern(EventKind::ReplacingNull, "A"), a, "same family");
        assert_ne!(ix.intern(EventKind::Queueing, "A"), a, "other family");
        ix.push(1, 10, a);
        ix.push(2, 20, b);
        ix.push(3, 30, a);
        assert_eq!((ix.live(), ix.used()), (3, 60));
        assert_eq!(ix.pipe(a).unwrap().ids, [1, 3]);
        ix.remove(3).unwrap();
        assert_eq!(ix.pipe(a).unwrap().ids, [1]);
        assert!(ix.remove(3).is_none());
        ix.remove(1).unwrap();
        assert_eq!(ix.front().unwrap().id, 2);
        assert_eq!((ix.live(), ix.used()), (1, 20));
        assert!(ix.get(1).is_none() && ix.get(2).is_some());
    }

    #[test]
    fn out_of_order_removals_are_compacted() {
        let mut ix = Index::default();
        for id in 1..=5000 {
            ix.push(id, 1, NO_PIPE);
        }
        for id in 2..=5000 {
            ix.remove(id).unwrap();
        }
        assert!(ix.order.len() < 2000, "compacted: {}", ix.order.len());
        assert_eq!(ix.entries().map(|e| e.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn an_impossible_size_is_still_a_live_entry() {
        let mut ix = Index::default();
        ix.push(1, u32::MAX, NO_PIPE);
        ix.push(2, 8, NO_PIPE);
        assert_eq!(ix.live(), 2);
        assert_eq!(ix.get(1).map(|e| e.size), Some(DEAD - 1));
        assert_eq!(ix.entries().count(), 2);
        let removed = ix.remove(1).unwrap();
        assert_eq!((removed.id, ix.live(), ix.used()), (1, 1, 8));
        assert!(ix.get(1).is_none() && ix.remove(1).is_none());
    }
}
