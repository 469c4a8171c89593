//! Level 1: records in memory.

use std::collections::VecDeque;

use crate::backend::{RecordLog, Removal};
use crate::error::{Error, Result};

/// A [`RecordLog`] in memory: survives a network outage, not a restart.
#[derive(Debug, Default)]
pub struct MemoryLog {
    /// Sorted by sequence number; `None` marks a removed record. The front
    /// is never `None`.
    records: VecDeque<(u64, Option<Box<[u8]>>)>,
    next_seq: u64,
    metadata: Vec<u8>,
}

impl MemoryLog {
    /// An empty log whose first sequence number is 1.
    pub fn new() -> MemoryLog {
        MemoryLog {
            next_seq: 1,
            ..MemoryLog::default()
        }
    }

    /// An empty log whose numbers start above `floor`: a store falling
    /// back from level 2 keeps numbering above every id it ever handed out.
    pub(crate) fn numbered_after(floor: u64) -> MemoryLog {
        MemoryLog {
            next_seq: floor + 1,
            ..MemoryLog::default()
        }
    }

    /// Adds a record under a sequence number chosen by the caller, above
    /// every number already stored. Used when a failed level 2 moves its
    /// pending records here, keeping their numbers.
    pub(crate) fn insert(&mut self, seq: u64, payload: &[u8]) -> Result<()> {
        if let Some(&(last, _)) = self.records.back() {
            if seq <= last {
                return Err(Error::state(format!(
                    "memory log: sequence {seq} is not above {last}"
                )));
            }
        }
        self.records.push_back((seq, Some(payload.into())));
        self.next_seq = self.next_seq.max(seq + 1);
        Ok(())
    }

    fn position(&self, seq: u64) -> Result<usize> {
        match self.records.binary_search_by_key(&seq, |r| r.0) {
            Ok(i) if self.records[i].1.is_some() => Ok(i),
            _ => Err(Error::state(format!("no live record with sequence {seq}"))),
        }
    }
}

impl RecordLog for MemoryLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        let seq = self.next_seq;
        self.records.push_back((seq, Some(payload.into())));
        self.next_seq = seq + 1;
        Ok(seq)
    }

    fn remove(&mut self, seq: u64, _why: Removal) -> Result<()> {
        let i = self.position(seq)?;
        self.records[i].1 = None;
        while matches!(self.records.front(), Some((_, None))) {
            self.records.pop_front();
        }
        Ok(())
    }

    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        let i = self.position(seq)?;
        out.clear();
        out.extend_from_slice(self.records[i].1.as_deref().unwrap_or_default());
        Ok(())
    }

    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        for (seq, payload) in &self.records {
            if let Some(p) = payload {
                visit(*seq, p)?;
            }
        }
        Ok(())
    }

    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn clear(&mut self) -> Result<()> {
        self.records.clear();
        Ok(())
    }

    fn metadata(&mut self) -> Result<Vec<u8>> {
        Ok(self.metadata.clone())
    }

    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        self.metadata = meta.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(log: &mut MemoryLog) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        log.scan(&mut |s, p| {
            out.push((s, p.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn append_remove_scan() {
        let mut log = MemoryLog::new();
        let a = log.append(b"a").unwrap();
        let b = log.append(b"b").unwrap();
        let c = log.append(b"c").unwrap();
        assert!(a < b && b < c);
        log.remove(b, Removal::Acknowledged).unwrap();
        assert_eq!(live(&mut log), vec![(a, b"a".to_vec()), (c, b"c".to_vec())]);
        assert!(log.remove(b, Removal::Acknowledged).is_err());
        log.remove(a, Removal::Acknowledged).unwrap();
        let mut buf = Vec::new();
        log.read(c, &mut buf).unwrap();
        assert_eq!(buf, b"c");
        log.clear().unwrap();
        assert!(live(&mut log).is_empty());
        assert!(
            log.append(b"d").unwrap() > c,
            "numbers keep growing after clear"
        );
    }

    #[test]
    fn insert_keeps_numbers_and_refuses_going_back() {
        let mut log = MemoryLog::new();
        log.insert(10, b"x").unwrap();
        log.insert(12, b"y").unwrap();
        assert!(log.insert(11, b"z").is_err());
        assert_eq!(log.append(b"w").unwrap(), 13);
        assert_eq!(live(&mut log).len(), 3);
    }

    #[test]
    fn numbering_after_a_floor() {
        let mut log = MemoryLog::numbered_after(50);
        log.insert(7, b"moved").unwrap();
        assert_eq!(log.append(b"new").unwrap(), 51);
    }
}
