//! Invariant: a journal file has one opener at a time; a second opener gets
//! a clear `Locked` error naming the file (never a shared journal, never a
//! silent fallback), and the file opens again once the first is gone.

use softnet_persistence::{ErrorKind, EventKind, Level, ServiceOptions, ServiceStore, Uuid};
use testkit::{assert_locked, journal_name};

#[test]
fn second_opener_gets_locked_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let first = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    let path = dir.path().join(journal_name(service));
    assert_eq!(first.journal_path().as_deref(), Some(path.as_path()));
    let uid = first.raise(EventKind::Queueing, "A", b"1").unwrap();

    for _ in 0..3 {
        let err = ServiceStore::open_file(dir.path(), service, &options).unwrap_err();
        assert_locked(err, &path);
    }
    // Other options do not get around the lock either.
    let other = ServiceOptions {
        capacity: 64 * 1024,
        ..Default::default()
    };
    let err = ServiceStore::open_file(dir.path(), service, &other).unwrap_err();
    assert_locked(err, &path);

    // The first handle is unaffected.
    assert_eq!(first.level(), Level::Persistent);
    assert_eq!(first.stats().failures, 0);
    assert_eq!(first.peek().unwrap().unwrap().uid, uid);
    let second = first.raise(EventKind::Queueing, "A", b"2").unwrap();
    assert_eq!(first.stats().pending_events, 2);

    drop(first);
    let reopened = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(reopened.level(), Level::Persistent);
    assert_eq!(reopened.stats().pending_events, 2);
    assert_eq!(reopened.peek().unwrap().unwrap().uid, uid);
    reopened.ack(uid).unwrap();
    assert_eq!(reopened.peek().unwrap().unwrap().uid, second);
}

#[test]
fn close_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let first = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    let uid = first.raise(EventKind::Replacing, "A", b"1").unwrap();
    let path = first.journal_path().unwrap();
    assert_locked(
        ServiceStore::open_file(dir.path(), service, &options).unwrap_err(),
        &path,
    );
    first.close().unwrap();
    // The closed handle refuses work instead of writing anywhere.
    let err = first.raise(EventKind::Queueing, "A", b"2").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(first.peek().unwrap_err().kind(), ErrorKind::Closed);

    let second = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(second.level(), Level::Persistent);
    assert_eq!(second.peek().unwrap().unwrap().uid, uid);
    // While the second is open, the (closed) first still does not matter
    // and a third opener is locked out.
    assert_locked(
        ServiceStore::open_file(dir.path(), service, &options).unwrap_err(),
        &path,
    );
    // Closing again is fine (and does nothing).
    first.close().unwrap();
    drop(first);
    assert_eq!(second.stats().pending_events, 1);
}

#[test]
fn another_service_in_the_same_directory_opens_fine() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions::default();
    let (s1, s2) = (Uuid::new_v4(), Uuid::new_v4());
    let a = ServiceStore::open_file(dir.path(), s1, &options).unwrap();
    let b = ServiceStore::open_file(dir.path(), s2, &options).unwrap();
    assert_eq!(a.level(), Level::Persistent);
    assert_eq!(b.level(), Level::Persistent);
    assert_ne!(a.journal_path(), b.journal_path());
    assert_eq!(b.journal_path().unwrap(), dir.path().join(journal_name(s2)));
    let ua = a.raise(EventKind::Queueing, "A", b"a").unwrap();
    let ub = b.raise(EventKind::Queueing, "B", b"b").unwrap();
    assert_eq!(a.peek().unwrap().unwrap().uid, ua);
    assert_eq!(b.peek().unwrap().unwrap().uid, ub);
    // Each is still locked against a second opener of its own.
    assert_eq!(
        ServiceStore::open_file(dir.path(), s1, &options)
            .unwrap_err()
            .kind(),
        ErrorKind::Locked
    );
    assert_eq!(
        ServiceStore::open_file(dir.path(), s2, &options)
            .unwrap_err()
            .kind(),
        ErrorKind::Locked
    );
    drop(a);
    drop(b);
    let a = ServiceStore::open_file(dir.path(), s1, &options).unwrap();
    let b = ServiceStore::open_file(dir.path(), s2, &options).unwrap();
    assert_eq!(a.stats().pending_events, 1);
    assert_eq!(b.stats().pending_events, 1);
    assert_eq!(a.peek().unwrap().unwrap().uid, ua);
    assert_eq!(b.peek().unwrap().unwrap().uid, ub);
}

#[test]
fn the_lock_is_held_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let first = ServiceStore::open_file(dir.path(), service, &Default::default()).unwrap();
    let path = dir.path().to_path_buf();
    let err = std::thread::spawn(move || {
        ServiceStore::open_file(&path, service, &Default::default()).unwrap_err()
    })
    .join()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::Locked);
    drop(first);
}
