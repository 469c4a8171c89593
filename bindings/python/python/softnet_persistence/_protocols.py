"""The interfaces a custom level-2 backend implements, as ``typing.Protocol``.

Any object with these methods works (no need to inherit from the protocol);
the classes exist so that type checkers can check a backend.

The store calls a backend one method at a time, never concurrently, from
whichever thread made the store call, while holding the store's lock: a
backend must not call the store it backs (that call would wait for the lock
forever). An exception raised by any method (or a return value of the wrong
type) is a failure of level 2: the store falls back to level 1 (memory),
reports it to ``on_failure``, logs the traceback (logger
``"softnet_persistence"``), and the call that triggered it succeeds.
"""

from typing import Callable, Iterable, Protocol, Tuple

from ._enums import FailureKind

__all__ = ["RecordLogBackend", "IdStoreBackend", "FailureCallback"]

FailureCallback = Callable[[FailureKind, str, int], None]
"""``on_failure(kind, message, events_lost)``: ``kind`` is a
:class:`FailureKind`, ``message`` says what happened, to which file and what
the store did, and ``events_lost`` counts the events (for a client store,
subscription ids) lost. Called after the store's lock is released, on the
thread whose call caused the failure; it may call the store. An exception it
raises is logged (logger ``"softnet_persistence"``) and ignored."""


class RecordLogBackend(Protocol):
    """A service store's custom level 2: ordered, opaque records.

    The store keeps every rule (modes, collapse, capacity); the backend only
    keeps bytes. Contract:

    - ``append`` returns a sequence number greater than every number it
      returned before, across restarts and ``clear``;
    - ``scan`` yields every record appended and not removed, in increasing
      sequence order, with the bytes given to ``append``;
    - after ``commit`` what your durability promise covers survives a
      crash; ``flush`` makes everything durable now.
    """

    def append(self, payload: bytes) -> int:
        """Stores a record; returns its sequence number."""
        ...

    def remove(self, seq: int, reason: str) -> None:
        """Removes a live record. ``reason`` ("acknowledged", "superseded",
        "dropped", "invalidated" or "expired") is for logs only."""
        ...

    def read(self, seq: int) -> bytes:
        """Returns the bytes of a live record."""
        ...

    def scan(self) -> Iterable[Tuple[int, bytes]]:
        """Yields ``(seq, payload)`` for every live record, in increasing
        ``seq`` order."""
        ...

    def commit(self) -> None:
        """Ends one store operation: make it as durable as you promise."""
        ...

    def flush(self) -> None:
        """Makes everything written so far durable."""
        ...

    def clear(self) -> None:
        """Removes every record (sequence numbers keep growing)."""
        ...

    def metadata(self) -> bytes:
        """Returns the blob last given to ``set_metadata`` (b"" if none)."""
        ...

    def set_metadata(self, meta: bytes) -> None:
        """Replaces the metadata blob (at most 64 bytes: the store's storage
        uid)."""
        ...


class IdStoreBackend(Protocol):
    """A client store's custom level 2: the last handled id per subscription.

    ``put`` must be atomic with respect to crashes: afterwards a reload
    yields the old id or the new one for that name, never garbage, and never
    disturbs other names.
    """

    def load(self) -> Iterable[Tuple[str, int]]:
        """Yields every stored ``(name, id)`` pair, in any order (a dict
        ``{name: id}`` is accepted too)."""
        ...

    def put(self, name: str, id: int) -> None:
        """Stores ``id`` as the last handled id of ``name``."""
        ...

    def clear(self) -> None:
        """Forgets every pair."""
        ...

    def flush(self) -> None:
        """Makes every put so far durable."""
        ...
