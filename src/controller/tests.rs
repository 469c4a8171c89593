//! Unit tests of the controllers, against memory stores and a journal.

mod service {
    use std::sync::Arc;
    use std::time::Duration;

    use uuid::Uuid;

    use crate::controller::{ServiceController, ServiceOutput};
    use crate::event::EventKind;
    use crate::service::{Mode, ServiceOptions, ServiceStore};

    fn controller() -> ServiceController {
        let store = ServiceStore::open_memory(&ServiceOptions::default()).unwrap();
        ServiceController::with_timeout(Arc::new(store), Duration::from_secs(30))
    }

    fn sent(outputs: &[ServiceOutput]) -> Vec<Uuid> {
        outputs
            .iter()
            .filter_map(|o| match o {
                ServiceOutput::SendEvent(e) => Some(e.uid),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_first_tick_sets_the_clock_origin() {
        // A caller's monotonic clock is far from 0: an event sent before
        // the first tick must not be overdue at that tick.
        let mut c = controller();
        c.connected();
        c.online(None).unwrap();
        let uid = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![uid]);
        let boot = Duration::from_secs(86_400);
        c.tick(boot);
        assert!(sent(&c.drain_outputs()).is_empty());
        assert_eq!(c.next_deadline(), Some(boot + Duration::from_secs(30)));
        c.tick(boot + Duration::from_secs(30));
        assert_eq!(sent(&c.drain_outputs()), vec![uid]);
    }

    #[test]
    fn handshake_sends_our_uid_unless_the_broker_has_it() {
        let mut c = controller();
        let ours = c.store().storage_uid();
        c.connected();
        c.online(None).unwrap();
        assert_eq!(c.drain_outputs(), vec![ServiceOutput::SendStorageUid(ours)]);
        c.disconnected().unwrap();
        c.connected();
        c.online(Some(ours)).unwrap();
        assert_eq!(c.drain_outputs(), vec![]);
    }

    #[test]
    fn another_broker_uid_invalidates_ancient_data() {
        let dir = tempfile::tempdir().unwrap();
        let service = Uuid::from_u128(9);
        let options = ServiceOptions::default();
        let old = {
            let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
            store.raise(EventKind::Queueing, "A", b"ancient").unwrap()
        };
        let store = Arc::new(ServiceStore::open_file(dir.path(), service, &options).unwrap());
        let mut c = ServiceController::new(store.clone());
        let fresh = c.raise(EventKind::Queueing, "A", b"new").unwrap();
        c.connected();
        c.online(Some(Uuid::from_u128(1))).unwrap();
        let out = c.drain_outputs();
        assert_eq!(out[0], ServiceOutput::SendStorageUid(store.storage_uid()));
        assert_eq!(sent(&out), vec![fresh], "the ancient event {old} is gone");
        assert_eq!(store.stats().invalidated_events, 1);
    }

    #[test]
    fn drain_is_strictly_in_order_with_one_in_flight() {
        let mut c = controller();
        let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        let b = c.raise(EventKind::Queueing, "B", b"2").unwrap();
        assert!(c.drain_outputs().is_empty(), "offline: nothing sent");
        c.connected();
        c.online(Some(c.store().storage_uid())).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a]);
        let d = c.raise(EventKind::Queueing, "D", b"3").unwrap();
        assert!(
            sent(&c.drain_outputs()).is_empty(),
            "queued behind the backlog"
        );
        c.ack(a).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![b]);
        c.ack(b).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![d]);
        c.ack(d).unwrap();
        assert_eq!(c.store().mode(), Mode::Cache);
    }

    #[test]
    fn cache_mode_one_in_flight_per_name_in_parallel() {
        let mut c = controller();
        c.connected();
        c.online(None).unwrap();
        c.drain_outputs();
        assert_eq!(c.store().mode(), Mode::Cache);
        let a1 = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        let b1 = c.raise(EventKind::Queueing, "B", b"1").unwrap();
        let a2 = c.raise(EventKind::Queueing, "A", b"2").unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a1, b1], "A2 waits for A1");
        c.ack(b1).unwrap();
        assert!(sent(&c.drain_outputs()).is_empty());
        c.ack(a1).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a2]);
    }

    #[test]
    fn stale_and_repeated_acks_are_ignored() {
        let mut c = controller();
        let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        let b = c.raise(EventKind::Queueing, "A", b"2").unwrap();
        c.connected();
        c.online(None).unwrap();
        c.drain_outputs();
        c.ack(b).unwrap();
        assert_eq!(c.stale_acks(), 1);
        assert_eq!(c.store().stats().pending_events, 2);
        c.ack(a).unwrap();
        c.ack(a).unwrap();
        assert_eq!(c.stale_acks(), 2);
        assert_eq!(sent(&c.drain_outputs()), vec![b]);
    }

    #[test]
    fn resend_after_timeout_with_the_same_uid() {
        let mut c = controller();
        let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        c.tick(Duration::from_secs(100));
        c.connected();
        c.online(None).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a]);
        assert_eq!(c.next_deadline(), Some(Duration::from_secs(130)));
        c.tick(Duration::from_secs(129));
        assert!(c.drain_outputs().is_empty());
        c.tick(Duration::from_secs(130));
        assert_eq!(sent(&c.drain_outputs()), vec![a]);
        assert_eq!(c.next_deadline(), Some(Duration::from_secs(160)));
    }

    #[test]
    fn disconnect_during_the_drain_resends_from_the_oldest() {
        let mut c = controller();
        let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        let b = c.raise(EventKind::Queueing, "B", b"2").unwrap();
        c.connected();
        c.online(None).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a]);
        c.disconnected().unwrap();
        assert!(c.in_flight().is_empty());
        c.tick(Duration::from_secs(1000));
        assert!(c.drain_outputs().is_empty(), "no resend while offline");
        c.connected();
        c.online(Some(c.store().storage_uid())).unwrap();
        assert_eq!(
            sent(&c.drain_outputs()),
            vec![a],
            "the event in flight goes first, same uid"
        );
        c.ack(a).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![b]);
    }

    #[test]
    fn disconnect_in_cache_mode_resends_what_was_in_flight_then_drains() {
        let mut c = controller();
        c.connected();
        c.online(None).unwrap();
        let a1 = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        let b1 = c.raise(EventKind::Queueing, "B", b"1").unwrap();
        c.drain_outputs();
        c.disconnected().unwrap();
        c.connected();
        c.online(Some(c.store().storage_uid())).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a1]);
        c.ack(a1).unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![b1]);
        c.ack(b1).unwrap();
        assert_eq!(c.store().stats().pending_events, 0);
    }

    /// docs/PROTOCOL.md section 2.8: after a disconnect, the events that
    /// were in flight go first, each name's events in raise order. Before,
    /// the drain restarted in raise order and A2 (never sent) went before
    /// B1 (in flight).
    #[test]
    fn in_flight_events_are_sent_first_after_a_reconnect() {
        let mut c = controller();
        c.connected();
        c.online(None).unwrap();
        let a1 = c.raise(EventKind::Queueing, "A", b"1").unwrap();
        let a2 = c.raise(EventKind::Queueing, "A", b"2").unwrap();
        let b1 = c.raise(EventKind::Queueing, "B", b"1").unwrap();
        assert_eq!(sent(&c.drain_outputs()), vec![a1, b1], "A2 waits for A1");
        c.disconnected().unwrap();
        c.connected();
        c.online(Some(c.store().storage_uid())).unwrap();
        let mut order = sent(&c.drain_outputs());
        while order.len() < 3 {
            let last = *order.last().unwrap();
            c.ack(last).unwrap();
            order.extend(sent(&c.drain_outputs()));
        }
        assert_eq!(order, vec![a1, b1, a2]);
        assert_eq!(
            c.store().mode(),
            Mode::Storage,
            "then the drain, in storage mode"
        );
    }

    #[test]
    fn a_new_controller_drains_a_store_left_in_cache_mode() {
        let store = Arc::new(ServiceStore::open_memory(&ServiceOptions::default()).unwrap());
        let mut first = ServiceController::new(store.clone());
        first.connected();
        first.online(None).unwrap();
        let a = first.raise(EventKind::Queueing, "A", b"1").unwrap();
        let b = first.raise(EventKind::Queueing, "A", b"2").unwrap();
        assert_eq!(store.mode(), Mode::Cache);
        drop(first);
        // Before: pump did nothing unless the store was in storage mode.
        let mut second = ServiceController::new(store.clone());
        second.connected();
        second.online(Some(store.storage_uid())).unwrap();
        assert_eq!(sent(&second.drain_outputs()), vec![a]);
        second.ack(a).unwrap();
        assert_eq!(sent(&second.drain_outputs()), vec![b]);
    }

    #[test]
    fn a_rejected_name_drops_the_event_and_reports_it() {
        let mut c = controller();
        let a = c.raise(EventKind::Queueing, "Unknown", b"1").unwrap();
        let b = c.raise(EventKind::Queueing, "B", b"2").unwrap();
        c.connected();
        c.online(None).unwrap();
        c.drain_outputs();
        c.rejected(a).unwrap();
        let out = c.drain_outputs();
        assert!(matches!(&out[0], ServiceOutput::Rejected(e) if e.uid == a));
        assert_eq!(sent(&out), vec![b]);
        assert_eq!(c.rejected_count(), 1);
        assert_eq!(c.store().stats().pending_events, 1);
    }
}

mod client {
    use std::sync::Arc;

    use crate::client::{ClientOptions, ClientStore, HandlerOrder};
    use crate::controller::{ClientAck, ClientController, ClientDecision, ClientHello, ClientKind};

    fn controller(kind: ClientKind, order: HandlerOrder) -> ClientController {
        let store = Arc::new(ClientStore::open_memory(&ClientOptions::default()));
        ClientController::new(store, kind, order)
    }

    #[test]
    fn hello_by_kind() {
        let mut c = controller(ClientKind::Stateless, HandlerOrder::RecordAfterHandle);
        assert_eq!(
            c.connected().unwrap(),
            ClientHello::Stateless { last_ids: vec![] }
        );
        c.incoming("B", 5).unwrap();
        c.handled("B", 5).unwrap();
        c.incoming("A", -1).unwrap();
        c.handled("A", -1).unwrap();
        assert_eq!(
            c.connected().unwrap(),
            ClientHello::Stateless {
                last_ids: vec![("A".into(), -1), ("B".into(), 5)]
            }
        );
        let s = controller(ClientKind::Stateful, HandlerOrder::RecordAfterHandle);
        assert_eq!(s.connected().unwrap(), ClientHello::Stateful);
    }

    #[test]
    fn record_after_handle_records_on_handled() {
        let mut c = controller(ClientKind::Stateful, HandlerOrder::RecordAfterHandle);
        assert_eq!(c.incoming("A", 1).unwrap(), ClientDecision::Handle);
        // Not yet recorded: a crash here redelivers (at least once).
        assert_eq!(c.incoming("A", 1).unwrap(), ClientDecision::Handle);
        let ack = c.handled("A", 1).unwrap();
        assert_eq!(
            ack,
            ClientAck {
                name: "A".into(),
                id: 1
            }
        );
        assert_eq!(c.incoming("A", 1).unwrap(), ClientDecision::AckDuplicate);
        assert_eq!(c.duplicates(), 1);
    }

    #[test]
    fn record_before_handle_records_on_incoming() {
        let mut c = controller(ClientKind::Stateful, HandlerOrder::RecordBeforeHandle);
        assert_eq!(c.incoming("A", 1).unwrap(), ClientDecision::Handle);
        // Recorded before the application saw it (at most once).
        assert_eq!(c.incoming("A", 1).unwrap(), ClientDecision::AckDuplicate);
        assert_eq!(c.handled("A", 1).unwrap().id, 1);
    }
}
