//! Invariant: under any sequence of put, get, is_duplicate, handle, reset,
//! flush and reopen, a client store behaves exactly like a plain
//! `HashMap<name, id>` (docs/BEHAVIOUR.md section 4): at CPL-2 the map survives every
//! reopen (the file growing as needed), at CPL-1 a reopen starts empty.

use std::cell::Cell;
use std::collections::HashMap;

use proptest::prelude::*;
use softnet_persistence::{
    ClientOptions, ClientStore, Delivery, Durability, HandleError, HandlerOrder, Level,
};
use tempfile::TempDir;
use testkit::{client_options, proptest_config, scratch_dir, Reports};

const SERVER: &str = "2001:db8::1";
const KEY: &str = "model";
/// Names 0..POOL; every third is long, so a burst of new subscriptions
/// outgrows the initial file.
const POOL: usize = 300;

fn name(i: usize) -> String {
    if i.is_multiple_of(3) {
        format!("Long{i:03}{}", "-".repeat(200 + i % 50))
    } else {
        format!("N{i}")
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize, i64),
    /// Puts `count` consecutive names from `first` (wrapping), ids from `base`.
    Burst {
        first: usize,
        count: usize,
        base: i64,
    },
    /// `count` puts to one name: the ring fills with its old records.
    Hammer(usize, usize),
    Get(usize),
    /// Asks about the stored id (if any) or another one.
    IsDuplicate(usize, Option<i64>),
    Handle {
        name: usize,
        /// `None`: the stored id (a duplicate) if there is one.
        id: Option<i64>,
        before: bool,
        fail: bool,
    },
    Entries,
    Reset,
    Flush,
    Reopen {
        close: bool,
    },
}

fn id_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1i64),
        -3i64..3,
        any::<i64>(),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Most traffic goes to a few names, as on a real client.
    let hot = prop_oneof![3 => 0usize..6, 1 => 0usize..POOL];
    prop_oneof![
        30 => (hot.clone(), id_strategy()).prop_map(|(n, id)| Op::Put(n, id)),
        3 => (0usize..POOL, 1usize..150, any::<i64>())
            .prop_map(|(first, count, base)| Op::Burst { first, count, base }),
        2 => (0usize..POOL, 100usize..400).prop_map(|(n, count)| Op::Hammer(n, count)),
        8 => hot.clone().prop_map(Op::Get),
        8 => (hot.clone(), proptest::option::of(id_strategy()))
            .prop_map(|(n, id)| Op::IsDuplicate(n, id)),
        12 => (hot, proptest::option::of(id_strategy()), any::<bool>(), any::<bool>())
            .prop_map(|(name, id, before, fail)| Op::Handle { name, id, before, fail }),
        3 => Just(Op::Entries),
        1 => Just(Op::Reset),
        2 => Just(Op::Flush),
        4 => any::<bool>().prop_map(|close| Op::Reopen { close }),
    ]
}

struct Harness {
    level: Level,
    dir: Option<TempDir>,
    options: ClientOptions,
    reports: Reports,
    store: Option<ClientStore>,
    model: HashMap<String, i64>,
}

macro_rules! ensure_eq {
    ($got:expr, $want:expr, $what:expr) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            return Err(format!("{}: store {:?}, model {:?}", $what, got, want));
        }
    }};
}

impl Harness {
    fn open(level: Level) -> Harness {
        let reports = Reports::default();
        let options = client_options(Durability::None, &reports);
        let dir = (level == Level::Persistent).then(scratch_dir);
        let mut h = Harness {
            level,
            dir,
            options,
            reports,
            store: None,
            model: HashMap::new(),
        };
        h.store = Some(h.new_store());
        h
    }

    fn new_store(&self) -> ClientStore {
        match &self.dir {
            Some(dir) => ClientStore::open_file(dir.path(), SERVER, KEY, &self.options)
                .expect("open the client file"),
            None => ClientStore::open_memory(&self.options),
        }
    }

    fn store(&self) -> &ClientStore {
        self.store.as_ref().expect("open")
    }

    fn put(&mut self, n: usize, id: i64) -> Result<(), String> {
        self.store()
            .put(&name(n), id)
            .map_err(|e| format!("put: {e}"))?;
        self.model.insert(name(n), id);
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Put(n, id) => self.put(n, id)?,
            Op::Burst { first, count, base } => {
                for k in 0..count {
                    self.put((first + k) % POOL, base.wrapping_add(k as i64))?;
                }
            }
            Op::Hammer(n, count) => {
                for k in 0..count {
                    self.put(n, k as i64 - 100)?;
                }
            }
            Op::Get(n) => {
                let got = self.store().get(&name(n)).map_err(|e| e.to_string())?;
                ensure_eq!(got, self.model.get(&name(n)).copied(), "get");
            }
            Op::IsDuplicate(n, id) => {
                let stored = self.model.get(&name(n)).copied();
                let id = id.or(stored).unwrap_or(42);
                let got = self
                    .store()
                    .is_duplicate(&name(n), id)
                    .map_err(|e| e.to_string())?;
                ensure_eq!(got, stored == Some(id), format!("is_duplicate {id}"));
            }
            Op::Handle {
                name: n,
                id,
                before,
                fail,
            } => {
                let stored = self.model.get(&name(n)).copied();
                let id = id.or(stored).unwrap_or(7);
                let order = if before {
                    HandlerOrder::RecordBeforeHandle
                } else {
                    HandlerOrder::RecordAfterHandle
                };
                let calls = Cell::new(0);
                let got = self.store().handle(&name(n), id, order, || {
                    calls.set(calls.get() + 1);
                    if fail {
                        Err("app")
                    } else {
                        Ok(())
                    }
                });
                let got = match got {
                    Ok(d) => format!("{d:?}"),
                    Err(HandleError::Handler(e)) => format!("handler error {e}"),
                    Err(HandleError::Store(e)) => return Err(format!("handle: store error {e}")),
                };
                let want = if stored == Some(id) {
                    ensure_eq!(calls.get(), 0, "handler calls for a duplicate");
                    format!("{:?}", Delivery::Duplicate)
                } else {
                    ensure_eq!(calls.get(), 1, "handler calls");
                    if before || !fail {
                        self.model.insert(name(n), id);
                    }
                    if fail {
                        "handler error app".to_string()
                    } else {
                        format!("{:?}", Delivery::Handled)
                    }
                };
                ensure_eq!(got, want, format!("handle {order:?} {id}"));
            }
            Op::Entries => self.check_entries()?,
            Op::Reset => {
                self.store().reset().map_err(|e| format!("reset: {e}"))?;
                self.model.clear();
            }
            Op::Flush => self.store().flush().map_err(|e| format!("flush: {e}"))?,
            Op::Reopen { close } => {
                let old = self.store.take().expect("open");
                if close {
                    old.close().map_err(|e| format!("close: {e}"))?;
                }
                drop(old);
                self.store = Some(self.new_store());
                if self.level == Level::Memory {
                    // CPL-1 survives reconnects, not restarts.
                    self.model.clear();
                }
                self.check_entries()?;
            }
        }
        self.check()
    }

    fn check_entries(&self) -> Result<(), String> {
        let got = self.store().entries().map_err(|e| e.to_string())?;
        let mut want: Vec<(String, i64)> =
            self.model.iter().map(|(k, v)| (k.clone(), *v)).collect();
        want.sort();
        if got != want {
            let short = |v: &[(String, i64)]| -> Vec<(String, i64)> {
                v.iter()
                    .map(|(k, id)| (k.chars().take(12).collect(), *id))
                    .collect()
            };
            return Err(format!(
                "entries: store {:?}, model {:?}",
                short(&got),
                short(&want)
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let stats = self.store().stats();
        ensure_eq!(stats.level, self.level, "level");
        ensure_eq!(
            stats.subscriptions,
            self.model.len() as u64,
            "subscriptions"
        );
        ensure_eq!(stats.failures, 0, "failures");
        let reports = self.reports.lock().unwrap();
        if !reports.is_empty() {
            return Err(format!("unexpected reports: {:?}", *reports));
        }
        Ok(())
    }
}

fn run(level: Level, ops: &[Op]) -> Result<(), String> {
    let mut h = Harness::open(level);
    for (i, op) in ops.iter().enumerate() {
        h.apply(op).map_err(|e| format!("op #{i} {op:?}: {e}"))?;
    }
    // A last restart: at CPL-2 everything is still there.
    h.apply(&Op::Reopen { close: false })
        .map_err(|e| format!("final reopen: {e}"))
}

proptest! {
    #![proptest_config(proptest_config(4000))]

    #[test]
    fn cpl2_file_matches_the_model(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        if let Err(e) = run(Level::Persistent, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn cpl1_memory_matches_the_model(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        if let Err(e) = run(Level::Memory, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}
