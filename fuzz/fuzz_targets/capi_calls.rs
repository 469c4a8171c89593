//! Fuzzes the C ABI: the input is read as a sequence of calls on two
//! service and two client handles (memory and file stores in a temp dir,
//! small capacities), with valid and invalid kinds, names, arguments,
//! lengths, uids, options, struct sizes and NULL pointers.
//!
//! Nothing may crash, and each call is checked from outside: its status is
//! one of the codes its header comment lists (never `SNP_ERR_PANIC`), and
//! which one follows from the arguments where docs/BEHAVIOUR.md says so;
//! outputs are filled with a pattern first and must be untouched unless the
//! call succeeded (and untouched past `struct_size`); a peeked event is
//! well formed and is one that was raised; an ack that succeeds removes
//! exactly one pending event, and the ack of the event just peeked
//! succeeds; modes, capacities, storage uids, the one-writer lock and the
//! client's ids behave as documented.
//!
//! The calls are the capi crate's `extern "C"` functions (the crate is
//! linked as an rlib), made with C types and raw pointers as a C program
//! makes them; `snp_last_error_message` through an `extern "C"`
//! declaration. `make_seeds.py` writes the hand-made seeds.
#![no_main]

// cargo-fuzz builds one file per target; its parts are under capi_calls/.
#[path = "capi_calls/check.rs"]
mod check;
#[path = "capi_calls/client.rs"]
mod client;
#[path = "capi_calls/client_options.rs"]
mod client_options;
#[path = "capi_calls/delivery.rs"]
mod delivery;
#[path = "capi_calls/events.rs"]
mod events;
#[path = "capi_calls/input.rs"]
mod input;
#[path = "capi_calls/service.rs"]
mod service;
#[path = "capi_calls/service_options.rs"]
mod service_options;

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;

use client::{Client, ClientFile};
use events::Events;
use input::Input;
use service::Service;

/// The directory an options struct names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dir {
    Temp,
    /// The same directory spelled `<temp>/.`.
    TempDot,
    Missing,
    PlainFile,
    NotUtf8,
    Null,
}

impl Dir {
    fn read(inp: &mut Input) -> Dir {
        match inp.byte() % 16 {
            10 => Dir::TempDot,
            11 => Dir::Missing,
            12 => Dir::PlainFile,
            13 => Dir::NotUtf8,
            14 => Dir::Null,
            _ => Dir::Temp,
        }
    }

    /// A directory where a file store opens at level 2.
    fn usable(self) -> bool {
        matches!(self, Dir::Temp | Dir::TempDot)
    }

    /// A string the C ABI accepts as a directory (NULL and non-UTF-8 are
    /// invalid arguments; a missing directory is a fallback).
    fn accepted(self) -> bool {
        !matches!(self, Dir::NotUtf8 | Dir::Null)
    }
}

struct Paths {
    temp: CString,
    temp_dot: CString,
    missing: CString,
    not_a_dir: CString,
    not_utf8: CString,
}

impl Paths {
    fn get(&self, dir: Dir) -> *const c_char {
        match dir {
            Dir::Temp => self.temp.as_ptr(),
            Dir::TempDot => self.temp_dot.as_ptr(),
            Dir::Missing => self.missing.as_ptr(),
            Dir::PlainFile => self.not_a_dir.as_ptr(),
            Dir::NotUtf8 => self.not_utf8.as_ptr(),
            Dir::Null => std::ptr::null(),
        }
    }
}

/// The `struct_size` an options struct says.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StructSize {
    Exact,
    /// A newer caller's struct (16 more bytes, readable).
    Larger,
    /// A caller built with an older header: 8 bytes shorter (the service
    /// options before `max_age_ms`, the client options before
    /// `open_policy`): accepted, with the defaults for what it lacks.
    Older,
    /// Shorter than any release's struct (8 bytes short of the oldest,
    /// which ends before `open_policy`): refused.
    Smaller,
    Zero,
}

// `Older` is a release's layout: the service options before `max_age_ms`,
// the client options before `open_policy`, 8 bytes shorter in both.
const _: () = assert!(
    std::mem::offset_of!(capi::service_options::snp_service_options, max_age_ms) + 8
        == std::mem::size_of::<capi::service_options::snp_service_options>()
        && std::mem::offset_of!(capi::client_options::snp_client_options, open_policy) + 8
            == std::mem::size_of::<capi::client_options::snp_client_options>()
);

impl StructSize {
    fn read(inp: &mut Input) -> StructSize {
        match inp.byte() % 8 {
            4 => StructSize::Older,
            5 => StructSize::Larger,
            6 => StructSize::Smaller,
            7 => StructSize::Zero,
            _ => StructSize::Exact,
        }
    }

    /// The size for a struct of `ours` bytes whose oldest accepted layout
    /// is `oldest` bytes.
    fn value(self, ours: usize, oldest: usize) -> u32 {
        (match self {
            StructSize::Exact => ours,
            StructSize::Larger => ours + 16,
            StructSize::Older => ours - 8,
            StructSize::Smaller => oldest - 8,
            StructSize::Zero => 0,
        }) as u32
    }

    fn accepted(self) -> bool {
        matches!(
            self,
            StructSize::Exact | StructSize::Larger | StructSize::Older
        )
    }
}

/// The handles and what the calls so far let us expect of them.
struct State {
    paths: Paths,
    services: [Option<Service>; 2],
    clients: [Option<Client>; 2],
    events: Events,
    /// Client files by owner: their ids, `None` once unknown (the store
    /// fell back to memory before it was closed).
    client_files: HashMap<client_options::Owner, Option<ClientFile>>,
    /// Failure reports counted by `check::on_failure`.
    reports: Box<Cell<u64>>,
    _dir: tempfile::TempDir,
}

impl State {
    fn new() -> State {
        // tmpfs if there is one: files are made and dropped at every run,
        // and syncs are cheap there.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("temp dir");
        std::fs::write(dir.path().join("plain"), b"not a directory").expect("write");
        let base = dir.path().as_os_str().as_bytes();
        let path = |suffix: &[u8]| CString::new([base, suffix].concat()).expect("no NUL");
        State {
            paths: Paths {
                temp: path(b""),
                temp_dot: path(b"/."),
                missing: path(b"/missing/sub"),
                not_a_dir: path(b"/plain"),
                not_utf8: path(b"/\xff\xfe"),
            },
            services: [None, None],
            clients: [None, None],
            events: Events::default(),
            client_files: HashMap::new(),
            reports: Box::new(Cell::new(0)),
            _dir: dir,
        }
    }

    /// The `user_data` of the failure callback: the report counter.
    fn reports_ptr(&self) -> *mut c_void {
        std::ptr::from_ref::<Cell<u64>>(&self.reports)
            .cast_mut()
            .cast()
    }

    /// One call (or a short sequence, for the drains), chosen by a byte.
    fn step(&mut self, inp: &mut Input) {
        match inp.byte() % 27 {
            0 => self.open_service_op(inp),
            1 => self.close_service_op(inp),
            2 => self.reopen_service(inp),
            3 => self.raise(inp, false),
            4 => self.raise(inp, true),
            5 => self.peek(inp),
            6 => self.ack(inp),
            7 => self.peek_name(inp),
            8 => self.ack_name(inp),
            9 => self.set_storage_mode(inp),
            10 => self.mode(inp),
            11 => self.storage_uids(inp),
            12 => self.invalidate_ancient(inp),
            13 => self.reset_or_flush(inp),
            14 => self.drain_names(inp),
            15 => self.service_stats_sized(inp),
            16 => self.open_client_op(inp),
            17 => self.close_client_op(inp),
            18 => self.client_get(inp),
            19 => self.client_put(inp),
            20 => self.client_is_duplicate(inp),
            21 => self.client_for_each(inp),
            22 => self.client_reset_or_flush(inp),
            23 => self.client_stats_sized(inp),
            24 => check::error_message(inp),
            25 => check::status_texts(inp),
            _ => self.drain(inp),
        }
        for slot in 0..2 {
            self.service_invariants(slot);
            self.client_invariants(slot);
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Every handle before the temp dir and the report counter go.
        for slot in 0..2 {
            self.close_service(slot);
            self.close_client(slot);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mut state = State::new();
    let mut calls = 0;
    while !inp.is_empty() && calls < 2000 {
        state.step(&mut inp);
        calls += 1;
    }
});
