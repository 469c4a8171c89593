"""The delivery controllers (docs/PROTOCOL.md): ServiceController drives a
service store through the storage-uid handshake, the strict in-order drain,
per-name cache mode, resends, acks, rejections and disconnects;
ClientController decides which incoming events reach a client's
application, in both handler orders. Also: a closed store, bad arguments,
failure callbacks that call the controller (InvalidStateError, no
deadlock), and threads sharing a controller."""

import dataclasses
import math
import os
import sys
import threading
import time
import uuid
from collections import defaultdict

import pytest

import softnet_persistence as snp
from softnet_persistence import Decision, EventKind, Rejected, SendEvent, SendStorageUid

from backends import DictLog

Q = EventKind.QUEUEING
R = EventKind.REPLACING


def sent(outputs):
    """(name, args) of every SendEvent, in order."""
    return [(o.event.name, o.event.args) for o in outputs if isinstance(o, SendEvent)]


def sent_uids(outputs):
    return [o.event.uid for o in outputs if isinstance(o, SendEvent)]


def go_online(ctl, broker_uid=None, now=0.0):
    ctl.tick(now)
    ctl.connected()
    ctl.online(broker_uid)
    return ctl.drain_outputs()


def deliver_all(ctl, outputs=()):
    """Plays a perfect broker: acks every event sent, until nothing is in
    flight. Returns the events in the order they were sent."""
    delivered = []
    queue = list(outputs)
    while True:
        for o in queue:
            if isinstance(o, SendEvent):
                delivered.append(o.event)
                ctl.ack(o.event.uid)
        queue = ctl.drain_outputs()
        if not queue:
            assert ctl.in_flight == [], "an event in flight that was never acked"
            return delivered


class Breaks(DictLog):
    """A custom level 2 whose appends fail once ``broken`` is set."""

    broken = False

    def append(self, payload):
        if self.broken:
            raise OSError("database connection lost")
        return super().append(payload)


@pytest.fixture(params=["memory", "file", "custom"])
def store(request, tmp_path):
    if request.param == "memory":
        s = snp.ServiceStore.open_memory(capacity=1 << 20)
    elif request.param == "file":
        s = snp.ServiceStore.open_file(tmp_path, uuid.uuid4(), durability="none")
    else:
        s = snp.ServiceStore.open_custom(DictLog())
    yield s
    s.close()


# --- outputs and types ------------------------------------------------------


def test_output_types_are_frozen_dataclasses(store):
    ctl = snp.ServiceController(store)
    uid = ctl.raise_event(Q, "A", b"1")
    outputs = go_online(ctl)
    assert outputs == [SendStorageUid(store.storage_uid), SendEvent(outputs[1].event)]
    out = outputs[1]
    assert isinstance(out.event, snp.StoredEvent) and out.event.uid == uid
    assert out == SendEvent(out.event) and hash(out) == hash(SendEvent(out.event))
    assert repr(outputs[0]) == f"SendStorageUid(storage_uid={store.storage_uid!r})"
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.event = None
    assert SendEvent.__match_args__ == ("event",)
    assert SendStorageUid.__match_args__ == ("storage_uid",)
    assert Rejected.__match_args__ == ("event",)


def test_decision_is_an_int_enum_with_the_c_codes():
    assert [(d.name, int(d)) for d in Decision] == [("HANDLE", 0), ("ACK_DUPLICATE", 1)]
    assert snp.Decision is Decision
    for name in ["ServiceController", "ClientController", "Decision", "SendEvent",
                 "SendStorageUid", "Rejected", "ServiceOutput"]:
        assert name in snp.__all__


def test_properties_and_repr(store):
    ctl = snp.ServiceController(store, resend_timeout=2.5)
    assert ctl.store is store
    assert ctl.resend_timeout == 2.5
    assert ctl.is_online is False and ctl.in_flight == []
    assert ctl.stale_acks == 0 and ctl.rejected_count == 0
    assert ctl.next_deadline() is None
    assert repr(ctl) == "<ServiceController online=False in_flight=0 stale_acks=0 rejected_count=0>"
    assert snp.ServiceController(store).resend_timeout == 30.0


# --- 2.1 handshake ----------------------------------------------------------


def test_broker_remembers_no_uid(store):
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    ctl.raise_event(Q, "B", b"1")
    ctl.tick(0.0)
    assert ctl.drain_outputs() == []  # offline: stored, not sent
    ctl.connected()
    ctl.raise_event(Q, "C", b"1")
    assert ctl.drain_outputs() == []  # connected, not online: not sent
    assert ctl.is_online is False
    ctl.online(None)
    assert ctl.is_online is True
    outputs = ctl.drain_outputs()
    assert outputs[0] == SendStorageUid(store.storage_uid)
    assert sent_uids(outputs) == [a1]
    assert ctl.in_flight == [a1]


def test_broker_remembers_our_uid(store):
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    outputs = go_online(ctl, store.storage_uid)
    assert [type(o) for o in outputs] == [SendEvent]
    assert sent_uids(outputs) == [a1]
    # The text form of the uid works too.
    ctl2 = snp.ServiceController(snp.ServiceStore.open_memory())
    ctl2.raise_event(Q, "A", b"1")
    assert [type(o) for o in go_online(ctl2, str(ctl2.store.storage_uid))] == [SendEvent]


def test_broker_remembers_another_uid_invalidates_ancient_events(tmp_path, service_uid):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        store.raise_event(Q, "A", b"ancient-1")
        store.raise_event(Q, "B", b"ancient-2")
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        ctl = snp.ServiceController(store)
        new = ctl.raise_event(Q, "A", b"new")
        outputs = go_online(ctl, uuid.uuid4())
        assert outputs[0] == SendStorageUid(store.storage_uid)
        assert sent_uids(outputs) == [new]
        assert store.stats().invalidated_events == 2
        assert [e.args for e in deliver_all(ctl, outputs)] == [b"new"]
        assert store.pending() == []


def test_broker_remembers_our_uid_after_reopen_keeps_everything(tmp_path, service_uid):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        first = [store.raise_event(Q, "A", b"%d" % i) for i in range(3)]
        broker_uid = store.storage_uid
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        assert store.storage_uid == broker_uid
        ctl = snp.ServiceController(store)
        later = ctl.raise_event(Q, "B", b"later")
        outputs = go_online(ctl, broker_uid)
        assert not any(isinstance(o, SendStorageUid) for o in outputs)
        assert [e.uid for e in deliver_all(ctl, outputs)] == first + [later]
        assert store.stats().invalidated_events == 0


def transcript(ctl, outputs):
    """Plays a perfect broker as deliver_all does; returns every output as
    ("uid", storage uid) or ("event", event uid), in order."""
    log = []
    queue = list(outputs)
    while queue:
        for o in queue:
            if isinstance(o, SendStorageUid):
                log.append(("uid", o.storage_uid))
            elif isinstance(o, SendEvent):
                log.append(("event", o.event.uid))
                ctl.ack(o.event.uid)
        queue = ctl.drain_outputs()
    assert ctl.in_flight == []
    return log


def fallen_back(reports):
    """A custom store whose level 2 failed after two events: those were
    moved to level 1 (stored under the old uid), the third was raised
    after the failure."""
    backend = Breaks()
    store = snp.ServiceStore.open_custom(backend, on_failure=reports)
    old_uid = store.storage_uid
    ctl = snp.ServiceController(store)
    moved = [ctl.raise_event(Q, "A", b"%d" % i) for i in range(2)]
    backend.broken = True
    after = ctl.raise_event(Q, "A", b"after")
    assert store.level == 1 and store.previous_storage_uid == old_uid
    assert store.storage_uid != old_uid
    assert reports.kinds() == [snp.FailureKind.FALLBACK]
    return store, ctl, old_uid, moved, after


def test_broker_remembers_the_uid_before_a_fallback(reports):
    """PROTOCOL.md 2.1 and 2.9: nothing is invalidated; the moved events go
    first under the old uid, in raise order, then the new uid, then the
    events raised since."""
    store, ctl, old_uid, moved, after = fallen_back(reports)
    log = transcript(ctl, go_online(ctl, old_uid))
    assert log == [("event", moved[0]), ("event", moved[1]),
                   ("uid", store.storage_uid), ("event", after)]
    assert store.stats().invalidated_events == 0 and store.pending() == []


def test_broker_remembers_no_uid_after_a_fallback(reports):
    """PROTOCOL.md 2.9: a broker that remembers no uid has no duplicate
    state to keep: the new uid is told at once."""
    store, ctl, _, moved, after = fallen_back(reports)
    log = transcript(ctl, go_online(ctl, None))
    assert log == [("uid", store.storage_uid)] + [("event", u) for u in moved + [after]]


@pytest.mark.parametrize("mode", ["storage", "cache"])
def test_a_new_storage_uid_while_online(mode, reports):
    """PROTOCOL.md 2.9: a level-2 failure gives the store a new uid while
    an event is in flight. Its resend keeps going out under the old uid;
    nothing new is sent until it settles; then the events stored under the
    old uid (moved by the fallback) go out in raise order, and only then
    the new uid and the events raised since."""
    backend = Breaks()
    store = snp.ServiceStore.open_custom(backend, on_failure=reports)
    old_uid = store.storage_uid
    ctl = snp.ServiceController(store, resend_timeout=1.0)
    if mode == "storage":
        a1 = ctl.raise_event(Q, "A", b"1")
        a2 = ctl.raise_event(Q, "A", b"2")
        outputs = go_online(ctl)
        assert outputs == [SendStorageUid(old_uid), SendEvent(outputs[1].event)]
        moved_pending = [a2]
    else:
        assert go_online(ctl) == [SendStorageUid(old_uid)]
        a1 = ctl.raise_event(Q, "A", b"1")
        assert sent_uids(ctl.drain_outputs()) == [a1]
        moved_pending = []
    assert store.mode == mode
    backend.broken = True
    b1 = ctl.raise_event(Q, "B", b"1")
    assert store.level == 1 and store.storage_uid != old_uid
    assert store.previous_storage_uid == old_uid
    assert ctl.drain_outputs() == []  # nothing new while a1 is in flight
    ctl.tick(1.0)
    assert sent_uids(ctl.drain_outputs()) == [a1]  # the resend does not wait
    ctl.ack(a1)
    log = transcript(ctl, ctl.drain_outputs())
    assert log == [("event", u) for u in moved_pending] + [
        ("uid", store.storage_uid), ("event", b1)]
    assert store.pending() == [] and ctl.stale_acks == 0
    assert reports.kinds() == [snp.FailureKind.FALLBACK]


# --- 2.2 / 2.3 drain and cache mode --------------------------------------------


def test_strict_drain_in_storage_mode_then_cache_mode(store):
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    b1 = ctl.raise_event(Q, "B", b"1")
    outputs = go_online(ctl)
    assert sent_uids(outputs) == [a1]
    # Raised during the drain: queued behind the backlog, not sent.
    c1 = ctl.raise_event(Q, "C", b"1")
    assert ctl.drain_outputs() == []
    assert store.mode == "storage" and ctl.in_flight == [a1]
    ctl.ack(a1)
    assert sent_uids(ctl.drain_outputs()) == [b1]
    ctl.ack(b1)
    assert sent_uids(ctl.drain_outputs()) == [c1]
    ctl.ack(c1)
    assert ctl.drain_outputs() == [] and ctl.in_flight == []
    assert store.mode == "cache"
    # Cache mode: each name has its own flight, sent at once.
    a2 = ctl.raise_event(Q, "A", b"2")
    b2 = ctl.raise_event(Q, "B", b"2")
    assert sent_uids(ctl.drain_outputs()) == [a2, b2]
    assert sorted(ctl.in_flight) == sorted([a2, b2])
    a3 = ctl.raise_event(Q, "A", b"3")
    assert ctl.drain_outputs() == []  # waits for a2's ack
    ctl.ack(b2)
    assert ctl.drain_outputs() == []
    ctl.ack(a2)
    assert sent_uids(ctl.drain_outputs()) == [a3]
    ctl.ack(a3)
    assert store.pending() == [] and ctl.stale_acks == 0


def test_replacing_in_cache_mode_keeps_the_newest_pending(store):
    ctl = snp.ServiceController(store)
    go_online(ctl)
    assert store.mode == "cache"
    r1 = ctl.raise_event(R, "Door", b"open")
    ctl.raise_event(R, "Door", b"closed")
    r3 = ctl.raise_event(EventKind.REPLACING_NULL, "Door")
    assert sent_uids(ctl.drain_outputs()) == [r1]
    ctl.ack(r1)
    assert sent_uids(ctl.drain_outputs()) == [r3]


def test_private_events_and_caller_uids(store):
    ctl = snp.ServiceController(store)
    mine = uuid.uuid4()
    assert ctl.raise_event(EventKind.PRIVATE, "P", b"p", 7) != mine
    assert ctl.raise_event(Q, "A", b"a", uid=mine) == mine
    assert ctl.raise_event(Q, "A", b"b", uid=str(uuid.UUID(int=5))) == uuid.UUID(int=5)
    delivered = deliver_all(ctl, go_online(ctl))
    assert [(e.kind, e.client_id) for e in delivered] == [
        (EventKind.PRIVATE, 7), (Q, None), (Q, None)]
    assert [e.uid for e in delivered][1:] == [mine, uuid.UUID(int=5)]


# --- 2.4 / 2.5 acks and resends --------------------------------------------------


def test_resend_after_timeout_by_tick_and_next_deadline(store):
    ctl = snp.ServiceController(store, resend_timeout=10.0)
    ctl.tick(100.0)
    a1 = ctl.raise_event(Q, "A", b"1")
    assert sent_uids(go_online(ctl, store.storage_uid, now=100.0)) == [a1]
    assert ctl.next_deadline() == 110.0
    ctl.tick(109.5)
    assert ctl.drain_outputs() == []
    ctl.tick(110.0)
    assert sent_uids(ctl.drain_outputs()) == [a1]  # same uid
    assert ctl.next_deadline() == 120.0
    ctl.tick(50.0)  # earlier than before: changes nothing
    assert ctl.drain_outputs() == [] and ctl.next_deadline() == 120.0
    ctl.ack(a1)
    assert ctl.next_deadline() is None
    assert store.mode == "cache"
    # Several names overdue: resent oldest first, each with a new deadline.
    b1 = ctl.raise_event(Q, "B", b"1")  # the controller's time is still 110
    assert sent_uids(ctl.drain_outputs()) == [b1]
    assert ctl.next_deadline() == 120.0
    ctl.tick(115.0)
    c1 = ctl.raise_event(Q, "C", b"1")
    assert sent_uids(ctl.drain_outputs()) == [c1]
    assert ctl.next_deadline() == 120.0
    ctl.tick(200.0)
    assert sent_uids(ctl.drain_outputs()) == [b1, c1]
    assert ctl.next_deadline() == 210.0


def test_no_resend_while_offline(store):
    ctl = snp.ServiceController(store, resend_timeout=1.0)
    a1 = ctl.raise_event(Q, "A", b"1")
    go_online(ctl, now=5.0)
    ctl.disconnected()
    assert ctl.next_deadline() is None and ctl.in_flight == []
    ctl.tick(100.0)
    assert ctl.drain_outputs() == []
    ctl.connected()
    ctl.tick(200.0)
    assert ctl.drain_outputs() == []  # connected, not online
    ctl.online(store.storage_uid)
    assert sent_uids(ctl.drain_outputs()) == [a1]
    assert ctl.next_deadline() == 201.0


@pytest.mark.parametrize("origin", [0.0, -3.25, 12345.678, 8.6e6 + 0.1, 1e9 / 3])
def test_tick_at_next_deadline_always_resends(origin):
    """Any origin (negative too): ticking at exactly next_deadline() resends,
    whatever the float rounding of origin + timeout."""
    ctl = snp.ServiceController(snp.ServiceStore.open_memory(), resend_timeout=0.1)
    ctl.tick(origin)
    uid = ctl.raise_event(Q, "A", b"1")
    go_online(ctl, now=origin)
    for _ in range(200):
        due = ctl.next_deadline()
        assert due is not None and due > origin
        ctl.tick(due)
        assert sent_uids(ctl.drain_outputs()) == [uid]
        assert ctl.next_deadline() > due


def test_time_before_the_first_tick_is_the_first_ticks_time():
    ctl = snp.ServiceController(snp.ServiceStore.open_memory(), resend_timeout=5.0)
    uid = ctl.raise_event(Q, "A", b"1")
    ctl.connected()
    ctl.online(None)  # sent before any tick
    assert sent_uids(ctl.drain_outputs()) == [uid]
    ctl.tick(1000.0)  # the first tick: the send happened "now"
    assert ctl.drain_outputs() == []
    assert ctl.next_deadline() == 1005.0
    ctl.tick(1005.0)
    assert sent_uids(ctl.drain_outputs()) == [uid]


def test_stale_and_repeated_acks_are_counted(store):
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    b1 = ctl.raise_event(Q, "B", b"1")
    go_online(ctl)
    ctl.ack(b1)  # not in flight yet
    assert ctl.stale_acks == 1 and ctl.in_flight == [a1]
    ctl.ack(str(a1))
    assert sent_uids(ctl.drain_outputs()) == [b1]
    ctl.ack(a1)  # repeated
    ctl.ack(uuid.uuid4())  # unknown
    assert ctl.stale_acks == 3 and ctl.in_flight == [b1]
    ctl.disconnected()
    ctl.ack(b1)  # after a disconnect
    assert ctl.stale_acks == 4
    assert [e.uid for e in store.pending()] == [b1]


# --- 2.7 rejection ---------------------------------------------------------------


def test_rejected_name(store):
    ctl = snp.ServiceController(store)
    x1 = ctl.raise_event(Q, "Undefined", b"1")
    a1 = ctl.raise_event(Q, "A", b"1")
    x2 = ctl.raise_event(Q, "Undefined", b"2")
    go_online(ctl)
    ctl.rejected(x1)
    outputs = ctl.drain_outputs()
    assert [type(o) for o in outputs] == [Rejected, SendEvent]
    assert outputs[0].event.uid == x1 and outputs[0].event.args == b"1"
    assert sent_uids(outputs) == [a1]
    assert ctl.rejected_count == 1
    ctl.rejected(x1)  # not in flight any more: a stale ack
    assert ctl.stale_acks == 1 and ctl.rejected_count == 1
    ctl.ack(a1)
    assert sent_uids(ctl.drain_outputs()) == [x2]
    ctl.rejected(x2)
    assert [o.event.uid for o in ctl.drain_outputs()] == [x2]
    assert ctl.rejected_count == 2 and store.pending() == []
    assert store.stats().rejected_events == 0  # the store's count is for "reject_new"


# --- 2.8 disconnect -------------------------------------------------------------


def test_disconnect_in_storage_mode_resends_the_event_in_flight(store):
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    b1 = ctl.raise_event(Q, "B", b"1")
    go_online(ctl)
    ctl.disconnected()
    assert ctl.is_online is False and ctl.in_flight == []
    c1 = ctl.raise_event(Q, "C", b"1")  # offline: stored
    assert ctl.drain_outputs() == []
    outputs = go_online(ctl, store.storage_uid)
    assert [e.uid for e in deliver_all(ctl, outputs)] == [a1, b1, c1]


def test_disconnect_in_cache_mode_resends_what_was_in_flight_first(store):
    """docs/PROTOCOL.md 2.8: A1, A2, B1 raised; A1 and B1 in flight, A2
    waiting; after the reconnect A1 and B1 go first, then A2."""
    ctl = snp.ServiceController(store)
    go_online(ctl)
    assert store.mode == "cache"
    a1 = ctl.raise_event(Q, "A", b"1")
    a2 = ctl.raise_event(Q, "A", b"2")
    b1 = ctl.raise_event(Q, "B", b"1")
    assert sent_uids(ctl.drain_outputs()) == [a1, b1]
    ctl.disconnected()
    c1 = ctl.raise_event(Q, "C", b"1")
    assert ctl.drain_outputs() == []
    outputs = go_online(ctl, store.storage_uid)
    order = [e.uid for e in deliver_all(ctl, outputs)]
    assert order == [a1, b1, a2, c1]
    assert store.pending() == [] and ctl.stale_acks == 0


def test_a_store_left_in_cache_mode_by_an_earlier_controller(store):
    first = snp.ServiceController(store)
    go_online(first)
    a1 = first.raise_event(Q, "A", b"1")
    b1 = first.raise_event(Q, "B", b"1")
    a2 = first.raise_event(Q, "A", b"2")
    assert sent_uids(first.drain_outputs()) == [a1, b1]
    del first  # gone without a disconnect: the store stays in cache mode
    assert store.mode == "cache"
    ctl = snp.ServiceController(store)
    outputs = go_online(ctl, store.storage_uid)
    assert [e.uid for e in deliver_all(ctl, outputs)] == [a1, b1, a2]
    assert store.pending() == []


def test_a_reopened_level2_file_store_delivers_everything(tmp_path, service_uid):
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        ctl = snp.ServiceController(store)
        raised = [ctl.raise_event(Q, "AB"[i % 2], b"%d" % i) for i in range(6)]
        outputs = go_online(ctl)
        broker_uid = store.storage_uid
        ctl.ack(sent_uids(outputs)[0])  # one delivered; the next in flight
        assert sent_uids(ctl.drain_outputs()) == [raised[1]]
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        assert store.level == 2
        ctl = snp.ServiceController(store)
        more = ctl.raise_event(Q, "C", b"more")
        outputs = go_online(ctl, broker_uid)
        assert [e.uid for e in deliver_all(ctl, outputs)] == raised[1:] + [more]
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        assert store.pending() == []


# --- closed stores, arguments -------------------------------------------------


def test_a_closed_store_raises_store_closed(store):
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    go_online(ctl)
    store.close()
    calls = [
        lambda: ctl.raise_event(Q, "A", b"2"),
        ctl.connected,
        lambda: ctl.online(None),
        lambda: ctl.ack(a1),
        lambda: ctl.rejected(a1),
        ctl.disconnected,
        lambda: ctl.tick(1.0),
        ctl.drain_outputs,
        ctl.next_deadline,
    ]
    for call in calls:
        with pytest.raises(snp.StoreClosedError):
            call()
    # The properties stay readable.
    assert ctl.in_flight == [a1] and ctl.is_online is True
    assert ctl.stale_acks == 0 and ctl.rejected_count == 0 and ctl.store is store
    with pytest.raises(snp.StoreClosedError):
        snp.ServiceController(store)


def test_the_controller_keeps_its_store_alive(tmp_path, service_uid):
    store = snp.ServiceStore.open_file(tmp_path, service_uid)
    ctl = snp.ServiceController(store)
    del store
    a1 = ctl.raise_event(Q, "A", b"1")
    assert [e.uid for e in deliver_all(ctl, go_online(ctl))] == [a1]
    assert ctl.store.level == 2
    ctl.store.close()
    with pytest.raises(snp.StoreClosedError):
        ctl.raise_event(Q, "A", b"2")


def test_bad_arguments(store):
    with pytest.raises(TypeError):
        snp.ServiceController("not a store")
    with pytest.raises(TypeError):
        snp.ServiceController(snp.ClientStore.open_memory())
    for bad in [0.0, -1.0, math.nan, math.inf]:
        with pytest.raises(snp.InvalidArgumentError, match="resend_timeout"):
            snp.ServiceController(store, resend_timeout=bad)
    ctl = snp.ServiceController(store)
    for bad in [math.nan, math.inf, -math.inf]:
        with pytest.raises(snp.InvalidArgumentError):
            ctl.tick(bad)
    with pytest.raises(TypeError):
        ctl.tick("now")
    with pytest.raises(snp.InvalidArgumentError):
        ctl.raise_event(3, "A", b"")
    with pytest.raises(snp.InvalidArgumentError):
        ctl.raise_event(Q, "1bad", b"")
    with pytest.raises(snp.InvalidArgumentError):
        ctl.raise_event(Q, "A", b"x" * 2049)
    with pytest.raises(snp.InvalidArgumentError):
        ctl.raise_event(Q, "A", b"", 5)  # client_id only for PRIVATE
    with pytest.raises(snp.InvalidArgumentError):
        ctl.raise_event(EventKind.PRIVATE, "P", b"")  # PRIVATE needs one
    with pytest.raises(TypeError):
        ctl.raise_event(Q, "A", "not bytes")
    with pytest.raises(snp.InvalidArgumentError):
        ctl.ack("not-a-uuid")
    with pytest.raises(TypeError):
        ctl.ack(5)
    with pytest.raises(TypeError):
        ctl.rejected(None)
    with pytest.raises(TypeError):
        ctl.online()
    with pytest.raises(TypeError):
        ctl.online(5)
    with pytest.raises(snp.InvalidArgumentError):
        ctl.online("garbage")
    assert store.pending() == []  # nothing was stored by the refused calls
    with pytest.raises(AttributeError):
        ctl.stale_acks = 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_its_parents_controller(tmp_path, service_uid):
    """The controller's store calls in a forked child are refused like the
    store's own (InvalidStateError) and change nothing in the parent's
    file; the parent's controller goes on."""
    store = snp.ServiceStore.open_file(tmp_path, service_uid)
    ctl = snp.ServiceController(store)
    a1 = ctl.raise_event(Q, "A", b"1")
    go_online(ctl)
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return to pytest
        try:
            results = []
            for call in [
                lambda: ctl.raise_event(Q, "Child", b"c"),
                lambda: ctl.ack(a1),
                ctl.disconnected,
                lambda: ctl.online(None),
            ]:
                try:
                    call()
                    results.append("returned")
                except snp.InvalidStateError as e:
                    results.append("refused" if "fork" in str(e) else str(e))
                except BaseException as e:  # noqa: BLE001
                    results.append(f"{type(e).__name__}: {e}")
            os.write(write_end, ",".join(results).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        results = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert results == "refused,refused,refused,refused"
    assert ctl.in_flight == [a1] and ctl.drain_outputs() == []
    ctl.ack(a1)
    assert store.pending() == [] and ctl.stale_acks == 0
    store.close()


# --- re-entry from a failure callback -------------------------------------------


def run_bounded(target, seconds=30.0):
    """Runs target() in a daemon thread; fails (instead of hanging) if it
    deadlocks."""
    errors = []

    def guarded():
        try:
            target()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=guarded, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "deadlock: the call did not return"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("level", [1, 2])
def test_failure_callback_calling_the_controller_gets_invalid_state(tmp_path, service_uid, level):
    seen = []
    holder = {}

    def on_failure(kind, message, lost):
        ctl = holder["ctl"]
        for name, call in [
            ("raise_event", lambda: ctl.raise_event(Q, "FromCb", b"x")),
            ("stale_acks", lambda: ctl.stale_acks),
            ("tick", lambda: ctl.tick(1.0)),
            ("drain_outputs", ctl.drain_outputs),
            ("ack", lambda: ctl.ack(uuid.uuid4())),
        ]:
            try:
                call()
                seen.append((name, None))
            except snp.InvalidStateError as e:
                seen.append((name, str(e)))
        # The store itself may be called from its callback.
        seen.append(("store", ctl.store.stats().pending_events))

    if level == 1:
        store = snp.ServiceStore.open_memory(capacity=4096, on_failure=on_failure)
    else:
        store = snp.ServiceStore.open_file(
            tmp_path, service_uid, capacity=8192, durability="none", on_failure=on_failure
        )
    ctl = snp.ServiceController(store)
    holder["ctl"] = ctl

    def fill():
        go_online(ctl)
        while not seen:
            ctl.raise_event(Q, "Fill", b"y" * 100)  # drops the oldest when full

    run_bounded(fill)
    names = [n for n, _ in seen[:5]]
    assert names == ["raise_event", "stale_acks", "tick", "drain_outputs", "ack"]
    for _, message in seen[:5]:
        assert message is not None and "would deadlock" in message
    assert seen[5][0] == "store"
    # The controller works again once the callback returned.
    assert ctl.stale_acks == 0
    assert all(e.name == "Fill" for e in store.pending())


def test_client_failure_callback_calling_the_controller_gets_invalid_state():
    class Breaks:
        def load(self):
            return []

        def put(self, name, instance_id):
            raise OSError("disk gone")

        def clear(self):
            pass

        def flush(self):
            pass

    seen = []
    holder = {}

    def on_failure(kind, message, lost):
        try:
            holder["ctl"].incoming("A", 99)
            seen.append(None)
        except snp.InvalidStateError as e:
            seen.append(str(e))

    store = snp.ClientStore.open_custom(Breaks(), on_failure=on_failure)
    ctl = snp.ClientController(store)
    holder["ctl"] = ctl

    def work():
        assert ctl.incoming("A", 1) is Decision.HANDLE
        ctl.handled("A", 1)  # the put fails: fallback, reported

    run_bounded(work)
    assert len(seen) == 1 and seen[0] is not None and "would deadlock" in seen[0]
    assert store.level == 1 and store.get("A") == 1
    assert ctl.incoming("A", 1) is Decision.ACK_DUPLICATE


def test_custom_backend_calling_the_controller_falls_back(reports):
    """A backend method that calls the controller gets InvalidStateError
    (no deadlock); the backend's exception is a level-2 failure."""
    holder = {}

    class CallsBack(DictLog):
        def append(self, payload):
            if "ctl" in holder:
                holder["ctl"].tick(0.0)
            return super().append(payload)

    store = snp.ServiceStore.open_custom(CallsBack(), on_failure=reports)
    ctl = snp.ServiceController(store)
    holder["ctl"] = ctl
    box = []
    run_bounded(lambda: box.append(ctl.raise_event(Q, "A", b"1")))
    assert store.level == 1
    assert [k for k in reports.kinds()] == [snp.FailureKind.FALLBACK]
    assert "InvalidStateError" in reports.calls[0][1]
    assert [e.uid for e in deliver_all(ctl, go_online(ctl))] == box


@pytest.mark.parametrize("level", [1, 2])
def test_a_thread_waiting_for_the_controller_does_not_hold_the_gil(tmp_path, service_uid, level):
    """While one thread's controller call runs the store's failure callback
    (Python code, which needs the GIL), another thread calls the same
    controller: it must wait for the lock without the GIL, or the callback
    could never finish."""
    entered = threading.Event()
    finished = []

    def on_failure(kind, message, lost):
        if entered.is_set():
            return
        entered.set()
        time.sleep(0.3)  # the other thread now waits for the controller
        finished.append(sum(range(100_000)))  # needs the GIL

    if level == 1:
        store = snp.ServiceStore.open_memory(capacity=4096, on_failure=on_failure)
    else:
        store = snp.ServiceStore.open_file(
            tmp_path, service_uid, capacity=8192, durability="none", on_failure=on_failure
        )
    ctl = snp.ServiceController(store)
    waited = []

    def other():
        entered.wait(30)
        waited.append(ctl.stale_acks)
        waited.append(ctl.raise_event(Q, "Other", b"o"))

    def fill():
        t = threading.Thread(target=other, daemon=True)
        t.start()
        while not entered.is_set():
            ctl.raise_event(Q, "Fill", b"y" * 100)
        t.join(30)
        assert not t.is_alive()

    run_bounded(fill)
    assert finished and waited[0] == 0 and isinstance(waited[1], uuid.UUID)


# --- threads ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "file", "custom"])
def test_threads_share_a_controller(kind, tmp_path):
    """Four threads raise through one controller while a broker thread acks
    what it is sent (and ticks): every event arrives once, in raise order
    per name."""
    if kind == "memory":
        store = snp.ServiceStore.open_memory(capacity=1 << 20)
    elif kind == "file":
        store = snp.ServiceStore.open_file(tmp_path, uuid.uuid4(), durability="none")
    else:
        store = snp.ServiceStore.open_custom(DictLog())
    ctl = snp.ServiceController(store, resend_timeout=0.5)
    per_thread = 200
    go_online(ctl)
    done = threading.Event()
    received = defaultdict(list)

    def raiser(i):
        for n in range(per_thread):
            ctl.raise_event(Q, "T%d" % i, b"%d" % n)

    def broker():
        clock = 0.0
        while True:
            outputs = ctl.drain_outputs()
            for o in outputs:
                if isinstance(o, SendEvent):
                    if not received[o.event.name] or received[o.event.name][-1] != o.event.args:
                        received[o.event.name].append(o.event.args)
                    ctl.ack(o.event.uid)
            clock += 0.01
            ctl.tick(clock)
            if done.is_set() and not outputs and not ctl.in_flight and not store.pending():
                return

    b = threading.Thread(target=broker)
    b.start()
    raisers = [threading.Thread(target=raiser, args=(i,)) for i in range(4)]
    for t in raisers:
        t.start()
    for t in raisers:
        t.join(60)
    done.set()
    b.join(60)
    assert not b.is_alive()
    for i in range(4):
        assert received["T%d" % i] == [b"%d" % n for n in range(per_thread)]
    store.close()


# --- client controller -------------------------------------------------------


@pytest.fixture(params=["memory", "file"])
def client_store(request, tmp_path):
    if request.param == "memory":
        s = snp.ClientStore.open_memory()
    else:
        s = snp.ClientStore.open_file(tmp_path, "fe80::1", "key", durability="none")
    yield s
    s.close()


def test_client_properties_and_defaults(client_store):
    ctl = snp.ClientController(client_store)
    assert ctl.kind == "stateful" and ctl.order == "record_after_handle"
    assert ctl.store is client_store and ctl.duplicates == 0
    assert repr(ctl) == (
        "<ClientController kind='stateful' order='record_after_handle' duplicates=0>"
    )
    other = snp.ClientController(client_store, "stateless", "record_before_handle")
    assert other.kind == "stateless" and other.order == "record_before_handle"
    kw = snp.ClientController(client_store, order="record_before_handle", kind="stateless")
    assert kw.order == "record_before_handle"


def test_stateful_hello_is_none(client_store):
    ctl = snp.ClientController(client_store, "stateful")
    client_store.put("B", 3)
    assert ctl.connected() is None


def test_stateless_hello_lists_the_last_ids_sorted_by_name(client_store):
    ctl = snp.ClientController(client_store, "stateless")
    assert ctl.connected() == []
    for name, i in [("Zeta", 4), ("Alpha", -7), ("Mid", 1 << 62)]:
        assert ctl.incoming(name, i) is Decision.HANDLE
        ctl.handled(name, i)
    assert ctl.connected() == [("Alpha", -7), ("Mid", 1 << 62), ("Zeta", 4)]


@pytest.mark.parametrize("kind", ["stateful", "stateless"])
def test_record_after_handle(client_store, kind):
    ctl = snp.ClientController(client_store, kind, "record_after_handle")
    assert ctl.incoming("A", 1) is Decision.HANDLE
    assert client_store.get("A") is None  # not recorded before handling
    assert ctl.incoming("A", 1) is Decision.HANDLE  # the handler failed: again
    assert ctl.handled("A", 1) is None
    assert client_store.get("A") == 1
    assert ctl.incoming("A", 1) is Decision.ACK_DUPLICATE
    assert ctl.incoming("A", 1) is Decision.ACK_DUPLICATE
    assert ctl.duplicates == 2
    assert ctl.incoming("A", 2) is Decision.HANDLE
    ctl.handled("A", 2)
    assert ctl.incoming("A", 1) is Decision.HANDLE  # only the last id counts
    assert ctl.duplicates == 2


@pytest.mark.parametrize("kind", ["stateful", "stateless"])
def test_record_before_handle(client_store, kind):
    ctl = snp.ClientController(client_store, kind, "record_before_handle")
    assert ctl.incoming("A", 1) is Decision.HANDLE
    assert client_store.get("A") == 1  # recorded before handling
    # The handler failed and the broker sends it again: not handled twice.
    assert ctl.incoming("A", 1) is Decision.ACK_DUPLICATE
    ctl.handled("A", 1)
    assert client_store.get("A") == 1
    assert ctl.incoming("A", 1) is Decision.ACK_DUPLICATE
    assert ctl.duplicates == 2
    assert ctl.incoming("B", 5) is Decision.HANDLE
    if kind == "stateless":
        assert ctl.connected() == [("A", 1), ("B", 5)]


@pytest.mark.parametrize("order,again", [
    ("record_after_handle", Decision.HANDLE),
    ("record_before_handle", Decision.ACK_DUPLICATE),
])
def test_event_unhandled_at_a_restart(tmp_path, order, again):
    """Between incoming and handled the process dies: after reopening the
    file store, record-after-handle hands the event to the application
    again, record-before-handle does not."""
    with snp.ClientStore.open_file(tmp_path, "fe80::1", "key") as store:
        ctl = snp.ClientController(store, "stateless", order)
        assert ctl.incoming("A", 1) is Decision.HANDLE
        ctl.handled("A", 1)
        assert ctl.incoming("A", 2) is Decision.HANDLE
        # ... the application dies before handled("A", 2)
    with snp.ClientStore.open_file(tmp_path, "fe80::1", "key") as store:
        ctl = snp.ClientController(store, "stateless", order)
        expected_hello = [("A", 1)] if order == "record_after_handle" else [("A", 2)]
        assert ctl.connected() == expected_hello
        assert ctl.incoming("A", 2) is again


def test_client_closed_store_and_bad_arguments(client_store):
    with pytest.raises(TypeError):
        snp.ClientController(snp.ServiceStore.open_memory())
    with pytest.raises(snp.InvalidArgumentError, match="kind"):
        snp.ClientController(client_store, "sometimes")
    with pytest.raises(snp.InvalidArgumentError, match="order"):
        snp.ClientController(client_store, order="whenever")
    ctl = snp.ClientController(client_store)
    with pytest.raises(snp.InvalidArgumentError):
        ctl.incoming("1bad", 1)
    with pytest.raises(snp.InvalidArgumentError):
        ctl.handled("", 1)
    with pytest.raises(TypeError):
        ctl.incoming("A", "1")
    with pytest.raises(OverflowError):
        ctl.incoming("A", 1 << 63)
    assert ctl.incoming("A", 1) is Decision.HANDLE
    client_store.close()
    for call in [ctl.connected, lambda: ctl.incoming("A", 1), lambda: ctl.handled("A", 1)]:
        with pytest.raises(snp.StoreClosedError):
            call()
    assert ctl.duplicates == 0 and ctl.store is client_store
    with pytest.raises(snp.StoreClosedError):
        snp.ClientController(client_store)
