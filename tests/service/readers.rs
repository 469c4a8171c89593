//! Invariant: the readers (`stats`, `level`, `journal_path`, `is_closed`)
//! never wait for a call in progress and see the store as of a call that
//! finished, never a mix of two (docs/BEHAVIOUR.md section 5): counts
//! only grow while events are only raised, and once a reader has seen the
//! store closed, the journal path it reads next is gone.

use std::sync::atomic::{AtomicBool, Ordering};

use softnet_persistence::{EventKind, ServiceOptions, ServiceStore, Uuid};

#[test]
fn readers_alongside_raises_and_a_close_never_see_a_mix() {
    for round in 0..50u8 {
        let dir = tempfile::tempdir().unwrap();
        let options = ServiceOptions {
            capacity: 1 << 20,
            ..Default::default()
        };
        let store = ServiceStore::open_file(dir.path(), Uuid::from_u128(7), &options).unwrap();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let (mut last, mut reads) = (0u64, 0u64);
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let stats = store.stats();
                    assert!(stats.pending_events >= last, "went back: {stats:?}");
                    assert_eq!(
                        stats.used_bytes == 0,
                        stats.pending_events == 0,
                        "{stats:?}"
                    );
                    last = stats.pending_events;
                    if store.is_closed() {
                        assert_eq!(store.journal_path(), None, "round {round}");
                    }
                    reads += 1;
                    if finished {
                        return reads;
                    }
                }
            });
            for n in 0..200u32 {
                store
                    .raise(EventKind::Queueing, "Reading", &n.to_le_bytes())
                    .unwrap();
            }
            store.close().unwrap();
            done.store(true, Ordering::SeqCst);
            assert!(reader.join().unwrap() > 0);
        });
        assert!(store.is_closed());
        assert_eq!(store.journal_path(), None);
    }
}
