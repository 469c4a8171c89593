"""softnet_persistence: event persistence for Softnet endpoints.

A service endpoint keeps the events it raises until the broker acknowledges
them (:class:`ServiceStore`): in memory (level 1), in a crash-safe journal
file (level 2), or in storage you supply (custom level 2). A client keeps the
id of the last event it handled per subscription (:class:`ClientStore`), so
duplicates are dropped after reconnects and restarts.

Example::

    import uuid
    import softnet_persistence as snp

    SERVICE_UID = uuid.UUID("5e7f0b3a-9c1d-4e2f-8a6b-1c0d2e3f4a5b")
    with snp.ServiceStore.open_file("/var/lib/gateway", SERVICE_UID) as store:
        store.raise_event(snp.EventKind.QUEUEING, "Temperature", b"21.5")
        # Later, online: drain the backlog in raise order.
        while (event := store.peek()) is not None:
            send_to_broker(event)  # ... and wait for the broker's ack
            store.ack(event.uid)

Errors are :class:`PersistenceError` subclasses. Stores may be shared
between threads; calls on file and custom stores release the GIL.
"""

from ._enums import EventKind, FailureKind
from ._native import (
    BackendError,
    ClientStats,
    ClientStore,
    InvalidArgumentError,
    InvalidStateError,
    PersistenceError,
    PersistenceFormatError,
    PersistenceIOError,
    ServiceStats,
    ServiceStore,
    StorageFullError,
    StoreClosedError,
    StoreLockedError,
    StoredEvent,
    __version__,
)
from ._protocols import FailureCallback, IdStoreBackend, RecordLogBackend

__all__ = [
    "BackendError",
    "ClientStats",
    "ClientStore",
    "EventKind",
    "FailureCallback",
    "FailureKind",
    "IdStoreBackend",
    "InvalidArgumentError",
    "InvalidStateError",
    "PersistenceError",
    "PersistenceFormatError",
    "PersistenceIOError",
    "RecordLogBackend",
    "ServiceStats",
    "ServiceStore",
    "StorageFullError",
    "StoreClosedError",
    "StoreLockedError",
    "StoredEvent",
    "__version__",
]
