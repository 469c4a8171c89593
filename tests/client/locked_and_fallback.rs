//! Invariant: a client file has one opener at a time (a second one gets
//! `Locked` naming the file), a closed store refuses work, and a failing
//! level-2 backend (at open or at any later call) moves the store to level 1
//! keeping every id it knew, reported through the failure callback and
//! counted in the statistics (docs/BEHAVIOUR.md section 5): nothing is lost but
//! durability.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use softnet_persistence::{
    ClientOptions, ClientStore, Delivery, Durability, Error, ErrorKind, Failure, FailureKind,
    HandlerOrder, IdStore, Level, Result,
};
use testkit::{assert_locked, client_file_name, client_options, Fault, Reports};

const SERVER: &str = "10.1.2.3";
const KEY: &str = "locked-test";

fn options(reports: &Reports) -> ClientOptions {
    client_options(Durability::Sync, reports)
}

fn file_path(dir: &Path) -> std::path::PathBuf {
    dir.join(client_file_name(SERVER, KEY))
}

// ----- the lock ---------------------------------------------------------------

#[test]
fn second_opener_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let opts = options(&reports);
    let path = file_path(dir.path());
    let first = ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap();
    assert_eq!(first.file_path().as_deref(), Some(path.as_path()));
    first.put("Temp", 1).unwrap();
    for _ in 0..3 {
        assert_locked(
            ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap_err(),
            &path,
        );
    }
    // Other durability settings do not get around it; nor does another thread.
    let none = ClientOptions {
        durability: Durability::None,
        ..Default::default()
    };
    assert_locked(
        ClientStore::open_file(dir.path(), SERVER, KEY, &none).unwrap_err(),
        &path,
    );
    let d = dir.path().to_path_buf();
    let err = std::thread::spawn(move || {
        ClientStore::open_file(&d, SERVER, KEY, &ClientOptions::default()).unwrap_err()
    })
    .join()
    .unwrap();
    assert_locked(err, &path);
    // Another client key in the same directory is another file.
    let other = ClientStore::open_file(dir.path(), SERVER, "other-key", &opts).unwrap();
    assert_eq!(other.level(), Level::Persistent);
    // The first handle is unaffected and was never demoted.
    assert_eq!(first.level(), Level::Persistent);
    first.put("Temp", 2).unwrap();
    assert_eq!(first.stats().failures, 0);
    drop(first);
    let second = ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap();
    assert_eq!(second.level(), Level::Persistent);
    assert_eq!(second.get("Temp").unwrap(), Some(2));
    assert_locked(
        ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap_err(),
        &path,
    );
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn close_releases_the_lock_and_a_closed_store_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let opts = options(&reports);
    let path = file_path(dir.path());
    let first = ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap();
    first.put("Temp", 10).unwrap();
    first.put("Door", -10).unwrap();
    first.close().unwrap();

    let closed = |what: &str, r: Result<()>| match r {
        Err(Error::Closed) => {}
        other => panic!("{what} on a closed store: expected Closed, got {other:?}"),
    };
    closed("put", first.put("Temp", 11));
    closed("get", first.get("Temp").map(drop));
    closed("is_duplicate", first.is_duplicate("Temp", 10).map(drop));
    closed("entries", first.entries().map(drop));
    closed("reset", first.reset());
    closed("flush", first.flush());

    // The file is free now, and holds what was put before the close.
    let second = ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap();
    assert_eq!(second.level(), Level::Persistent);
    assert_eq!(
        second.entries().unwrap(),
        vec![("Door".to_string(), -10), ("Temp".to_string(), 10)]
    );
    assert_locked(
        ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap_err(),
        &path,
    );
    // The closed handle wrote nothing anywhere and still refuses.
    closed("put", first.put("Temp", 12));
    drop(first);
    assert_eq!(second.get("Temp").unwrap(), Some(10));
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn a_memory_store_closes_too() {
    let store = ClientStore::open_memory(&ClientOptions::default());
    store.put("A", 1).unwrap();
    store.close().unwrap();
    assert_eq!(store.get("A").unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(store.put("A", 2).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn an_unusable_directory_starts_at_level_1_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does/not/exist");
    let reports = Reports::default();
    let store = ClientStore::open_file(&missing, SERVER, KEY, &options(&reports)).unwrap();
    assert_eq!(store.level(), Level::Memory);
    assert_eq!(store.file_path(), None);
    let r = reports.lock().unwrap().clone();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, FailureKind::Fallback);
    assert!(
        r[0].message
            .contains(&file_path(&missing).display().to_string()),
        "the report names the file: {}",
        r[0].message
    );
    assert_eq!(store.stats().failures, 1);
    // It works as a level-1 store.
    store.put("Temp", 3).unwrap();
    assert!(store.is_duplicate("Temp", 3).unwrap());
}

// ----- a custom backend that fails on command -----------------------------------

/// What the custom backend holds and how it behaves.
#[derive(Default)]
struct Device {
    ids: HashMap<String, i64>,
    /// Fail every call from now on.
    broken: bool,
    /// Fail `load` after visiting this many pairs.
    load_fails_after: Option<usize>,
    calls: u64,
}

#[derive(Clone, Default)]
struct SharedDevice(Arc<Mutex<Device>>);

impl SharedDevice {
    fn with<T>(&self, f: impl FnOnce(&mut Device) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    fn gate(&self, method: &str) -> Result<()> {
        self.with(|d| {
            d.calls += 1;
            if d.broken {
                Err(Error::Backend(format!(
                    "the test device is gone ({method})"
                )))
            } else {
                Ok(())
            }
        })
    }
}

impl IdStore for SharedDevice {
    fn load(&mut self, visit: &mut dyn FnMut(&str, i64)) -> Result<()> {
        self.gate("load")?;
        let (pairs, fail_after) = self.with(|d| {
            let mut pairs: Vec<(String, i64)> =
                d.ids.iter().map(|(k, v)| (k.clone(), *v)).collect();
            pairs.sort();
            (pairs, d.load_fails_after)
        });
        for (n, (name, id)) in pairs.iter().enumerate() {
            if fail_after == Some(n) {
                return Err(Error::Io {
                    context: "read the test device".into(),
                    source: std::io::Error::other("injected read error"),
                });
            }
            visit(name, *id);
        }
        if fail_after.is_some_and(|n| n >= pairs.len()) {
            return Err(Error::Backend("load failed at the end".into()));
        }
        Ok(())
    }

    fn put(&mut self, name: &str, id: i64) -> Result<()> {
        self.gate("put")?;
        self.with(|d| d.ids.insert(name.to_owned(), id));
        Ok(())
    }

    fn clear(&mut self) -> Result<()> {
        self.gate("clear")?;
        self.with(|d| d.ids.clear());
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.gate("flush")
    }
}

fn sorted(map: &BTreeMap<String, i64>) -> Vec<(String, i64)> {
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

#[test]
fn a_custom_backend_keeps_ids_across_reopen() {
    let device = SharedDevice::default();
    let reports = Reports::default();
    let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
    assert_eq!(store.level(), Level::Persistent);
    store.put("A", i64::MIN).unwrap();
    store.put("B", i64::MAX).unwrap();
    store.put("A", 5).unwrap();
    drop(store);
    let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
    assert_eq!(
        store.entries().unwrap(),
        vec![("A".to_string(), 5), ("B".to_string(), i64::MAX)]
    );
    store.reset().unwrap();
    assert!(
        device.with(|d| d.ids.is_empty()),
        "reset clears the backend"
    );
    assert!(reports.lock().unwrap().is_empty());
}

/// A custom backend is user code and may hand back a pair whose name breaks
/// the rules (damaged storage, a bug). The store cannot use it, but docs/BEHAVIOUR.md
/// section 5 says nothing is dropped silently: the valid pairs are kept
/// and the dropped one is reported and counted.
#[test]
fn an_invalid_name_from_a_custom_backend_is_not_dropped_silently() {
    let device = SharedDevice::default();
    device.with(|d| {
        d.ids.insert("Good".into(), 1);
        d.ids.insert("1 starts with a digit".into(), 2);
        d.ids.insert("Also good".into(), 3);
    });
    let reports = Reports::default();
    let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
    assert_eq!(
        store.entries().unwrap(),
        vec![("Also good".to_string(), 3), ("Good".to_string(), 1)],
        "the valid pairs are kept"
    );
    let r = reports.lock().unwrap().clone();
    assert!(
        !r.is_empty() && store.stats().failures > 0,
        "the pair (\"1 starts with a digit\", 2) was dropped without a report \
         (reports {r:?}, stats {:?})",
        store.stats()
    );
    assert!(
        r.iter().any(|f| f.events_lost >= 1),
        "the report counts the lost id: {r:?}"
    );
}

#[test]
fn a_backend_failure_falls_back_to_memory_keeping_every_id() {
    let device = SharedDevice::default();
    let reports = Reports::default();
    let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
    let mut model = BTreeMap::new();
    for i in 0..40i64 {
        let name = format!("Sub{i}");
        store.put(&name, i * 3 - 60).unwrap();
        model.insert(name, i * 3 - 60);
    }
    assert_eq!(store.stats().failures, 0);

    device.with(|d| d.broken = true);
    // The failing put still succeeds for the application: the id is kept
    // in memory, and so is every id the store knew.
    store.put("Sub7", 777).unwrap();
    model.insert("Sub7".into(), 777);
    assert_eq!(store.level(), Level::Memory, "level 1 after the failure");
    assert_eq!(store.entries().unwrap(), sorted(&model), "nothing lost");
    let stats = store.stats();
    assert_eq!(stats.failures, 1);
    assert_eq!(stats.subscriptions, 40);
    {
        let r = reports.lock().unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].kind, FailureKind::Fallback);
        assert_eq!(r[0].events_lost, 0, "no id is lost");
        assert!(
            r[0].message.contains("the test device is gone"),
            "the report says why: {}",
            r[0].message
        );
    }

    // It keeps working at level 1, and never calls the broken backend again.
    let calls = device.with(|d| d.calls);
    store.put("New", 1).unwrap();
    model.insert("New".into(), 1);
    assert!(matches!(
        store.handle(
            "Sub1",
            -57,
            HandlerOrder::default(),
            || Ok::<(), String>(())
        ),
        Ok(Delivery::Duplicate)
    ));
    assert!(store.is_duplicate("Sub7", 777).unwrap());
    store.flush().unwrap();
    assert_eq!(store.entries().unwrap(), sorted(&model));
    assert_eq!(
        device.with(|d| d.calls),
        calls,
        "no call after the fallback"
    );
    assert_eq!(store.stats().failures, 1, "one failure, one report");
    assert_eq!(reports.lock().unwrap().len(), 1);
    store.reset().unwrap();
    assert!(store.entries().unwrap().is_empty());
    assert_eq!(store.stats().failures, 1);
}

#[test]
fn a_failure_of_each_method_falls_back_the_same_way() {
    type Call = fn(&ClientStore) -> Result<()>;
    let calls: [(&str, Call); 3] = [
        ("put", |s| s.put("Late", 9)),
        ("flush", |s| s.flush()),
        ("reset", |s| s.reset()),
    ];
    for (what, call) in calls {
        let device = SharedDevice::default();
        let reports = Reports::default();
        let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
        store.put("Kept", 42).unwrap();
        device.with(|d| d.broken = true);
        call(&store).unwrap_or_else(|e| panic!("{what}: the application sees no error: {e}"));
        assert_eq!(store.level(), Level::Memory, "{what}");
        if what == "reset" {
            assert!(
                store.entries().unwrap().is_empty(),
                "{what}: reset still resets"
            );
        } else {
            assert_eq!(store.get("Kept").unwrap(), Some(42), "{what}: kept");
        }
        let r = reports.lock().unwrap();
        assert_eq!(r.len(), 1, "{what}: {r:?}");
        assert_eq!(r[0].kind, FailureKind::Fallback, "{what}");
        assert_eq!(store.stats().failures, 1, "{what}");
    }
}

#[test]
fn a_load_failure_at_open_starts_at_level_1_with_what_was_read() {
    // load fails at once: nothing to keep.
    let device = SharedDevice::default();
    device.with(|d| {
        d.ids.insert("A".into(), 1);
        d.broken = true;
    });
    let reports = Reports::default();
    let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
    assert_eq!(store.level(), Level::Memory);
    assert_eq!(store.stats().failures, 1);
    {
        let r = reports.lock().unwrap();
        assert_eq!(r.len(), 1, "reported once, at open: {r:?}");
        assert_eq!(r[0].kind, FailureKind::Fallback);
    }
    store.put("B", 2).unwrap();
    assert_eq!(store.get("B").unwrap(), Some(2));
    assert_eq!(store.stats().failures, 1);

    // load fails half way: the pairs it visited are kept.
    for fail_after in [0usize, 1, 3, 5] {
        let device = SharedDevice::default();
        let mut all = BTreeMap::new();
        device.with(|d| {
            for i in 0..5i64 {
                d.ids.insert(format!("N{i}"), -i);
                all.insert(format!("N{i}"), -i);
            }
            d.load_fails_after = Some(fail_after);
        });
        let reports = Reports::default();
        let store = ClientStore::open_custom(Box::new(device.clone()), &options(&reports));
        assert_eq!(store.level(), Level::Memory, "fail after {fail_after}");
        let visited: Vec<(String, i64)> = sorted(&all).into_iter().take(fail_after).collect();
        assert_eq!(
            store.entries().unwrap(),
            visited,
            "fail after {fail_after}: every id read before the failure is kept"
        );
        assert_eq!(reports.lock().unwrap().len(), 1);
        assert_eq!(reports.lock().unwrap()[0].kind, FailureKind::Fallback);
        assert_eq!(store.stats().failures, 1);
    }
}

#[test]
fn the_failure_callback_may_call_back_into_the_store() {
    let device = SharedDevice::default();
    let seen = Arc::new(Mutex::new(None));
    let slot: Arc<Mutex<Option<Arc<ClientStore>>>> = Arc::default();
    let (slot2, seen2) = (Arc::clone(&slot), Arc::clone(&seen));
    let opts = ClientOptions {
        durability: Durability::Sync,
        device_layer: None,
        on_failure: Some(Arc::new(move |_: &Failure| {
            if let Some(store) = slot2.lock().unwrap().as_ref() {
                // Runs after the store's lock is released.
                *seen2.lock().unwrap() = Some((store.stats(), store.get("A").unwrap()));
            }
        })),
        ..Default::default()
    };
    let store = Arc::new(ClientStore::open_custom(Box::new(device.clone()), &opts));
    *slot.lock().unwrap() = Some(Arc::clone(&store));
    store.put("A", 1).unwrap();
    device.with(|d| d.broken = true);
    store.put("A", 2).unwrap();
    let (stats, a) = seen.lock().unwrap().take().expect("the callback ran");
    assert_eq!(stats.level, Level::Memory);
    assert_eq!(stats.failures, 1);
    assert_eq!(a, Some(2));
    slot.lock().unwrap().take();
}

// ----- fail the N-th backend call ---------------------------------------------------

/// A backend that counts its calls and fails the planned ones.
struct Counting {
    ids: Arc<Mutex<HashMap<String, i64>>>,
    fault: Fault,
    calls: Arc<AtomicU64>,
}

impl Counting {
    fn gate(&self, method: &str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.fault.fails(n) {
            return Ok(());
        }
        Err(if n.is_multiple_of(2) {
            Error::Backend(format!("injected failure of {method} (call {n})"))
        } else {
            Error::Io {
                context: format!("{method} (call {n})"),
                source: std::io::Error::other("injected I/O error"),
            }
        })
    }
}

impl IdStore for Counting {
    fn load(&mut self, visit: &mut dyn FnMut(&str, i64)) -> Result<()> {
        self.gate("load")?;
        let mut pairs: Vec<(String, i64)> = self
            .ids
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        pairs.sort();
        for (k, v) in pairs {
            visit(&k, v);
        }
        Ok(())
    }
    fn put(&mut self, name: &str, id: i64) -> Result<()> {
        self.gate("put")?;
        self.ids.lock().unwrap().insert(name.to_owned(), id);
        Ok(())
    }
    fn clear(&mut self) -> Result<()> {
        self.gate("clear")?;
        self.ids.lock().unwrap().clear();
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.gate("flush")
    }
}

/// What the application saw during one run of the scenario.
#[derive(Debug, PartialEq)]
struct Seen {
    /// One line per step.
    steps: Vec<String>,
    entries: Vec<(String, i64)>,
}

/// The fixed scenario: open (on a backend already holding ids), puts,
/// handles in both orders, duplicates, flush, reset, more puts.
fn scenario(fault: Fault) -> (Seen, u64, Level, Vec<Failure>) {
    let ids: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    {
        let mut m = ids.lock().unwrap();
        m.insert("Old".into(), 100);
        m.insert("Door".into(), -1);
    }
    let calls = Arc::new(AtomicU64::new(0));
    let backend = Counting {
        ids,
        fault,
        calls: Arc::clone(&calls),
    };
    let reports = Reports::default();
    let store = ClientStore::open_custom(Box::new(backend), &options(&reports));
    let mut steps = Vec::new();
    let mut step = |s: String| steps.push(s);
    let handler = |fail: bool| move || if fail { Err("app") } else { Ok(()) };
    for i in 0..6i64 {
        store.put(&format!("Sub{i}"), i * 1_000_000_007).unwrap();
    }
    step(format!("{:?}", store.get("Old").unwrap()));
    step(format!(
        "{:?}",
        store.handle("Door", -1, HandlerOrder::RecordAfterHandle, handler(false))
    ));
    step(format!(
        "{:?}",
        store.handle("Door", 0, HandlerOrder::RecordAfterHandle, handler(false))
    ));
    step(format!(
        "{:?}",
        store
            .handle("Door", 1, HandlerOrder::RecordAfterHandle, handler(true))
            .map_err(|e| e.to_string())
    ));
    step(format!(
        "{:?}",
        store
            .handle("Door", 2, HandlerOrder::RecordBeforeHandle, handler(true))
            .map_err(|e| e.to_string())
    ));
    step(format!("{:?}", store.is_duplicate("Door", 2).unwrap()));
    store.put("Old", i64::MIN).unwrap();
    store.put("Old", i64::MIN).unwrap();
    store.flush().unwrap();
    step(format!("{:?}", store.entries().unwrap()));
    store.reset().unwrap();
    step(format!("{:?}", store.entries().unwrap()));
    for i in 0..4i64 {
        store.put(&format!("After{i}"), -i).unwrap();
        store
            .handle(
                &format!("After{i}"),
                i,
                HandlerOrder::RecordAfterHandle,
                handler(false),
            )
            .unwrap();
    }
    store.put("After0", i64::MAX).unwrap();
    store.flush().unwrap();
    let entries = store.entries().unwrap();
    let level = store.level();
    let stats = store.stats();
    let reports = reports.lock().unwrap().clone();
    assert_eq!(stats.failures, reports.len() as u64, "{fault:?}: counted");
    (
        Seen { steps, entries },
        calls.load(Ordering::SeqCst),
        level,
        reports,
    )
}

#[test]
fn failing_the_nth_backend_call_changes_nothing_the_application_sees() {
    let (clean, total, level, reports) = scenario(Fault::Never);
    assert_eq!(level, Level::Persistent);
    assert!(reports.is_empty());
    assert!(total > 20, "the scenario makes {total} backend calls");
    for n in 1..=total + 1 {
        for fault in [Fault::Once(n), Fault::From(n)] {
            let (seen, calls, level, reports) = scenario(fault);
            if n > total {
                assert_eq!(level, Level::Persistent, "{fault:?}: nothing failed");
                assert!(reports.is_empty());
                assert_eq!(seen, clean);
                continue;
            }
            if n == 1 {
                // The load at open failed: the preexisting ids are gone from
                // the store's view (never read), everything else is the same.
                assert_eq!(seen.entries, clean.entries, "{fault:?}: final entries");
            } else {
                assert_eq!(seen, clean, "{fault:?}: what the application saw");
            }
            assert_eq!(level, Level::Memory, "{fault:?}: level 1 after the failure");
            assert_eq!(calls, n, "{fault:?}: no backend call after the failure");
            assert_eq!(reports.len(), 1, "{fault:?}: one report: {reports:?}");
            assert_eq!(reports[0].kind, FailureKind::Fallback, "{fault:?}");
            assert_eq!(reports[0].events_lost, 0, "{fault:?}");
        }
    }
}

// ----- strict open ------------------------------------------------------------

#[test]
fn strict_open_fails_where_the_default_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let strict = ClientOptions {
        open_policy: softnet_persistence::OpenPolicy::Strict,
        ..Default::default()
    };
    let e = ClientStore::open_file(&missing, SERVER, KEY, &strict).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("not-there"), "{e}");
    assert!(!missing.exists());
    // The default runs in memory instead.
    let store = ClientStore::open_file(&missing, SERVER, KEY, &ClientOptions::default()).unwrap();
    assert_eq!(store.stats().level, Level::Memory);
    std::fs::create_dir(&missing).unwrap();
    drop(store);
    let store = ClientStore::open_file(&missing, SERVER, KEY, &strict).unwrap();
    assert_eq!(store.stats().level, Level::Persistent);
}
