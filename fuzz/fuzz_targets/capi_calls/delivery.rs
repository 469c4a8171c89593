//! Delivery through a service handle: storage mode (peek, ack) and cache
//! mode (peek_name, ack_name), and the switch between them
//! (docs/BEHAVIOUR.md section 3.3).

use std::mem::size_of;
use std::ptr;

use capi::event::{snp_stored_event, SNP_MAX_NAME_LEN};
use capi::service::{
    snp_service, snp_service_ack, snp_service_ack_name, snp_service_peek, snp_service_peek_name,
    snp_service_set_storage_mode,
};
use capi::service_stats::{snp_service_mode, snp_service_stats, SNP_MODE_CACHE, SNP_MODE_STORAGE};
use capi::status::{snp_status, SNP_EMPTY, SNP_ERR_STATE, SNP_OK};

use crate::check::{self, name_ok, Guarded, ACK, INVALID, OK_INVALID, PEEK};
use crate::events::{family, valid_kind, Uid};
use crate::input::{self, Arg, Input};
use crate::service::{acked, quiet, stats, uid_ptr};
use crate::State;

impl State {
    /// One peek through a live handle; the event if there is one.
    fn peek_once(&self, service: *mut snp_service) -> (snp_status, Option<snp_stored_event>) {
        let mut out = Guarded::<snp_stored_event>::new();
        // SAFETY: a live handle and a writable output.
        let st = unsafe { snp_service_peek(service, out.ptr()) };
        let st = check::status("snp_service_peek", st, PEEK);
        assert_ne!(st, INVALID, "snp_service_peek: {}", check::last_error());
        if st != SNP_OK {
            assert!(out.untouched(), "snp_service_peek returned {st} and wrote");
            return (st, None);
        }
        assert!(out.untouched_from(size_of::<snp_stored_event>()));
        let e = out.get();
        self.events.check(&e);
        (st, Some(e))
    }

    pub(crate) fn peek(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let null_out = inp.flag(8);
        if service.is_null() || null_out {
            let mut out = Guarded::<snp_stored_event>::new();
            let out_ptr = if service.is_null() {
                out.ptr()
            } else {
                ptr::null_mut()
            };
            // SAFETY: NULL, or a live handle; the output is valid or NULL.
            let st = unsafe { snp_service_peek(service, out_ptr) };
            assert_eq!(check::status("snp_service_peek", st, PEEK), INVALID);
            assert!(out.untouched(), "snp_service_peek failed and wrote");
            return;
        }
        let before = stats(service);
        let (st, e) = self.peek_once(service);
        let after = stats(service);
        let cache = before.mode == SNP_MODE_CACHE;
        assert_eq!(
            st == SNP_ERR_STATE,
            cache,
            "snp_service_peek in mode {}",
            before.mode
        );
        if st == SNP_EMPTY {
            assert_eq!(
                after.mode, SNP_MODE_CACHE,
                "an empty peek left storage mode"
            );
            if quiet(&before, &after) {
                assert_eq!(before.pending_events, 0, "empty peek with events pending");
            }
        }
        if let Some(e) = e {
            let (st, again) = self.peek_once(service);
            let again = again.map(|a| a.uid);
            assert_eq!((st, again), (SNP_OK, Some(e.uid)), "a second peek differs");
            self.service(slot).peeked = Some(e.uid.bytes);
        }
    }

    pub(crate) fn ack(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let hint = self.services[slot].as_ref().and_then(|s| s.peeked);
        let uid = self.ack_uid_arg(inp, hint);
        let before = (!service.is_null()).then(|| stats(service));
        // SAFETY: NULL or a live handle; the uid is NULL or readable.
        let st = unsafe { snp_service_ack(service, uid_ptr(&uid)) };
        let st = check::status("snp_service_ack", st, ACK);
        let (Some(before), Some(uid)) = (before, uid) else {
            assert_eq!(st, INVALID, "snp_service_ack with NULL");
            return;
        };
        assert_ne!(st, INVALID, "snp_service_ack: {}", check::last_error());
        acked("snp_service_ack", st == SNP_OK, &before, &stats(service));
        if before.mode == SNP_MODE_CACHE {
            assert_eq!(st, SNP_ERR_STATE, "snp_service_ack in cache mode");
        }
        if st == SNP_OK {
            let known = self.events.by_uid.contains_key(&uid.bytes);
            assert!(
                known || hint == Some(uid.bytes),
                "acked {uid:?}, never raised"
            );
            self.service(slot).peeked = None;
        }
    }

    /// Peek and ack in storage mode until empty: each ack of the event just
    /// peeked must succeed and remove one event.
    pub(crate) fn drain(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let n = inp.byte() % 16 + 1;
        if service.is_null() {
            return;
        }
        for _ in 0..n {
            let before = stats(service);
            let (_, Some(e)) = self.peek_once(service) else {
                break;
            };
            // SAFETY: a live handle; the uid is readable.
            let st = unsafe { snp_service_ack(service, &e.uid) };
            let st = check::status("snp_service_ack", st, ACK);
            assert_eq!(
                st,
                SNP_OK,
                "ack of the event just peeked: {}",
                check::last_error()
            );
            acked("snp_service_ack", true, &before, &stats(service));
            self.service(slot).peeked = None;
        }
    }

    pub(crate) fn peek_name(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let kind = input::kind(inp);
        let name = input::name(inp);
        let null_out = inp.flag(8);
        let before = (!service.is_null()).then(|| stats(service));
        let mut out = Guarded::<snp_stored_event>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { out.ptr() };
        let (p, len) = name.raw();
        // SAFETY: NULL or a live handle; the name holds its length when
        // that is within the limit; the output is NULL or writable.
        let st = unsafe { snp_service_peek_name(service, kind, p.cast(), len, out_ptr) };
        let st = check::status("snp_service_peek_name", st, PEEK);
        if st != SNP_OK {
            assert!(
                out.untouched(),
                "snp_service_peek_name returned {st} and wrote"
            );
        }
        let Some(before) = before.filter(|_| !null_out) else {
            assert_eq!(st, INVALID, "snp_service_peek_name with NULL");
            return;
        };
        let allowed = by_name(kind, &name, before.mode, &[SNP_OK, SNP_EMPTY]);
        let why = check::last_error();
        assert!(
            allowed.contains(&st),
            "peek_name({kind}, {name:?}): {st}: {why}"
        );
        if st == SNP_OK {
            assert!(out.untouched_from(size_of::<snp_stored_event>()));
            let e = out.get();
            self.expect_name(&e, kind, &name);
            self.service(slot).in_flight = Some(e);
        }
    }

    /// A stored event is one raised under (the family of) `kind` and `name`.
    fn expect_name(&self, e: &snp_stored_event, kind: i32, name: &Arg) {
        let r = self.events.check(e);
        let want = name.within(1, SNP_MAX_NAME_LEN).expect("a valid name");
        assert_eq!(family(r.kind), family(kind), "cache mode: another kind");
        assert_eq!(r.name, want, "cache mode: another name's event");
    }

    pub(crate) fn ack_name(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let b = inp.byte();
        let in_flight = self.services[slot].as_ref().and_then(|s| s.in_flight);
        match in_flight {
            Some(e) if b % 4 != 3 => {
                self.ack_in_flight(slot, service, e);
            }
            _ => self.ack_name_args(inp, slot, service, in_flight.map(|e| e.uid.bytes)),
        }
    }

    /// `ack_name` of the event in flight, its name and uid pointing into
    /// the output (the header allows it).
    fn ack_in_flight(
        &mut self,
        slot: usize,
        service: *mut snp_service,
        e: snp_stored_event,
    ) -> snp_status {
        let mut buf = Guarded::<snp_stored_event>::new();
        buf.set(e);
        let p = buf.ptr();
        let before = (!service.is_null()).then(|| stats(service));
        // SAFETY: NULL or a live handle; name, uid and output are in `buf`.
        let st = unsafe {
            let name = ptr::addr_of!((*p).name).cast();
            snp_service_ack_name(
                service,
                e.kind,
                name,
                e.name_len,
                ptr::addr_of!((*p).uid),
                p,
            )
        };
        let st = check::status("snp_service_ack_name", st, PEEK);
        let Some(before) = before else {
            assert_eq!(st, INVALID, "snp_service_ack_name with NULL");
            return st;
        };
        if st != SNP_OK {
            let same = buf.get();
            let unchanged = same.uid == e.uid && same.name == e.name && same.args == e.args;
            assert!(unchanged, "snp_service_ack_name returned {st} and wrote");
        }
        let name = Arg::Bytes(e.name[..e.name_len].iter().map(|&c| c as u8).collect());
        self.after_ack_name(slot, (e.kind, &name), st, &before, &buf);
        st
    }

    fn ack_name_args(
        &mut self,
        inp: &mut Input,
        slot: usize,
        service: *mut snp_service,
        hint: Option<Uid>,
    ) {
        let kind = input::kind(inp);
        let name = input::name(inp);
        let uid = self.ack_uid_arg(inp, hint);
        let null_out = inp.flag(8);
        let before = (!service.is_null()).then(|| stats(service));
        let mut out = Guarded::<snp_stored_event>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { out.ptr() };
        let (p, len) = name.raw();
        // SAFETY: as in `peek_name`; the uid is NULL or readable.
        let st =
            unsafe { snp_service_ack_name(service, kind, p.cast(), len, uid_ptr(&uid), out_ptr) };
        let st = check::status("snp_service_ack_name", st, PEEK);
        if st != SNP_OK {
            assert!(
                out.untouched(),
                "snp_service_ack_name returned {st} and wrote"
            );
        }
        let Some(before) = before.filter(|_| !null_out && uid.is_some()) else {
            assert_eq!(st, INVALID, "snp_service_ack_name with NULL");
            return;
        };
        let allowed = by_name(
            kind,
            &name,
            before.mode,
            &[SNP_OK, SNP_EMPTY, SNP_ERR_STATE],
        );
        let why = check::last_error();
        assert!(
            allowed.contains(&st),
            "ack_name({kind}, {name:?}): {st}: {why}"
        );
        self.after_ack_name(slot, (kind, &name), st, &before, &out);
    }

    /// What an `ack_name` that returned `st` must have done.
    fn after_ack_name(
        &mut self,
        slot: usize,
        (kind, name): (i32, &Arg),
        st: snp_status,
        before: &snp_service_stats,
        out: &Guarded<snp_stored_event>,
    ) {
        let s = self.service(slot).ptr;
        let took = st == SNP_OK || st == SNP_EMPTY;
        acked("snp_service_ack_name", took, before, &stats(s));
        if before.mode == SNP_MODE_STORAGE {
            assert!(!took, "snp_service_ack_name in storage mode: {st}");
        }
        let next = (st == SNP_OK).then(|| out.get());
        if let Some(e) = &next {
            self.expect_name(e, kind, name);
        }
        if took {
            self.service(slot).in_flight = next;
        }
    }

    /// Every raised name in cache mode: peek_name, then ack_name until the
    /// name is empty; each ack of the event in flight must succeed.
    pub(crate) fn drain_names(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let skip = usize::from(inp.byte());
        if service.is_null() {
            return;
        }
        let n = self.events.names.len().min(6);
        let names: Vec<_> = self
            .events
            .names
            .iter()
            .cycle()
            .skip(skip)
            .take(n)
            .cloned()
            .collect();
        for (kind, name) in names {
            let mut out = Guarded::<snp_stored_event>::new();
            // SAFETY: a live handle, a name of its length, a writable output.
            let st = unsafe {
                snp_service_peek_name(service, kind, name.as_ptr().cast(), name.len(), out.ptr())
            };
            match check::status("snp_service_peek_name", st, PEEK) {
                SNP_OK => {}
                SNP_EMPTY => continue,
                SNP_ERR_STATE => return,
                st => panic!("snp_service_peek_name of a raised name: {st}"),
            }
            let mut e = out.get();
            self.expect_name(&e, kind, &Arg::Bytes(name));
            for _ in 0..8 {
                let st = self.ack_in_flight(slot, service, e);
                assert!(
                    st == SNP_OK || st == SNP_EMPTY,
                    "ack_name of the event in flight: {st}"
                );
                match self.service(slot).in_flight {
                    Some(next) => e = next,
                    None => break,
                }
            }
        }
    }

    pub(crate) fn set_storage_mode(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        // SAFETY: NULL or a live handle.
        let st = unsafe { snp_service_set_storage_mode(service) };
        let st = check::status("snp_service_set_storage_mode", st, OK_INVALID);
        assert_eq!(st == INVALID, service.is_null());
        if st == SNP_OK {
            assert_eq!(stats(service).mode, SNP_MODE_STORAGE);
            self.service(slot).in_flight = None;
        }
    }

    pub(crate) fn mode(&mut self, inp: &mut Input) {
        let (_, service) = self.service_arg(inp);
        let null_out = inp.flag(8);
        let mut out = Guarded::<i32>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { out.ptr() };
        // SAFETY: NULL or a live handle; NULL or a writable output.
        let st = unsafe { snp_service_mode(service, out_ptr) };
        let st = check::status("snp_service_mode", st, OK_INVALID);
        assert_eq!(st == INVALID, service.is_null() || null_out);
        if st != SNP_OK {
            assert!(out.untouched(), "snp_service_mode failed and wrote");
            return;
        }
        assert!(
            out.untouched_from(4),
            "snp_service_mode wrote past the mode"
        );
        assert_eq!(out.get(), stats(service).mode, "snp_service_mode");
    }
}

/// The statuses allowed for a call by (kind, name) on a live handle with a
/// valid output: invalid arguments first, then the mode (section 3.3).
fn by_name(kind: i32, name: &Arg, mode: i32, in_cache: &[snp_status]) -> Vec<snp_status> {
    let bytes = name.within(1, SNP_MAX_NAME_LEN);
    let readable = valid_kind(kind) && bytes.is_some_and(|n| std::str::from_utf8(n).is_ok());
    let good = readable && bytes.is_some_and(name_ok);
    match (readable, good, mode == SNP_MODE_STORAGE) {
        (false, _, _) => vec![INVALID],
        (true, true, true) => vec![SNP_ERR_STATE],
        (true, false, true) => vec![SNP_ERR_STATE, INVALID],
        (true, true, false) => in_cache.to_vec(),
        (true, false, false) => vec![INVALID, SNP_ERR_STATE],
    }
}
