//! The lock of a controller handle. A controller calls its store, and the
//! store may call the application's failure callback; a callback that
//! calls the same controller would wait for a lock its own thread holds.
//! Such a call is refused with `SNP_ERR_STATE` instead.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use snp::Error;

/// A value behind a lock that knows which thread holds it.
pub(crate) struct Guarded<T> {
    inner: Mutex<T>,
    /// The token of the thread holding the lock; 0 when none.
    owner: AtomicUsize,
}

/// The lock held; released when dropped.
pub(crate) struct Held<'a, T> {
    guard: MutexGuard<'a, T>,
    owner: &'a AtomicUsize,
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A number unique to the calling thread among live threads (never 0).
fn token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

impl<T> Guarded<T> {
    pub(crate) fn new(value: T) -> Guarded<T> {
        Guarded {
            inner: Mutex::new(value),
            owner: AtomicUsize::new(0),
        }
    }

    /// Takes the lock, or refuses if this thread holds it already.
    pub(crate) fn lock(&self) -> Result<Held<'_, T>, Error> {
        let me = token();
        // Only this thread stores its own token, so reading it back means
        // this thread holds the lock.
        if self.owner.load(Ordering::Relaxed) == me {
            return Err(Error::State(
                "the controller was called from inside a call it is making (a failure \
                 callback of its store calling the controller): that would deadlock; \
                 queue the work and do it after the callback returns"
                    .to_string(),
            ));
        }
        let guard = self.inner.lock();
        self.owner.store(me, Ordering::Relaxed);
        Ok(Held {
            guard,
            owner: &self.owner,
        })
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Relaxed);
    }
}
