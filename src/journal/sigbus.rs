//! Turning a fault of a journal file's map into an I/O error instead of a
//! crash (docs/BEHAVIOUR.md section 5.6).
//!
//! An access to a page of a shared file mapping that the kernel cannot back
//! raises SIGBUS: the file was truncated under the map (another program
//! ignoring the lock), or the medium failed to read the page (a failing SD
//! card, a removed USB disk). The default action kills the process, and the
//! library promises never to crash its host.
//!
//! **The design.** A process-wide SIGBUS handler, installed once (when the
//! first journal file is mapped), and a lock-free registry of the address
//! ranges of the library's own maps ([`register`]; a fixed array of
//! [`SLOTS`] slots of atomics, each a small seqlock, so that the handler
//! only loads atomics and never waits). When the faulting address lies in a
//! registered range, the handler replaces the faulting page with a private
//! anonymous zero page (`mmap(MAP_FIXED)`), sets the range's `faulted` flag
//! and returns: the interrupted access runs again and completes on the new
//! page. The journal checks the flag (one relaxed load, `Device::check`) at
//! the end of every operation and returns an I/O error naming the file;
//! the store then falls back to level 1 and reports it, like any other I/O
//! error of level 2.
//!
//! **Why the page is replaced.** Returning from the handler without
//! changing anything runs the faulting instruction again, which faults
//! again, forever. Jumping out of the handler (`siglongjmp`) would skip
//! Rust frames (destructors, held locks) and is undefined behaviour in
//! Rust. A zero page gives the access a defined result: a read sees zeros,
//! which fail the records' checksums and read as the end of the log, a
//! write goes to memory that is never written back to the file. The file
//! itself is left as the other program (or the medium) made it.
//!
//! **Why not a mapping flag.** No flag of `mmap` or `madvise` makes a page
//! beyond the end of a file, or one the device cannot read, anything but a
//! SIGBUS: `MAP_NORESERVE` is about swap accounting of private memory,
//! `MAP_POPULATE`, `MADV_WILLNEED` and `mlock` fill pages in once, and
//! truncation takes them away again at any later time. Reading and writing
//! through `pread`/`pwrite` instead of a map would avoid the signal, at the
//! cost the journal maps to avoid (docs/ARCHITECTURE.md, "Measuring").
//!
//! **What the application sees.** No signal: the store call that touched a
//! lost page returns normally, finished at level 1, and a `Fallback` report
//! names the file. The pending events the fallback can still read (those
//! on pages the file still has, or written after the fault) are moved to
//! memory; the others read as zeros, fail their checksum and are counted
//! lost in that report.
//!
//! **Chaining.** A SIGBUS that is not at a registered address (or that was
//! sent with `kill`) belongs to someone else: the handler passes it to the
//! action that was installed before it, as that action would have run: its
//! `sa_sigaction` or `sa_handler` is called with the same arguments. If
//! that action was the default or "ignore", the handler restores the
//! default and returns, so the fault happens again and ends the process as
//! it would have without this library (a signal sent with `kill` is raised
//! again). So an application's own SIGBUS handler installed before the
//! first store opened keeps working for its own faults; one installed
//! after it replaces this handler and must chain to the action it replaced
//! (as `sigaction` returns it), or the library's faults crash again.
//! Python's `faulthandler` (which pytest enables at start-up) is installed
//! before the module opens its first store, so it is chained to: a foreign
//! fault still prints its traceback and ends the process. But
//! `faulthandler.enable()` after the first store opened takes SIGBUS
//! first, and turns the library's faults into "Fatal Python error: Bus
//! error" again; `faulthandler.disable()` puts back the action it replaced
//! (the default, if it was enabled first), which removes this handler.
//!
//! The flags: `SA_SIGINFO` for the faulting address, `SA_ONSTACK` so that
//! on a thread with an alternate signal stack (Rust's threads and Go's
//! have one) the handler, and the action it chains to, runs there even
//! when the fault is a stack overflow, and `SA_NODEFER` so that an action
//! it chains to which raises the signal again (as `faulthandler` does) has
//! it delivered at once, as without this handler. The handler uses only
//! atomics, `mmap`, `sigaction` and `raise`, and keeps `errno`.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use libc::{c_int, c_void, siginfo_t};

/// How many maps can be registered at once.
pub(crate) const SLOTS: usize = 4096;

/// Slot states: the low two bits of a slot's `state`; the bits above count
/// the slot's registrations, so that a state read twice by the handler is
/// the same registration only if nothing changed in between.
const FREE: usize = 0;
const WRITING: usize = 1;
const ACTIVE: usize = 2;
const TAG: usize = 3;

/// One registered range.
struct Slot {
    state: AtomicUsize,
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only to build the array
const EMPTY: Slot = Slot {
    state: AtomicUsize::new(FREE),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];

static INSTALL: Once = Once::new();
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The action installed before ours: written once, before `PREV_READY` is
/// set, and never again.
struct PreviousAction(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: the cell is written once, inside `INSTALL`, before `PREV_READY`
// is stored with Release; it is read (by the handler) only after loading
// `PREV_READY` true with Acquire. No write can overlap a read.
unsafe impl Sync for PreviousAction {}

static PREV: PreviousAction = PreviousAction(UnsafeCell::new(MaybeUninit::uninit()));
static PREV_READY: AtomicBool = AtomicBool::new(false);

/// A registered map: unregisters it when dropped (drop it before the map
/// is unmapped, so that a later map of another owner at that address is
/// never taken for ours).
pub(crate) struct Registration {
    slot: &'static Slot,
}

impl Registration {
    /// Whether a page of the range faulted (and reads as zeros now).
    pub(crate) fn faulted(&self) -> bool {
        self.slot.faulted.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let state = self.slot.state.load(Ordering::Relaxed);
        self.slot
            .state
            .store((state & !TAG) | FREE, Ordering::Release);
    }
}

/// Installs the handler (once per process) and registers `[start, start +
/// len)`, the address range of a map of ours. Fails only when [`SLOTS`]
/// maps are registered already.
pub(crate) fn register(start: *const u8, len: usize) -> io::Result<Registration> {
    INSTALL.call_once(install);
    for slot in &REGISTRY {
        let state = slot.state.load(Ordering::Relaxed);
        if state & TAG != FREE {
            continue;
        }
        let generation = (state & !TAG).wrapping_add(TAG + 1);
        if slot
            .state
            .compare_exchange(
                state,
                generation | WRITING,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            continue;
        }
        // Seqlock write: the WRITING state is visible before the fields.
        fence(Ordering::Release);
        slot.start.store(start as usize, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        slot.faulted.store(false, Ordering::Relaxed);
        slot.state.store(generation | ACTIVE, Ordering::Release);
        return Ok(Registration { slot });
    }
    Err(io::Error::other(format!(
        "more than {SLOTS} journal files are mapped at once in this process"
    )))
}

/// Installs the handler, keeping the action it replaces in `PREV`.
fn install() {
    // SAFETY: `sysconf` reads a constant of the system; no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    PAGE_SIZE.store(usize::try_from(page).unwrap_or(4096), Ordering::Relaxed);
    // SAFETY: an all-zero `sigaction` is a valid value of the plain C
    // struct (a null handler and restorer, an empty mask, no flags).
    let mut action: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    action.sa_sigaction = on_sigbus as extern "C" fn(c_int, *mut siginfo_t, *mut c_void) as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
    // SAFETY: `sa_mask` is a valid, owned `sigset_t` for `sigemptyset` to
    // write.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: zeroed is a valid `sigaction` (as above); it is overwritten
    // by the call below before anyone reads it.
    let mut previous: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: both pointers are to valid, owned `sigaction` values for the
    // duration of the call; the handler is an `extern "C"` function with
    // the SA_SIGINFO signature, valid for the life of the process.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, &mut previous) };
    if rc != 0 {
        // Not installed: the maps work as before, unprotected.
        return;
    }
    // SAFETY: we are inside `INSTALL` and `PREV_READY` is still false, so
    // the handler does not read `PREV` yet and no one else writes it.
    unsafe { (*PREV.0.get()).write(previous) };
    PREV_READY.store(true, Ordering::Release);
}

/// The registration whose range holds `addr`, if any. Only atomic loads.
fn owner(addr: usize) -> Option<&'static Slot> {
    REGISTRY.iter().find(|slot| {
        let before = slot.state.load(Ordering::Acquire);
        if before & TAG != ACTIVE {
            return false;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        // Seqlock read: the fields belong to `before` only if the state is
        // unchanged after reading them.
        fence(Ordering::Acquire);
        let after = slot.state.load(Ordering::Relaxed);
        before == after && addr >= start && addr - start < len
    })
}

/// In a forked child (called from `fork.rs`'s child handler): replaces
/// every registered map with private anonymous zero memory at the same
/// address, so the child holds no reference to the parent's journal files.
/// A shared map of a file holds the open file description as a descriptor
/// does, and with it the parent's `flock`: left alone, the child would keep
/// the lock until it exits. The range stays valid memory, so the copied
/// handle unmaps it as usual when dropped. A map registered while the fork
/// happened (slot still being written) is left as it is. Only atomics and
/// `mmap`: async-signal-safe.
pub(crate) fn detach_maps_in_child() {
    for slot in &REGISTRY {
        if slot.state.load(Ordering::Acquire) & TAG != ACTIVE {
            continue;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        if start == 0 || len == 0 {
            continue;
        }
        // SAFETY: `[start, start + len)` is a map of ours that was live at
        // the fork (its slot is ACTIVE, and only this thread exists in the
        // child, so nothing unmaps it meanwhile). MAP_FIXED replaces exactly
        // that range with fresh private zeroed memory, which the copied
        // handle's `munmap` releases; no other memory changes. The child
        // refuses every call on the copied handle, so nothing relies on the
        // old contents.
        unsafe {
            libc::mmap(
                start as *mut c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
    }
}

/// Replaces the page holding `addr` with a private anonymous zero page.
fn replace_page(addr: usize) -> bool {
    let page_size = PAGE_SIZE.load(Ordering::Relaxed);
    let page = addr & !(page_size - 1);
    // SAFETY: `page` lies in a registered map of ours (checked by the
    // caller), which is live: the faulting thread is accessing it. MAP_FIXED
    // replaces exactly that one page of it with fresh zeroed memory, which
    // the map's `munmap` releases with the rest; no other memory changes.
    let got = unsafe {
        libc::mmap(
            page as *mut c_void,
            page_size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    got == page as *mut c_void
}

/// The handler: see the module docs. Async-signal-safe.
extern "C" fn on_sigbus(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for
    // the thread's life; the handler keeps its value for the code it
    // interrupted.
    let errno = unsafe { *libc::__errno_location() };
    let (addr, recurs) = classify(info);
    let handled = match addr.and_then(|addr| owner(addr).map(|slot| (addr, slot))) {
        Some((addr, slot)) if replace_page(addr) => {
            slot.faulted.store(true, Ordering::Relaxed);
            true
        }
        _ => false,
    };
    if !handled {
        chain(sig, info, context, recurs);
    }
    // SAFETY: the same pointer to this thread's errno, valid for the
    // thread's life; writing it back undoes what `mmap` or `sigaction` may
    // have set.
    unsafe { *libc::__errno_location() = errno };
}

/// The faulting address, if the kernel reports a memory access it could
/// not back (not a signal sent with `kill` or `raise`, whose `si_addr`
/// means nothing), and whether the signal is a fault that happens again
/// when the handler returns.
fn classify(info: *mut siginfo_t) -> (Option<usize>, bool) {
    if info.is_null() {
        return (None, false);
    }
    // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t` for the
    // handler's duration; `si_addr` is only used for the fault codes below,
    // for which it is the faulting address.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    match code {
        libc::BUS_ADRERR | libc::BUS_OBJERR | libc::BUS_MCEERR_AR => (Some(addr), true),
        libc::BUS_ADRALN => (None, true),
        _ => (None, false),
    }
}

/// Sets SIGBUS back to its default action.
fn restore_default() {
    // SAFETY: zeroed is a valid `sigaction`, and with `sa_sigaction` 0 it
    // is SIG_DFL with an empty mask; `sigaction` only reads it.
    let default: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: a valid pointer to an owned value, a null old action.
    unsafe { libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut()) };
}

/// Passes a SIGBUS that is not ours to the action installed before ours;
/// `recurs`: the signal is a fault that happens again on return.
fn chain(sig: c_int, info: *mut siginfo_t, context: *mut c_void, recurs: bool) {
    // Not ready only while `install` runs: a foreign SIGBUS in that instant
    // gets the default action.
    let previous = if PREV_READY.load(Ordering::Acquire) {
        // SAFETY: `PREV_READY` is true: `PREV` was written and never
        // changes again (see `PreviousAction`).
        Some(unsafe { (*PREV.0.get()).assume_init_ref() })
    } else {
        None
    };
    let handler = previous.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        if recurs {
            // The fault happens again, now with the default action, and
            // ends the process (the kernel does not let a fault be
            // ignored either).
            restore_default();
        } else if handler == libc::SIG_DFL {
            restore_default();
            // SAFETY: `raise` is async-signal-safe; with the default action
            // back, it ends the process as the signal would have.
            unsafe { libc::raise(sig) };
        }
        return;
    }
    let flags = previous.map_or(0, |p| p.sa_flags);
    if flags & libc::SA_RESETHAND != 0 {
        restore_default();
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so
        // its handler has this signature; we pass on the kernel's own
        // arguments.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the handler takes the signal number.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_found_until_dropped() {
        let buf = [0u8; 100];
        let start = buf.as_ptr() as usize;
        let r = register(buf.as_ptr(), buf.len()).unwrap();
        assert!(std::ptr::eq(owner(start + 99).unwrap(), r.slot));
        assert!(owner(start + 100).is_none_or(|s| !std::ptr::eq(s, r.slot)));
        assert!(!r.faulted());
        let slot = r.slot;
        drop(r);
        assert!(owner(start).is_none_or(|s| !std::ptr::eq(s, slot)));
    }
}
