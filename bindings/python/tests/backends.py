"""Custom level-2 backends in Python, shared by the tests."""


class DictLog:
    """A RecordLogBackend in a dict (what a user's database backend does)."""

    def __init__(self):
        self.records = {}
        self.next_seq = 1
        self.meta = b""
        self.calls = []
        self.removed = []

    def _enter(self, method: str) -> None:
        self.calls.append(method)

    def append(self, payload: bytes) -> int:
        self._enter("append")
        assert isinstance(payload, bytes)
        seq = self.next_seq
        self.next_seq += 1
        self.records[seq] = payload
        return seq

    def remove(self, seq: int, reason: str) -> None:
        self._enter("remove")
        del self.records[seq]
        self.removed.append(reason)

    def read(self, seq: int) -> bytes:
        self._enter("read")
        return self.records[seq]

    def scan(self):
        self._enter("scan")
        return sorted(self.records.items())

    def commit(self) -> None:
        self._enter("commit")

    def flush(self) -> None:
        self._enter("flush")

    def clear(self) -> None:
        self._enter("clear")
        self.records.clear()

    def metadata(self) -> bytes:
        self._enter("metadata")
        return self.meta

    def set_metadata(self, meta: bytes) -> None:
        self._enter("set_metadata")
        self.meta = bytes(meta)


class FailingLog(DictLog):
    """Raises on its n-th method call (once), then works again."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.fail_at = fail_at

    def _enter(self, method: str) -> None:
        super()._enter(method)
        if len(self.calls) == self.fail_at:
            raise RuntimeError(f"injected failure at call {self.fail_at} ({method})")
