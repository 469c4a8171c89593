"""Raise times, sequence numbers and the age limit (docs/BEHAVIOUR.md
section 3.6a), from Python."""

import time
import uuid

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind

Q = EventKind.QUEUEING


def now_ms():
    return time.time_ns() // 1_000_000


def test_events_carry_their_raise_time_and_a_growing_seq(tmp_path):
    service = uuid.uuid4()
    before = now_ms()
    with snp.ServiceStore.open_file(tmp_path, service, durability="none") as store:
        for i in range(3):
            store.raise_event(Q, "Reading", bytes([i]))
        after = now_ms()
        first = store.pending()
    assert all(before <= e.raised_at_ms <= after for e in first), first
    assert [e.seq for e in first] == sorted({e.seq for e in first})
    assert "raised_at_ms=" in repr(first[0]) and "seq=" in repr(first[0])
    with snp.ServiceStore.open_file(tmp_path, service, durability="none") as store:
        again = store.pending()
        assert [(e.seq, e.raised_at_ms) for e in again] == [
            (e.seq, e.raised_at_ms) for e in first
        ]
        store.raise_event(Q, "Reading", b"new")
        assert store.pending()[-1].seq > first[-1].seq


def test_an_old_event_expires_when_it_comes_up_for_delivery(reports):
    store = snp.ServiceStore.open_memory(on_failure=reports, max_age=0.04)
    store.raise_event(Q, "Old", b"1")
    time.sleep(0.12)
    fresh = store.raise_event(Q, "Fresh", b"2")
    assert store.stats().expired_events == 0, "nothing is judged before delivery"
    assert store.peek().uid == fresh
    stats = store.stats()
    assert (stats.expired_events, stats.failures, stats.events_lost) == (1, 0, 0)
    assert "expired_events=1" in repr(stats)
    assert reports.kinds() == [snp.FailureKind.EXPIRED]
    kind, message, lost = reports.calls[0]
    assert lost == 0 and "'Old'" in message and "0.040 s" in message


def test_max_age_is_checked():
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(snp.InvalidArgumentError, match="max_age"):
            snp.ServiceStore.open_memory(max_age=bad)


def test_max_age_on_a_file_store(tmp_path, reports):
    store = snp.ServiceStore.open_file(
        tmp_path, uuid.uuid4(), durability="none", on_failure=reports, max_age=0.04
    )
    store.raise_event(Q, "Old", b"")
    time.sleep(0.12)
    assert store.peek() is None
    assert store.stats().expired_events == 1
    assert reports.kinds() == [snp.FailureKind.EXPIRED]
    store.close()
