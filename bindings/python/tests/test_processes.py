"""Stores across processes: what one process stores, the next one finds; a
second process cannot open a file another one holds."""

import json
import subprocess
import sys
import textwrap

import pytest

import softnet_persistence as snp


def run_child(code: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        **kw,
    )


RAISE = """
    import json, sys, uuid
    import softnet_persistence as snp
    directory, service_uid = sys.argv[1], uuid.UUID(sys.argv[2])
    with snp.ServiceStore.open_file(directory, service_uid, durability="sync") as store:
        uids = [str(store.raise_event(snp.EventKind.QUEUEING, "T", b"%d" % i)) for i in range(5)]
        uids.append(str(store.raise_event(snp.EventKind.PRIVATE, "P", b"p", client_id=9)))
        print(json.dumps({"storage_uid": str(store.storage_uid), "uids": uids}))
"""

COUNT = """
    import sys, uuid
    import softnet_persistence as snp
    with snp.ServiceStore.open_file(sys.argv[1], uuid.UUID(sys.argv[2])) as store:
        print(len(store.pending()))
"""


def test_service_events_survive_into_another_process(tmp_path, service_uid):
    child = json.loads(run_child(RAISE, str(tmp_path), str(service_uid)).stdout)
    with snp.ServiceStore.open_file(tmp_path, service_uid) as store:
        assert str(store.storage_uid) == child["storage_uid"]
        events = []
        while (event := store.peek()) is not None:
            events.append(event)
            store.ack(event.uid)
    assert [str(e.uid) for e in events] == child["uids"]
    assert [e.args for e in events] == [b"0", b"1", b"2", b"3", b"4", b"p"]
    assert events[-1].kind is snp.EventKind.PRIVATE and events[-1].client_id == 9
    assert run_child(COUNT, str(tmp_path), str(service_uid)).stdout.strip() == "0"


HOLD = """
    import sys, uuid
    import softnet_persistence as snp
    store = snp.ServiceStore.open_file(sys.argv[1], uuid.UUID(sys.argv[2]))
    print("open", flush=True)
    sys.stdin.read()
    store.close()
"""


def test_file_held_by_another_process_is_locked(tmp_path, service_uid):
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(tmp_path), str(service_uid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(snp.StoreLockedError) as info:
            snp.ServiceStore.open_file(tmp_path, service_uid)
        assert f"softnet.service.persistence_{service_uid}.ssp" in str(info.value)
    finally:
        child.communicate("", timeout=60)
    assert child.returncode == 0
    snp.ServiceStore.open_file(tmp_path, service_uid).close()


CLIENT = """
    import sys
    import softnet_persistence as snp
    with snp.ClientStore.open_file(sys.argv[1], "broker:7000", "gateway") as client:
        client.put("Temperature", 2**63 - 1)
        client.put("Door", -5)
"""


def test_client_ids_survive_into_another_process(tmp_path):
    run_child(CLIENT, str(tmp_path))
    with snp.ClientStore.open_file(tmp_path, "broker:7000", "gateway") as client:
        assert client.entries() == {"Door": -5, "Temperature": 2**63 - 1}
        assert client.is_duplicate("Door", -5)


def test_module_imports_cleanly_in_a_fresh_interpreter():
    out = run_child(
        """
        import softnet_persistence as snp
        print(snp.__version__, snp.EventKind.QUEUEING == 2, snp.ServiceStore.__module__)
        """
    ).stdout.split()
    assert out[1:] == ["True", "softnet_persistence"]
