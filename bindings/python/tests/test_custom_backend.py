"""Custom level 2 written in Python: a working backend keeps every rule, a
raising one makes the store fall back to level 1 (reported), never a crash
and never an exception out of raise_event."""

import logging
import uuid

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind

from backends import DictLog, FailingLog

Q = EventKind.QUEUEING


def drain(store):
    out = []
    while (event := store.peek()) is not None:
        out.append(event)
        store.ack(event.uid)
    return out


def test_custom_store_keeps_events_across_reopen():
    backend = DictLog()
    with snp.ServiceStore.open_custom(backend) as store:
        assert store.level == 2 and store.journal_path is None
        uids = [store.raise_event(Q, "T", bytes([i])) for i in range(5)]
        storage_uid = store.storage_uid
        store.flush()
    assert len(backend.records) == 5
    assert backend.meta[1:] == storage_uid.bytes
    with snp.ServiceStore.open_custom(backend) as store:
        assert store.storage_uid == storage_uid
        assert [e.uid for e in drain(store)] == uids
    assert backend.records == {}
    assert backend.removed == ["acknowledged"] * 5
    assert {"scan", "commit", "flush", "read"} <= set(backend.calls)


def test_custom_store_reasons_and_reset():
    backend = DictLog()
    store = snp.ServiceStore.open_custom(backend, capacity=8 * 1024)
    store.raise_event(EventKind.REPLACING, "Door", b"open")
    store.raise_event(EventKind.REPLACING, "Door", b"closed")
    assert "superseded" in backend.removed
    for _ in range(200):
        store.raise_event(Q, "T", b"x" * 200)
    assert "dropped" in backend.removed
    store.reset()
    assert backend.records == {} and "clear" in backend.calls
    store.close()


def test_custom_store_invalidate_ancient():
    backend = DictLog()
    with snp.ServiceStore.open_custom(backend) as store:
        store.raise_event(Q, "Old", b"1")
    with snp.ServiceStore.open_custom(backend) as store:
        store.raise_event(Q, "New", b"2")
        assert store.invalidate_ancient() == 1
        assert "invalidated" in backend.removed


def test_missing_methods_are_refused():
    class Partial:
        def append(self, payload):
            return 1

    with pytest.raises(snp.InvalidArgumentError) as info:
        snp.ServiceStore.open_custom(Partial())
    assert "remove" in str(info.value) and "set_metadata" in str(info.value)


def test_raising_backend_falls_back_and_events_stay_deliverable(reports, caplog):
    class Breaks(DictLog):
        broken = False

        def append(self, payload):
            if self.broken:
                raise OSError("database connection lost")
            return super().append(payload)

    backend = Breaks()
    store = snp.ServiceStore.open_custom(backend, on_failure=reports, memory_capacity=64 * 1024)
    assert store.previous_storage_uid is None
    level2_uid = store.storage_uid
    before = [store.raise_event(Q, "T", bytes([i])) for i in range(3)]
    backend.broken = True
    with caplog.at_level(logging.WARNING, logger="softnet_persistence"):
        after = store.raise_event(Q, "T", b"after")  # no exception escapes
    assert store.level == 1
    [(kind, message, lost)] = reports.calls
    assert kind is snp.FailureKind.FALLBACK and lost == 0
    assert "database connection lost" in message and "append()" in message
    assert "database connection lost" in caplog.text
    assert [e.uid for e in drain(store)] == before + [after]
    stats = store.stats()
    assert stats.failures == 1 and stats.events_lost == 0
    assert stats.storage_uid != uuid.UUID(bytes=backend.meta[1:17])
    assert store.previous_storage_uid == level2_uid


def test_backend_failing_at_open_falls_back(reports):
    class NoScan(DictLog):
        def scan(self):
            raise RuntimeError("cannot list")

    store = snp.ServiceStore.open_custom(NoScan(), on_failure=reports)
    assert store.level == 1
    assert reports.kinds() == [snp.FailureKind.FALLBACK]
    store.raise_event(Q, "T", b"1")
    assert store.peek().args == b"1"


@pytest.mark.parametrize(
    "method, value",
    [
        ("append", "not an int"),
        ("append", -1),
        ("read", "not bytes"),
        ("metadata", None),
        ("scan", [(1,)]),
        ("scan", 42),
    ],
)
def test_wrong_return_types_are_backend_failures(method, value, reports):
    backend = DictLog()
    store = snp.ServiceStore.open_custom(backend, on_failure=reports)
    at_open = method in ("scan", "metadata")
    if not at_open:
        store.raise_event(Q, "T", b"1")
    setattr(backend, method, lambda *args: value)
    if at_open:
        store.close()
        store = snp.ServiceStore.open_custom(backend, on_failure=reports)
    else:
        store.raise_event(Q, "T", b"2")
        store.peek()
    assert store.level == 1
    assert snp.FailureKind.FALLBACK in reports.kinds()
    assert any(f"{method}()" in m for _, m, _ in reports.calls)


@pytest.mark.parametrize("fail_at", range(1, 40))
def test_failure_at_every_call(fail_at, reports):
    """Whichever backend call raises, nothing escapes and every raised event
    is delivered once or counted as lost."""
    backend = FailingLog(fail_at)
    store = snp.ServiceStore.open_custom(backend, on_failure=reports)
    raised = [store.raise_event(Q, "T", bytes([i])) for i in range(4)]
    first = store.peek()
    store.ack(first.uid)
    raised += [store.raise_event(EventKind.REPLACING, "R", b"r")]
    delivered = [first] + drain(store)
    uids = [e.uid for e in delivered]
    assert len(uids) == len(set(uids))
    assert set(uids) <= set(raised)
    lost = store.stats().events_lost
    assert len(uids) + lost == len(raised)
    assert uids == [u for u in raised if u in set(uids)], "order kept"
    if len(backend.calls) >= fail_at:
        assert store.level == 1
        assert snp.FailureKind.FALLBACK in reports.kinds()
    store.close()


def test_a_dropped_store_is_closed():
    backend = DictLog()
    store = snp.ServiceStore.open_custom(backend)
    store.raise_event(Q, "T", b"1")
    backend.calls.clear()
    del store
    assert backend.calls == ["flush"]
