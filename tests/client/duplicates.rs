//! Invariant: an event whose id equals the stored id of its name is a
//! duplicate and never reaches the handler; otherwise `handle` runs the
//! handler and records the id in the chosen order, with the documented
//! outcome when the handler fails or panics (docs/BEHAVIOUR.md section 4), at CPL-1 and
//! CPL-2 alike.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use softnet_persistence::{
    ClientStore, Delivery, Durability, Error, ErrorKind, HandleError, HandlerOrder, Level,
    MAX_NAME_LEN,
};
use tempfile::TempDir;
use testkit::{client_options, scratch_dir, Reports};

const SERVER: &str = "fe80::1";
const KEY: &str = "dup-test";

/// A store under test: level 1, or level 2 with its directory.
struct Subject {
    label: &'static str,
    store: ClientStore,
    dir: Option<TempDir>,
    reports: Reports,
}

impl Subject {
    fn memory() -> Subject {
        let reports = Reports::default();
        let store = ClientStore::open_memory(&client_options(Durability::Sync, &reports));
        assert_eq!(store.level(), Level::Memory);
        Subject {
            label: "CPL-1",
            store,
            dir: None,
            reports,
        }
    }

    fn file() -> Subject {
        let dir = scratch_dir();
        let reports = Reports::default();
        let store = ClientStore::open_file(
            dir.path(),
            SERVER,
            KEY,
            &client_options(Durability::Sync, &reports),
        )
        .unwrap();
        assert_eq!(store.level(), Level::Persistent);
        Subject {
            label: "CPL-2",
            store,
            dir: Some(dir),
            reports,
        }
    }

    /// Reopens a file store (a restart); a memory store stays as it is.
    fn reopen(&mut self) {
        if let Some(dir) = &self.dir {
            self.store.close().unwrap();
            self.store = ClientStore::open_file(
                dir.path(),
                SERVER,
                KEY,
                &client_options(Durability::Sync, &self.reports),
            )
            .unwrap();
        }
    }

    fn check_quiet(&self) {
        let r = self.reports.lock().unwrap();
        assert!(r.is_empty(), "{}: unexpected reports {:?}", self.label, *r);
        assert_eq!(self.store.stats().failures, 0, "{}", self.label);
    }
}

fn both() -> [Subject; 2] {
    [Subject::memory(), Subject::file()]
}

const ORDERS: [HandlerOrder; 2] = [
    HandlerOrder::RecordAfterHandle,
    HandlerOrder::RecordBeforeHandle,
];

#[test]
fn is_duplicate_means_equal_to_the_stored_id() {
    for mut s in both() {
        let l = s.label;
        let st = &s.store;
        for id in [0, 1, -1, i64::MIN, i64::MAX] {
            assert!(!st.is_duplicate("Temp", id).unwrap(), "{l}: nothing stored");
        }
        assert_eq!(st.get("Temp").unwrap(), None);
        st.put("Temp", 5).unwrap();
        assert!(st.is_duplicate("Temp", 5).unwrap(), "{l}");
        // Not "at or below the stored id": only equality is a duplicate.
        assert!(!st.is_duplicate("Temp", 4).unwrap(), "{l}: an older id");
        assert!(!st.is_duplicate("Temp", 6).unwrap(), "{l}: a newer id");
        assert!(!st.is_duplicate("Other", 5).unwrap(), "{l}: other name");
        assert!(
            !st.is_duplicate("temp", 5).unwrap(),
            "{l}: names are case-sensitive"
        );
        // Ids may go down (a broker restarts its numbering): the newest put
        // is what counts.
        st.put("Temp", -3).unwrap();
        assert!(!st.is_duplicate("Temp", 5).unwrap(), "{l}");
        assert!(st.is_duplicate("Temp", -3).unwrap(), "{l}");
        st.put("Temp", i64::MIN).unwrap();
        st.put("Max", i64::MAX).unwrap();
        assert!(st.is_duplicate("Temp", i64::MIN).unwrap(), "{l}");
        assert!(!st.is_duplicate("Temp", i64::MAX).unwrap(), "{l}");
        assert!(st.is_duplicate("Max", i64::MAX).unwrap(), "{l}");
        assert!(!st.is_duplicate("Max", i64::MIN).unwrap(), "{l}");
        // Putting the same id again changes nothing.
        st.put("Max", i64::MAX).unwrap();
        assert_eq!(st.stats().subscriptions, 2, "{l}");
        s.reopen();
        let st = &s.store;
        assert!(
            st.is_duplicate("Temp", i64::MIN).unwrap(),
            "{l} after reopen"
        );
        assert!(
            st.is_duplicate("Max", i64::MAX).unwrap(),
            "{l} after reopen"
        );
        assert!(!st.is_duplicate("Temp", -3).unwrap(), "{l} after reopen");
        s.check_quiet();
    }
}

#[test]
fn entries_are_sorted_by_name_for_the_resume_list() {
    for mut s in both() {
        let l = s.label;
        assert!(s.store.entries().unwrap().is_empty(), "{l}");
        let names = [
            "zeta", "Alpha", "alpha", "Beta 2", "Beta 10", "b", "A", "Z_", "m/n", "m.n", "a!",
        ];
        for (i, name) in names.iter().enumerate() {
            s.store.put(name, i as i64 * 1000 - 3).unwrap();
        }
        // Overwrite some: each name appears once, with its newest id.
        s.store.put("alpha", i64::MAX).unwrap();
        s.store.put("A", i64::MIN).unwrap();
        let mut expected: Vec<(String, i64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as i64 * 1000 - 3))
            .collect();
        for e in &mut expected {
            match e.0.as_str() {
                "alpha" => e.1 = i64::MAX,
                "A" => e.1 = i64::MIN,
                _ => {}
            }
        }
        expected.sort();
        assert_eq!(s.store.entries().unwrap(), expected, "{l}");
        let sorted_by_bytes = expected
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes());
        assert!(sorted_by_bytes, "{l}: strictly increasing by name");
        s.reopen();
        assert_eq!(s.store.entries().unwrap(), expected, "{l} after reopen");
        s.check_quiet();
    }
}

#[test]
fn a_duplicate_is_acknowledged_without_calling_the_handler() {
    for mut s in both() {
        let l = s.label;
        for order in ORDERS {
            let calls = Cell::new(0);
            let handler = || -> Result<(), String> {
                calls.set(calls.get() + 1);
                Ok(())
            };
            let name = format!("Door {order:?}");
            let got = s.store.handle(&name, 7, order, handler);
            assert_eq!(got.unwrap(), Delivery::Handled, "{l} {order:?}");
            assert_eq!(calls.get(), 1, "{l} {order:?}: a new event is handled");
            assert_eq!(s.store.get(&name).unwrap(), Some(7), "{l}: recorded");
            for _ in 0..3 {
                let got = s.store.handle(&name, 7, order, handler);
                assert_eq!(got.unwrap(), Delivery::Duplicate, "{l} {order:?}");
            }
            assert_eq!(
                calls.get(),
                1,
                "{l} {order:?}: duplicates never reach the handler"
            );
            // Across a restart too (at CPL-2).
            s.reopen();
            let got = s.store.handle(&name, 7, order, handler);
            assert_eq!(got.unwrap(), Delivery::Duplicate, "{l} {order:?} reopened");
            assert_eq!(calls.get(), 1);
            // The next event (any other id) is handled.
            let got = s.store.handle(&name, 6, order, handler);
            assert_eq!(got.unwrap(), Delivery::Handled, "{l} {order:?}");
            assert_eq!(calls.get(), 2);
            assert_eq!(s.store.get(&name).unwrap(), Some(6));
        }
        s.check_quiet();
    }
}

#[derive(Debug, PartialEq)]
struct AppError(&'static str);

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

#[test]
fn record_after_handle_leaves_a_failed_event_unrecorded() {
    for mut s in both() {
        let l = s.label;
        let order = HandlerOrder::RecordAfterHandle;
        assert_eq!(
            order,
            HandlerOrder::default(),
            "the Softnet behaviour is the default"
        );
        s.store.put("Temp", 1).unwrap();
        let calls = Cell::new(0);
        let failing = || -> Result<(), AppError> {
            calls.set(calls.get() + 1);
            Err(AppError("disk full"))
        };
        match s.store.handle("Temp", 2, order, failing) {
            Err(HandleError::Handler(e)) => assert_eq!(e, AppError("disk full"), "{l}"),
            other => panic!("{l}: expected HandleError::Handler, got {other:?}"),
        }
        assert_eq!(calls.get(), 1);
        assert_eq!(
            s.store.get("Temp").unwrap(),
            Some(1),
            "{l}: id 2 not recorded"
        );
        assert!(!s.store.is_duplicate("Temp", 2).unwrap());
        // The error shows the handler's message.
        let shown = s
            .store
            .handle("Temp", 2, order, failing)
            .unwrap_err()
            .to_string();
        assert!(shown.contains("disk full"), "{l}: {shown}");
        assert_eq!(calls.get(), 2, "{l}: the redelivery is handled again");
        s.reopen();
        assert_eq!(s.store.get("Temp").unwrap(), Some(1), "{l}: after reopen");
        // A redelivery after a restart is handled again, and now succeeds.
        let ok = Cell::new(0);
        let got = s
            .store
            .handle("Temp", 2, order, || -> Result<(), AppError> {
                ok.set(ok.get() + 1);
                Ok(())
            });
        assert_eq!(got.unwrap(), Delivery::Handled, "{l}");
        assert_eq!(ok.get(), 1);
        assert_eq!(s.store.get("Temp").unwrap(), Some(2), "{l}");
        // A failed first event of a new subscription leaves nothing behind.
        assert!(matches!(
            s.store.handle("Fresh", 0, order, failing),
            Err(HandleError::Handler(_))
        ));
        assert_eq!(s.store.get("Fresh").unwrap(), None, "{l}");
        assert_eq!(s.store.stats().subscriptions, 1, "{l}");
        s.check_quiet();
    }
}

#[test]
fn record_before_handle_keeps_a_failed_event_recorded() {
    for mut s in both() {
        let l = s.label;
        let order = HandlerOrder::RecordBeforeHandle;
        s.store.put("Temp", 1).unwrap();
        let calls = Cell::new(0);
        let failing = || -> Result<(), AppError> {
            calls.set(calls.get() + 1);
            // The id is already recorded while the handler runs.
            Err(AppError("crashed mid-way"))
        };
        match s.store.handle("Temp", 2, order, failing) {
            Err(HandleError::Handler(e)) => assert_eq!(e.0, "crashed mid-way", "{l}"),
            other => panic!("{l}: expected HandleError::Handler, got {other:?}"),
        }
        assert_eq!(calls.get(), 1);
        assert_eq!(s.store.get("Temp").unwrap(), Some(2), "{l}: id 2 recorded");
        // At most once: the event is not handled again.
        let got = s.store.handle("Temp", 2, order, failing);
        assert_eq!(got.unwrap(), Delivery::Duplicate, "{l}");
        assert_eq!(calls.get(), 1, "{l}");
        s.reopen();
        let got = s.store.handle("Temp", 2, order, failing);
        assert_eq!(got.unwrap(), Delivery::Duplicate, "{l}: after reopen");
        assert_eq!(calls.get(), 1, "{l}");
        s.check_quiet();
    }
}

#[test]
fn record_before_handle_records_before_the_handler_runs() {
    for s in both() {
        let l = s.label;
        let store = &s.store;
        let seen = Cell::new(None);
        let got = store.handle("Valve", 9, HandlerOrder::RecordBeforeHandle, || {
            seen.set(Some(store.get("Valve").unwrap()));
            Ok::<(), AppError>(())
        });
        assert_eq!(got.unwrap(), Delivery::Handled);
        assert_eq!(
            seen.get(),
            Some(Some(9)),
            "{l}: recorded before the handler"
        );
        let got = store.handle("Valve", 10, HandlerOrder::RecordAfterHandle, || {
            seen.set(Some(store.get("Valve").unwrap()));
            Ok::<(), AppError>(())
        });
        assert_eq!(got.unwrap(), Delivery::Handled);
        assert_eq!(seen.get(), Some(Some(9)), "{l}: recorded after the handler");
        assert_eq!(store.get("Valve").unwrap(), Some(10));
        s.check_quiet();
    }
}

/// Handles `Temp` = `id` with a handler that panics; returns whether the
/// panic reached the caller.
fn handle_with_a_panicking_handler(store: &ClientStore, id: i64, order: HandlerOrder) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let _ = store.handle("Temp", id, order, || -> Result<(), AppError> {
            panic!("handler bug")
        });
    }))
    .is_err()
}

#[test]
fn a_panicking_handler_leaves_the_id_as_its_order_says() {
    // The handler's panic message shows in the test's captured output (the
    // panic hook is process-wide, so it is left alone).
    for mut s in both() {
        let l = s.label;
        s.store.put("Temp", 1).unwrap();
        let panicked =
            handle_with_a_panicking_handler(&s.store, 2, HandlerOrder::RecordAfterHandle);
        assert!(panicked, "{l}: the panic reaches the caller");
        assert_eq!(
            s.store.get("Temp").unwrap(),
            Some(1),
            "{l}: a panic under RecordAfterHandle leaves the id unrecorded"
        );
        // The store is still usable (its lock is not poisoned or held).
        let got = s
            .store
            .handle("Temp", 2, HandlerOrder::RecordAfterHandle, || {
                Ok::<(), AppError>(())
            });
        assert_eq!(got.unwrap(), Delivery::Handled, "{l}: handled again");
        assert_eq!(s.store.get("Temp").unwrap(), Some(2));

        let panicked =
            handle_with_a_panicking_handler(&s.store, 3, HandlerOrder::RecordBeforeHandle);
        assert!(panicked, "{l}");
        assert_eq!(
            s.store.get("Temp").unwrap(),
            Some(3),
            "{l}: under RecordBeforeHandle the id is recorded before the panic"
        );
        s.reopen();
        assert_eq!(s.store.get("Temp").unwrap(), Some(3), "{l}: after reopen");
        s.store.put("Temp", 4).unwrap();
        assert_eq!(s.store.get("Temp").unwrap(), Some(4));
        s.check_quiet();
    }
}

#[test]
fn reset_forgets_everything() {
    for mut s in both() {
        let l = s.label;
        for i in 0..50 {
            s.store.put(&format!("Name{i}"), i).unwrap();
        }
        assert_eq!(s.store.stats().subscriptions, 50);
        s.store.reset().unwrap();
        assert!(s.store.entries().unwrap().is_empty(), "{l}");
        assert_eq!(s.store.stats().subscriptions, 0, "{l}");
        for i in 0..50 {
            assert_eq!(s.store.get(&format!("Name{i}")).unwrap(), None, "{l}");
            assert!(
                !s.store.is_duplicate(&format!("Name{i}"), i).unwrap(),
                "{l}"
            );
        }
        // An event handled before the reset is handled again.
        let calls = Cell::new(0);
        let got = s.store.handle("Name3", 3, HandlerOrder::default(), || {
            calls.set(calls.get() + 1);
            Ok::<(), AppError>(())
        });
        assert_eq!(got.unwrap(), Delivery::Handled, "{l}");
        assert_eq!(calls.get(), 1);
        s.reopen();
        assert_eq!(
            s.store.entries().unwrap(),
            vec![("Name3".to_string(), 3)],
            "{l}: the reset survives a reopen, and what came after it too"
        );
        // Reset of an empty store, twice, then reopen.
        s.store.reset().unwrap();
        s.store.reset().unwrap();
        s.reopen();
        assert!(s.store.entries().unwrap().is_empty(), "{l}");
        s.store.put("After", -1).unwrap();
        s.reopen();
        assert_eq!(s.store.entries().unwrap(), vec![("After".to_string(), -1)]);
        s.check_quiet();
    }
}

/// Names that break docs/BEHAVIOUR.md section 2's rules, and a word the message must
/// contain.
fn invalid_names() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        ("1abc".into(), "start with"),
        ("_abc".into(), "start with"),
        ("abc ".into(), "ends with a space"),
        ("a  b".into(), "double space"),
        ("a,b".into(), "','"),
        ("a\tb".into(), "'\\t'"),
        ("caf\u{e9}".into(), "'\u{e9}'"),
        ("x".repeat(MAX_NAME_LEN + 1), "characters long"),
    ]
}

#[test]
fn invalid_names_are_refused() {
    for mut s in both() {
        let l = s.label;
        s.store.put("Good", 1).unwrap();
        // The longest valid name is fine.
        s.store.put(&"x".repeat(MAX_NAME_LEN), 2).unwrap();
        for (name, why) in invalid_names() {
            let err = s.store.put(&name, 5).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidArgument,
                "{l} {name:?}: {err}"
            );
            assert!(matches!(err, Error::InvalidArgument(_)));
            let shown = err.to_string();
            assert!(shown.contains(why), "{l} {name:?}: message {shown:?}");
            // Nothing was stored under it.
            assert_ne!(s.store.get(&name).ok().flatten(), Some(5), "{l} {name:?}");
            assert!(!s.store.is_duplicate(&name, 5).unwrap_or(false), "{l}");
        }
        assert_eq!(s.store.stats().subscriptions, 2, "{l}");
        s.reopen();
        assert_eq!(s.store.stats().subscriptions, 2, "{l} after reopen");
        s.check_quiet();
    }
}

#[test]
fn handle_refuses_an_invalid_name_without_calling_the_handler() {
    for s in both() {
        let l = s.label;
        for order in ORDERS {
            for (name, _) in invalid_names() {
                let calls = Cell::new(0);
                let got = s.store.handle(&name, 5, order, || {
                    calls.set(calls.get() + 1);
                    Ok::<(), AppError>(())
                });
                match got {
                    Err(HandleError::Store(e)) => {
                        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{l} {name:?}")
                    }
                    other => panic!("{l} {order:?} {name:?}: expected Store error, got {other:?}"),
                }
                // The store cannot record it, so the application must not
                // have handled it: a redelivery would hand it over again.
                assert_eq!(
                    calls.get(),
                    0,
                    "{l} {order:?} {name:?}: the handler ran for an event the store refused"
                );
            }
        }
    }
}

#[test]
fn a_closed_store_refuses_handle() {
    for s in both() {
        let l = s.label;
        s.store.put("Temp", 1).unwrap();
        s.store.close().unwrap();
        for order in ORDERS {
            let calls = Cell::new(0);
            let got = s.store.handle("Temp", 2, order, || {
                calls.set(calls.get() + 1);
                Ok::<(), AppError>(())
            });
            match got {
                Err(HandleError::Store(e)) => assert_eq!(e.kind(), ErrorKind::Closed, "{l}"),
                other => panic!("{l}: expected Store(Closed), got {other:?}"),
            }
            assert_eq!(calls.get(), 0, "{l}: a closed store calls no handler");
        }
    }
}
