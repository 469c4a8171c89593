//! The SQLite side: the same workload on a table mirroring the journal's
//! records, through rusqlite and its bundled SQLite.
//!
//! - schema: `events(id INTEGER PRIMARY KEY, uid BLOB, kind INT, name TEXT,
//!   args BLOB)`;
//! - raise: one `INSERT` in its own transaction (autocommit), with a fresh
//!   16-byte uid, the kind's wire code, the 16-byte name and the 64-byte
//!   arguments;
//! - peek: `SELECT` of the whole oldest row (`ORDER BY id LIMIT 1`);
//! - ack: `DELETE` by id, in its own transaction;
//! - `journal_mode=WAL`, `synchronous=FULL` (durable: the WAL is fsynced at
//!   every commit) or `OFF` (page cache: never synced), everything else at
//!   SQLite's defaults (4 KiB pages, automatic checkpoint at 1000 WAL pages).

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use softnet_persistence::EventKind;

use crate::{ARGS, NAME};

/// `PRAGMA synchronous` of a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// `synchronous=FULL`.
    Full,
    /// `synchronous=OFF`.
    Off,
}

const INSERT: &str = "INSERT INTO events (uid, kind, name, args) VALUES (?1, ?2, ?3, ?4)";
const OLDEST: &str = "SELECT id, uid, kind, name, args FROM events ORDER BY id LIMIT 1";
const DELETE: &str = "DELETE FROM events WHERE id = ?1";

/// One connection to an events database.
pub struct Db {
    conn: Connection,
    /// State of the uid generator (splitmix64): as cheap as the library's
    /// own, so that no syscall per raise (`getrandom`) weighs on SQLite.
    seed: Cell<u64>,
}

/// A row as a peek returns it (read in full, as the journal's peek does).
#[allow(dead_code)]
pub struct Row {
    pub id: i64,
    pub uid: Vec<u8>,
    pub kind: i64,
    pub name: String,
    pub args: Vec<u8>,
}

impl Db {
    /// Opens (or creates) the database at `path` in WAL mode with `sync`.
    pub fn open(path: &Path, sync: Sync) -> Db {
        let conn = Connection::open(path).expect("open the SQLite database");
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .expect("journal_mode=WAL");
        assert_eq!(mode, "wal", "SQLite refused WAL mode");
        let value = match sync {
            Sync::Full => "FULL",
            Sync::Off => "OFF",
        };
        conn.pragma_update(None, "synchronous", value)
            .expect("synchronous");
        // One writer at a time: the other connections wait (thread test).
        conn.busy_timeout(Duration::from_secs(60))
            .expect("busy_timeout");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, uid BLOB, \
             kind INT, name TEXT, args BLOB)",
        )
        .expect("create the table");
        let seed = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                ^ (path.as_os_str().len() as u64).rotate_left(32),
        );
        Db { conn, seed }
    }

    fn next(&self) -> u64 {
        let s = self.seed.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.seed.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uid(&self) -> [u8; 16] {
        let mut uid = [0u8; 16];
        uid[..8].copy_from_slice(&self.next().to_le_bytes());
        uid[8..].copy_from_slice(&self.next().to_le_bytes());
        uid
    }

    /// One `INSERT` (autocommit); `Err` as SQLite gave it (the thread test
    /// counts them).
    pub fn try_raise(&self) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(INSERT)?;
        stmt.execute(params![
            &self.uid()[..],
            EventKind::Queueing as i64,
            NAME,
            &ARGS[..]
        ])?;
        Ok(())
    }

    /// One `INSERT` (autocommit).
    pub fn raise(&self) {
        self.try_raise().expect("INSERT");
    }

    /// The oldest row, read in full.
    pub fn peek(&self) -> Option<Row> {
        let mut stmt = self.conn.prepare_cached(OLDEST).expect("prepare SELECT");
        stmt.query_row([], |r| {
            Ok(Row {
                id: r.get(0)?,
                uid: r.get(1)?,
                kind: r.get(2)?,
                name: r.get(3)?,
                args: r.get(4)?,
            })
        })
        .optional()
        .expect("SELECT")
    }

    /// `DELETE` by id (autocommit).
    pub fn ack(&self, id: i64) {
        let mut stmt = self.conn.prepare_cached(DELETE).expect("prepare DELETE");
        let n = stmt.execute([id]).expect("DELETE");
        assert_eq!(n, 1, "DELETE removed no row");
    }

    /// Peek, then ack what it returned.
    pub fn peek_ack(&self) {
        let row = self.peek().expect("a row is pending");
        self.ack(row.id);
    }

    /// `n` inserts in one transaction (to fill a database quickly).
    pub fn fill(&self, n: usize) {
        self.conn.execute_batch("BEGIN").expect("BEGIN");
        for _ in 0..n {
            self.raise();
        }
        self.conn.execute_batch("COMMIT").expect("COMMIT");
    }

    /// Rows in the table.
    pub fn count(&self) -> u64 {
        self.conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .expect("count") as u64
    }
}

/// Removes the database at `path` and its `-wal` and `-shm` files.
pub fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
}

/// The bundled SQLite's version.
pub fn version() -> &'static str {
    rusqlite::version()
}
