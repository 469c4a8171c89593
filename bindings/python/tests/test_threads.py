"""Stores shared between threads: several threads raise into one store
while another drains it; nothing is lost, duplicated or reordered per
thread, and nothing deadlocks (file and custom stores release the GIL;
a custom backend takes it back for each method call)."""

import threading
import uuid
from collections import defaultdict

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind

from backends import DictLog

THREADS = 4
PER_THREAD = 300


def open_store(kind, tmp_path):
    if kind == "memory":
        return snp.ServiceStore.open_memory(capacity=1 << 20)
    if kind == "custom":
        return snp.ServiceStore.open_custom(DictLog(), capacity=1 << 20)
    durability = "sync" if kind == "file-sync" else "none"
    return snp.ServiceStore.open_file(
        tmp_path, uuid.uuid4(), capacity=1 << 20, durability=durability
    )


def run_threads(target, count):
    errors = []

    def guarded(i):
        try:
            target(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    return threads, errors


@pytest.mark.parametrize("kind", ["memory", "file-none", "file-sync", "custom"])
def test_threads_raise_into_one_store_while_one_drains(kind, tmp_path):
    per_thread = PER_THREAD if kind != "file-sync" else 40
    store = open_store(kind, tmp_path)
    delivered = []
    done_raising = threading.Event()

    def raiser(t):
        for i in range(per_thread):
            store.raise_event(EventKind.QUEUEING, f"Thread{t}", f"{t}:{i}".encode())

    def drainer():
        while True:
            event = store.peek()
            if event is None:  # drained for now: the store is in cache mode
                if done_raising.is_set():
                    return
                store.set_storage_mode()
                continue
            delivered.append(event)
            store.ack(event.uid)

    threads, errors = run_threads(raiser, THREADS)
    consumer = threading.Thread(target=drainer)
    consumer.start()
    for t in threads:
        t.join(timeout=120)
    done_raising.set()
    consumer.join(timeout=120)
    assert not errors and not consumer.is_alive()
    store.set_storage_mode()
    while (event := store.peek()) is not None:
        delivered.append(event)
        store.ack(event.uid)

    per_source = defaultdict(list)
    for event in delivered:
        t, i = event.args.decode().split(":")
        per_source[int(t)].append(int(i))
    assert len(delivered) == THREADS * per_thread
    assert len({e.uid for e in delivered}) == len(delivered)
    for t in range(THREADS):
        assert per_source[t] == list(range(per_thread)), f"thread {t} out of order"
    assert store.stats().pending_events == 0
    store.close()


def test_threads_share_a_client_store(tmp_path):
    client = snp.ClientStore.open_file(tmp_path, "broker", "key", durability="none")

    def worker(t):
        for i in range(500):
            client.put(f"Sub{t}", i)
            assert client.get(f"Sub{t}") == i

    threads, errors = run_threads(worker, THREADS)
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert client.entries() == {f"Sub{t}": 499 for t in range(THREADS)}
    client.close()


def test_close_while_other_threads_call(tmp_path):
    store = open_store("file-none", tmp_path)
    outcomes = defaultdict(int)
    lock = threading.Lock()

    def raiser(t):
        for i in range(2000):
            try:
                store.raise_event(EventKind.QUEUEING, "T", b"x")
                key = "ok"
            except snp.StoreClosedError:
                key = "closed"
            with lock:
                outcomes[key] += 1

    threads, errors = run_threads(raiser, 3)
    store.close()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert outcomes["ok"] + outcomes["closed"] == 6000


def test_waiting_for_the_store_lock_releases_the_gil():
    """Thread A holds the store's lock inside a backend flush() that waits
    for thread B; the main thread then calls the store. Unless that call
    releases the GIL while it waits for the lock, B can never run and the
    three deadlock (faulthandler then ends the process after 60 s)."""
    import faulthandler
    import time

    release = threading.Event()
    entered = threading.Event()

    class SlowFlush(DictLog):
        def flush(self):
            entered.set()
            release.wait()

    store = snp.ServiceStore.open_custom(SlowFlush())
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        a = threading.Thread(target=store.flush)
        a.start()
        assert entered.wait(10)

        def b():
            time.sleep(0.2)  # the main thread is blocked in stats() by now
            release.set()

        threading.Thread(target=b).start()
        assert store.stats().pending_events == 0  # waits for A, then succeeds
        a.join(10)
        assert not a.is_alive()
    finally:
        faulthandler.cancel_dump_traceback_later()
        release.set()
