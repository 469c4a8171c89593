//! The service handles: open, raise, the two delivery modes, and what each
//! call lets us expect of the store (docs/BEHAVIOUR.md section 3).

use std::mem::{offset_of, size_of};
use std::ptr;

use capi::event::snp_stored_event;
use capi::options::SNP_LEVEL_MEMORY;
use capi::service::{
    snp_service, snp_service_close, snp_service_flush, snp_service_invalidate_ancient,
    snp_service_open, snp_service_raise, snp_service_raise_with_uid, snp_service_reset,
};
use capi::service_options::SNP_OVERFLOW_REJECT_NEW;
use capi::service_stats::{
    snp_service_get_stats, snp_service_previous_storage_uid, snp_service_stats,
    snp_service_storage_uid, SNP_MODE_CACHE, SNP_MODE_STORAGE,
};
use capi::status::{snp_status, SNP_EMPTY, SNP_ERR_LOCKED, SNP_ERR_STORAGE_FULL, SNP_OK};
use capi::uuid::snp_uuid;

use crate::check::{self, Guarded, EXTRA, INVALID, OK_EMPTY_INVALID, OK_INVALID, OPEN, RAISE};
use crate::events::{EventSpec, Uid};
use crate::input::Input;
use crate::service_options::{ServiceSpec, NIL};
use crate::State;

pub const SENTINEL: usize = 0xa5a5_a5a5_a5a5_a5a5;

/// An open service handle.
pub struct Service {
    pub ptr: *mut snp_service,
    spec: ServiceSpec,
    /// The uid the last peek returned.
    pub peeked: Option<Uid>,
    /// The event the last peek_name or ack_name put in flight.
    pub in_flight: Option<snp_stored_event>,
}

/// The full stats of a live handle.
pub(crate) fn stats(service: *mut snp_service) -> snp_service_stats {
    let mut s = snp_service_stats {
        struct_size: size_of::<snp_service_stats>() as u32,
        ..Default::default()
    };
    // SAFETY: a live handle; `s` is writable for its struct_size.
    let st = unsafe { snp_service_get_stats(service, &mut s) };
    check::status("snp_service_get_stats", st, &[SNP_OK]);
    s
}

/// Nothing happened between two stats that can remove events besides the
/// call itself (no fallback, no report, no drop).
pub(crate) fn quiet(before: &snp_service_stats, after: &snp_service_stats) -> bool {
    before.level == after.level
        && before.failures == after.failures
        && before.dropped_events == after.dropped_events
}

/// An ack removes one pending event if it took effect, none if not.
pub(crate) fn acked(
    call: &str,
    removed: bool,
    before: &snp_service_stats,
    after: &snp_service_stats,
) {
    if quiet(before, after) {
        let (b, a) = (before.pending_events, after.pending_events);
        assert_eq!(a + u64::from(removed), b, "{call}: pending {b} -> {a}");
    }
}

pub(crate) fn uid_ptr(uid: &Option<snp_uuid>) -> *const snp_uuid {
    uid.as_ref().map_or(ptr::null(), ptr::from_ref)
}

impl State {
    /// A handle argument: a slot's handle, NULL one time in eight (and
    /// when the slot is closed).
    pub(crate) fn service_arg(&self, inp: &mut Input) -> (usize, *mut snp_service) {
        let b = inp.byte();
        let slot = usize::from(b & 1);
        match &self.services[slot] {
            Some(s) if b % 8 != 7 => (slot, s.ptr),
            _ => (slot, ptr::null_mut()),
        }
    }

    pub(crate) fn service(&mut self, slot: usize) -> &mut Service {
        self.services[slot].as_mut().expect("an open slot")
    }

    /// A uid to raise with: mostly new, sometimes one raised before.
    fn new_uid_arg(&mut self, inp: &mut Input) -> Option<snp_uuid> {
        let b = inp.byte();
        let bytes = match b % 8 {
            0..=2 => self.events.fresh(),
            3 | 4 => self.events.pick(b / 8),
            5 => NIL,
            6 => return None,
            _ => inp.array(),
        };
        Some(snp_uuid { bytes })
    }

    /// A uid to acknowledge: mostly `hint` (the right one), else wrong.
    pub(crate) fn ack_uid_arg(&self, inp: &mut Input, hint: Option<Uid>) -> Option<snp_uuid> {
        let b = inp.byte();
        let bytes = match b % 8 {
            0..=3 => hint.unwrap_or_else(|| self.events.pick(b / 8)),
            4 => self.events.pick(b / 8),
            5 => inp.array(),
            6 => return None,
            _ => NIL,
        };
        Some(snp_uuid { bytes })
    }

    pub(crate) fn open_service_op(&mut self, inp: &mut Input) {
        let slot = usize::from(inp.byte() & 1);
        let spec = ServiceSpec::read(inp);
        self.open_service(slot, spec);
    }

    fn open_service(&mut self, slot: usize, spec: ServiceSpec) {
        self.close_service(slot);
        let holder = self.services[1 - slot]
            .as_ref()
            .filter(|s| s.spec.same_file(&spec))
            .map(|s| stats(s.ptr).level);
        let mut options = self.service_options(&spec);
        let mut out = SENTINEL as *mut snp_service;
        let out_ptr = if spec.null_out {
            ptr::null_mut()
        } else {
            &mut out
        };
        // SAFETY: the options are readable for their struct_size, with
        // NUL-terminated paths; `out_ptr` is NULL or writable.
        let st = unsafe { snp_service_open(options.ptr(), out_ptr) };
        let st = check::status("snp_service_open", st, OPEN);
        let expected: &[snp_status] = match (spec.valid(), holder) {
            (false, _) => &[INVALID],
            (true, Some(2)) => &[SNP_ERR_LOCKED],
            (true, Some(_)) => &[SNP_OK, SNP_ERR_LOCKED],
            (true, None) => &[SNP_OK],
        };
        let why = check::last_error();
        assert!(
            expected.contains(&st),
            "open {spec:?}: {st}, not {expected:?}: {why}"
        );
        if st != SNP_OK {
            assert_eq!(out as usize, SENTINEL, "snp_service_open failed and wrote");
            return;
        }
        assert!(!out.is_null() && out as usize != SENTINEL);
        let s = stats(out);
        assert_eq!(s.level, spec.level_at_open(), "level after open {spec:?}");
        assert_eq!(s.mode, SNP_MODE_STORAGE, "mode after open");
        self.services[slot] = Some(Service {
            ptr: out,
            spec,
            peeked: None,
            in_flight: None,
        });
    }

    /// Closes a slot's store and returns its stats just before.
    pub(crate) fn close_service(&mut self, slot: usize) -> Option<snp_service_stats> {
        let s = self.services[slot].take()?;
        let before = stats(s.ptr);
        // SAFETY: a live handle, closed once.
        unsafe { snp_service_close(s.ptr) };
        Some(before)
    }

    pub(crate) fn close_service_op(&mut self, inp: &mut Input) {
        let b = inp.byte();
        if b % 8 == 7 {
            // SAFETY: NULL is fine.
            unsafe { snp_service_close(ptr::null_mut()) };
        } else {
            self.close_service(usize::from(b & 1));
        }
    }

    /// Close and open again: a journal keeps its events and storage uid.
    pub(crate) fn reopen_service(&mut self, inp: &mut Input) {
        let slot = usize::from(inp.byte() & 1);
        let Some(spec) = self.services[slot].as_ref().map(|s| s.spec) else {
            return;
        };
        let before = self.close_service(slot).expect("open");
        self.open_service(slot, spec);
        let Some(s) = &self.services[slot] else {
            return;
        };
        let after = stats(s.ptr);
        if before.level == 2 && after.level == 2 && after.failures == 0 {
            let (b, a) = (before.pending_events, after.pending_events);
            assert_eq!(a, b, "reopen: pending {b} -> {a}");
            assert_eq!(after.storage_uid, before.storage_uid, "reopen: storage uid");
        }
    }

    pub(crate) fn raise(&mut self, inp: &mut Input, with_uid: bool) {
        let (slot, service) = self.service_arg(inp);
        let e = EventSpec::read(inp);
        let uid = if with_uid {
            self.new_uid_arg(inp)
        } else {
            None
        };
        let null_out = !with_uid && inp.flag(4);
        let event = e.c_event();
        let event_ptr = if e.null_event { ptr::null() } else { &event };
        let mut out = Guarded::<snp_uuid>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { out.ptr() };
        // SAFETY: the event's buffers hold their lengths when those are
        // within the limits; the uid and output are NULL or valid.
        let (call, st) = unsafe {
            if with_uid {
                let st = snp_service_raise_with_uid(service, event_ptr, uid_ptr(&uid));
                ("snp_service_raise_with_uid", st)
            } else {
                (
                    "snp_service_raise",
                    snp_service_raise(service, event_ptr, out_ptr),
                )
            }
        };
        let st = check::status(call, st, RAISE);
        let accepted = !service.is_null() && (uid.is_some() || !with_uid);
        match e.expected().filter(|_| accepted) {
            None => assert_eq!(st, INVALID, "{call} accepted {e:?}"),
            Some(_) => assert_ne!(st, INVALID, "{call} refused {e:?}: {}", check::last_error()),
        }
        if st == SNP_ERR_STORAGE_FULL {
            assert_eq!(self.service(slot).spec.overflow, SNP_OVERFLOW_REJECT_NEW);
        }
        if st != SNP_OK {
            assert!(out.untouched(), "{call} returned {st} and wrote");
            return;
        }
        let uid = match (with_uid, null_out) {
            (true, _) => uid.map(|u| u.bytes),
            (false, true) => None,
            (false, false) => {
                assert!(out.untouched_from(16), "{call} wrote past the uid");
                let u = out.get().bytes;
                assert_eq!(u[6] >> 4, 4, "{call}: not a version-4 uuid: {u:?}");
                Some(u)
            }
        };
        self.events.add(uid, e.expected().expect("accepted"));
        assert!(
            stats(service).pending_events >= 1,
            "raised, and nothing pending"
        );
    }

    pub(crate) fn storage_uids(&mut self, inp: &mut Input) {
        let (_, service) = self.service_arg(inp);
        let null_out = inp.flag(8);
        let (mut cur, mut prev) = (Guarded::<snp_uuid>::new(), Guarded::<snp_uuid>::new());
        let (c, p) = match null_out {
            true => (ptr::null_mut(), ptr::null_mut()),
            false => (cur.ptr(), prev.ptr()),
        };
        // SAFETY: NULL or a live handle; NULL or writable outputs.
        let (st, st_prev) = unsafe {
            (
                snp_service_storage_uid(service, c),
                snp_service_previous_storage_uid(service, p),
            )
        };
        let st = check::status("snp_service_storage_uid", st, OK_INVALID);
        let st_prev = check::status(
            "snp_service_previous_storage_uid",
            st_prev,
            OK_EMPTY_INVALID,
        );
        if st != SNP_OK || st_prev != SNP_OK {
            assert!(
                prev.untouched(),
                "snp_service_previous_storage_uid failed and wrote"
            );
        }
        if service.is_null() || null_out {
            assert_eq!((st, st_prev), (INVALID, INVALID), "storage uids with NULL");
            assert!(cur.untouched(), "snp_service_storage_uid failed and wrote");
            return;
        }
        let s = stats(service);
        assert_eq!(st, SNP_OK);
        assert!(cur.untouched_from(16));
        assert_eq!(cur.get(), s.storage_uid, "snp_service_storage_uid");
        assert_ne!(cur.get().bytes, NIL, "nil storage uid");
        if s.level == 2 {
            assert_eq!(
                st_prev, SNP_EMPTY,
                "a previous storage uid without a fallback"
            );
        }
        if st_prev == SNP_OK {
            assert_ne!(
                prev.get(),
                cur.get(),
                "the previous storage uid is the current one"
            );
        }
    }

    pub(crate) fn invalidate_ancient(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let null_out = inp.flag(8);
        let before = (!service.is_null()).then(|| stats(service));
        let mut n = Guarded::<u64>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { n.ptr() };
        // SAFETY: NULL or a live handle; NULL or a writable count.
        let st = unsafe { snp_service_invalidate_ancient(service, out_ptr) };
        let st = check::status("snp_service_invalidate_ancient", st, OK_INVALID);
        let Some(before) = before else {
            assert_eq!(st, INVALID);
            assert!(
                n.untouched(),
                "snp_service_invalidate_ancient failed and wrote"
            );
            return;
        };
        assert_eq!(st, SNP_OK, "snp_service_invalidate_ancient");
        if null_out {
            return;
        }
        let (count, after) = (n.get(), stats(service));
        assert!(n.untouched_from(8));
        assert_eq!(after.invalidated_events, before.invalidated_events + count);
        if quiet(&before, &after) {
            assert_eq!(after.pending_events + count, before.pending_events);
        }
        if self.service(slot).spec.level == SNP_LEVEL_MEMORY {
            assert_eq!(count, 0, "a memory store has no ancient events");
        }
        let mut again = u64::MAX;
        // SAFETY: a live handle and a writable count.
        let st = unsafe { snp_service_invalidate_ancient(service, &mut again) };
        check::status("snp_service_invalidate_ancient", st, &[SNP_OK]);
        assert_eq!(again, 0, "a second invalidate_ancient discarded events");
    }

    pub(crate) fn reset_or_flush(&mut self, inp: &mut Input) {
        let (slot, service) = self.service_arg(inp);
        let reset = inp.byte().is_multiple_of(2);
        let before = (!service.is_null()).then(|| stats(service));
        // SAFETY: NULL or a live handle.
        let (call, st) = unsafe {
            match reset {
                true => ("snp_service_reset", snp_service_reset(service)),
                false => ("snp_service_flush", snp_service_flush(service)),
            }
        };
        let st = check::status(call, st, OK_INVALID);
        let Some(before) = before else {
            assert_eq!(st, INVALID, "{call} with NULL");
            return;
        };
        assert_eq!(st, SNP_OK, "{call}: {}", check::last_error());
        let after = stats(service);
        if reset && before.level == after.level {
            assert_eq!(
                (after.pending_events, after.used_bytes),
                (0, 0),
                "after reset"
            );
            assert_eq!(
                after.storage_uid, before.storage_uid,
                "reset changed the storage uid"
            );
            self.service(slot).in_flight = None;
        }
    }

    pub(crate) fn service_stats_sized(&mut self, inp: &mut Input) {
        let (_, service) = self.service_arg(inp);
        let full = size_of::<snp_service_stats>() as u32;
        let size = inp.pick(&[full, full, 0, 4, 5, 8, 12, 16, 24, full - 8, full + 8]);
        let size = if inp.flag(16) {
            full + EXTRA as u32
        } else {
            size
        };
        if service.is_null() {
            let mut buf = Guarded::<snp_service_stats>::new();
            // SAFETY: NULL handle; a buffer writable for its struct_size.
            let st = unsafe {
                buf.ptr().cast::<u32>().write(full);
                snp_service_get_stats(service, buf.ptr())
            };
            assert_eq!(
                check::status("snp_service_get_stats", st, OK_INVALID),
                INVALID
            );
            assert!(
                buf.untouched_from(4),
                "snp_service_get_stats failed and wrote"
            );
            return;
        }
        // SAFETY: a live handle and NULL.
        let st = unsafe { snp_service_get_stats(service, ptr::null_mut()) };
        assert_eq!(
            check::status("snp_service_get_stats", st, OK_INVALID),
            INVALID
        );
        let gap =
            offset_of!(snp_service_stats, mode) + 4..offset_of!(snp_service_stats, pending_events);
        check::sized_stats(
            "snp_service_get_stats",
            size,
            // SAFETY: a live handle; the buffer is writable for `size`.
            |p| unsafe { snp_service_get_stats(service, p) },
            gap,
        );
    }

    /// What holds after any call: the stats are consistent with the spec.
    pub(crate) fn service_invariants(&self, slot: usize) {
        let Some(s) = &self.services[slot] else {
            return;
        };
        let st = stats(s.ptr);
        assert!(st.level == 1 || st.level == 2, "level {}", st.level);
        assert!(
            st.mode == SNP_MODE_STORAGE || st.mode == SNP_MODE_CACHE,
            "mode {}",
            st.mode
        );
        let (used, cap) = (st.used_bytes, st.capacity_bytes);
        assert!(used <= cap, "used {used} bytes of a capacity of {cap}");
        assert_eq!(
            st.pending_events == 0,
            used == 0,
            "{} pending in {used} bytes",
            st.pending_events
        );
        assert_eq!(
            cap,
            s.spec.capacity(st.level),
            "capacity at level {}",
            st.level
        );
        if s.spec.level_at_open() == 1 {
            assert_eq!(st.level, 1, "a level-1 store at level {}", st.level);
        }
    }
}
