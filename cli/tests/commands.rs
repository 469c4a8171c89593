//! Each command of `snp` and each exit code, on files the library wrote.

mod common;

use std::fs;

use softnet_persistence::Uuid;

use common::*;

#[test]
fn an_intact_service_journal_is_inspected_dumped_and_verified() {
    let (dir, path, pending, storage) = service_journal();
    let before = files_in(dir.path());

    let run = snp_on("inspect", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    for part in [
        "service journal (SNPSVCJ1), format version 3".to_string(),
        format!("owner:        {SERVICE} (service uid)"),
        format!("storage uid:  {storage}"),
        "pending:      6 event(s)".to_string(),
        "in use:       no".to_string(),
        "condition:    intact".to_string(),
    ] {
        assert!(out.contains(&part), "{part:?} in\n{out}");
    }
    // The acknowledged event (id 1) is not pending, nor is Door's first
    // instance (id 3, superseded by the second).
    assert!(out.contains("oldest id:    2\n"), "{out}");
    assert!(out.contains("newest id:    8\n"), "{out}");
    // Every event here was raised by this library: each has a raise time.
    let times: Vec<u64> = pending.iter().map(|e| e.raised_at_ms.unwrap()).collect();
    let oldest = iso8601(*times.iter().min().unwrap());
    let newest = iso8601(*times.iter().max().unwrap());
    assert!(out.contains(&format!("oldest raise: {oldest}\n")), "{out}");
    assert!(out.contains(&format!("newest raise: {newest}\n")), "{out}");
    let names: Vec<&str> = out.lines().skip_while(|l| *l != "names:").skip(1).collect();
    let names: Vec<Vec<&str>> = names
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        names,
        [
            vec!["Alarm", "replacing-null", "1"],
            vec!["Door", "replacing", "1"],
            vec!["Note", "private", "1"],
            vec!["Temperature", "queueing", "3"],
        ]
    );

    let run = snp_on("dump", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), pending.len());
    let ids: Vec<u64> = lines.iter().map(|l| id_of(l)).collect();
    assert_eq!(ids, [2, 4, 5, 6, 7, 8]);
    for ((line, event), id) in lines.iter().zip(&pending).zip(&ids) {
        assert_eq!(*line, dump_line(*id, event));
    }
    assert!(lines[1].ends_with(r#"args="say \"hi\"\\""#), "{}", lines[1]);
    assert!(
        lines[2].ends_with("client=-42 args=hex:0001fe0a"),
        "{}",
        lines[2]
    );

    let run = snp_on("verify", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(": intact: 6 intact pending event(s)"),
        "{}",
        run.stdout
    );

    assert_eq!(
        files_in(dir.path()),
        before,
        "nothing written, created or removed"
    );
}

#[test]
fn dump_json_is_one_escaped_object_per_line() {
    let (_dir, path, pending, _) = service_journal();
    for args in [vec!["--json"], vec![]] {
        let run = if args.is_empty() {
            snp(&["dump", "--json", path.to_str().unwrap()])
        } else {
            snp_on("dump", &path, &args)
        };
        assert_eq!(run.code, 0, "{}", run.stderr);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), pending.len());
        let e = &pending[0];
        let ms = e.raised_at_ms.unwrap();
        assert_eq!(
            lines[0],
            format!(
                r#"{{"record":"event","id":2,"seq":2,"raised_at_ms":{ms},"raised_at":"{}","kind":"queueing","name":"Temperature","uid":"{}","client_id":null,"args_encoding":"utf8","args":"21.5"}}"#,
                iso8601(ms),
                e.uid
            )
        );
        assert!(
            lines[1].ends_with(r#""args_encoding":"utf8","args":"say \"hi\"\\"}"#),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(r#""kind":"private","#), "{}", lines[2]);
        assert!(
            lines[2].ends_with(r#""client_id":-42,"args_encoding":"hex","args":"0001fe0a"}"#),
            "{}",
            lines[2]
        );
        assert!(
            lines[5].ends_with(r#""args_encoding":"utf8","args":""}"#),
            "{}",
            lines[5]
        );
        for (line, event) in lines.iter().zip(&pending) {
            assert!(line.contains(&format!("\"uid\":\"{}\"", event.uid)));
        }
    }
}

#[test]
fn raise_times_are_utc_to_the_millisecond() {
    // 2000-01-01 is 30 * 365 + 7 leap days = 10,957 days after 1970-01-01;
    // 2000-02-29 is 31 + 28 days later: 11,016 days = 951,782,400 s.
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso8601(951_782_400_000 - 1), "2000-02-28T23:59:59.999Z");
    assert_eq!(iso8601(951_868_800_000), "2000-03-01T00:00:00.000Z");
}

/// A journal written by the release of format version 1 (the library's
/// fixture, tests/fixtures/service-v1.ssp): its events have no raise time.
#[test]
fn events_of_an_earlier_release_show_their_raise_time_unknown() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/service-v1.ssp"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join(testkit::files::journal_name(Uuid::from_u128(0x5eed_0001)));
    fs::copy(fixture, &path).unwrap();
    let before = files_in(dir.path());

    let run = snp_on("inspect", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    for part in [
        "service journal (SNPSVCJ1), format version 1\n",
        "pending:      4 event(s)\n",
        "oldest raise: - (4 event(s) with no raise time: stored by an earlier release)\n",
        "newest raise: -\n",
    ] {
        assert!(out.contains(part), "{part:?} in\n{out}");
    }

    let run = snp_on("dump", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for line in &lines {
        assert!(line.contains(" raised=unknown "), "{line}");
    }

    let run = snp_on("dump", &path, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for line in &lines {
        assert!(
            line.contains(r#","raised_at_ms":null,"raised_at":null,"#),
            "{line}"
        );
    }
    assert_eq!(files_in(dir.path()), before, "the tool writes nothing");
}

#[test]
fn a_damaged_journal_is_reported_with_where_and_what_it_cost() {
    let (dir, path, pending, _) = service_journal();
    // The middle pending record (id 5, the Private one).
    let (pos, seq) = damage_live_record(&path, 2);
    let before = files_in(dir.path());

    let run = snp_on("verify", &path, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(
        out.contains(": DAMAGED: 5 intact pending event(s)"),
        "{out}"
    );
    let at = format!(
        "damage at ring offset {pos} (file offset {}): 1 record(s) from sequence {seq} cut off, \
         1 pending event(s) lost",
        8192 + pos
    );
    assert!(out.contains(&at), "{at:?} in\n{out}");
    assert!(out.contains("total: 1 pending event(s) lost"), "{out}");

    let run = snp_on("dump", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let uids: Vec<String> = pending
        .iter()
        .filter(|e| e.name != "Note")
        .map(|e| e.uid.to_string())
        .collect();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5);
    for (line, uid) in lines.iter().zip(&uids) {
        assert!(line.contains(uid.as_str()), "{line}");
    }

    let run = snp_on("inspect", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("condition:    DAMAGED: 1 pending event(s) lost"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("pending:      5 event(s)"),
        "{}",
        run.stdout
    );

    assert_eq!(
        files_in(dir.path()),
        before,
        "the damaged file is left as it is"
    );
}

#[test]
fn a_truncated_journal_is_damaged_and_one_cut_below_its_header_unreadable() {
    let (_dir, path, _, _) = service_journal();
    let bytes = fs::read(&path).unwrap();
    let layout = testkit::layout::Layout::parse(&bytes).unwrap();
    // Cut in the middle of the fourth pending record.
    let cut = layout.live().nth(3).unwrap().start() + 40;
    fs::write(&path, &bytes[..cut]).unwrap();
    let run = snp_on("verify", &path, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("the file is truncated"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(": DAMAGED: 3 intact pending event(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(snp_on("dump", &path, &[]).stdout.lines().count(), 3);

    fs::write(&path, &bytes[..5000]).unwrap();
    for cmd in ["inspect", "dump", "verify"] {
        let run = snp_on(cmd, &path, &[]);
        assert_eq!(run.code, 2, "{cmd}: {}", run.stdout);
        assert!(run.stdout.is_empty());
        let err = run.stderr.trim_end();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(
            err.contains("5000 bytes long, shorter than a journal's two header pages"),
            "{err}"
        );
    }
}

#[test]
fn foreign_files_are_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let random = dir.path().join("random.ssp");
    let mut rng = testkit::Rng::new(7);
    let bytes: Vec<u8> = (0..20_000).map(|_| rng.next_u64() as u8).collect();
    fs::write(&random, &bytes).unwrap();
    for cmd in ["inspect", "dump", "verify"] {
        let run = snp_on(cmd, &random, &[]);
        assert_eq!(run.code, 2, "{cmd}");
        assert!(
            run.stderr
                .contains("neither header slot passes its checksum"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("random.ssp"), "{}", run.stderr);
    }

    // A valid header with another magic.
    let (_d, path, _, _) = service_journal();
    let mut bytes = fs::read(&path).unwrap();
    for slot in [0, 4096] {
        bytes[slot..slot + 8].copy_from_slice(b"OTHERMAG");
        let crc = crc32fast::hash(&bytes[slot..slot + 252]);
        bytes[slot + 252..slot + 256].copy_from_slice(&crc.to_le_bytes());
    }
    let other = dir.path().join("other");
    fs::write(&other, &bytes).unwrap();
    let run = snp_on("verify", &other, &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("its magic is \"OTHERMAG\""),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_files_directories_and_unreadable_ones_are_named_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.ssp");
    for cmd in ["inspect", "dump", "verify"] {
        let run = snp_on(cmd, &missing, &[]);
        assert_eq!(run.code, 2);
        assert_eq!(
            run.stderr,
            format!("snp: {}: no such file; check the path\n", missing.display())
        );
    }
    let run = snp_on("inspect", dir.path(), &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is a directory"), "{}", run.stderr);
}

#[test]
fn a_client_file_lists_each_subscription_with_its_last_id() {
    let (_dir, path) = client_file();
    let run = snp_on("inspect", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("client persistence file (SNPCLNT1)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("subscriptions: 2 (3 record(s))"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("storage uid"), "{}", run.stdout);

    let run = snp_on("dump", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "id=2 name=\"Door\" last_id=7\nid=3 name=\"Temperature\" last_id=9\n"
    );
    let run = snp_on("dump", &path, &["--json"]);
    assert_eq!(
        run.stdout,
        "{\"record\":\"subscription\",\"id\":2,\"name\":\"Door\",\"last_id\":7}\n\
         {\"record\":\"subscription\",\"id\":3,\"name\":\"Temperature\",\"last_id\":9}\n"
    );
    let run = snp_on("verify", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(": intact: 3 intact subscription record(s)"),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_errors_and_help() {
    for args in [
        vec![],
        vec!["frobnicate", "x"],
        vec!["dump"],
        vec!["salvage", "a"],
    ] {
        let run = snp(&args);
        assert_eq!(run.code, 2, "{args:?}");
        assert!(run.stdout.is_empty());
        assert!(
            run.stderr.contains("usage: snp COMMAND FILE"),
            "{}",
            run.stderr
        );
    }
    let run = snp(&["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("usage: snp COMMAND FILE"));
    for cmd in ["inspect", "dump", "verify", "salvage"] {
        let run = snp(&["help", cmd]);
        assert_eq!(run.code, 0);
        assert!(
            run.stdout.starts_with(&format!("usage: snp {cmd} FILE")),
            "{}",
            run.stdout
        );
    }
    let run = snp(&["help", "frobnicate"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unknown command 'frobnicate'"));
}

#[test]
fn a_journal_a_store_holds_open_is_read_and_shown_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        softnet_persistence::ServiceStore::open_file(dir.path(), SERVICE, &service_options())
            .unwrap();
    let uid = store
        .raise(
            softnet_persistence::EventKind::Queueing,
            "Temperature",
            b"1",
        )
        .unwrap();
    let path = journal_path(dir.path());
    let run = snp_on("inspect", &path, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let held = format!("in use:       yes: locked by pid {}", std::process::id());
    assert!(run.stdout.contains(&held), "{}", run.stdout);
    let run = snp_on("dump", &path, &[]);
    assert!(run.stdout.contains(&uid.to_string()), "{}", run.stdout);
    // The tool took no lock: the store goes on, and a second store still
    // finds the file locked by the first.
    store
        .raise(
            softnet_persistence::EventKind::Queueing,
            "Temperature",
            b"2",
        )
        .unwrap();
    assert_eq!(store.pending().unwrap().len(), 2);
    drop(store);
    let run = snp_on("inspect", &path, &[]);
    assert!(run.stdout.contains("in use:       no"), "{}", run.stdout);
}

#[test]
fn a_file_that_never_holds_still_is_busy() {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (_dir, path, _, _) = service_journal();
    let bytes = fs::read(&path).unwrap();
    let head = testkit::layout::Layout::parse(&bytes).unwrap().head;
    // Locked, as a store holds it; something keeps writing where the log
    // ends, as a write in progress does, and never finishes.
    let lock = fs::File::open(&path).unwrap();
    lock.try_lock().unwrap();
    let (stop, started) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let writer = {
        let (stop, started, path) = (Arc::clone(&stop), Arc::clone(&started), path.clone());
        std::thread::spawn(move || {
            let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                file.write_at(&n.to_le_bytes(), 8192 + head + 16).unwrap();
                started.store(true, Ordering::Relaxed);
            }
        })
    };
    while !started.load(Ordering::Relaxed) {
        std::thread::yield_now();
    }
    let run = snp_on("dump", &path, &[]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty());
    assert_eq!(
        run.stderr,
        format!(
            "snp: {}: busy: the file changed each time it was read (40 times; a store is \
             writing it); try again\n",
            path.display()
        )
    );
    // Once it holds still, the partial record is reported as what it is.
    drop(lock);
    let run = snp_on("verify", &path, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("note: a partial record at ring offset"),
        "{}",
        run.stdout
    );
}
