//! The events raised so far, on any handle, and the events the input asks
//! to raise: a stored event must be one of them (docs/BEHAVIOUR.md 5.2:
//! never an event that was not raised).

use std::collections::HashMap;

use capi::event::{
    snp_event, snp_stored_event, SNP_EVENT_PRIVATE, SNP_EVENT_QUEUEING, SNP_EVENT_REPLACING,
    SNP_EVENT_REPLACING_NULL, SNP_MAX_ARGS_LEN, SNP_MAX_NAME_LEN,
};

use crate::check::name_ok;
use crate::input::{self, Arg, Input};

pub type Uid = [u8; 16];

/// A uid to use when no event has been raised yet.
const UNKNOWN: Uid = [0xa; 16];

/// An event as raised (client id 0 unless Private).
#[derive(Clone, Debug, PartialEq)]
pub struct Raised {
    pub kind: i32,
    pub name: Vec<u8>,
    args: Vec<u8>,
    client_id: i64,
}

/// Every event raised so far, on any handle.
#[derive(Default)]
pub struct Events {
    pub by_uid: HashMap<Uid, Vec<Raised>>,
    /// Raised with a NULL `out_uid`: uid unknown.
    anonymous: Vec<Raised>,
    uids: Vec<Uid>,
    /// Distinct (kind family, name) pairs.
    pub names: Vec<(i32, Vec<u8>)>,
    fresh: u64,
}

pub fn valid_kind(kind: i32) -> bool {
    [
        SNP_EVENT_REPLACING,
        SNP_EVENT_QUEUEING,
        SNP_EVENT_PRIVATE,
        SNP_EVENT_REPLACING_NULL,
    ]
    .contains(&kind)
}

/// Replacing-null shares Replacing's pipeline.
pub fn family(kind: i32) -> i32 {
    if kind == SNP_EVENT_REPLACING_NULL {
        SNP_EVENT_REPLACING
    } else {
        kind
    }
}

impl Events {
    pub fn add(&mut self, uid: Option<Uid>, e: Raised) {
        let key = (family(e.kind), e.name.clone());
        if !self.names.contains(&key) {
            self.names.push(key);
        }
        match uid {
            Some(u) => {
                self.uids.push(u);
                self.by_uid.entry(u).or_default().push(e);
            }
            None => self.anonymous.push(e),
        }
    }

    /// A uid raised before (or an unknown one if none was).
    pub fn pick(&self, b: u8) -> Uid {
        match self.uids.len() {
            0 => UNKNOWN,
            n => self.uids[usize::from(b) % n],
        }
    }

    pub fn fresh(&mut self) -> Uid {
        self.fresh += 1;
        let mut u = [0x5a; 16];
        u[..8].copy_from_slice(&self.fresh.to_le_bytes());
        u
    }

    /// A stored event is well formed and is one that was raised.
    pub fn check(&self, e: &snp_stored_event) -> Raised {
        assert!(valid_kind(e.kind), "stored event kind {}", e.kind);
        let n = e.name_len;
        assert!((1..=SNP_MAX_NAME_LEN).contains(&n), "name_len {n}");
        assert!(e.args_len <= SNP_MAX_ARGS_LEN, "args_len {}", e.args_len);
        assert_eq!(e.name[n], 0, "stored name not NUL-terminated");
        let got = Raised {
            kind: e.kind,
            name: e.name[..n].iter().map(|&c| c as u8).collect(),
            args: e.args[..e.args_len].to_vec(),
            client_id: e.client_id,
        };
        assert!(name_ok(&got.name), "stored name {:?}", got.name);
        let raised = self
            .by_uid
            .get(&e.uid.bytes)
            .is_some_and(|v| v.contains(&got))
            || self.anonymous.contains(&got);
        assert!(raised, "never raised: {got:?} uid {:?}", e.uid.bytes);
        got
    }
}

/// An event to raise, as read from the input.
#[derive(Debug)]
pub struct EventSpec {
    kind: i32,
    name: Arg,
    args: Arg,
    client_id: i64,
    pub null_event: bool,
}

impl EventSpec {
    pub fn read(inp: &mut Input) -> EventSpec {
        EventSpec {
            kind: input::kind(inp),
            name: input::name(inp),
            args: input::args(inp),
            client_id: input::id(inp),
            null_event: inp.flag(16),
        }
    }

    /// The event stored if the rules (section 2) accept it.
    pub fn expected(&self) -> Option<Raised> {
        let name = self.name.within(1, SNP_MAX_NAME_LEN)?;
        let args = self.args.within(0, SNP_MAX_ARGS_LEN)?;
        let ok = !self.null_event
            && valid_kind(self.kind)
            && name_ok(name)
            && (self.kind != SNP_EVENT_REPLACING_NULL || args.is_empty());
        ok.then(|| Raised {
            kind: self.kind,
            name: name.to_vec(),
            args: args.to_vec(),
            client_id: if self.kind == SNP_EVENT_PRIVATE {
                self.client_id
            } else {
                0
            },
        })
    }

    pub fn c_event(&self) -> snp_event {
        let (name, name_len) = self.name.raw();
        let (args, args_len) = self.args.raw();
        snp_event {
            kind: self.kind,
            name: name.cast(),
            name_len,
            args,
            args_len,
            client_id: self.client_id,
        }
    }
}
