//! The client handles: the last id per subscription name, in memory or in
//! a file, checked against a model of what was put (docs/BEHAVIOUR.md
//! section 4).

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CString};
use std::mem::size_of;
use std::ptr;

use capi::client::{
    snp_client, snp_client_close, snp_client_flush, snp_client_for_each, snp_client_get,
    snp_client_get_stats, snp_client_is_duplicate, snp_client_open, snp_client_put,
    snp_client_reset,
};
use capi::client_stats::snp_client_stats;
use capi::event::SNP_MAX_NAME_LEN;
use capi::status::{snp_status, SNP_EMPTY, SNP_ERR_LOCKED, SNP_OK};

use crate::check::{self, name_ok, Guarded, EXTRA, INVALID, OK_EMPTY_INVALID, OK_INVALID, OPEN};
use crate::client_options::{ClientSpec, Owner};
use crate::input::{self, Arg, Input};
use crate::service::SENTINEL;
use crate::State;

type Ids = BTreeMap<Vec<u8>, i64>;

/// An open client handle and the ids it must hold.
pub struct Client {
    ptr: *mut snp_client,
    spec: ClientSpec,
    /// The file it holds (opened at level 2).
    file: Option<Owner>,
    ids: Ids,
}

/// A closed client file's ids.
pub type ClientFile = Ids;

fn stats(client: *mut snp_client) -> snp_client_stats {
    let mut s = snp_client_stats {
        struct_size: size_of::<snp_client_stats>() as u32,
        ..Default::default()
    };
    // SAFETY: a live handle; `s` is writable for its struct_size.
    let st = unsafe { snp_client_get_stats(client, &mut s) };
    check::status("snp_client_get_stats", st, &[SNP_OK]);
    s
}

/// What `for_each` gathers.
struct Visit {
    client: *const snp_client,
    seen: Vec<(Vec<u8>, i64)>,
    /// Call the store from inside the visit (the header allows it).
    reenter: bool,
}

unsafe extern "C" fn visit(user_data: *mut c_void, name: *const c_char, len: usize, id: i64) {
    // SAFETY: `user_data` is the `Visit` passed to for_each, alive during
    // it; the name holds `len` bytes during the call.
    let (v, name) = unsafe {
        (
            &mut *user_data.cast::<Visit>(),
            std::slice::from_raw_parts(name.cast::<u8>(), len).to_vec(),
        )
    };
    if v.reenter {
        let mut got = 0;
        // SAFETY: a live handle, the name, a writable output.
        let st = unsafe { snp_client_get(v.client, name.as_ptr().cast(), name.len(), &mut got) };
        check::status("snp_client_get in for_each", st, &[SNP_OK]);
        assert_eq!(got, id, "snp_client_get in for_each");
    }
    v.seen.push((name, id));
}

/// Calls `for_each`; the pairs, checked to be in strict name order.
fn for_each(client: *mut snp_client, reenter: bool) -> Ids {
    let mut v = Visit {
        client,
        seen: Vec::new(),
        reenter,
    };
    // SAFETY: a live handle; `visit` takes the `Visit` as user data.
    let st = unsafe { snp_client_for_each(client, Some(visit), ptr::from_mut(&mut v).cast()) };
    check::status("snp_client_for_each", st, &[SNP_OK]);
    let sorted = v.seen.windows(2).all(|w| w[0].0 < w[1].0);
    assert!(sorted, "for_each is not in name order: {:?}", v.seen);
    v.seen.into_iter().collect()
}

impl State {
    fn client_arg(&self, inp: &mut Input) -> (usize, *mut snp_client) {
        let b = inp.byte();
        let slot = usize::from(b & 1);
        match &self.clients[slot] {
            Some(c) if b % 8 != 7 => (slot, c.ptr),
            _ => (slot, ptr::null_mut()),
        }
    }

    /// The slot's client if `ptr` is its live handle (not NULL).
    fn live_client(&mut self, slot: usize, ptr: *mut snp_client) -> Option<&mut Client> {
        self.clients[slot].as_mut().filter(|_| !ptr.is_null())
    }

    pub(crate) fn open_client_op(&mut self, inp: &mut Input) {
        let slot = usize::from(inp.byte() & 1);
        let spec = ClientSpec::read(inp);
        self.open_client(slot, spec);
    }

    fn open_client(&mut self, slot: usize, spec: ClientSpec) {
        self.close_client(slot);
        let file = spec.file_at_open();
        let holder = self.clients[1 - slot]
            .as_ref()
            .filter(|c| c.file.is_some() && c.file == file)
            .map(|c| stats(c.ptr).level);
        let c_string = |s: &Option<Vec<u8>>| s.clone().map(|s| CString::new(s).expect("no NUL"));
        let strings = [c_string(&spec.server), c_string(&spec.key)];
        let mut options = self.client_options(&spec, &strings);
        let mut out = SENTINEL as *mut snp_client;
        let out_ptr = if spec.null_out {
            ptr::null_mut()
        } else {
            &mut out
        };
        // SAFETY: the options are readable for their struct_size, their
        // strings NULL or NUL-terminated; `out_ptr` is NULL or writable.
        let st = unsafe { snp_client_open(options.ptr(), out_ptr) };
        let st = check::status("snp_client_open", st, OPEN);
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
            assert_eq!(out as usize, SENTINEL, "snp_client_open failed and wrote");
            return;
        }
        assert!(!out.is_null() && out as usize != SENTINEL);
        let level = stats(out).level;
        assert_eq!(
            level == 2,
            file.is_some(),
            "level {level} after open {spec:?}"
        );
        let ids = for_each(out, false);
        self.expect_ids(&spec, file.as_ref(), &ids);
        self.clients[slot] = Some(Client {
            ptr: out,
            spec,
            file,
            ids,
        });
    }

    /// A new store holds no ids; a file holds what it held when closed.
    fn expect_ids(&self, spec: &ClientSpec, file: Option<&Owner>, ids: &Ids) {
        let known = match file.map(|f| self.client_files.get(f)) {
            None | Some(None) => Some(Ids::new()),
            Some(Some(None)) => None,
            Some(Some(Some(f))) => Some(f.clone()),
        };
        if let Some(known) = known {
            assert_eq!(ids, &known, "ids at open of {spec:?}");
        }
    }

    pub(crate) fn close_client(&mut self, slot: usize) {
        let Some(c) = self.clients[slot].take() else {
            return;
        };
        let level = stats(c.ptr).level;
        if let Some(f) = c.file {
            self.client_files.insert(f, (level == 2).then_some(c.ids));
        }
        // SAFETY: a live handle, closed once.
        unsafe { snp_client_close(c.ptr) };
    }

    /// Close (NULL is fine), or close and open again.
    pub(crate) fn close_client_op(&mut self, inp: &mut Input) {
        let b = inp.byte();
        let slot = usize::from(b & 1);
        if b % 8 == 7 {
            // SAFETY: NULL is fine.
            unsafe { snp_client_close(ptr::null_mut()) };
        } else if b & 2 != 0 {
            if let Some(spec) = self.clients[slot].as_ref().map(|c| c.spec.clone()) {
                self.open_client(slot, spec);
            }
        } else {
            self.close_client(slot);
        }
    }

    pub(crate) fn client_get(&mut self, inp: &mut Input) {
        let (slot, client) = self.client_arg(inp);
        let name = input::name(inp);
        let null_out = inp.flag(8);
        let mut out = Guarded::<i64>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { out.ptr() };
        let (p, len) = name.raw();
        // SAFETY: NULL or a live handle; the name holds its length when
        // that is within the limit; NULL or a writable output.
        let st = unsafe { snp_client_get(client, p.cast(), len, out_ptr) };
        let st = check::status("snp_client_get", st, OK_EMPTY_INVALID);
        if st != SNP_OK {
            assert!(out.untouched(), "snp_client_get returned {st} and wrote");
        }
        let valid = valid_name(&name) && !null_out;
        let Some(c) = self.live_client(slot, client).filter(|_| valid) else {
            assert_eq!(st, INVALID, "snp_client_get({name:?})");
            return;
        };
        match c.ids.get(name.within(1, SNP_MAX_NAME_LEN).expect("valid")) {
            Some(&id) => {
                assert_eq!(st, SNP_OK, "snp_client_get of a stored id");
                assert_eq!(out.get(), id, "snp_client_get");
                assert!(out.untouched_from(8));
            }
            None => assert_eq!(st, SNP_EMPTY, "snp_client_get of a name never put"),
        }
    }

    pub(crate) fn client_put(&mut self, inp: &mut Input) {
        let (slot, client) = self.client_arg(inp);
        let name = input::name(inp);
        let id = input::id(inp);
        let (p, len) = name.raw();
        // SAFETY: NULL or a live handle; the name holds its length when
        // that is within the limit.
        let st = unsafe { snp_client_put(client, p.cast(), len, id) };
        let st = check::status("snp_client_put", st, OK_INVALID);
        let valid = valid_name(&name);
        let Some(c) = self.live_client(slot, client).filter(|_| valid) else {
            assert_eq!(st, INVALID, "snp_client_put({name:?})");
            return;
        };
        assert_eq!(
            st,
            SNP_OK,
            "snp_client_put({name:?}): {}",
            check::last_error()
        );
        let name = name.within(1, SNP_MAX_NAME_LEN).expect("valid").to_vec();
        c.ids.insert(name, id);
    }

    pub(crate) fn client_is_duplicate(&mut self, inp: &mut Input) {
        let (slot, client) = self.client_arg(inp);
        let name = input::name(inp);
        let null_out = inp.flag(8);
        let stored = match (name.within(1, SNP_MAX_NAME_LEN), &self.clients[slot]) {
            (Some(n), Some(c)) => c.ids.get(n).copied(),
            _ => None,
        };
        let id = match stored {
            Some(id) if inp.byte().is_multiple_of(2) => id,
            _ => input::id(inp),
        };
        let mut out = Guarded::<u8>::new();
        let out_ptr = if null_out { ptr::null_mut() } else { out.ptr() };
        let (p, len) = name.raw();
        // SAFETY: as in `client_get`; the output is NULL or one writable
        // byte (a C bool).
        let st = unsafe { snp_client_is_duplicate(client, p.cast(), len, id, out_ptr.cast()) };
        let st = check::status("snp_client_is_duplicate", st, OK_INVALID);
        if st != SNP_OK {
            assert!(out.untouched(), "snp_client_is_duplicate failed and wrote");
        }
        let valid = valid_name(&name) && !null_out;
        if self.live_client(slot, client).filter(|_| valid).is_none() {
            assert_eq!(st, INVALID, "snp_client_is_duplicate({name:?})");
            return;
        }
        assert_eq!(
            st,
            SNP_OK,
            "snp_client_is_duplicate: {}",
            check::last_error()
        );
        let dup = out.bytes()[0];
        assert!(dup <= 1, "snp_client_is_duplicate wrote {dup} as a bool");
        assert_eq!(dup == 1, stored == Some(id), "is_duplicate({name:?}, {id})");
        assert!(out.untouched_from(1));
    }

    pub(crate) fn client_for_each(&mut self, inp: &mut Input) {
        let (slot, client) = self.client_arg(inp);
        let b = inp.byte();
        if client.is_null() || b % 8 == 7 {
            let mut v = Visit {
                client,
                seen: Vec::new(),
                reenter: false,
            };
            let f = (b % 8 != 7).then_some(visit as unsafe extern "C" fn(_, _, _, _));
            // SAFETY: NULL handle or NULL visit: refused before any call.
            let st = unsafe { snp_client_for_each(client, f, ptr::from_mut(&mut v).cast()) };
            assert_eq!(
                check::status("snp_client_for_each", st, OK_INVALID),
                INVALID
            );
            assert!(v.seen.is_empty(), "snp_client_for_each failed and visited");
            return;
        }
        let ids = for_each(client, b % 2 == 1);
        let c = self.clients[slot].as_ref().expect("open");
        assert_eq!(ids, c.ids, "for_each");
    }

    pub(crate) fn client_reset_or_flush(&mut self, inp: &mut Input) {
        let (slot, client) = self.client_arg(inp);
        let reset = inp.byte().is_multiple_of(2);
        // SAFETY: NULL or a live handle.
        let (call, st) = unsafe {
            match reset {
                true => ("snp_client_reset", snp_client_reset(client)),
                false => ("snp_client_flush", snp_client_flush(client)),
            }
        };
        let st = check::status(call, st, OK_INVALID);
        let Some(c) = self.live_client(slot, client) else {
            assert_eq!(st, INVALID, "{call} with NULL");
            return;
        };
        assert_eq!(st, SNP_OK, "{call}: {}", check::last_error());
        if reset {
            c.ids.clear();
        }
    }

    pub(crate) fn client_stats_sized(&mut self, inp: &mut Input) {
        let (_, client) = self.client_arg(inp);
        let full = size_of::<snp_client_stats>() as u32;
        let size = inp.pick(&[
            full,
            full,
            0,
            4,
            5,
            8,
            12,
            16,
            20,
            full + 8,
            full + EXTRA as u32,
        ]);
        if client.is_null() {
            let mut buf = Guarded::<snp_client_stats>::new();
            // SAFETY: NULL handle; a buffer writable for its struct_size.
            let st = unsafe {
                buf.ptr().cast::<u32>().write(full);
                snp_client_get_stats(client, buf.ptr())
            };
            assert_eq!(
                check::status("snp_client_get_stats", st, OK_INVALID),
                INVALID
            );
            assert!(
                buf.untouched_from(4),
                "snp_client_get_stats failed and wrote"
            );
            return;
        }
        // SAFETY: a live handle and NULL.
        let st = unsafe { snp_client_get_stats(client, ptr::null_mut()) };
        assert_eq!(
            check::status("snp_client_get_stats", st, OK_INVALID),
            INVALID
        );
        check::sized_stats(
            "snp_client_get_stats",
            size,
            // SAFETY: a live handle; the buffer is writable for `size`.
            |p| unsafe { snp_client_get_stats(client, p) },
            0..0,
        );
    }

    /// What holds after any call: the stats agree with the model.
    pub(crate) fn client_invariants(&self, slot: usize) {
        let Some(c) = &self.clients[slot] else {
            return;
        };
        let s = stats(c.ptr);
        assert!(s.level == 1 || s.level == 2, "client level {}", s.level);
        if c.file.is_none() {
            assert_eq!(s.level, 1, "a client without a file at level 2");
        }
        let n = c.ids.len() as u64;
        assert_eq!(s.subscriptions, n, "subscriptions, {n} ids put");
    }
}

/// A readable name that follows the rules (section 2).
fn valid_name(name: &Arg) -> bool {
    name.within(1, SNP_MAX_NAME_LEN).is_some_and(name_ok)
}
