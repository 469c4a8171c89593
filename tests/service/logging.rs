//! Every report also goes to the `log` facade (target
//! `softnet_persistence`), callback or not: `error` for a fallback or a
//! loss, `warn` for the rest (docs/BEHAVIOUR.md section 5).

use std::sync::{Mutex, OnceLock};

use softnet_persistence::{EventKind, Level, Overflow, ServiceOptions, ServiceStore, Uuid};

/// The records logged by this test binary, with the thread that logged
/// them (tests run in parallel; each looks at its own thread's records).
static RECORDS: Mutex<Vec<(std::thread::ThreadId, log::Level, String, String)>> =
    Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        RECORDS.lock().unwrap().push((
            std::thread::current().id(),
            record.level(),
            record.target().to_string(),
            record.args().to_string(),
        ));
    }

    fn flush(&self) {}
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&Capture).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// This thread's records: (level, target, message).
fn mine() -> Vec<(log::Level, String, String)> {
    let me = std::thread::current().id();
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == me)
        .map(|r| (r.1, r.2.clone(), r.3.clone()))
        .collect()
}

#[test]
fn a_missing_directory_without_a_callback_is_logged_as_an_error_naming_it() {
    install();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let store =
        ServiceStore::open_file(&missing, Uuid::new_v4(), &ServiceOptions::default()).unwrap();
    assert_eq!(store.level(), Level::Memory);
    let logged = mine();
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (level, target, message) = &logged[0];
    assert_eq!(*level, log::Level::Error);
    assert_eq!(target, "softnet_persistence");
    assert!(message.contains("not-there"), "{message}");
}

#[test]
fn drops_are_errors_and_reports_also_reach_the_callback() {
    install();
    let seen = std::sync::Arc::new(Mutex::new(0u64));
    let counted = seen.clone();
    let options = ServiceOptions {
        capacity: 16 * 1024,
        overflow: Overflow::DropOldest,
        on_failure: Some(std::sync::Arc::new(move |_| *counted.lock().unwrap() += 1)),
        ..Default::default()
    };
    let store = ServiceStore::open_memory(&options).unwrap();
    for _ in 0..400 {
        store
            .raise(EventKind::Queueing, "reading", &[7; 64])
            .unwrap();
    }
    let reports = *seen.lock().unwrap();
    assert!(reports > 0);
    let logged = mine();
    // One log record per report, each an error (events were lost).
    assert_eq!(logged.len() as u64, reports, "{logged:?}");
    assert!(logged
        .iter()
        .all(|(level, target, m)| *level == log::Level::Error
            && target == "softnet_persistence"
            && m.contains("lost")));
}
