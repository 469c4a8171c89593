//! Invariant: a raise of an invalid event is refused with an invalid
//! argument error and stores nothing, whatever was raised before it (a
//! store keeps the last name it found valid, and skips the name's rules
//! only for that same name).

use softnet_persistence::{ErrorKind, EventKind, ServiceOptions};
use testkit::at_both_levels_with;

#[test]
fn invalid_raises_are_refused_before_and_after_valid_ones() {
    at_both_levels_with(&ServiceOptions::default(), |store| {
        let q = EventKind::Queueing;
        let refused = |name: &str, args: &[u8], why: &str| {
            let err = store.raise(q, name, args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}: {err}");
            assert!(err.to_string().contains(why), "{name:?}: {err}");
        };
        // First raise of the store: nothing kept yet.
        refused("", b"", "empty");
        store.raise(q, "Door open", b"1").unwrap();
        for _ in 0..2 {
            refused("", b"", "empty");
            refused("Door  open", b"", "double space");
            refused("Door open ", b"", "ends with a space");
            refused("1Door", b"", "start with");
        }
        // The kept name with arguments over the limit.
        let big = vec![0u8; softnet_persistence::MAX_ARGS_LEN + 1];
        refused("Door open", &big, "arguments are");
        store.raise(q, "Door open", b"2").unwrap();
        assert_eq!(store.stats().pending_events, 2);
        let first = store.peek().unwrap().unwrap();
        assert_eq!(
            (first.name.as_str(), first.args.as_slice()),
            ("Door open", &b"1"[..])
        );
    });
}
