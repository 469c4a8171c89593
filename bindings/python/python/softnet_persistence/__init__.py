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

The delivery protocol itself (docs/PROTOCOL.md) is in the controllers,
state machines with no sockets, clocks or threads of their own: a
:class:`ServiceController` drives a service store (handshake, in-order
drain, resends, acks), a :class:`ClientController` decides which incoming
events reach a client's application::

    controller = snp.ServiceController(store, resend_timeout=30.0)
    controller.tick(time.monotonic())
    controller.connected()                    # transport up
    controller.online(broker_remembers)       # the broker's answer
    for output in controller.drain_outputs():
        ...  # SendStorageUid / SendEvent / Rejected, in this order

Over a real MQTT broker, :mod:`softnet_persistence.mqtt` runs both
controllers over a paho-mqtt client (``pip install './bindings/python[mqtt]'``;
docs/MQTT.md); it is not imported with the package.

Errors are :class:`PersistenceError` subclasses. Stores and controllers may
be shared between threads; calls on file and custom stores release the GIL.
"""

from ._enums import Decision, EventKind, FailureKind
from ._native import (
    BackendError,
    ClientController,
    ClientStats,
    ClientStore,
    InvalidArgumentError,
    InvalidStateError,
    PersistenceError,
    PersistenceFormatError,
    PersistenceIOError,
    ServiceController,
    ServiceStats,
    ServiceStore,
    StorageFullError,
    StoreClosedError,
    StoreLockedError,
    StoredEvent,
    __version__,
)
from ._outputs import Rejected, SendEvent, SendStorageUid, ServiceOutput
from ._protocols import FailureCallback, IdStoreBackend, RecordLogBackend

__all__ = [
    "BackendError",
    "ClientController",
    "ClientStats",
    "ClientStore",
    "Decision",
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
    "Rejected",
    "SendEvent",
    "SendStorageUid",
    "ServiceController",
    "ServiceOutput",
    "ServiceStats",
    "ServiceStore",
    "StorageFullError",
    "StoreClosedError",
    "StoreLockedError",
    "StoredEvent",
    "__version__",
]
