//! What every call must do whatever its arguments: return one of the codes
//! its header comment lists (never `SNP_ERR_PANIC`), leave a message when it
//! fails, and write its outputs only on success; and the calls that take
//! no handle (`snp_last_error_message`, `snp_status_str`, the versions).

use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::Range;

use capi::event::SNP_MAX_NAME_LEN;
use capi::status::{
    snp_abi_version, snp_status, snp_status_str, snp_version, SNP_ABI_VERSION, SNP_EMPTY,
    SNP_ERR_CALLBACK, SNP_ERR_INVALID_ARGUMENT, SNP_ERR_LOCKED, SNP_ERR_PANIC, SNP_ERR_STATE,
    SNP_ERR_STORAGE_FULL, SNP_OK,
};

use crate::input::Input;

// Not reachable as a Rust path (the capi's `panic` module is private): the
// C declaration, resolved by the linker like any C caller's.
extern "C" {
    fn snp_last_error_message(buf: *mut c_char, buf_len: usize) -> usize;
}

pub const INVALID: snp_status = SNP_ERR_INVALID_ARGUMENT;

// The codes each function's header comment lists (SNP_ERR_PANIC aside).
pub const OPEN: &[snp_status] = &[SNP_OK, INVALID, SNP_ERR_LOCKED];
pub const RAISE: &[snp_status] = &[SNP_OK, INVALID, SNP_ERR_STORAGE_FULL];
pub const PEEK: &[snp_status] = &[SNP_OK, SNP_EMPTY, INVALID, SNP_ERR_STATE];
pub const ACK: &[snp_status] = &[SNP_OK, INVALID, SNP_ERR_STATE];
pub const OK_INVALID: &[snp_status] = &[SNP_OK, INVALID];
pub const OK_EMPTY_INVALID: &[snp_status] = &[SNP_OK, SNP_EMPTY, INVALID];

/// Checks a call's status and returns it.
pub fn status(call: &str, status: snp_status, allowed: &[snp_status]) -> snp_status {
    assert_ne!(
        status,
        SNP_ERR_PANIC,
        "{call}: SNP_ERR_PANIC: {}",
        last_error()
    );
    assert!(
        (SNP_ERR_CALLBACK..=SNP_EMPTY).contains(&status),
        "{call} returned {status}, which is no SNP_* code"
    );
    assert!(
        allowed.contains(&status),
        "{call} returned {status} ({}), not one of {allowed:?}: {}",
        text(status),
        last_error()
    );
    if status < 0 {
        assert!(last_error_len() > 0, "{call} failed and left no message");
    }
    status
}

/// The thread's last error message, in full.
pub fn last_error() -> String {
    let len = last_error_len();
    let mut buf = vec![0xa5u8; len + 1];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { snp_last_error_message(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, len, "the message changed length between two calls");
    assert_eq!(buf[len], 0, "the message is not NUL-terminated");
    String::from_utf8(buf[..len].to_vec()).expect("the message is UTF-8")
}

pub fn last_error_len() -> usize {
    // SAFETY: NULL is allowed (nothing is written).
    unsafe { snp_last_error_message(std::ptr::null_mut(), 0) }
}

/// The text of a status, checked: never NULL, NUL-terminated, static.
pub fn text(status: snp_status) -> String {
    let p = snp_status_str(status);
    assert!(!p.is_null(), "snp_status_str({status}) is NULL");
    assert_eq!(p, snp_status_str(status), "snp_status_str is not static");
    // SAFETY: not NULL, and a NUL-terminated static string (the contract).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().expect("status text is UTF-8").to_owned()
}

const FILL: u8 = 0xa5;

/// An output buffer filled with a pattern, with room past the struct (for
/// a `struct_size` larger than ours), to see what a call wrote.
pub struct Guarded<T> {
    words: Vec<u64>,
    _t: PhantomData<T>,
}

pub const EXTRA: usize = 64;

impl<T: Copy> Guarded<T> {
    pub fn new() -> Self {
        let words = (size_of::<T>() + EXTRA).div_ceil(8);
        Guarded {
            words: vec![u64::from_ne_bytes([FILL; 8]); words],
            _t: PhantomData,
        }
    }

    pub fn ptr(&mut self) -> *mut T {
        self.words.as_mut_ptr().cast()
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: plain initialised u64s viewed as bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * 8) }
    }

    pub fn untouched_from(&self, at: usize) -> bool {
        self.bytes()[at..].iter().all(|&b| b == FILL)
    }

    pub fn untouched(&self) -> bool {
        self.untouched_from(0)
    }

    /// The value (only after a call wrote it, or after `set`).
    pub fn get(&self) -> T {
        // SAFETY: aligned (u64 words, and no T here needs more), large
        // enough, and written by the call as a T.
        unsafe { self.words.as_ptr().cast::<T>().read() }
    }

    pub fn set(&mut self, value: T) {
        // SAFETY: as in `get`.
        unsafe { self.ptr().write(value) }
    }
}

/// docs/BEHAVIOUR.md section 2, rules 1 to 6.
pub fn name_ok(n: &[u8]) -> bool {
    const MORE: &[u8] = b"_ .$*+()#@%&=':^[]-/!";
    !n.is_empty()
        && n.len() <= SNP_MAX_NAME_LEN
        && n[0].is_ascii_alphabetic()
        && n.iter()
            .all(|c| c.is_ascii_alphanumeric() || MORE.contains(c))
        && !n.ends_with(b" ")
        && !n.windows(2).any(|w| w == b"  ")
}

/// The failure callback: checks the report and counts it in `user_data`
/// (a `Cell<u64>`).
pub unsafe extern "C" fn on_failure(
    user_data: *mut c_void,
    kind: i32,
    message: *const c_char,
    _events_lost: u64,
) {
    assert!((1..=4).contains(&kind), "failure kind {kind}");
    assert!(!message.is_null(), "failure message is NULL");
    // SAFETY: NUL-terminated and valid during the call (the contract).
    let m = unsafe { CStr::from_ptr(message) };
    assert!(!m.to_bytes().is_empty(), "empty failure message");
    // SAFETY: the store was opened with a `Cell<u64>` that outlives it.
    let count = unsafe { &*user_data.cast::<Cell<u64>>() };
    count.set(count.get() + 1);
}

/// `snp_last_error_message` into a small buffer: the message's full length,
/// a NUL-terminated prefix, nothing written past `buf_len`.
pub fn error_message(inp: &mut Input) {
    let full = last_error();
    let b = inp.byte();
    let len = usize::from(b % 64);
    let null = b % 64 == 63;
    let mut buf = [FILL; 128];
    let p = if null {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr()
    };
    // SAFETY: NULL, or writable for `len` < 128 bytes.
    let n = unsafe { snp_last_error_message(p.cast(), len) };
    assert_eq!(n, full.len(), "snp_last_error_message length");
    let written = if null || len == 0 {
        0
    } else {
        let k = full.len().min(len - 1);
        assert_eq!(&buf[..k], &full.as_bytes()[..k], "truncated message");
        assert_eq!(buf[k], 0, "truncated message not NUL-terminated");
        k + 1
    };
    assert!(
        buf[written..].iter().all(|&c| c == FILL),
        "wrote past buf_len {len}"
    );
}

/// `snp_status_str` of any value, and the versions.
pub fn status_texts(inp: &mut Input) {
    let b = inp.byte();
    let status = match b % 4 {
        0 | 1 => i32::from(b / 4) % 12 - 10,
        2 => [i32::MIN, i32::MAX, -11, 2][usize::from(b / 4) % 4],
        _ => i32::from_le_bytes(inp.array()),
    };
    let t = text(status);
    let known = (SNP_ERR_CALLBACK..=SNP_EMPTY).contains(&status);
    assert_eq!(t == "unknown status", !known, "text of {status}: {t:?}");
    assert_eq!(snp_abi_version(), SNP_ABI_VERSION);
    // SAFETY: a NUL-terminated static string (the contract).
    let v = unsafe { CStr::from_ptr(snp_version()) };
    assert!(!v.to_bytes().is_empty());
}

/// Calls a `get_stats` function with `struct_size` = `size` and checks
/// that exactly the fields that fit were written: `struct_size` is left as
/// set, bytes from `size` on are untouched, and the rest equals a full-size
/// call (`gap` is padding, not compared).
pub fn sized_stats<T: Copy>(
    call: &str,
    size: u32,
    get: impl Fn(*mut T) -> snp_status,
    gap: Range<usize>,
) {
    let mut buf = Guarded::<T>::new();
    // SAFETY: the buffer starts with room for a u32, aligned.
    unsafe { buf.ptr().cast::<u32>().write(size) };
    let st = status(call, get(buf.ptr()), OK_INVALID);
    assert_eq!(
        &buf.bytes()[..4],
        &size.to_ne_bytes(),
        "{call} wrote struct_size"
    );
    let size = size as usize;
    if size <= 4 {
        assert_eq!(st, INVALID, "{call} with struct_size {size}");
        assert!(buf.untouched_from(4), "{call} failed and wrote");
        return;
    }
    assert_eq!(st, SNP_OK, "{call} with struct_size {size}");
    assert!(
        buf.untouched_from(size),
        "{call} wrote past struct_size {size}"
    );
    let mut full = Guarded::<T>::new();
    // SAFETY: as above.
    unsafe { full.ptr().cast::<u32>().write(size_of::<T>() as u32) };
    status(call, get(full.ptr()), &[SNP_OK]);
    let n = size.min(size_of::<T>());
    for i in (4..n).filter(|i| !gap.contains(i)) {
        assert_eq!(
            buf.bytes()[i],
            full.bytes()[i],
            "{call} size {size}: byte {i}"
        );
    }
}
