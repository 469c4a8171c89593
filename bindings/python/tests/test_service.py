"""ServiceStore: every method, at level 1 and on a journal file."""

import logging
import pathlib
import uuid

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind

Q = EventKind.QUEUEING


def open_store(kind, tmp_path, **kw):
    if kind == "memory":
        return snp.ServiceStore.open_memory(**kw)
    return snp.ServiceStore.open_file(tmp_path, uuid.uuid4(), durability="none", **kw)


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    s = open_store(request.param, tmp_path)
    yield s
    s.close()


def drain(store):
    out = []
    while (event := store.peek()) is not None:
        out.append(event)
        store.ack(event.uid)
    return out


def test_event_kind_is_an_int_enum():
    assert issubclass(EventKind, int)
    assert [(k.name, int(k)) for k in EventKind] == [
        ("REPLACING", 1),
        ("QUEUEING", 2),
        ("PRIVATE", 4),
        ("REPLACING_NULL", 5),
    ]
    assert [int(k) for k in snp.FailureKind] == [1, 2, 3, 4, 5, 6, 7]


def test_raise_peek_ack_in_order(store):
    uids = [store.raise_event(Q, "Temperature", str(i).encode()) for i in range(5)]
    assert all(isinstance(u, uuid.UUID) for u in uids)
    assert len(set(uids)) == 5
    first = store.peek()
    assert first == store.peek(), "peek returns the same event until it is acked"
    events = drain(store)
    assert [e.uid for e in events] == uids
    assert [e.args for e in events] == [b"0", b"1", b"2", b"3", b"4"]
    assert store.mode == "cache"
    assert store.peek_name(Q, "Temperature") is None


def test_stored_event_attributes(store):
    uid = store.raise_event(EventKind.PRIVATE, "Command", b"\x00\xff", client_id=-(2**63))
    event = store.peek()
    assert isinstance(event, snp.StoredEvent)
    assert event.kind is EventKind.PRIVATE
    assert event.name == "Command"
    assert event.args == b"\x00\xff"
    assert event.client_id == -(2**63)
    assert event.uid == uid and isinstance(event.uid, uuid.UUID)
    assert event.uid.int == uid.int and event.uid.version == 4
    assert event.uid.is_safe == uuid.UUID(int=uid.int).is_safe
    assert str(event.uid) == str(uid)
    assert "Command" in repr(event) and "PRIVATE" in repr(event)
    assert event == store.peek() and hash(event) == hash(store.peek())
    assert event != "not an event"
    with pytest.raises(AttributeError):
        event.name = "other"  # type: ignore[misc]


def test_kind_may_be_a_plain_int(store):
    store.raise_event(2, "Temperature", b"x")
    assert store.peek().kind is EventKind.QUEUEING


def test_replacing_null_and_default_args(store):
    store.raise_event(EventKind.REPLACING_NULL, "Alarm")
    event = store.peek()
    assert event.kind is EventKind.REPLACING_NULL and event.args == b"" and event.client_id is None


def test_caller_supplied_uid(store):
    mine = uuid.uuid4()
    assert store.raise_event(Q, "Temperature", b"1", uid=mine) == mine
    assert store.raise_event(Q, "Temperature", b"2", uid=str(uuid.UUID(int=7))) == uuid.UUID(int=7)
    assert [e.uid for e in drain(store)] == [mine, uuid.UUID(int=7)]


def test_ack_takes_the_text_form(store):
    store.raise_event(Q, "Temperature", b"1")
    store.ack(str(store.peek().uid))
    assert store.peek() is None


@pytest.mark.parametrize(
    "kind, name, args, client_id, fragment",
    [
        (Q, "", b"", None, "name"),
        (Q, "1abc", b"", None, "name"),
        (Q, "a" * 257, b"", None, "256"),
        (Q, "Temperature", b"x" * 2049, None, "2048"),
        (EventKind.PRIVATE, "Command", b"", None, "client id"),
        (Q, "Temperature", b"", 5, "client"),
        (EventKind.REPLACING_NULL, "Alarm", b"x", None, "no arguments"),
        (3, "Temperature", b"", None, "not an event kind"),
        (-1, "Temperature", b"", None, "not an event kind"),
        (2**70, "Temperature", b"", None, "not an event kind"),
    ],
)
def test_invalid_events_are_refused(store, kind, name, args, client_id, fragment):
    with pytest.raises(snp.InvalidArgumentError) as info:
        store.raise_event(kind, name, args, client_id)
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)
    assert store.stats().pending_events == 0


def test_largest_event_is_accepted(store):
    store.raise_event(Q, "a" * 256, b"x" * 2048)
    event = store.peek()
    assert event.name == "a" * 256 and len(event.args) == 2048


def test_wrong_argument_types(store):
    with pytest.raises(TypeError):
        store.raise_event(Q, b"bytes name", b"")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.raise_event(Q, "Temperature", "text args")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.ack(12345)  # type: ignore[arg-type]
    with pytest.raises(snp.InvalidArgumentError):
        store.ack("not-a-uuid")


def test_ack_of_another_uid_is_a_state_error(store):
    store.raise_event(Q, "Temperature", b"1")
    with pytest.raises(snp.InvalidStateError) as info:
        store.ack(uuid.uuid4())
    assert "refused: the event in flight is" in str(info.value)
    assert store.stats().pending_events == 1


def test_cache_mode_per_name(store):
    assert store.peek() is None and store.mode == "cache"
    a1 = store.raise_event(Q, "A", b"1")
    a2 = store.raise_event(Q, "A", b"2")
    b1 = store.raise_event(EventKind.REPLACING, "B", b"x")
    first = store.peek_name(Q, "A")
    assert first.uid == a1
    assert store.peek_name(Q, "A").uid == a1, "in flight until acked"
    assert store.peek_name(EventKind.REPLACING, "B").uid == b1
    nxt = store.ack_name(Q, "A", a1)
    assert nxt is not None and nxt.uid == a2
    assert store.ack_name(Q, "A", a2) is None
    with pytest.raises(snp.InvalidStateError):
        store.ack_name(EventKind.REPLACING, "B", uuid.uuid4())
    assert store.ack_name(EventKind.REPLACING, "B", b1) is None
    with pytest.raises(snp.InvalidStateError):
        store.peek()
    with pytest.raises(snp.InvalidStateError):
        store.ack(a1)
    with pytest.raises(snp.InvalidArgumentError):
        store.peek_name(3, "A")
    with pytest.raises(snp.InvalidArgumentError):
        store.ack_name(3, "A", a1)


def test_set_storage_mode(store):
    store.peek()
    assert store.mode == "cache"
    store.raise_event(Q, "A", b"1")
    store.set_storage_mode()
    assert store.mode == "storage"
    with pytest.raises(snp.InvalidStateError):
        store.peek_name(Q, "A")
    assert store.peek().args == b"1"


def test_replacing_events_collapse(store):
    store.raise_event(EventKind.REPLACING, "Door", b"open")
    store.raise_event(EventKind.REPLACING, "Door", b"closed")
    assert [e.args for e in store.pending()] == [b"closed"]
    assert store.stats().superseded_events == 1


def test_pending_changes_nothing(store):
    uids = [store.raise_event(Q, "T", bytes([i])) for i in range(3)]
    pending = store.pending()
    assert [e.uid for e in pending] == uids
    assert all(isinstance(e, snp.StoredEvent) for e in pending)
    assert store.stats().pending_events == 3 and store.mode == "storage"


def test_reset_keeps_the_storage_uid(store):
    before = store.storage_uid
    assert isinstance(before, uuid.UUID)
    for i in range(3):
        store.raise_event(Q, "T", bytes([i]))
    store.reset()
    assert store.peek() is None
    assert store.storage_uid == before
    assert store.stats().pending_events == 0


def test_flush_and_stats(store):
    store.raise_event(Q, "T", b"12345678")
    store.flush()
    stats = store.stats()
    assert isinstance(stats, snp.ServiceStats)
    assert stats.pending_events == 1 and stats.used_bytes > 0
    assert stats.capacity_bytes >= stats.used_bytes
    assert stats.mode == "storage" and stats.level == store.level
    assert stats.storage_uid == store.storage_uid
    for field in (
        "dropped_events",
        "rejected_events",
        "superseded_events",
        "invalidated_events",
        "failures",
        "events_lost",
    ):
        assert getattr(stats, field) == 0, field
    assert "pending_events=1" in repr(stats)
    with pytest.raises(AttributeError):
        stats.level = 3  # type: ignore[misc]


def test_memory_store_level_and_capacity():
    store = snp.ServiceStore.open_memory(capacity=0)
    assert store.level == 1 and store.journal_path is None
    assert store.stats().capacity_bytes == 16 * 1024
    assert snp.ServiceStore.open_memory(capacity=100).stats().capacity_bytes == 4096
    assert "level=1" in repr(store)


def test_capacity_drops_the_oldest_and_reports(reports):
    store = snp.ServiceStore.open_memory(capacity=4096, on_failure=reports)
    for i in range(200):
        store.raise_event(Q, "T", b"%03d" % i + b"x" * 60)
    stats = store.stats()
    assert stats.dropped_events > 0
    assert stats.pending_events + stats.dropped_events == 200
    assert set(reports.kinds()) == {snp.FailureKind.CAPACITY_DROP}
    assert sum(lost for _, _, lost in reports.calls) == stats.dropped_events
    newest = store.pending()[-1]
    assert newest.args.startswith(b"199")


def test_reject_new_raises_storage_full():
    store = snp.ServiceStore.open_memory(capacity=4096, overflow="reject_new")
    with pytest.raises(snp.StorageFullError) as info:
        for _ in range(200):
            store.raise_event(Q, "T", b"x" * 100)
    assert "overflow policy is reject-new" in str(info.value)
    assert store.stats().rejected_events == 1
    assert store.stats().dropped_events == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"overflow": "drop_newest"},
        {"capacity": -1},
        {"capacity": 1 << 40},
    ],
)
def test_bad_memory_options(kw):
    with pytest.raises(snp.InvalidArgumentError):
        snp.ServiceStore.open_memory(**kw)


def test_on_failure_must_be_callable():
    with pytest.raises(TypeError):
        snp.ServiceStore.open_memory(on_failure=42)  # type: ignore[arg-type]


def test_close_and_context_manager(store):
    assert not store.closed
    with store as same:
        assert same is store
        store.raise_event(Q, "T", b"1")
    assert store.closed
    assert "closed" in repr(store)
    store.close()  # again: nothing happens
    calls = [
        lambda: store.raise_event(Q, "T", b"1"),
        store.peek,
        lambda: store.ack(uuid.uuid4()),
        lambda: store.peek_name(Q, "T"),
        lambda: store.ack_name(Q, "T", uuid.uuid4()),
        store.pending,
        store.set_storage_mode,
        store.invalidate_ancient,
        store.reset,
        store.flush,
        store.stats,
        lambda: store.mode,
        lambda: store.level,
        lambda: store.storage_uid,
        lambda: store.journal_path,
    ]
    for call in calls:
        with pytest.raises(snp.StoreClosedError, match="closed"):
            call()


def test_exit_closes_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with open_store("file", tmp_path) as store:
            raise RuntimeError("boom")
    assert store.closed


# ----- file stores ----------------------------------------------------


def test_file_store_names_its_journal(tmp_path, service_uid):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        assert store.level == 2
        path = store.journal_path
        assert isinstance(path, pathlib.Path)
        assert path == tmp_path / f"softnet.service.persistence_{service_uid}.ssp"
        assert path.exists()
        assert str(path) in repr(store)


def test_file_store_keeps_events_across_reopen(tmp_path, service_uid):
    with snp.ServiceStore.open_file(str(tmp_path), service_uid) as store:
        uids = [store.raise_event(Q, "T", bytes([i])) for i in range(10)]
        storage_uid = store.storage_uid
    with snp.ServiceStore.open_file(tmp_path, str(service_uid)) as store:
        assert store.storage_uid == storage_uid
        assert [e.uid for e in drain(store)] == uids


@pytest.mark.parametrize(
    "kw",
    [
        {"durability": "sync"},
        {"durability": "none"},
        {"durability": "batch"},
        {"durability": "batch", "batch_max_ops": 1, "batch_max_delay": 0.0},
        {"capacity": 0, "memory_capacity": 0},
        {"overflow": "reject_new"},
    ],
)
def test_file_store_options(tmp_path, service_uid, kw):
    with snp.ServiceStore.open_file(tmp_path, service_uid, **kw) as store:
        store.raise_event(Q, "T", b"1")
        store.flush()
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        assert store.peek().args == b"1"


@pytest.mark.parametrize(
    "kw",
    [
        {"durability": "always"},
        {"overflow": "nope"},
        {"capacity": -5},
        {"memory_capacity": -5},
        {"capacity": 1 << 40},
        {"durability": "batch", "batch_max_delay": -1.0},
    ],
)
def test_bad_file_options(tmp_path, service_uid, kw):
    with pytest.raises(snp.InvalidArgumentError):
        snp.ServiceStore.open_file(tmp_path, service_uid, **kw)


def test_bad_service_uid(tmp_path):
    with pytest.raises(snp.InvalidArgumentError):
        snp.ServiceStore.open_file(tmp_path, "not-a-uuid")
    with pytest.raises(TypeError):
        snp.ServiceStore.open_file(tmp_path, 42)  # type: ignore[arg-type]


def test_second_opener_is_locked_out(tmp_path, service_uid):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        with pytest.raises(snp.StoreLockedError) as info:
            snp.ServiceStore.open_file(tmp_path, service_uid)
        assert str(store.journal_path) in str(info.value)
    snp.ServiceStore.open_file(tmp_path, service_uid).close()


def test_unusable_directory_falls_back_to_memory(tmp_path, service_uid, reports):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    store = snp.ServiceStore.open_file(blocker / "sub", service_uid, on_failure=reports)
    assert store.level == 1 and store.journal_path is None
    [(kind, message, lost)] = reports.calls
    assert kind is snp.FailureKind.FALLBACK and lost == 0
    assert str(blocker / "sub") in message
    store.raise_event(Q, "T", b"still works")
    assert store.peek().args == b"still works"
    assert store.stats().failures == 1


def test_foreign_file_is_set_aside_and_reported(tmp_path, service_uid, reports):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        store.raise_event(Q, "T", b"1")
        path = store.journal_path
    data = bytearray(path.read_bytes())
    data[0:8] = b"NOTOURS!"
    data[4096:4104] = b"NOTOURS!"  # the second header slot, one page on
    path.write_bytes(bytes(data))
    with snp.ServiceStore.open_file(tmp_path, service_uid, on_failure=reports) as store:
        assert store.level == 2
        assert snp.FailureKind.CORRUPTION in reports.kinds()
        assert any(str(path) in message for _, message, _ in reports.calls)
    assert len(list(tmp_path.iterdir())) == 2, "the damaged file is kept beside the new one"


def test_invalidate_ancient(tmp_path, service_uid):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        for i in range(3):
            store.raise_event(Q, "Old", bytes([i]))
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        fresh = store.raise_event(Q, "New", b"n")
        assert store.invalidate_ancient() == 3
        assert store.invalidate_ancient() == 0
        assert [e.uid for e in store.pending()] == [fresh]
        assert store.stats().invalidated_events == 3


def test_failure_callback_exception_is_logged_not_raised(caplog):
    def callback(kind, message, lost):
        raise RuntimeError("callback bug")

    store = snp.ServiceStore.open_memory(capacity=4096, on_failure=callback)
    with caplog.at_level(logging.ERROR, logger="softnet_persistence"):
        for _ in range(100):
            store.raise_event(Q, "T", b"x" * 100)
    assert store.stats().dropped_events > 0
    records = [r for r in caplog.records if r.name == "softnet_persistence"]
    assert records, "the callback's exception is logged"
    assert "on_failure callback raised" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert "callback bug" in caplog.text


def test_failure_callback_may_call_back_into_the_store():
    seen = []

    def callback(kind, message, lost):
        seen.append(store.stats().dropped_events)

    store = snp.ServiceStore.open_memory(capacity=4096, on_failure=callback)
    for _ in range(100):
        store.raise_event(Q, "T", b"x" * 100)
    assert seen and seen[-1] == store.stats().dropped_events


def test_a_dropped_file_store_releases_its_file(tmp_path, service_uid):
    store = snp.ServiceStore.open_file(tmp_path, service_uid)
    uid = store.raise_event(Q, "T", b"1")
    del store
    with snp.ServiceStore.open_file(tmp_path, service_uid) as again:
        assert again.peek().uid == uid
