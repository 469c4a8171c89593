//! The view readers copy without waiting (see `shell.rs`): a sequence lock
//! over a few words.
//!
//! Only a call holding the store's lock writes, so there is one writer at a
//! time, and writing takes no atomic read-modify-write (a lock and an
//! unlock of a mutex took two per call, about 13 ns of a 250 ns raise). The
//! writer makes the count odd, stores the words and makes the count even
//! again; a reader copies the words and keeps the copy only if it read the
//! same even count before and after. Every access is atomic, so a reader
//! racing a writer reads some mix of old and new words, sees the count
//! moved, and tries again; it never returns that mix. The fences are the
//! usual ones of a sequence lock: the writer's release fence keeps its
//! word stores after the odd count, the reader's acquire fence keeps its
//! word loads before its second look at the count.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Words in a view: enough for the largest (the service store's 18)
/// and the one the shell keeps (`shell.rs`).
pub(crate) const VIEW_WORDS: usize = 20;

/// A view as words (see `StoreState::View`).
pub(crate) type Words = [u64; VIEW_WORDS];

pub(crate) struct Published {
    count: AtomicU64,
    words: [AtomicU64; VIEW_WORDS],
}

impl Published {
    pub(crate) fn new(words: &Words) -> Published {
        Published {
            count: AtomicU64::new(0),
            words: words.map(AtomicU64::new),
        }
    }

    /// Replaces the words. Only one thread at a time may call it (the one
    /// holding the store's lock).
    pub(crate) fn write(&self, words: &Words) {
        let count = self.count.load(Ordering::Relaxed);
        self.count.store(count.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        for (slot, &word) in self.words.iter().zip(words) {
            slot.store(word, Ordering::Relaxed);
        }
        self.count.store(count.wrapping_add(2), Ordering::Release);
    }

    /// The words, or `None` if a write was in progress (try again).
    pub(crate) fn try_read(&self) -> Option<Words> {
        let before = self.count.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let mut words = [0; VIEW_WORDS];
        for (word, slot) in words.iter_mut().zip(&self.words) {
            *word = slot.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        (self.count.load(Ordering::Relaxed) == before).then_some(words)
    }
}

#[cfg(test)]
mod tests {
    use crate::shell::published::{Published, VIEW_WORDS};
    use std::sync::Arc;

    #[test]
    fn a_reader_never_sees_a_mix_of_two_writes() {
        let published = Arc::new(Published::new(&[0; VIEW_WORDS]));
        let writer = {
            let published = Arc::clone(&published);
            std::thread::spawn(move || {
                for n in 1..=200_000u64 {
                    published.write(&[n; VIEW_WORDS]);
                }
            })
        };
        let mut seen = 0u64;
        while !writer.is_finished() || seen < 200_000 {
            if let Some(words) = published.try_read() {
                assert!(words.iter().all(|&w| w == words[0]), "{words:?}");
                assert!(words[0] >= seen, "went back from {seen} to {}", words[0]);
                seen = words[0];
            }
        }
        writer.join().unwrap();
        assert_eq!(published.try_read(), Some([200_000; VIEW_WORDS]));
    }
}
