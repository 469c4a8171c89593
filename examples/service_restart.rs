//! A gateway raises events while its network is down, exits, and a new
//! process drains them in order once the broker is reachable.
//!
//! ```sh
//! cargo run --example service_restart -- raise /tmp/snp-demo
//! cargo run --example service_restart -- drain /tmp/snp-demo
//! ```
//! (`make demo` runs both.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use softnet_persistence::{EventKind, Failure, ServiceOptions, ServiceStore, Uuid};

/// A fixed service uid: the journal file is named after it, so the second
/// process finds the first one's events.
const SERVICE_UID: Uuid = Uuid::from_u128(0x5e7f_0b3a_9c1d_4e2f_8a6b_1c0d_2e3f_4a5b);

fn options() -> ServiceOptions {
    ServiceOptions {
        on_failure: Some(Arc::new(|f: &Failure| eprintln!("[report] {f}"))),
        ..ServiceOptions::default()
    }
}

fn raise(dir: &PathBuf) -> softnet_persistence::Result<()> {
    let store = ServiceStore::open_file(dir, SERVICE_UID, &options())?;
    println!(
        "offline: raising events into {}",
        store.journal_path().unwrap().display()
    );
    for (i, celsius) in ["21.5", "21.9", "22.4"].iter().enumerate() {
        let uid = store.raise(EventKind::Queueing, "Temperature", celsius.as_bytes())?;
        println!("  raised Temperature #{} = {celsius} C  uid {uid}", i + 1);
    }
    store.raise(EventKind::Replacing, "DoorState", b"open")?;
    store.raise(EventKind::Replacing, "DoorState", b"closed")?;
    println!("  raised DoorState open, then closed (only the newest state is kept)");
    let stats = store.stats();
    println!(
        "  {} events pending, {} bytes of {} used; the process exits now",
        stats.pending_events, stats.used_bytes, stats.capacity_bytes
    );
    Ok(())
}

fn drain(dir: &PathBuf) -> softnet_persistence::Result<()> {
    let store = ServiceStore::open_file(dir, SERVICE_UID, &options())?;
    println!(
        "restarted: {} events pending in storage uid {}",
        store.stats().pending_events,
        store.storage_uid()
    );
    println!("online: draining in raise order");
    let mut delivered = 0;
    while let Some(event) = store.peek()? {
        // A real controller sends the event here and acks on the broker's ack.
        println!(
            "  delivered {} '{}' = {}  uid {}",
            event.kind,
            event.name,
            String::from_utf8_lossy(&event.args),
            event.uid
        );
        store.ack(event.uid)?;
        delivered += 1;
    }
    println!(
        "drained {delivered} events; the store is now in cache mode ({:?})",
        store.mode()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: service_restart raise|drain <directory>");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let result = match cmd.as_str() {
        "raise" => raise(&dir),
        "drain" => drain(&dir),
        _ => {
            eprintln!("unknown command {cmd}: use raise or drain");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
