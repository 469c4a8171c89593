"""Failure callbacks that call their own store, and custom backends that do.

- The natural pattern: on_failure raises an event into its full store for
  every capacity drop (each of those raises drops one more). The callback is
  never entered recursively: the drop its first raise causes is passed on
  after it returns, the drop its second raise causes is held back, and one
  FailureKind.CALLBACK_LOOP report per outer raise says so. (The release
  before nested the callback until the stack overflowed.)
- A callback that raises a Python exception: logged (logger
  "softnet_persistence"), never out of the store call; the store stays
  consistent.
- A callback that closes the store.
- A custom backend that calls its own store gets InvalidStateError instead
  of a deadlock.
"""

import logging

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind, FailureKind

from backends import DictLog

Q = EventKind.QUEUEING
OUTER = 1000
# Every event of these tests has the same size: a raise into the full store
# drops exactly one.
ARGS_LEN = 12
# Names are 6 bytes: "Fillup", "Outers", "FromCb", "Afters".


def args(tag: str, i: int) -> bytes:
    return (tag + "%010d" % i).encode()[:ARGS_LEN]


class Callback:
    """on_failure: counts reports and its own nesting; on a capacity drop,
    does what ``on_drop`` says (if set)."""

    def __init__(self):
        self.store = None
        self.on_drop = None
        self.depth = 0
        self.max_depth = 0
        self.kinds = []
        self.lost = {}
        self.loop_messages = []

    def __call__(self, kind, message, events_lost):
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        try:
            assert isinstance(kind, FailureKind)
            self.kinds.append(kind)
            self.lost[kind] = self.lost.get(kind, 0) + events_lost
            if kind is FailureKind.CALLBACK_LOOP:
                self.loop_messages.append(message)
            if kind is FailureKind.CAPACITY_DROP and self.on_drop is not None:
                self.on_drop()
        finally:
            self.depth -= 1

    def count(self, kind):
        return self.kinds.count(kind)


def fill(store, cb):
    """Raises until the first drop: the store is full to the brim. Returns
    the uids raised."""
    uids = []
    while store.stats().dropped_events == 0:
        uids.append(store.raise_event(Q, "Fillup", args("fi", len(uids))))
        assert len(uids) < 1000
    assert cb.count(FailureKind.CAPACITY_DROP) == 1
    return uids


def open_store(level, tmp_path, service_uid, cb):
    if level == 1:
        return snp.ServiceStore.open_memory(capacity=4096, on_failure=cb)
    return snp.ServiceStore.open_file(
        tmp_path, service_uid, capacity=8192, durability="none", on_failure=cb
    )


@pytest.mark.parametrize("level", [1, 2])
def test_callback_raising_into_its_full_store(tmp_path, service_uid, level):
    cb = Callback()
    store = open_store(level, tmp_path, service_uid, cb)
    cb.store = store
    order = fill(store, cb)
    brim = store.stats().pending_events
    assert brim == len(order) - 1

    def raise_one():
        order.append(store.raise_event(Q, "FromCb", args("cb", len(order))))

    cb.on_drop = raise_one
    wrong = 0
    for i in range(OUTER):
        drops = cb.count(FailureKind.CAPACITY_DROP)
        loops = cb.count(FailureKind.CALLBACK_LOOP)
        n = len(order)
        slot = len(order)
        order.append(None)  # the outer event is stored before the callback's
        order[slot] = store.raise_event(Q, "Outers", args("ou", i))
        if (
            cb.count(FailureKind.CAPACITY_DROP) - drops != 2
            or cb.count(FailureKind.CALLBACK_LOOP) - loops != 1
            or len(order) - n != 3
        ):
            wrong += 1
    assert wrong == 0
    assert cb.max_depth == 1 and cb.depth == 0
    assert cb.count(FailureKind.CALLBACK_LOOP) == OUTER
    assert cb.lost[FailureKind.CALLBACK_LOOP] == 0
    assert all("1 failure report" in m for m in cb.loop_messages)
    assert cb.lost[FailureKind.CAPACITY_DROP] == 1 + 2 * OUTER

    stats = store.stats()
    raised = len(order)
    assert raised == len(order) == brim + 1 + 3 * OUTER
    assert stats.pending_events == brim
    assert stats.dropped_events == 1 + 3 * OUTER  # held-back drops included
    assert stats.pending_events + stats.dropped_events == raised
    cb.on_drop = None
    if level == 2:
        store.close()
        store = open_store(level, tmp_path, service_uid, cb)
    assert [e.uid for e in store.pending()] == order[-brim:]
    store.close()


def test_callback_raising_an_exception(caplog):
    cb = Callback()
    store = snp.ServiceStore.open_memory(capacity=4096, on_failure=cb)
    cb.store = store
    order = fill(store, cb)
    brim = len(order) - 1

    def raise_one_then_fail():
        order.append(store.raise_event(Q, "FromCb", args("cb", len(order))))
        raise RuntimeError("boom from on_failure")

    cb.on_drop = raise_one_then_fail
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="softnet_persistence"):
        for i in range(100):
            order.append(store.raise_event(Q, "Outers", args("ou", i)))
    # Never out of raise_event; every exception logged, each time.
    records = [r for r in caplog.records if r.name == "softnet_persistence"]
    assert len(records) == 200  # two drops passed on per outer raise
    assert all("on_failure" in r.getMessage() for r in records)
    assert all(r.exc_info and "boom from on_failure" in str(r.exc_info[1]) for r in records)
    assert cb.max_depth == 1
    assert cb.count(FailureKind.CALLBACK_LOOP) == 100
    stats = store.stats()
    assert stats.pending_events == brim
    assert stats.pending_events + stats.dropped_events == len(order)
    assert stats.dropped_events == 1 + 3 * 100
    cb.on_drop = None
    # The store works on.
    uid = store.raise_event(Q, "Afters", args("af", 0))
    assert store.pending()[-1].uid == uid
    store.close()


def test_callback_raising_an_exception_on_every_report(caplog):
    """The loop report's callback raises too: still logged, still ended."""

    def always_fail(kind, message, events_lost):
        if kind is FailureKind.CAPACITY_DROP:
            store.raise_event(Q, "FromCb", args("cb", 0))
        raise ValueError(f"failing on {kind.name}")

    store = snp.ServiceStore.open_memory(capacity=4096, on_failure=always_fail)
    with caplog.at_level(logging.ERROR, logger="softnet_persistence"):
        raised = 0
        while store.stats().dropped_events == 0:
            store.raise_event(Q, "Fillup", args("fi", raised))
            raised += 1
        caplog.clear()
        for i in range(10):
            store.raise_event(Q, "Outers", args("ou", i))
    messages = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert messages.count("failing on CAPACITY_DROP") == 20
    assert messages.count("failing on CALLBACK_LOOP") == 10
    stats = store.stats()
    assert stats.dropped_events == 3 + 3 * 10  # the fill's drop looped too
    store.close()


@pytest.mark.parametrize("level", [1, 2])
def test_callback_closing_the_store(tmp_path, service_uid, level):
    cb = Callback()
    store = open_store(level, tmp_path, service_uid, cb)
    cb.store = store
    order = fill(store, cb)
    brim = len(order) - 1
    after_close = []

    def close_then_raise():
        store.close()
        try:
            store.raise_event(Q, "FromCb", args("cb", 0))
            after_close.append("raised")
        except snp.StoreClosedError:
            after_close.append("closed")

    cb.on_drop = close_then_raise
    uid = store.raise_event(Q, "Outers", args("ou", 0))  # returns normally
    order.append(uid)
    assert after_close == ["closed"]
    assert store.closed
    assert cb.max_depth == 1
    with pytest.raises(snp.StoreClosedError):
        store.raise_event(Q, "Outers", args("ou", 1))
    with pytest.raises(snp.StoreClosedError):
        store.stats()
    store.close()  # again: fine
    if level == 2:
        # The journal was released and holds the newest events, the outer
        # raise's last.
        cb.on_drop = None
        with open_store(level, tmp_path, service_uid, cb) as reopened:
            assert [e.uid for e in reopened.pending()] == order[-brim:]


def test_callback_acking_the_event_in_flight():
    cb = Callback()
    store = snp.ServiceStore.open_memory(capacity=4096, on_failure=cb)
    cb.store = store
    order = fill(store, cb)
    acked = []

    def ack_oldest():
        event = store.peek()
        store.ack(event.uid)
        acked.append(event.uid)

    cb.on_drop = ack_oldest
    for i in range(200):
        in_flight = store.peek()
        before = len(acked)
        order.append(store.raise_event(Q, "Outers", args("ou", i)))
        if len(acked) > before:
            # The one in flight was dropped; its late ack is refused.
            with pytest.raises(snp.InvalidStateError):
                store.ack(in_flight.uid)
        else:
            assert store.peek().uid == in_flight.uid
    assert cb.max_depth == 1
    assert cb.count(FailureKind.CALLBACK_LOOP) == 0  # an ack causes no report
    assert len(acked) == 100
    stats = store.stats()
    assert stats.pending_events + stats.dropped_events + len(acked) == len(order)
    pending = [e.uid for e in store.pending()]
    assert pending == order[-len(pending):]
    store.close()


class CallingLog(DictLog):
    """A backend whose append calls the store it backs."""

    def __init__(self):
        super().__init__()
        self.store = None
        self.outcomes = []

    def append(self, payload: bytes) -> int:
        if self.store is not None:
            for name, call in [
                ("raise_event", lambda: self.store.raise_event(Q, "FromBackend")),
                ("peek", self.store.peek),
                ("stats", lambda: self.store.stats().pending_events),
            ]:
                try:
                    got = call()
                    self.outcomes.append((name, "returned", got))
                except BaseException as e:  # noqa: BLE001 - a panic is a BaseException
                    self.outcomes.append((name, type(e).__name__, str(e)))
        return super().append(payload)


def test_backend_calling_its_own_store():
    backend = CallingLog()
    cb = Callback()
    store = snp.ServiceStore.open_custom(backend, on_failure=cb)
    backend.store = store
    uid = store.raise_event(Q, "Outers", b"1")  # no deadlock
    backend.store = None
    outcome = {o[0]: o[1:] for o in backend.outcomes}
    assert outcome["raise_event"][0] == "InvalidStateError", outcome
    assert "custom backend" in outcome["raise_event"][1]
    assert outcome["peek"][0] == "InvalidStateError", outcome
    # Readers never wait for the store's lock: they answer from inside the
    # backend too, with the values as of the last call that finished.
    assert outcome["stats"] == ("returned", 0), outcome
    assert store.level == 2 and cb.kinds == []
    assert [e.uid for e in store.pending()] == [uid]
    store.close()


def test_without_a_callback_reports_are_logged(tmp_path, service_uid, caplog):
    """No on_failure: a store that could not open its journal (the
    directory is missing) says so through logging, as an error naming the
    directory, instead of running in memory silently."""
    caplog.set_level(logging.WARNING, logger="softnet_persistence")
    missing = tmp_path / "not-there"
    store = snp.ServiceStore.open_file(missing, service_uid)
    assert store.stats().level == 1
    records = [r for r in caplog.records if r.name == "softnet_persistence"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.ERROR
    assert "not-there" in records[0].getMessage()
    store.close()


def test_with_a_callback_nothing_is_logged(tmp_path, service_uid, caplog):
    caplog.set_level(logging.DEBUG, logger="softnet_persistence")
    seen = []
    store = snp.ServiceStore.open_file(
        tmp_path / "not-there", service_uid, on_failure=lambda *r: seen.append(r)
    )
    assert [kind for kind, _, _ in seen] == [FailureKind.FALLBACK]
    assert not [r for r in caplog.records if r.name == "softnet_persistence"]
    store.close()


def test_strict_open_raises_where_the_default_falls_back(tmp_path, service_uid):
    missing = tmp_path / "not-there"
    with pytest.raises(snp.PersistenceIOError) as raised:
        snp.ServiceStore.open_file(missing, service_uid, strict=True)
    assert "not-there" in str(raised.value)
    with pytest.raises(snp.PersistenceIOError):
        snp.ClientStore.open_file(missing, "broker", "strict", strict=True)
    assert not missing.exists()
    missing.mkdir()
    store = snp.ServiceStore.open_file(missing, service_uid, strict=True)
    assert store.stats().level == 2
    store.close()
