//! Invariant: calls that come back into a store from its own failure
//! callback or its own backend never crash or hang the host: reports are
//! delivered after the callback returns, never recursively, and a loop of
//! callbacks that cause reports ends with one report saying how many were
//! held back; a backend that calls its own store gets a state error instead
//! of a deadlock (docs/BEHAVIOUR.md section 5).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use softnet_persistence::{
    ErrorKind, EventKind, Failure, FailureKind, Level, MemoryLog, RecordLog, Removal, Result,
    ServiceOptions, ServiceStore, Uuid,
};

/// A store whose callback raises a "Dropped" event into the same store for
/// every capacity drop (the natural pattern): before, each raise dropped
/// another event and called the callback again, until the stack overflowed
/// at about 11,400 nested calls.
#[test]
fn a_callback_raising_into_a_full_store_neither_recurses_nor_loops() {
    let slot: Arc<OnceLock<Weak<ServiceStore>>> = Arc::default();
    let depth = Arc::new(AtomicU32::new(0));
    let deepest = Arc::new(AtomicU32::new(0));
    let kinds: Arc<Mutex<Vec<FailureKind>>> = Arc::default();
    let (s, d, m, k) = (slot.clone(), depth.clone(), deepest.clone(), kinds.clone());
    let options = ServiceOptions {
        memory_capacity: 4096,
        on_failure: Some(Arc::new(move |f: &Failure| {
            let now = d.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            k.lock().unwrap().push(f.kind);
            if f.kind == FailureKind::CapacityDrop {
                if let Some(store) = s.get().and_then(Weak::upgrade) {
                    store
                        .raise(EventKind::Queueing, "Dropped", b"notice")
                        .expect("the callback's raise works");
                }
            }
            d.fetch_sub(1, Ordering::SeqCst);
        })),
        ..ServiceOptions::default()
    };
    let store = Arc::new(ServiceStore::open_memory(&options).unwrap());
    let _ = slot.set(Arc::downgrade(&store));
    for n in 0..1000u32 {
        store
            .raise(
                EventKind::Queueing,
                "Temperature",
                &n.to_le_bytes().repeat(16),
            )
            .unwrap();
    }
    assert_eq!(deepest.load(Ordering::SeqCst), 1, "never recursive");
    let kinds = kinds.lock().unwrap();
    let loops = kinds
        .iter()
        .filter(|k| **k == FailureKind::CallbackLoop)
        .count();
    let drops = kinds
        .iter()
        .filter(|k| **k == FailureKind::CapacityDrop)
        .count();
    assert!(loops > 0, "the held-back reports are summarised");
    assert!(drops > loops, "{drops} drops, {loops} loop summaries");
    let stats = store.stats();
    assert_eq!(stats.level, Level::Memory);
    assert!(stats.dropped_events >= drops as u64);
    println!(
        "1,000 raises into a full store whose callback raises per drop: {drops} drop reports \
         delivered, {loops} loop summaries, {} events dropped in all, depth 1",
        stats.dropped_events
    );
}

#[test]
fn a_callback_may_ack_and_close_the_store() {
    let slot: Arc<OnceLock<Weak<ServiceStore>>> = Arc::default();
    let seen = Arc::new(AtomicU64::new(0));
    let (s, n) = (slot.clone(), seen.clone());
    let options = ServiceOptions {
        memory_capacity: 4096,
        on_failure: Some(Arc::new(move |_: &Failure| {
            n.fetch_add(1, Ordering::SeqCst);
            if let Some(store) = s.get().and_then(Weak::upgrade) {
                if let Ok(Some(e)) = store.peek() {
                    let _ = store.ack(e.uid);
                }
                store.close().unwrap();
            }
        })),
        ..ServiceOptions::default()
    };
    let store = Arc::new(ServiceStore::open_memory(&options).unwrap());
    let _ = slot.set(Arc::downgrade(&store));
    let mut closed = false;
    for n in 0..200u32 {
        match store.raise(EventKind::Queueing, "Temperature", &[n as u8; 64]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Closed => {
                closed = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(closed, "the callback closed the store");
    assert!(seen.load(Ordering::SeqCst) >= 1);
}

/// A custom backend whose append calls its own store; or, given `other`,
/// raises into that other store and starts a thread that raises into its
/// own store while the append holds the store's lock.
struct Meddling {
    inner: MemoryLog,
    store: Arc<OnceLock<Weak<ServiceStore>>>,
    refused: Arc<AtomicU32>,
    other: Option<Arc<ServiceStore>>,
    waiters: Arc<Mutex<Vec<JoinHandle<Result<Uuid>>>>>,
}

impl Meddling {
    fn new(store: &Arc<OnceLock<Weak<ServiceStore>>>, refused: &Arc<AtomicU32>) -> Meddling {
        Meddling {
            inner: MemoryLog::new(),
            store: store.clone(),
            refused: refused.clone(),
            other: None,
            waiters: Arc::default(),
        }
    }
}

impl RecordLog for Meddling {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        let Some(store) = self.store.get().and_then(Weak::upgrade) else {
            return self.inner.append(payload);
        };
        if let Some(other) = &self.other {
            other
                .raise(EventKind::Queueing, "Relayed", payload)
                .unwrap();
            if payload.len() < 100 {
                let waiter = std::thread::spawn(move || {
                    store.raise(EventKind::Queueing, "Waiter", &[0; 100])
                });
                self.waiters.lock().unwrap().push(waiter);
                // Give the thread time to reach the lock this append holds.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        } else {
            // Before: a deadlock on the store's lock.
            let err = store.raise(EventKind::Queueing, "Inner", b"x").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::State, "{err}");
            assert!(err.to_string().contains("own custom backend"), "{err}");
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.append(payload)
    }
    fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
        self.inner.remove(seq, why)
    }
    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        self.inner.read(seq, out)
    }
    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        self.inner.scan(visit)
    }
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn clear(&mut self) -> Result<()> {
        self.inner.clear()
    }
    fn metadata(&mut self) -> Result<Vec<u8>> {
        self.inner.metadata()
    }
    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        self.inner.set_metadata(meta)
    }
}

#[test]
fn a_backend_calling_its_own_store_gets_a_state_error_not_a_deadlock() {
    let slot: Arc<OnceLock<Weak<ServiceStore>>> = Arc::default();
    let refused = Arc::new(AtomicU32::new(0));
    let backend = Meddling::new(&slot, &refused);
    let store =
        Arc::new(ServiceStore::open_custom(Box::new(backend), &ServiceOptions::default()).unwrap());
    let _ = slot.set(Arc::downgrade(&store));
    for n in 0..10u8 {
        store.raise(EventKind::Queueing, "Outer", &[n]).unwrap();
    }
    assert_eq!(refused.load(Ordering::SeqCst), 10);
    assert_eq!(store.stats().pending_events, 10);
    assert_eq!(store.level(), Level::Persistent);
}

/// The refusal is for the thread running the backend, and for its own
/// store only: the backend may call another store, and another thread
/// calling the store meanwhile waits for the lock and succeeds.
#[test]
fn a_backend_may_call_another_store_and_other_threads_wait_their_turn() {
    let slot: Arc<OnceLock<Weak<ServiceStore>>> = Arc::default();
    let refused = Arc::new(AtomicU32::new(0));
    let other = Arc::new(ServiceStore::open_memory(&ServiceOptions::default()).unwrap());
    let mut backend = Meddling::new(&slot, &refused);
    backend.other = Some(other.clone());
    let waiters = backend.waiters.clone();
    let store =
        Arc::new(ServiceStore::open_custom(Box::new(backend), &ServiceOptions::default()).unwrap());
    let _ = slot.set(Arc::downgrade(&store));
    for n in 0..5u8 {
        store.raise(EventKind::Queueing, "Outer", &[n]).unwrap();
    }
    let waiters = std::mem::take(&mut *waiters.lock().unwrap());
    assert_eq!(waiters.len(), 5);
    for waiter in waiters {
        waiter.join().unwrap().unwrap();
    }
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    assert_eq!(store.stats().pending_events, 10);
    // Every append relayed its record, the waiters' too.
    assert_eq!(other.stats().pending_events, 10);
}
