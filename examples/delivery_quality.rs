//! Prints the delivery-quality table of docs/BEHAVIOUR.md section 6 as
//! measured by the simulator of the `testkit` crate (a broker model and a
//! seeded simulation of one service and four clients: stateful and
//! stateless, CPL-1 and CPL-2), next to the table the library promises.
//!
//! ```text
//! cargo run --release --example delivery_quality [-- SEEDS]
//! ```
//!
//! Each column injects one kind of fault, many times per run: network
//! outages, application restarts, reboots (power cuts: unsynced writes are
//! lost, on a simulated device under each file). Each cell sums SEEDS runs
//! (default 100) of about 2000 events. The last row adds, to each column's
//! faults, a level-2 failure of the service while it is online with events
//! in flight: the device under its journal starts failing, and the store
//! falls back to level 1 with a new storage uid (until the next restart).
//! SPL-2 and CPL-2 use sync durability. Replacing instances superseded by
//! design, events replaced, evicted or expired in a broker queue before a
//! client got them, and raises a power cut interrupted (they never
//! returned) are excluded from "lost" and counted apart, below the table.

use std::time::Instant;

use testkit::sim::{run_seeds, ClientTally, Fault, ServiceTally, SimConfig, Totals};

const COLUMNS: [(Fault, &str); 3] = [
    (Fault::Outage, "network outage"),
    (Fault::Restart, "app restart"),
    (Fault::PowerCut, "reboot"),
];

const PROMISE: [[&str; 3]; 8] = [
    ["exactly once", "pending events lost", "lost"],
    ["exactly once", "exactly once", "exactly once"],
    [
        "oldest dropped, reported",
        "oldest dropped, reported",
        "oldest dropped, reported",
    ],
    [
        "exactly once",
        "<= 1 duplicate per subscription",
        "<= 1 duplicate per subscription",
    ],
    ["exactly once", "exactly once", "exactly once"],
    [
        "exactly once",
        "re-delivers the current queues",
        "re-delivers the current queues",
    ],
    ["exactly once", "exactly once", "exactly once"],
    [
        "exactly once",
        "pending events lost (at level 1)",
        "pending events lost (at level 1)",
    ],
];

const ROWS: [(&str, &str); 8] = [
    ("service to broker", "SPL-1"),
    ("service to broker", "SPL-2"),
    ("any, store full", "any"),
    ("broker to stateful client", "CPL-1"),
    ("broker to stateful client", "CPL-2"),
    ("broker to stateless client", "CPL-1"),
    ("broker to stateless client", "CPL-2"),
    ("service to broker", "SPL-2, level-2 failure while online"),
];

/// The runs of one column.
struct Column {
    spl1: Totals,
    spl2: Totals,
    full: Vec<Totals>,
    /// SPL-2, with a level-2 failure while online.
    fallback: Totals,
}

impl Column {
    /// The runs of rows 1 to 3, whose clients make the client rows.
    fn table(&self) -> Vec<&Totals> {
        let mut all = vec![&self.spl1, &self.spl2];
        all.extend(self.full.iter());
        all
    }

    fn all(&self) -> Vec<&Totals> {
        let mut all = self.table();
        all.push(&self.fallback);
        all
    }

    fn client(&self, stateful: bool, file: bool) -> ClientTally {
        let mut sum = ClientTally::default();
        for t in self.table() {
            sum.add(&t.client(stateful, file));
        }
        sum
    }
}

fn run_column(fault: Fault, seeds: u64, base: u64) -> Column {
    let config = |offset: u64, service_file: bool| SimConfig {
        service_file,
        faults: vec![fault],
        ..SimConfig::new(base + offset)
    };
    let fallback = SimConfig {
        faults: vec![fault, Fault::Level2Failure],
        ..config(5, true)
    };
    Column {
        spl1: run_seeds(&config(1, false), seeds),
        spl2: run_seeds(&config(2, true), seeds),
        full: vec![
            run_seeds(
                &SimConfig {
                    memory_capacity: 4 * 1024,
                    faults_per_endpoint: 12,
                    ..config(3, false)
                },
                seeds,
            ),
            run_seeds(
                &SimConfig {
                    capacity: 8 * 1024,
                    faults_per_endpoint: 12,
                    ..config(4, true)
                },
                seeds,
            ),
        ],
        fallback: run_seeds(&fallback, seeds),
    }
}

/// A cell and whether it keeps the promise.
struct Cell {
    text: String,
    ok: bool,
}

fn counts(duplicates: u64, lost: u64) -> String {
    match (duplicates, lost) {
        (0, 0) => "exactly once".to_string(),
        (d, 0) => format!("{d} duplicates"),
        (0, l) => format!("{l} lost"),
        (d, l) => format!("{d} duplicates, {l} lost"),
    }
}

fn service_cell(s: &ServiceTally, lossy: bool) -> Cell {
    let mut text = counts(s.duplicates, s.lost);
    if lossy && s.lost > 0 && s.lost == s.lost_pending_at_restart {
        text += " (all pending)";
    }
    let ok = if lossy {
        // SPL-1 may lose what was pending at a restart, nothing else.
        s.duplicates == 0 && s.lost == s.lost_pending_at_restart
    } else {
        s.duplicates == 0 && s.lost == 0
    };
    Cell { text, ok }
}

fn full_cell(runs: &[Totals]) -> Cell {
    let mut s = ServiceTally::default();
    for t in runs {
        s.add(&t.service);
    }
    let dropped = s.dropped + s.dropped_yet_delivered + s.unknown_dropped;
    // SPL-1 loses what is pending at a restart (row 1): not a drop.
    let unreported = s.lost - s.lost_pending_at_restart;
    let mut text = format!("{dropped} dropped, {} reported", s.reported_drops);
    if unreported > 0 {
        text += &format!(", {unreported} lost unreported");
    }
    if s.duplicates > 0 {
        text += &format!(", {} duplicates", s.duplicates);
    }
    Cell {
        ok: dropped == s.reported_drops && unreported == 0 && s.duplicates == 0,
        text,
    }
}

/// Exactly once (`lossy`: but for the events pending at level 1 when the
/// application went down), and lost in a fallback only what its report
/// said.
fn fallback_cell(s: &ServiceTally, lossy: bool) -> Cell {
    let mut cell = service_cell(s, lossy);
    let reported = s.fallback_lost + s.fallback_over_reported == s.fallback_reported_lost;
    cell.ok &= reported;
    if s.fallback_lost > 0 || !reported {
        cell.text += &format!(
            ", {} lost in a fallback ({} reported)",
            s.fallback_lost, s.fallback_reported_lost
        );
    }
    cell.text += &format!(
        "; {} fallbacks, {} events in flight",
        s.fallbacks, s.fallback_in_flight
    );
    cell
}

fn client_cell(c: &ClientTally, lenient: bool) -> Cell {
    let text = counts(c.duplicates, c.lost);
    let ok = if lenient {
        c.lost == 0 && c.unexplained_duplicates == 0
    } else {
        c.lost == 0 && c.duplicates == 0
    };
    Cell { text, ok }
}

fn print_table(title: &str, cells: &[[String; 3]]) {
    let headers = ["path", "level", COLUMNS[0].1, COLUMNS[1].1, COLUMNS[2].1];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for (row, (path, level)) in cells.iter().zip(ROWS) {
        widths[0] = widths[0].max(path.len());
        widths[1] = widths[1].max(level.len());
        for (i, c) in row.iter().enumerate() {
            widths[i + 2] = widths[i + 2].max(c.len());
        }
    }
    let line = |items: &[&str]| {
        let padded: Vec<String> = items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    println!("{title}");
    line(&headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for (row, (path, level)) in cells.iter().zip(ROWS) {
        line(&[path, level, &row[0], &row[1], &row[2]]);
    }
    println!();
}

/// The measured cells, row by row.
fn measure(columns: &[Column]) -> Vec<[Cell; 3]> {
    let per_column = |f: &dyn Fn(usize, &Column) -> Cell| -> [Cell; 3] {
        [f(0, &columns[0]), f(1, &columns[1]), f(2, &columns[2])]
    };
    vec![
        per_column(&|i, c| service_cell(&c.spl1.service, i > 0)),
        per_column(&|_, c| service_cell(&c.spl2.service, false)),
        per_column(&|_, c| full_cell(&c.full)),
        per_column(&|i, c| {
            let t = c.client(true, false);
            let mut cell = client_cell(&t, i > 0);
            if i > 0 {
                cell.text += &format!(" in {} restarts", t.restarts);
            }
            cell
        }),
        per_column(&|_, c| client_cell(&c.client(true, true), false)),
        per_column(&|i, c| {
            let t = c.client(false, false);
            let mut cell = client_cell(&t, i > 0);
            cell.ok &= t.duplicates <= t.redeliverable;
            if i > 0 {
                cell.text += &format!(" of {} re-delivered", t.redeliverable);
            }
            cell
        }),
        per_column(&|_, c| client_cell(&c.client(false, true), false)),
        per_column(&|i, c| fallback_cell(&c.fallback.service, i > 0)),
    ]
}

/// Every run of every column, summed.
#[derive(Default)]
struct Sums {
    svc: ServiceTally,
    cl: ClientTally,
    runs: u64,
    violations: Vec<String>,
    faults: [u64; 3],
    level2_failures: u64,
    mid_op: u64,
}

fn sum(columns: &[Column]) -> Sums {
    let mut sums = Sums::default();
    for (i, col) in columns.iter().enumerate() {
        for t in col.all() {
            sums.runs += t.runs;
            sums.svc.add(&t.service);
            for c in t.clients.values() {
                sums.cl.add(c);
            }
            for (f, n) in &t.faults {
                match f {
                    Fault::Level2Failure => sums.level2_failures += n,
                    _ => sums.faults[i] += n,
                }
            }
            sums.mid_op += t.mid_op_cuts;
            sums.violations.extend(t.violations.iter().cloned());
        }
    }
    sums
}

/// What the cells leave out, and the fine print.
fn fine_print(columns: &[Column]) {
    let Sums {
        svc,
        cl,
        runs,
        violations,
        faults,
        level2_failures,
        mid_op,
    } = sum(columns);
    println!(
        "{runs} runs, {} events raised; faults injected: {} outages, {} restarts, {} reboots \
         ({mid_op} service power cuts inside a store call), {level2_failures} level-2 failures",
        svc.raised + svc.in_doubt + svc.unknown_raised,
        faults[0],
        faults[1],
        faults[2]
    );
    println!(
        "Excluded from \"lost\" (docs/BEHAVIOUR.md section 6 assumes the event is still in \
         the broker's queue):"
    );
    println!(
        "  {} Replacing instances superseded in the service store by a newer one (by design)",
        svc.superseded
    );
    println!(
        "  {} client deliveries skipped because a newer Replacing instance replaced the event \
         in the broker queue first; {} evicted or expired from a broker queue",
        cl.replaced, cl.evicted
    );
    println!(
        "  {} raises interrupted by a power cut (the call never returned; the event is not \
         in the store)",
        svc.in_doubt
    );
    println!(
        "  {} events of a name the site does not define: {} rejected and reported, {} lost \
         at an SPL-1 restart or in an interrupted call, {} dropped for capacity",
        svc.unknown_raised, svc.unknown_rejected, svc.unknown_lost_at_restart, svc.unknown_dropped
    );
    println!(
        "Store full: {} of the reported drops had reached the broker already (in flight or \
         ack lost): over-reported, never silent. {} resends were acked again by the broker's \
         uid rule instead of being enqueued twice.",
        svc.dropped_yet_delivered, svc.broker_duplicate_acks
    );
    print_fallbacks(&svc);
    if violations.is_empty() {
        println!("No violation of the simulation's invariants.");
    } else {
        println!("{} violations, the first ones:", violations.len());
        for v in violations.iter().take(5) {
            println!("  {v}");
        }
    }
}

fn print_fallbacks(svc: &ServiceTally) {
    println!(
        "Level-2 failures: {} fallbacks to level 1, with {} events in flight at them and {} \
         pending events moved to memory; {} events lost in them, {} reported lost (of which {} \
         had just been removed by the call that failed: over-reported, never silent).",
        svc.fallbacks,
        svc.fallback_in_flight,
        svc.fallback_moved,
        svc.fallback_lost,
        svc.fallback_reported_lost,
        svc.fallback_over_reported
    );
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SEEDS must be a number"))
        .unwrap_or(100);
    let started = Instant::now();
    let columns: Vec<Column> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (fault, _))| run_column(*fault, seeds, 1000 * i as u64))
        .collect();
    let measured = measure(&columns);
    let promised: Vec<[String; 3]> = PROMISE.iter().map(|r| r.map(|s| s.to_string())).collect();
    let shown: Vec<[String; 3]> = measured
        .iter()
        .map(|r| {
            [0, 1, 2].map(|i| {
                let mark = if r[i].ok { "" } else { "  (!)" };
                format!("{}{mark}", r[i].text)
            })
        })
        .collect();
    print_table("docs/BEHAVIOUR.md section 6 promises:", &promised);
    print_table(
        &format!(
            "Measured ({seeds} runs per configuration and column; totals; (!) = not what the \
             library promises):"
        ),
        &shown,
    );
    fine_print(&columns);
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}
