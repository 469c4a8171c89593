//! Invariant: a real power cut keeps every event whose raise returned with
//! Durability::Sync, also when several threads raise into one store and
//! share their syncs (group commit), and really does lose unsynced writes
//! (so the check is not vacuous).
//!
//! The cut is made with the kernel, not simulated: an ext4 file system in a
//! loop device, with periodic writeback switched off and high dirty limits
//! (all restored afterwards). A child raises events in a journal there and
//! reports each one; it is SIGKILLed, and the loop device's backing image is
//! copied at once: what the msyncs wrote is in the copy, dirty pages still
//! in the page cache are not. The copy is mounted (ext4 replays its journal
//! as after a reboot) and the store opened from it. With Durability::None
//! the same check must find losses, which proves the cut was real. With
//! several threads, a sync the kill interrupted may have written a later
//! thread's record without an earlier one: that is an interrupted write,
//! the only kind of report allowed (besides capacity drops).
//!
//! Needs root, loop devices and mkfs.ext4; without them it fails and says
//! what is missing (or, with SNP_SKIP_ROOT_TESTS=1, is reported as
//! skipped). The test binary is its own child (SNP_REAL_CUT_CHILD set).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use softnet_persistence::{
    Durability, EventKind, Failure, FailureKind, ServiceOptions, ServiceStore, Uuid,
};
use testkit::{collect_into, Reports};

use crate::mounts::{run, Mount};

const SERVICE: Uuid = Uuid::from_u128(0x5eed_c0de);

fn options(durability: Durability) -> ServiceOptions {
    ServiceOptions {
        capacity: 4 << 20,
        durability,
        ..ServiceOptions::default()
    }
}

fn durability_named(name: &str) -> Durability {
    match name {
        "sync" => Durability::Sync,
        _ => Durability::None,
    }
}

/// Raises events forever from `threads` threads, each printing `<thread>
/// <index>` after its raise returned; the arguments hold both.
fn child(dir: &str, durability: &str, threads: u64) {
    let store = ServiceStore::open_file(dir, SERVICE, &options(durability_named(durability)))
        .expect("child open");
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = &store;
            s.spawn(move || {
                for i in 0u64.. {
                    let mut args = t.to_le_bytes().to_vec();
                    args.extend_from_slice(&i.to_le_bytes());
                    store
                        .raise(EventKind::Queueing, "Reading", &args)
                        .expect("raise");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{t} {i}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// The complete `<thread> <index>` lines of `text`.
fn reported_lines(text: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| {
            let (t, i) = l.trim().split_once(' ')?;
            Some((t.parse().ok()?, i.parse().ok()?))
        })
}

/// Kernel writeback settings, saved and restored.
struct Writeback {
    saved: Vec<(PathBuf, String)>,
}

impl Writeback {
    fn hold() -> Result<Writeback, String> {
        let settings = [
            ("dirty_writeback_centisecs", "0"),
            ("dirty_expire_centisecs", "360000"),
            ("dirty_background_ratio", "90"),
            ("dirty_ratio", "90"),
        ];
        let mut saved = Vec::new();
        for (name, value) in settings {
            let path = Path::new("/proc/sys/vm").join(name);
            let old = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
            saved.push((path.clone(), old.trim().to_string()));
            std::fs::write(&path, value).map_err(|e| format!("setting {name}: {e}"))?;
        }
        Ok(Writeback { saved })
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        for (path, value) in self.saved.iter().rev() {
            let _ = std::fs::write(path, value);
        }
    }
}

/// What one cut left: per thread, how many raises the child reported
/// (they returned), the indices found after the cut in store order, and
/// the reports of the reopen.
struct Cut {
    reported: Vec<u64>,
    found: Vec<Vec<u64>>,
    reports: Vec<Failure>,
}

/// Runs the child on a fresh ext4 image until it reported `events` raises,
/// kills it and copies the image: the power cut.
fn run_child(
    work: &Path,
    name: &str,
    durability: &str,
    threads: u64,
    events: usize,
) -> Result<(PathBuf, Vec<u64>), String> {
    let image = work.join(format!("{name}.img"));
    let copy = work.join(format!("{name}.copy.img"));
    let _ = std::fs::remove_file(&image);
    run("truncate", &["-s", "64M", &image.to_string_lossy()])?;
    run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
    let mount = Mount::loop_ext4(&image, &work.join(format!("{name}.mnt")))?;
    let _hold = Writeback::hold()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env("SNP_REAL_CUT_CHILD", &mount.dir)
        .env("SNP_REAL_CUT_DURABILITY", durability)
        .env("SNP_REAL_CUT_THREADS", threads.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    let mut seen = String::new();
    for _ in 0..events {
        if reader.read_line(&mut seen).map_err(|e| e.to_string())? == 0 {
            break;
        }
    }
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    // The child prints after each raise returns and may have run ahead of
    // this reader (a loaded machine): every complete line it wrote before
    // the kill counts.
    reader
        .read_to_string(&mut seen)
        .map_err(|e| e.to_string())?;
    // The power cut: what reached the device is in the backing file now.
    std::fs::copy(&image, &copy).map_err(|e| format!("copying the image: {e}"))?;
    drop(mount);
    let mut reported = vec![0u64; threads as usize];
    for (t, i) in reported_lines(&seen) {
        let slot = reported
            .get_mut(t as usize)
            .ok_or("a line from no thread")?;
        *slot = (*slot).max(i + 1);
    }
    if reported.iter().all(|&r| r == 0) {
        return Err("the child reported nothing".into());
    }
    Ok((copy, reported))
}

/// One cut: what the child reported and what the store holds after.
fn one_cut(
    work: &Path,
    name: &str,
    durability: &str,
    threads: u64,
    events: usize,
) -> Result<Cut, String> {
    let (copy, reported) = run_child(work, name, durability, threads, events)?;
    let mount = Mount::loop_ext4(&copy, &work.join(format!("{name}.copy.mnt")))?;
    let reports = Reports::default();
    let options = ServiceOptions {
        on_failure: Some(collect_into(&reports)),
        ..options(Durability::Sync)
    };
    let store =
        ServiceStore::open_file(&mount.dir, SERVICE, &options).map_err(|e| e.to_string())?;
    let mut found = vec![Vec::new(); threads as usize];
    for e in store.pending().map_err(|e| e.to_string())? {
        let word = |at: usize| u64::from_le_bytes(e.args[at..at + 8].try_into().expect("16 bytes"));
        let list = found
            .get_mut(word(0) as usize)
            .ok_or("an event of no thread")?;
        list.push(word(8));
    }
    drop(store);
    let reports = reports.lock().unwrap().clone();
    Ok(Cut {
        reported,
        found,
        reports,
    })
}

/// Every raise that returned is found, in its thread's order, with at most
/// the raise in progress of each thread after it; the only reports are
/// interrupted writes (nothing lost) or capacity drops.
fn check_sync(cut: &Cut, what: &str) -> Result<(), String> {
    for (t, (&reported, found)) in cut.reported.iter().zip(&cut.found).enumerate() {
        let expected: Vec<u64> = (0..reported).collect();
        let extra_ok = found.len() == expected.len() + 1 && found[..expected.len()] == expected[..];
        if *found != expected && !extra_ok {
            return Err(format!(
                "{what}: thread {t} reported {reported} raises, the cut image holds {} of its \
                 events (first missing: {:?}; in order: {})",
                found.len(),
                expected.iter().find(|i| !found.contains(i)),
                found.windows(2).all(|w| w[0] < w[1])
            ));
        }
    }
    for r in &cut.reports {
        let fine = (r.kind == FailureKind::InterruptedWrite && r.events_lost == 0)
            || r.kind == FailureKind::CapacityDrop;
        if !fine {
            return Err(format!("{what}: unexpected report after the cut: {r}"));
        }
    }
    Ok(())
}

fn parent() -> Result<(), String> {
    let uid = run("id", &["-u"])?;
    if uid.trim() != "0" {
        return Err("SKIPPED: needs root (mount, loop devices, vm sysctls)".into());
    }
    for tool in ["mkfs.ext4", "mount", "umount", "truncate"] {
        if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Err(format!("SKIPPED: {tool} is not installed"));
        }
    }
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let probe = work.path().join("probe.img");
    run("truncate", &["-s", "8M", &probe.to_string_lossy()])?;
    run("mkfs.ext4", &["-q", "-F", &probe.to_string_lossy()])?;
    if let Err(e) = Mount::loop_ext4(&probe, &work.path().join("probe.mnt")) {
        return Err(format!("SKIPPED: cannot mount a loop device here ({e})"));
    }

    for round in 0..3 {
        let cut = one_cut(work.path(), "sync", "sync", 1, 300 + 200 * round)?;
        check_sync(&cut, &format!("Sync round {round}"))?;
        println!(
            "real_power_cut: Sync round {round}: {} raises reported, all found after the cut \
             ({} events: the raise in progress may be there too)",
            cut.reported[0],
            cut.found[0].len()
        );
    }
    for round in 0..3 {
        let cut = one_cut(work.path(), "threads", "sync", 4, 600 + 400 * round)?;
        check_sync(&cut, &format!("Sync with 4 threads, round {round}"))?;
        println!(
            "real_power_cut: Sync, 4 threads, round {round}: {} raises reported, all found after \
             the cut, in each thread's order ({} events; reports: {:?})",
            cut.reported.iter().sum::<u64>(),
            cut.found.iter().map(Vec::len).sum::<usize>(),
            cut.reports.iter().map(|r| r.kind).collect::<Vec<_>>()
        );
    }
    let cut = one_cut(work.path(), "none", "none", 1, 2000)?;
    let (reported, found) = (cut.reported[0], cut.found[0].len() as u64);
    if found >= reported {
        return Err(format!(
            "Durability::None: all {reported} reported raises survived the cut, so the cut \
             did not drop unsynced writes and the Sync rounds proved nothing"
        ));
    }
    println!(
        "real_power_cut: None: {reported} raises reported, {found} survived the cut (unsynced \
         writes really lost)"
    );
    Ok(())
}

/// Runs the child's raising loop if this process is that child.
pub fn child_from_env() -> bool {
    let Ok(dir) = std::env::var("SNP_REAL_CUT_CHILD") else {
        return false;
    };
    let durability = std::env::var("SNP_REAL_CUT_DURABILITY").unwrap_or_default();
    let threads = testkit::env_number("SNP_REAL_CUT_THREADS").max(1);
    child(&dir, &durability, threads);
    true
}

/// The test. Without root, loop devices or mkfs.ext4 it says what is
/// missing (`main` counts that as a failure unless told to skip).
pub fn test() -> Result<(), String> {
    parent()
}
