//! System tests: real processes killed with SIGKILL, and a real power cut
//! (ext4 in a loop device). Not libtest: the binary is also its own child
//! process (an environment variable says which child to be), so `main`
//! dispatches first and then runs each test in turn, printing a summary.
//!
//! Arguments are name filters, as for libtest: `cargo test --test system
//! crash` runs the tests whose name contains "crash".

mod client_crash_sigkill;
mod crash_sigkill;
mod crash_sigkill_threads;
mod full_disk;
mod mounts;
mod real_power_cut;

use std::process::ExitCode;
use std::time::Instant;

type Test = (&'static str, fn() -> Result<(), String>);

const TESTS: [Test; 5] = [
    ("crash_sigkill", crash_sigkill::test),
    ("crash_sigkill_threads", crash_sigkill_threads::test),
    ("client_crash_sigkill", client_crash_sigkill::test),
    ("real_power_cut", real_power_cut::test),
    ("full_disk", full_disk::test),
];

/// What a test that cannot run here (not root, no loop devices) counts as:
/// a failure saying what is missing, or, when `SNP_SKIP_ROOT_TESTS=1` asks
/// for it, a skip (never a pass).
fn unrunnable(why: &str) -> Result<(), String> {
    if std::env::var("SNP_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        return Err(format!("SKIPPED: {why}"));
    }
    Err(format!(
        "cannot run here: {why}. Run `make test` as root on Linux with loop devices and \
         e2fsprogs (apt-get install e2fsprogs), or set SNP_SKIP_ROOT_TESTS=1 to skip the tests \
         that need them knowingly"
    ))
}

fn main() -> ExitCode {
    if crash_sigkill::child_from_env()
        || crash_sigkill_threads::child_from_env()
        || client_crash_sigkill::child_from_env()
        || real_power_cut::child_from_env()
    {
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, test) in TESTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        let outcome = match test() {
            Err(e) if e.starts_with("SKIPPED: ") => unrunnable(&e["SKIPPED: ".len()..]),
            other => other,
        };
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({secs:.1} s)");
            }
            Err(e) if e.starts_with("SKIPPED") => {
                skipped += 1;
                println!("test {name} ... skipped: {e}");
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED: {e}");
            }
        }
    }
    println!("system tests: {passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
