//! Invariant: a real power cut keeps every event whose raise returned with
//! Durability::Sync, and really does lose unsynced writes (so the check is
//! not vacuous).
//!
//! The cut is made with the kernel, not simulated: an ext4 file system in a
//! loop device, with periodic writeback switched off and high dirty limits
//! (all restored afterwards). A child raises events in a journal there and
//! reports each one; it is SIGKILLed, and the loop device's backing image is
//! copied at once: what the msyncs wrote is in the copy, dirty pages still
//! in the page cache are not. The copy is mounted (ext4 replays its journal
//! as after a reboot) and the store opened from it. With Durability::None
//! the same check must find losses, which proves the cut was real.
//!
//! Needs root, loop devices and mkfs.ext4; without them it fails and says
//! what is missing (or, with SNP_SKIP_ROOT_TESTS=1, is reported as
//! skipped). The test binary is its own child (SNP_REAL_CUT_CHILD set).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use softnet_persistence::{Durability, EventKind, ServiceOptions, ServiceStore, Uuid};

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

/// Raises events forever, printing each index after its raise returned.
fn child(dir: &str, durability: &str) {
    let store = ServiceStore::open_file(dir, SERVICE, &options(durability_named(durability)))
        .expect("child open");
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        store
            .raise(EventKind::Queueing, "Reading", &i.to_le_bytes())
            .expect("raise");
        writeln!(out, "{i}").unwrap();
        out.flush().unwrap();
    }
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

/// One cut: returns (indices the child reported, indices found after).
fn one_cut(work: &Path, durability: &str, events: usize) -> Result<(u64, Vec<u64>), String> {
    let image = work.join(format!("{durability}.img"));
    let copy = work.join(format!("{durability}.copy.img"));
    let _ = std::fs::remove_file(&image);
    run("truncate", &["-s", "64M", &image.to_string_lossy()])?;
    run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
    let reported;
    {
        let mount = Mount::loop_ext4(&image, &work.join(format!("{durability}.mnt")))?;
        let _hold = Writeback::hold()?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env("SNP_REAL_CUT_CHILD", &mount.dir)
            .env("SNP_REAL_CUT_DURABILITY", durability)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let mut last = None;
        for _ in 0..events {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                break;
            }
            last = line.trim().parse::<u64>().ok();
        }
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        // The child prints after each raise returns and may have run ahead
        // of this reader (a loaded machine): every complete line it wrote
        // before the kill counts.
        let mut rest = String::new();
        reader
            .read_to_string(&mut rest)
            .map_err(|e| e.to_string())?;
        if let Some(index) = rest
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .next_back()
        {
            last = Some(index);
        }
        // The power cut: what reached the device is in the backing file now.
        std::fs::copy(&image, &copy).map_err(|e| format!("copying the image: {e}"))?;
        reported = last.ok_or("the child reported nothing")? + 1;
    }
    let mount = Mount::loop_ext4(&copy, &work.join(format!("{durability}.copy.mnt")))?;
    let store = ServiceStore::open_file(&mount.dir, SERVICE, &options(Durability::Sync))
        .map_err(|e| e.to_string())?;
    let found = store
        .pending()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| u64::from_le_bytes(e.args[..8].try_into().expect("8-byte index")))
        .collect();
    drop(store);
    Ok((reported, found))
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
        let (reported, found) = one_cut(work.path(), "sync", 300 + 200 * round)?;
        let expected: Vec<u64> = (0..reported).collect();
        let extra_ok = found.len() == expected.len() + 1 && found[..expected.len()] == expected[..];
        if found != expected && !extra_ok {
            return Err(format!(
                "Sync: the child reported {reported} raises, the cut image holds {} \
                 (first missing: {:?})",
                found.len(),
                expected.iter().find(|i| !found.contains(i))
            ));
        }
        println!(
            "real_power_cut: Sync round {round}: {reported} raises reported, all found after \
             the cut ({} events: the raise in progress may be there too)",
            found.len()
        );
    }
    let (reported, found) = one_cut(work.path(), "none", 2000)?;
    if found.len() as u64 >= reported {
        return Err(format!(
            "Durability::None: all {reported} reported raises survived the cut, so the cut \
             did not drop unsynced writes and the Sync rounds proved nothing"
        ));
    }
    println!(
        "real_power_cut: None: {reported} raises reported, {} survived the cut (unsynced \
         writes really lost)",
        found.len()
    );
    Ok(())
}

/// Runs the child's raising loop if this process is that child.
pub fn child_from_env() -> bool {
    let Ok(dir) = std::env::var("SNP_REAL_CUT_CHILD") else {
        return false;
    };
    let durability = std::env::var("SNP_REAL_CUT_DURABILITY").unwrap_or_default();
    child(&dir, &durability);
    true
}

/// The test. Without root, loop devices or mkfs.ext4 it says what is
/// missing (`main` counts that as a failure unless told to skip).
pub fn test() -> Result<(), String> {
    parent()
}
