"""fork() and the stores: a forked child's calls on its parent's store raise
InvalidStateError and write nothing to the parent's file; a child that never
touches a store does not keep the parent's lock (the parent closes and
reopens the same file while the child lives); forked children draw uids
nobody else draws.

Children report through a pipe or a multiprocessing.Queue and always end
with os._exit (never back into pytest)."""

import json
import multiprocessing
import os
import sys
import traceback
import uuid
from pathlib import Path

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind

Q = EventKind.QUEUEING

CHILD_CALLS = 40
CHILDREN = 8
UIDS_PER_CHILD = 10_000

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="needs os.fork (a POSIX system)"
)

FORK = multiprocessing.get_context("fork")


def in_child(work, *args):
    """Forks; the child runs ``work(*args)`` and sends back what it returns
    (JSON) or its traceback, then ``os._exit``\\s. Returns (pid, read end,
    write end of a pipe the child waits on until it is closed)."""
    results_r, results_w = os.pipe()
    go_r, go_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(results_r)
            os.close(go_w)
            try:
                message = {"ok": work(*args)}
            except BaseException:  # noqa: BLE001 - everything goes to the parent
                message = {"error": traceback.format_exc()}
            with os.fdopen(results_w, "w") as out:
                out.write(json.dumps(message))
            os.read(go_r, 1)  # alive until the parent closes go_w
            code = 0
        finally:
            os._exit(code)
    os.close(results_w)
    os.close(go_r)
    return pid, results_r, go_w


def child_result(results_r):
    with os.fdopen(results_r) as inp:
        message = json.loads(inp.read())
    assert "error" not in message, message["error"]
    return message["ok"]


def reap(pid):
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def alive(pid):
    return os.waitpid(pid, os.WNOHANG) == (0, 0)


def refused(call):
    """Runs call; returns the InvalidStateError's message, or what it
    returned / raised instead (so the parent's assertion shows it)."""
    try:
        result = call()
    except snp.InvalidStateError as e:
        return str(e)
    except BaseException as e:  # noqa: BLE001
        return f"raised {type(e).__name__}: {e}"
    return f"returned {result!r}"


def names_parent(message):
    return "parent" in message and "child" in message and "fork" in message


def journal(tmp_path, service_uid):
    return tmp_path / f"softnet.service.persistence_{service_uid}.ssp"


def drain(store):
    out = []
    while (event := store.peek()) is not None:
        out.append(event)
        store.ack(event.uid)
    return out


# ----- the parent's store in a child ----------------------------------------


def use_parent_service(store, directory, service_uid):
    messages = [
        refused(lambda: store.raise_event(Q, "Fork", b"child %d" % i))
        for i in range(CHILD_CALLS)
    ]
    others = {
        "peek": refused(store.peek),
        "ack": refused(lambda: store.ack(uuid.uuid4())),
        "peek_name": refused(lambda: store.peek_name(Q, "Fork")),
        "pending": refused(store.pending),
        "set_storage_mode": refused(store.set_storage_mode),
        "invalidate_ancient": refused(store.invalidate_ancient),
        "reset": refused(store.reset),
        "flush": refused(store.flush),
    }
    try:
        snp.ServiceStore.open_file(directory, service_uid).close()
        own_open = "opened"
    except snp.StoreLockedError:
        own_open = "locked"
    with snp.ServiceStore.open_memory() as mine:
        mine.raise_event(Q, "Mine")
        mine_pending = mine.stats().pending_events
    # Closing the parent's store in the child is allowed and writes nothing.
    try:
        store.close()
        closed = "closed"
    except BaseException as e:  # noqa: BLE001
        closed = f"raised {type(e).__name__}: {e}"
    return {
        "messages": messages,
        "others": others,
        "own_open": own_open,
        "mine_pending": mine_pending,
        "closed": closed,
        "closed_flag": store.closed,
    }


def test_parent_service_store_in_forked_child(tmp_path, service_uid):
    store = snp.ServiceStore.open_file(tmp_path, service_uid, durability="sync")
    uids = [store.raise_event(Q, "Fork", b"%d" % i) for i in range(5)]
    before = journal(tmp_path, service_uid).read_bytes()

    pid, results, go = in_child(use_parent_service, store, str(tmp_path), str(service_uid))
    try:
        seen = child_result(results)
        assert len(seen["messages"]) == CHILD_CALLS
        assert all(names_parent(m) for m in seen["messages"]), seen["messages"][0]
        assert all(names_parent(m) for m in seen["others"].values()), seen["others"]
        assert seen["own_open"] == "locked"  # the file is the parent's
        assert seen["mine_pending"] == 1  # the library works in the child
        assert seen["closed"] == "closed" and seen["closed_flag"] is True
        # 40 refused raises and a close later, the file is as it was.
        assert journal(tmp_path, service_uid).read_bytes() == before
        # The parent's store works on while the child lives.
        uids += [store.raise_event(Q, "Fork", b"%d" % i) for i in range(5, 5 + CHILD_CALLS)]
        assert alive(pid)
    finally:
        os.close(go)
        reap(pid)
    store.close()
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        events = drain(store)
    assert [e.uid for e in events] == uids  # exactly 45, in order
    assert [e.args for e in events] == [b"%d" % i for i in range(5 + CHILD_CALLS)]


def read_parent_service(store):
    return {
        "stats": refused(store.stats),
        "mode": refused(lambda: store.mode),
        "storage_uid": refused(lambda: store.storage_uid),
        "level": refused(lambda: store.level),
    }


def test_parent_service_readers_in_forked_child(tmp_path, service_uid):
    """The readers are calls on the parent's store like any other."""
    store = snp.ServiceStore.open_file(tmp_path, service_uid)
    pid, results, go = in_child(read_parent_service, store)
    try:
        seen = child_result(results)
    finally:
        os.close(go)
        reap(pid)
    store.close()
    assert all(names_parent(m) for m in seen.values()), seen


def use_parent_client(client, directory):
    messages = [refused(lambda: client.put("b", 100 + i)) for i in range(CHILD_CALLS)]
    others = {
        "get": refused(lambda: client.get("a")),
        "is_duplicate": refused(lambda: client.is_duplicate("a", 1)),
        "entries": refused(client.entries),
        "handle": refused(lambda: client.handle("a", 2, lambda: None)),
        "reset": refused(client.reset),
        "flush": refused(client.flush),
    }
    try:
        snp.ClientStore.open_file(directory, "broker.example:7000", "fork-test").close()
        own_open = "opened"
    except snp.StoreLockedError:
        own_open = "locked"
    try:
        client.close()
        closed = "closed"
    except BaseException as e:  # noqa: BLE001
        closed = f"raised {type(e).__name__}: {e}"
    return {"messages": messages, "others": others, "own_open": own_open, "closed": closed}


def test_parent_client_store_in_forked_child(tmp_path):
    client = snp.ClientStore.open_file(tmp_path, "broker.example:7000", "fork-test")
    client.put("a", 1)
    path = client.file_path
    before = path.read_bytes()
    pid, results, go = in_child(use_parent_client, client, str(tmp_path))
    try:
        seen = child_result(results)
        assert all(names_parent(m) for m in seen["messages"]), seen["messages"][0]
        assert all(names_parent(m) for m in seen["others"].values()), seen["others"]
        assert seen["own_open"] == "locked"
        assert seen["closed"] == "closed"
        assert path.read_bytes() == before
        client.put("b", 2)
    finally:
        os.close(go)
        reap(pid)
    client.close()
    with snp.ClientStore.open_file(tmp_path, "broker.example:7000", "fork-test") as client:
        assert client.entries() == {"a": 1, "b": 2}


# ----- a child that never touches the store ----------------------------------


def wait_for(event):
    event.wait(60)


@pytest.mark.parametrize("kind", ["service", "client"])
def test_untouched_child_keeps_no_lock(tmp_path, service_uid, kind):
    def open_store():
        if kind == "service":
            return snp.ServiceStore.open_file(tmp_path, service_uid)
        return snp.ClientStore.open_file(tmp_path, "broker.example:7000", "fork-test")

    store = open_store()
    if kind == "service":
        store.raise_event(Q, "Kept", b"1")
    else:
        store.put("kept", 1)
    release = FORK.Event()
    child = FORK.Process(target=wait_for, args=(release,))
    child.start()
    try:
        store.close()
        store = open_store()  # not StoreLockedError, while the child lives
        assert child.is_alive()
        if kind == "service":
            assert [e.args for e in store.pending()] == [b"1"]
        else:
            assert store.get("kept") == 1
        with pytest.raises(snp.StoreLockedError):  # the lock is the new handle's
            open_store()
    finally:
        release.set()
        child.join(60)
        store.close()
    assert child.exitcode == 0


# ----- uids --------------------------------------------------------------------


def draw_uids(queue, index, directory):
    try:
        uids = []
        with snp.ServiceStore.open_memory() as store:
            uids.append(store.storage_uid)
            uids += [store.raise_event(Q, "Uid", b"x") for _ in range(UIDS_PER_CHILD)]
        own = Path(directory) / f"child_{index}"
        own.mkdir()
        with snp.ServiceStore.open_file(own, uuid.uuid4(), durability="none") as store:
            uids.append(store.storage_uid)
            uids += [store.raise_event(Q, "Uid", b"x") for _ in range(100)]
        queue.put((index, b"".join(u.bytes for u in uids), None))
    except BaseException:  # noqa: BLE001
        queue.put((index, b"", traceback.format_exc()))


def test_forked_children_draw_distinct_uids(tmp_path):
    parent = snp.ServiceStore.open_memory()
    # The parent draws first: its generator has state the children copy.
    uids = [parent.storage_uid, parent.raise_event(Q, "Uid", b"x")]
    queue = FORK.Queue()
    children = [
        FORK.Process(target=draw_uids, args=(queue, i, str(tmp_path))) for i in range(CHILDREN)
    ]
    for child in children:
        child.start()
    # The parent goes on drawing while the children draw.
    uids += [parent.raise_event(Q, "Uid", b"x") for _ in range(UIDS_PER_CHILD)]
    parent.close()
    per_child = UIDS_PER_CHILD + 100 + 2
    for _ in range(CHILDREN):
        index, data, error = queue.get(timeout=120)
        assert error is None, error
        assert len(data) == 16 * per_child
        uids += [uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16)]
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert len(uids) == 2 + UIDS_PER_CHILD + CHILDREN * per_child  # 90,818
    assert all(u.version == 4 for u in uids)
    repeats = len(uids) - len(set(uids))
    assert repeats == 0
