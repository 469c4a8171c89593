//! `snp`: looks at softnet-persistence files in the field.
//!
//! - `snp inspect FILE`: what the file is and holds, and whether a store
//!   has it open;
//! - `snp dump FILE [--json]`: every pending event (or subscription);
//! - `snp verify FILE`: checks it; exit 0 intact, 1 damaged;
//! - `snp salvage FILE OUT`: writes a repaired copy to OUT.
//!
//! Exit codes: 0 done, 1 damaged (`verify`), 2 unreadable or a usage
//! error, 3 busy (the file kept changing while it was read; try again).
//! `inspect`, `dump` and `verify` never write, lock, rename or map the
//! file, and give a consistent answer while a store writes it
//! (`snapshot.rs`). docs/TOOLS.md describes the commands and their output.

mod json;
mod locks;
mod output;
mod snapshot;
mod time;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use snapshot::Failure;

const USAGE: &str = "\
usage: snp COMMAND FILE...

Looks at softnet-persistence files: service journals (softnet.service.persistence_<uid>.ssp)
and client files (softnet.client.persistence_<server>_<key>.scp).

commands:
  inspect FILE          what the file is, its capacity and use, pending events per name,
                        and whether an application has it open
  dump FILE [--json]    every pending event in delivery order (or every subscription with
                        its last id); --json: one JSON object per line
  verify FILE           checks the header and every record; says where damage is and
                        what it cost
  salvage FILE OUT      writes a repaired copy with every intact pending record to OUT
                        (which must not exist); FILE is not changed
  help [COMMAND]        this text, or a command's

inspect, dump and verify only read: they never write or lock the file, and work while the
application runs.

exit codes: 0 done (verify: intact), 1 damaged (verify), 2 unreadable file or usage error,
3 busy (the file changed each time it was read: try again)";

/// A command and its arguments, parsed.
enum Command {
    Help(Option<String>),
    Inspect(PathBuf),
    Dump(PathBuf, bool),
    Verify(PathBuf),
    Salvage(PathBuf, PathBuf),
}

fn command_help(name: &str) -> Option<&'static str> {
    Some(match name {
        "inspect" => {
            "usage: snp inspect FILE\n\nPrints the kind of file, its format version, capacity \
             and bytes used, the pending\nevents (subscriptions), the storage uid, the oldest \
             and newest pending id and raise\ntime (UTC), the count per name, whether a \
             process holds the file open, and\nwhether it is intact.\nExit 0; 2 if unreadable; \
             3 if busy."
        }
        "dump" => {
            "usage: snp dump FILE [--json]\n\nPrints every pending event in delivery order (id, \
             raise time in UTC, kind,\nname, uid, client id, arguments as text when printable \
             UTF-8, else hex), or\nevery subscription of a client file with its last id. \
             --json: one JSON object\nper line.\nExit 0; 2 if unreadable; 3 if busy."
        }
        "verify" => {
            "usage: snp verify FILE\n\nChecks the header and every record. Exit 0 when intact, \
             1 when damaged (with\nwhere: ring and file offset, sequence numbers, records cut \
             off, events lost),\n2 when unreadable (missing, no permission, not a journal, \
             truncated below its\nheader), 3 when busy."
        }
        "salvage" => {
            "usage: snp salvage FILE OUT\n\nWrites a repaired copy of FILE to OUT (which must \
             not exist) with every intact\npending record, for the same owner; FILE is not \
             changed. To use it, stop the\napplication and move OUT to FILE's name.\nExit 0; 2 \
             if unreadable or OUT cannot be written; 3 if busy."
        }
        "help" => USAGE,
        _ => return None,
    })
}

/// The command, or the usage error to print.
fn parse(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let path = |s: &str| PathBuf::from(s);
    match words.as_slice() {
        [] => Err("no command given".to_string()),
        ["-h" | "--help" | "help"] => Ok(Command::Help(None)),
        ["help", cmd] => Ok(Command::Help(Some(cmd.to_string()))),
        [cmd, rest @ ..] if rest.contains(&"--help") || rest.contains(&"-h") => {
            Ok(Command::Help(Some(cmd.to_string())))
        }
        ["inspect", file] => Ok(Command::Inspect(path(file))),
        ["dump", file] => Ok(Command::Dump(path(file), false)),
        ["dump", "--json", file] | ["dump", file, "--json"] => Ok(Command::Dump(path(file), true)),
        ["verify", file] => Ok(Command::Verify(path(file))),
        ["salvage", file, out] => Ok(Command::Salvage(path(file), path(out))),
        [cmd, ..] if command_help(cmd).is_some() => Err(format!("wrong arguments for {cmd}")),
        [cmd, ..] => Err(format!("unknown command '{cmd}'")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse(&args) {
        Ok(command) => run(command),
        Err(why) => {
            eprintln!("snp: {why}\n\n{USAGE}");
            2
        }
    };
    ExitCode::from(code)
}

/// Runs a command; its exit code.
fn run(command: Command) -> u8 {
    let result = match command {
        Command::Help(None) => Ok(print(&format!("{USAGE}\n"), 0)),
        Command::Help(Some(cmd)) => match command_help(&cmd) {
            Some(text) => Ok(print(&format!("{text}\n"), 0)),
            None => {
                eprintln!("snp: unknown command '{cmd}'\n\n{USAGE}");
                Ok(2)
            }
        },
        Command::Inspect(file) => snapshot::read(&file)
            .map(|s| print(&output::inspect(&file, &s.inspection, &s.holder), 0)),
        Command::Dump(file, json) => {
            snapshot::read(&file).map(|s| print(&output::dump(&s.inspection, json), 0))
        }
        Command::Verify(file) => snapshot::read(&file).map(|s| {
            let (text, damaged) = output::verify(&file, &s.inspection);
            print(&text, u8::from(damaged))
        }),
        Command::Salvage(file, out) => salvage(&file, &out),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Unreadable(why)) => {
            eprintln!("snp: {why}");
            2
        }
        Err(Failure::Busy(why)) => {
            eprintln!("snp: {why}");
            3
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`snp dump | head`) is not an
/// error worth a message.
fn print(text: &str, code: u8) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("snp: cannot write the output: {e}");
            2
        }
    }
}

fn salvage(file: &Path, out: &Path) -> Result<u8, Failure> {
    match std::fs::symlink_metadata(out) {
        Ok(_) => {
            return Err(Failure::Unreadable(format!(
                "{}: already exists; give a path that does not (salvage never replaces a file)",
                out.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(snapshot::unreadable(out, &e)),
    }
    let snap = snapshot::read(file)?;
    let inspection = softnet_persistence::salvage_journal(&snap.bytes, out).map_err(|e| {
        Failure::Unreadable(format!(
            "{}: the repaired copy could not be written: {e}; check the directory \
                 (it must exist, be writable, and have room)",
            out.display()
        ))
    })?;
    let kept = inspection.records.len();
    let text = format!(
        "{}: wrote a repaired copy of {} with {kept} intact pending record(s) ({} pending \
         event(s) lost to damage); to use it, stop the application and move it to {}'s name\n",
        out.display(),
        file.display(),
        inspection.lost(),
        file.display()
    );
    Ok(print(&text, 0))
}
