//! Mounting file systems for the system tests (root only): ext4 in a loop
//! device, tmpfs of a given size, and filling one up.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command; its stdout, or an error naming it and its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A mounted loop file system, unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
}

impl Mount {
    /// Mounts the ext4 image file `image` on `dir` through a loop device.
    pub fn loop_ext4(image: &Path, dir: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // A long commit interval: ext4 must not write our dirty data on its
        // own journal commit before the cut.
        run(
            "mount",
            &[
                "-o",
                "loop,commit=3600",
                &image.to_string_lossy(),
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Mount {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run("umount", &[&self.dir.to_string_lossy()]);
    }
}

impl Mount {
    /// Mounts a tmpfs of `size` (as `mount -o size=`) on `dir`.
    pub fn tmpfs(size: &str, dir: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Mount {
            dir: dir.to_path_buf(),
        })
    }

    /// A small ext4 file system of `megabytes` in a loop device, in `work`.
    pub fn small_ext4(work: &Path, name: &str, megabytes: u32) -> Result<Mount, String> {
        let image = work.join(format!("{name}.img"));
        run(
            "truncate",
            &["-s", &format!("{megabytes}M"), &image.to_string_lossy()],
        )?;
        run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
        Mount::loop_ext4(&image, &work.join(format!("{name}.mnt")))
    }

    /// Fills the file system with a file until it has no space left.
    pub fn fill(&self) -> Result<(), String> {
        use std::io::Write;
        let mut filler =
            std::fs::File::create(self.dir.join("filler")).map_err(|e| e.to_string())?;
        let block = vec![0xa5u8; 4096];
        loop {
            match filler.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(format!("filling {}: {e}", self.dir.display())),
            }
        }
        let _ = filler.sync_all();
        Ok(())
    }
}

/// Root is needed to mount; without it the tests say so (see `main`).
pub fn need_root() -> Result<(), String> {
    if run("id", &["-u"])?.trim() != "0" {
        return Err("SKIPPED: needs root (mount, loop devices)".into());
    }
    Ok(())
}
