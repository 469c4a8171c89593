//! What each command prints (docs/TOOLS.md describes the formats).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use softnet_persistence::{
    Event, HeaderSlot, InspectedRecord, JournalInspection, JournalKind, RecordContent,
};

use crate::json::Object;
use crate::locks::Holder;
use crate::time;

/// Bytes shown as text when they are printable UTF-8, else as hex.
enum Shown {
    Text(String),
    Hex(String),
}

fn shown(bytes: &[u8]) -> Shown {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => Shown::Text(s.to_string()),
        _ => Shown::Hex(hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A printable string in double quotes, `"` and `\` escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn slot(s: HeaderSlot) -> String {
    match s {
        HeaderSlot::Valid { generation } => format!("generation {generation}"),
        HeaderSlot::Blank => "blank".to_string(),
        HeaderSlot::Damaged => "fails its checksum".to_string(),
    }
}

/// `snp inspect`.
pub fn inspect(path: &Path, i: &JournalInspection, holder: &Holder) -> String {
    let mut o = String::new();
    let (magic, owner_is) = match i.kind {
        JournalKind::Service => ("SNPSVCJ1", "service uid"),
        JournalKind::Client => ("SNPCLNT1", "derived from the server and client key"),
    };
    let _ = writeln!(o, "file:         {}", path.display());
    let _ = writeln!(
        o,
        "kind:         {} ({magic}), format version {}",
        i.kind.describe(),
        i.version
    );
    let _ = writeln!(o, "owner:        {} ({owner_is})", i.owner);
    if i.kind == JournalKind::Service {
        let uid = i
            .storage_uid
            .map_or("unreadable".to_string(), |u| u.to_string());
        let _ = writeln!(o, "storage uid:  {uid}");
    }
    let percent = i.used_bytes as f64 * 100.0 / i.capacity.max(1) as f64;
    let _ = writeln!(
        o,
        "capacity:     {} bytes (ring {} bytes, file {} bytes)",
        i.capacity, i.data_size, i.file_len
    );
    let _ = writeln!(o, "used:         {} bytes ({percent:.1}%)", i.used_bytes);
    match i.kind {
        JournalKind::Service => {
            let _ = writeln!(o, "pending:      {} event(s)", i.records.len());
        }
        JournalKind::Client => {
            let _ = writeln!(
                o,
                "subscriptions: {} ({} record(s))",
                i.subscriptions().len(),
                i.records.len()
            );
        }
    }
    let ids = |r: Option<&InspectedRecord>| r.map_or("-".to_string(), |r| r.id.to_string());
    let _ = writeln!(o, "oldest id:    {}", ids(i.records.first()));
    let _ = writeln!(o, "newest id:    {}", ids(i.records.last()));
    raise_times(&mut o, i);
    let _ = writeln!(
        o,
        "header:       generation {} (slot 0: {}; slot 1: {}); log starts at ring offset {}, \
         sequence {}",
        i.generation,
        slot(i.header_slots[0]),
        slot(i.header_slots[1]),
        i.tail.0,
        i.tail.1
    );
    let _ = writeln!(o, "in use:       {}", holder.describe());
    let _ = writeln!(o, "condition:    {}", condition(i));
    names(&mut o, i);
    o
}

/// The oldest and newest raise time of the pending events, and how many
/// have none (stored by a release before raise times).
fn raise_times(o: &mut String, i: &JournalInspection) {
    if i.kind != JournalKind::Service {
        return;
    }
    let mut known = Vec::new();
    let mut unknown = 0;
    for r in &i.records {
        if let RecordContent::Event(e) = &r.content {
            match e.raised_at_ms {
                Some(ms) => known.push(ms),
                None => unknown += 1,
            }
        }
    }
    let unknown = match unknown {
        0 => String::new(),
        n => format!(" ({n} event(s) with no raise time: stored by an earlier release)"),
    };
    let (oldest, newest) = match (known.iter().min(), known.iter().max()) {
        (Some(&a), Some(&b)) => (time::iso8601(a), time::iso8601(b)),
        _ => ("-".to_string(), "-".to_string()),
    };
    let _ = writeln!(o, "oldest raise: {oldest}{unknown}");
    let _ = writeln!(o, "newest raise: {newest}");
}

/// One phrase: intact, or what is wrong.
fn condition(i: &JournalInspection) -> String {
    if i.is_damaged() {
        return format!(
            "DAMAGED: {} pending event(s) lost; run `snp verify` for where",
            i.lost()
        );
    }
    if !i.damage.is_empty() {
        return "intact (the writes of a sync a crash interrupted are discarded at the next \
                open; nothing lost)"
            .to_string();
    }
    match i.interrupted_at {
        Some(pos) => format!(
            "intact (a partial record at ring offset {pos} ends the log: an interrupted write, \
             overwritten by the next one)"
        ),
        None => "intact".to_string(),
    }
}

/// Per-name counts.
fn names(o: &mut String, i: &JournalInspection) {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &i.records {
        let key = match &r.content {
            RecordContent::Event(e) => (e.name.clone(), e.kind.to_string()),
            RecordContent::Subscription { name, .. } => (name.clone(), "subscription".into()),
            RecordContent::Unreadable { .. } => ("(unreadable)".into(), "-".into()),
        };
        *counts.entry(key).or_default() += 1;
    }
    if counts.is_empty() {
        return;
    }
    let _ = writeln!(o, "names:");
    let width = counts.keys().map(|(n, _)| n.len()).max().unwrap_or(0);
    for ((name, kind), n) in counts {
        let _ = writeln!(o, "  {name:<width$}  {kind:<14} {n}");
    }
}

/// `snp dump`, one line per event or subscription.
pub fn dump(i: &JournalInspection, json: bool) -> String {
    let mut o = String::new();
    match i.kind {
        JournalKind::Service => {
            for r in &i.records {
                let line = match &r.content {
                    RecordContent::Event(e) if json => event_json(r, e),
                    RecordContent::Event(e) => event_text(r, e),
                    RecordContent::Unreadable { payload, why } => unreadable(r, payload, why, json),
                    RecordContent::Subscription { .. } => continue,
                };
                o.push_str(&line);
                o.push('\n');
            }
        }
        JournalKind::Client => {
            for (name, (last_id, id)) in i.subscriptions() {
                let line = if json {
                    Object::new()
                        .str("record", "subscription")
                        .num("id", id)
                        .str("name", &name)
                        .num("last_id", last_id)
                        .end()
                } else {
                    format!("id={id} name={} last_id={last_id}", quoted(&name))
                };
                o.push_str(&line);
                o.push('\n');
            }
            for r in &i.records {
                if let RecordContent::Unreadable { payload, why } = &r.content {
                    o.push_str(&unreadable(r, payload, why, json));
                    o.push('\n');
                }
            }
        }
    }
    o
}

fn event_text(r: &InspectedRecord, e: &Event) -> String {
    let args = match shown(&e.args) {
        Shown::Text(s) => quoted(&s),
        Shown::Hex(h) => format!("hex:{h}"),
    };
    let client = e
        .client_id
        .map_or(String::new(), |c| format!(" client={c}"));
    format!(
        "id={} raised={} kind={} name={} uid={}{client} args={args}",
        r.id,
        time::raised(e.raised_at_ms),
        e.kind,
        quoted(&e.name),
        e.uid
    )
}

fn event_json(r: &InspectedRecord, e: &Event) -> String {
    let (encoding, args) = match shown(&e.args) {
        Shown::Text(s) => ("utf8", s),
        Shown::Hex(h) => ("hex", h),
    };
    Object::new()
        .str("record", "event")
        .num("id", r.id)
        .num("seq", r.seq)
        .opt_num("raised_at_ms", e.raised_at_ms.map(|ms| ms as i64))
        .opt_str("raised_at", e.raised_at_ms.map(time::iso8601).as_deref())
        .str("kind", &e.kind.to_string())
        .str("name", &e.name)
        .str("uid", &e.uid.to_string())
        .opt_num("client_id", e.client_id)
        .str("args_encoding", encoding)
        .str("args", &args)
        .end()
}

fn unreadable(r: &InspectedRecord, payload: &[u8], why: &str, json: bool) -> String {
    if json {
        return Object::new()
            .str("record", "unreadable")
            .num("id", r.id)
            .num("seq", r.seq)
            .str("why", why)
            .str("payload_hex", &hex(payload))
            .end();
    }
    format!(
        "id={} UNREADABLE ({why}) payload=hex:{}",
        r.id,
        hex(payload)
    )
}

/// `snp verify`: the lines to print and whether the file is damaged.
pub fn verify(path: &Path, i: &JournalInspection) -> (String, bool) {
    let mut o = String::new();
    let what = match i.kind {
        JournalKind::Service => "pending event(s)",
        JournalKind::Client => "subscription record(s)",
    };
    let damaged = i.is_damaged();
    let _ = writeln!(
        o,
        "{}: {}: {} intact {what}, header generation {}",
        path.display(),
        if damaged { "DAMAGED" } else { "intact" },
        i.records.len(),
        i.generation
    );
    findings(&mut o, i);
    if damaged {
        let _ = writeln!(
            o,
            "  total: {} pending event(s) lost; `snp salvage FILE OUT` writes a repaired copy \
             (the application's next open also repairs the file, keeping the damaged one as \
             <name>.corrupt-<time>)",
            i.lost()
        );
    }
    (o, damaged)
}

/// What `verify` found, one line each: header slots, damage, truncation,
/// unknown state bytes, a partial record at the end.
fn findings(o: &mut String, i: &JournalInspection) {
    for (n, s) in i.header_slots.iter().enumerate() {
        if !matches!(s, HeaderSlot::Valid { .. }) {
            let _ = writeln!(
                o,
                "  note: header slot {n} {} (a header write a crash interrupted, or damage); \
                 the other slot is in force and the next header write rewrites it",
                slot(*s)
            );
        }
    }
    for d in &i.damage {
        let durable = d.records - d.torn;
        if durable > 0 {
            let _ = writeln!(
                o,
                "  damage at ring offset {} (file offset {}): {durable} record(s) from sequence \
                 {} cut off, {} pending event(s) lost",
                d.pos, d.file_offset, d.first_seq, d.lost
            );
        }
        if d.torn > 0 {
            let _ = writeln!(
                o,
                "  note: {} record(s) from sequence {} (ring offset {}) are the writes of a sync \
                 a crash interrupted, never confirmed durable: nothing lost",
                d.torn,
                d.first_seq + durable,
                d.pos
            );
        }
    }
    if i.truncated {
        let _ = writeln!(
            o,
            "  the file is truncated: {} bytes, its header describes {}",
            i.file_len,
            8192 + i.data_size
        );
    }
    if i.unknown_states > 0 {
        let _ = writeln!(
            o,
            "  {} record(s) have an unreadable state byte (kept as pending: they may be \
             delivered twice)",
            i.unknown_states
        );
    }
    if let Some(pos) = i.interrupted_at {
        let _ = writeln!(
            o,
            "  note: a partial record at ring offset {pos} (file offset {}) ends the log: a \
             write a crash interrupted (nothing lost) or a damaged last record",
            8192 + pos
        );
    }
}
