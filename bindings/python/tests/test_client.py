"""ClientStore: every method, at level 1, on a file, and custom."""

import logging
import pathlib

import pytest

import softnet_persistence as snp

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(params=["memory", "file"])
def client(request, tmp_path):
    if request.param == "memory":
        c = snp.ClientStore.open_memory()
    else:
        c = snp.ClientStore.open_file(tmp_path, "broker.example", "client-1", durability="none")
    yield c
    c.close()


def test_get_put_is_duplicate(client):
    assert client.get("Temperature") is None
    assert not client.is_duplicate("Temperature", 1)
    client.put("Temperature", 1)
    assert client.get("Temperature") == 1
    assert client.is_duplicate("Temperature", 1)
    assert not client.is_duplicate("Temperature", 2)
    client.put("Temperature", 2)
    assert client.is_duplicate("Temperature", 2)


def test_full_i64_range(client):
    client.put("Low", I64_MIN)
    client.put("High", I64_MAX)
    client.put("Mid", 2**31)
    assert client.entries() == {"High": I64_MAX, "Low": I64_MIN, "Mid": 2**31}
    with pytest.raises(OverflowError):
        client.put("Over", 2**63)


def test_entries_reset_flush_stats(client):
    client.put("B", 2)
    client.put("A", 1)
    entries = client.entries()
    assert isinstance(entries, dict) and list(entries) == ["A", "B"]
    client.flush()
    stats = client.stats()
    assert isinstance(stats, snp.ClientStats)
    assert (stats.subscriptions, stats.failures, stats.level) == (2, 0, client.level)
    assert "subscriptions=2" in repr(stats) and "subscriptions=2" in repr(client)
    client.reset()
    assert client.entries() == {} and client.get("A") is None


def test_invalid_name(client):
    with pytest.raises(snp.InvalidArgumentError, match="name"):
        client.put("", 1)
    with pytest.raises(snp.InvalidArgumentError):
        client.put("bad name ", 1)


def test_handle_record_after_handle(client):
    calls = []
    assert client.handle("T", 7, lambda: calls.append(7)) is True
    assert client.handle("T", 7, lambda: calls.append("again")) is False
    assert calls == [7] and client.get("T") == 7

    def failing():
        raise KeyError("handler bug")

    with pytest.raises(KeyError, match="handler bug"):
        client.handle("T", 8, failing)
    assert client.get("T") == 7, "a failed handler leaves the id unrecorded"


def test_handle_record_before_handle(client):
    def failing():
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError):
        client.handle("T", 9, failing, order="record_before_handle")
    assert client.get("T") == 9, "at most once: the id stays recorded"
    assert client.handle("T", 9, failing, order="record_before_handle") is False


def test_handle_bad_arguments(client):
    with pytest.raises(snp.InvalidArgumentError, match="order"):
        client.handle("T", 1, lambda: None, order="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.handle("T", 1, 42)  # type: ignore[arg-type]
    with pytest.raises(snp.InvalidArgumentError):
        client.handle("", 1, lambda: None)


def test_close_and_context_manager(client):
    with client as same:
        assert same is client
        client.put("T", 1)
    assert client.closed and "closed" in repr(client)
    client.close()
    for call in [
        lambda: client.get("T"),
        lambda: client.put("T", 2),
        lambda: client.is_duplicate("T", 1),
        client.entries,
        lambda: client.handle("T", 3, lambda: None),
        client.reset,
        client.flush,
        client.stats,
        lambda: client.level,
        lambda: client.file_path,
    ]:
        with pytest.raises(snp.StoreClosedError):
            call()


def test_memory_level():
    client = snp.ClientStore.open_memory()
    assert client.level == 1 and client.file_path is None


def test_file_keeps_ids_across_reopen(tmp_path):
    with snp.ClientStore.open_file(tmp_path, "fe80::1", "key") as client:
        assert client.level == 2
        path = client.file_path
        assert isinstance(path, pathlib.Path)
        assert path.name == "softnet.client.persistence_fe80%3A%3A1_key.scp"
        client.put("Temperature", 41)
        client.put("Door", I64_MAX)
    with snp.ClientStore.open_file(str(tmp_path), "fe80::1", "key", durability="batch") as client:
        assert client.entries() == {"Door": I64_MAX, "Temperature": 41}
        assert client.is_duplicate("Temperature", 41)


def test_file_locked_and_bad_names(tmp_path):
    with snp.ClientStore.open_file(tmp_path, "broker", "key"):
        with pytest.raises(snp.StoreLockedError, match="broker_key.scp"):
            snp.ClientStore.open_file(tmp_path, "broker", "key")
    with pytest.raises(snp.InvalidArgumentError, match="server address"):
        snp.ClientStore.open_file(tmp_path, "a/b", "key")
    with pytest.raises(snp.InvalidArgumentError):
        snp.ClientStore.open_file(tmp_path, "broker", "key", durability="often")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        snp.ClientStore.open_file(tmp_path, "broker", "key", on_failure="no")  # type: ignore[arg-type]


def test_unusable_directory_falls_back(tmp_path, reports):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    client = snp.ClientStore.open_file(blocker, "broker", "key", on_failure=reports)
    assert client.level == 1
    assert reports.kinds() == [snp.FailureKind.FALLBACK]
    client.put("T", 1)
    assert client.get("T") == 1


class DictIds:
    """A custom client backend in a dict."""

    def __init__(self, fail_on=None, as_dict=False):
        self.ids = {}
        self.fail_on = fail_on
        self.as_dict = as_dict
        self.calls = []

    def _call(self, name):
        self.calls.append(name)
        if name == self.fail_on:
            raise OSError("flash driver gone")

    def load(self):
        self._call("load")
        return dict(self.ids) if self.as_dict else list(self.ids.items())

    def put(self, name, id):
        self._call("put")
        self.ids[name] = id

    def clear(self):
        self._call("clear")
        self.ids.clear()

    def flush(self):
        self._call("flush")


@pytest.mark.parametrize("as_dict", [False, True])
def test_custom_client_backend(as_dict):
    backend = DictIds(as_dict=as_dict)
    backend.ids = {"Old": 5}
    with snp.ClientStore.open_custom(backend) as client:
        assert client.level == 2
        assert client.get("Old") == 5
        client.put("New", 6)
        client.flush()
        assert backend.ids == {"Old": 5, "New": 6}
        client.reset()
        assert backend.ids == {}
    assert backend.calls[0] == "load" and "flush" in backend.calls


@pytest.mark.parametrize("fail_on", ["load", "put", "clear", "flush"])
def test_raising_client_backend_falls_back(fail_on, reports, caplog):
    backend = DictIds(fail_on=fail_on)
    backend.ids = {"Old": 5}
    with caplog.at_level(logging.WARNING, logger="softnet_persistence"):
        client = snp.ClientStore.open_custom(backend, on_failure=reports)
        client.put("New", 6)
        client.reset()
        client.put("Newer", 7)
        client.flush()
    assert client.level == 1
    assert reports.kinds() == [snp.FailureKind.FALLBACK]
    assert "flash driver gone" in reports.calls[0][1]
    assert client.get("Newer") == 7
    assert "flash driver gone" in caplog.text


def test_custom_client_backend_must_have_the_methods():
    class Partial:
        def load(self):
            return []

    with pytest.raises(snp.InvalidArgumentError, match="put, clear, flush"):
        snp.ClientStore.open_custom(Partial())


def test_custom_client_backend_wrong_types(reports):
    class Wrong(DictIds):
        def load(self):
            return [("T", "not an int")]

    client = snp.ClientStore.open_custom(Wrong(), on_failure=reports)
    assert client.level == 1
    assert "load() must return" in reports.calls[0][1]


def test_memory_options():
    with pytest.raises(TypeError):
        snp.ClientStore.open_memory(on_failure=1)  # type: ignore[arg-type]
    with snp.ClientStore.open_memory(on_failure=lambda *a: None) as client:
        client.put("T", 1)
        assert client.stats().level == 1
