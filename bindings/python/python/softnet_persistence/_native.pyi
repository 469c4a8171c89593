"""Type stubs of the native part of softnet_persistence (import the package,
not this module). The docstrings at run time are the reference; these stubs
only carry the types."""

import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import Callable, Dict, List, Literal, Optional, Tuple, Type, Union, final

from ._enums import Decision, EventKind
from ._outputs import ServiceOutput
from ._protocols import FailureCallback, IdStoreBackend, RecordLogBackend

__all__ = [
    "__version__",
    "PersistenceError",
    "PersistenceIOError",
    "PersistenceFormatError",
    "StorageFullError",
    "StoreLockedError",
    "InvalidStateError",
    "InvalidArgumentError",
    "StoreClosedError",
    "BackendError",
    "_raise_error_kind",
    "ServiceStore",
    "ServiceStats",
    "StoredEvent",
    "ClientStore",
    "ClientStats",
    "ServiceController",
    "ClientController",
]

__version__: str

_PathLike = Union[str, "os.PathLike[str]"]
_Uid = Union[uuid.UUID, str]
_Durability = Literal["sync", "batch", "none"]
_Overflow = Literal["drop_oldest", "reject_new"]
_HandlerOrder = Literal["record_after_handle", "record_before_handle"]

class PersistenceError(Exception):
    """Base class of every error raised by softnet_persistence."""

class PersistenceIOError(PersistenceError, OSError):
    """The operating system refused a file operation. Also an OSError."""

class PersistenceFormatError(PersistenceError):
    """Stored data is corrupt, truncated or belongs to something else."""

class StorageFullError(PersistenceError):
    """The event does not fit and the overflow policy is "reject_new"."""

class StoreLockedError(PersistenceError):
    """Another process or store holds the file."""

class InvalidStateError(PersistenceError):
    """The call is not valid in the store's current state."""

class InvalidArgumentError(PersistenceError, ValueError):
    """An argument broke a documented rule. Also a ValueError."""

class StoreClosedError(PersistenceError):
    """The store was closed."""

class BackendError(PersistenceError):
    """A custom backend failed in a way the store could not absorb."""

def _raise_error_kind(kind: str, message: str = "test") -> None: ...
@final
class StoredEvent:
    """A pending event as the store returns it."""

    @property
    def kind(self) -> EventKind: ...
    @property
    def name(self) -> str: ...
    @property
    def args(self) -> bytes: ...
    @property
    def client_id(self) -> Optional[int]: ...
    @property
    def uid(self) -> uuid.UUID: ...
    @property
    def seq(self) -> int: ...
    @property
    def raised_at_ms(self) -> Optional[int]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ServiceStats:
    """A snapshot of a service store's state and counters."""

    @property
    def level(self) -> int: ...
    @property
    def mode(self) -> Literal["storage", "cache"]: ...
    @property
    def pending_events(self) -> int: ...
    @property
    def used_bytes(self) -> int: ...
    @property
    def capacity_bytes(self) -> int: ...
    @property
    def dropped_events(self) -> int: ...
    @property
    def rejected_events(self) -> int: ...
    @property
    def superseded_events(self) -> int: ...
    @property
    def invalidated_events(self) -> int: ...
    @property
    def expired_events(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def events_lost(self) -> int: ...
    @property
    def storage_uid(self) -> uuid.UUID: ...

@final
class ServiceStore:
    """Keeps a service's raised events until the broker acknowledges them."""

    @staticmethod
    def open_memory(
        capacity: int = 16384,
        overflow: _Overflow = "drop_oldest",
        on_failure: Optional[FailureCallback] = None,
        *,
        max_age: Optional[float] = None,
    ) -> "ServiceStore": ...
    @staticmethod
    def open_file(
        directory: _PathLike,
        service_uid: _Uid,
        capacity: int = 1048576,
        memory_capacity: int = 16384,
        durability: _Durability = "sync",
        overflow: _Overflow = "drop_oldest",
        on_failure: Optional[FailureCallback] = None,
        *,
        batch_max_ops: int = 64,
        batch_max_delay: float = 0.1,
        strict: bool = False,
        max_age: Optional[float] = None,
    ) -> "ServiceStore": ...
    @staticmethod
    def open_custom(
        backend: RecordLogBackend,
        memory_capacity: int = 16384,
        on_failure: Optional[FailureCallback] = None,
        capacity: int = 1048576,
        overflow: _Overflow = "drop_oldest",
        *,
        max_age: Optional[float] = None,
    ) -> "ServiceStore": ...
    def raise_event(
        self,
        /,
        kind: Union[EventKind, int],
        name: str,
        args: bytes = b"",
        client_id: Optional[int] = None,
        *,
        uid: Optional[_Uid] = None,
    ) -> uuid.UUID: ...
    def peek(self) -> Optional[StoredEvent]: ...
    def ack(self, uid: _Uid) -> None: ...
    def peek_name(self, kind: Union[EventKind, int], name: str) -> Optional[StoredEvent]: ...
    def ack_name(
        self, kind: Union[EventKind, int], name: str, uid: _Uid
    ) -> Optional[StoredEvent]: ...
    def pending(self) -> List[StoredEvent]: ...
    def set_storage_mode(self) -> None: ...
    @property
    def mode(self) -> Literal["storage", "cache"]: ...
    @property
    def storage_uid(self) -> uuid.UUID: ...
    @property
    def previous_storage_uid(self) -> Optional[uuid.UUID]: ...
    @property
    def level(self) -> int: ...
    @property
    def journal_path(self) -> Optional[Path]: ...
    @property
    def closed(self) -> bool: ...
    def invalidate_ancient(self) -> int: ...
    def reset(self) -> None: ...
    def flush(self) -> None: ...
    def stats(self) -> ServiceStats: ...
    def close(self) -> None: ...
    def __enter__(self) -> "ServiceStore": ...
    def __exit__(
        self,
        _exc_type: Optional[Type[BaseException]] = None,
        _exc_value: Optional[BaseException] = None,
        _traceback: Optional[TracebackType] = None,
    ) -> bool: ...

@final
class ClientStats:
    """A snapshot of a client store's state."""

    @property
    def level(self) -> int: ...
    @property
    def subscriptions(self) -> int: ...
    @property
    def failures(self) -> int: ...

@final
class ClientStore:
    """Keeps the instance id of the last event handled per subscription."""

    @staticmethod
    def open_memory(on_failure: Optional[FailureCallback] = None) -> "ClientStore": ...
    @staticmethod
    def open_file(
        directory: _PathLike,
        server_address: str,
        client_key: str,
        durability: _Durability = "sync",
        on_failure: Optional[FailureCallback] = None,
        *,
        batch_max_ops: int = 64,
        batch_max_delay: float = 0.1,
        strict: bool = False,
    ) -> "ClientStore": ...
    @staticmethod
    def open_custom(
        backend: IdStoreBackend, on_failure: Optional[FailureCallback] = None
    ) -> "ClientStore": ...
    def get(self, name: str) -> Optional[int]: ...
    def put(self, name: str, instance_id: int) -> None: ...
    def is_duplicate(self, name: str, instance_id: int) -> bool: ...
    def entries(self) -> Dict[str, int]: ...
    def handle(
        self,
        /,
        name: str,
        instance_id: int,
        handler: Callable[[], object],
        order: _HandlerOrder = "record_after_handle",
    ) -> bool: ...
    def reset(self) -> None: ...
    def flush(self) -> None: ...
    def stats(self) -> ClientStats: ...
    @property
    def level(self) -> int: ...
    @property
    def file_path(self) -> Optional[Path]: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "ClientStore": ...
    def __exit__(
        self,
        _exc_type: Optional[Type[BaseException]] = None,
        _exc_value: Optional[BaseException] = None,
        _traceback: Optional[TracebackType] = None,
    ) -> bool: ...

@final
class ServiceController:
    """Drives a ServiceStore through the delivery protocol."""

    def __new__(cls, store: ServiceStore, resend_timeout: float = 30.0) -> "ServiceController": ...
    def raise_event(
        self,
        /,
        kind: Union[EventKind, int],
        name: str,
        args: bytes = b"",
        client_id: Optional[int] = None,
        *,
        uid: Optional[_Uid] = None,
    ) -> uuid.UUID: ...
    def connected(self) -> None: ...
    def online(self, broker_storage_uid: Optional[_Uid]) -> None: ...
    def ack(self, uid: _Uid) -> None: ...
    def rejected(self, uid: _Uid) -> None: ...
    def disconnected(self) -> None: ...
    def tick(self, now: float) -> None: ...
    def drain_outputs(self) -> List[ServiceOutput]: ...
    def next_deadline(self) -> Optional[float]: ...
    @property
    def is_online(self) -> bool: ...
    @property
    def in_flight(self) -> List[uuid.UUID]: ...
    @property
    def stale_acks(self) -> int: ...
    @property
    def rejected_count(self) -> int: ...
    @property
    def store(self) -> ServiceStore: ...
    @property
    def resend_timeout(self) -> float: ...

@final
class ClientController:
    """Decides which incoming events reach a client's application."""

    def __new__(
        cls,
        store: ClientStore,
        kind: Literal["stateful", "stateless"] = "stateful",
        order: _HandlerOrder = "record_after_handle",
    ) -> "ClientController": ...
    def connected(self) -> Optional[List[Tuple[str, int]]]: ...
    def incoming(self, name: str, instance_id: int) -> Decision: ...
    def handled(self, name: str, instance_id: int) -> None: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def kind(self) -> Literal["stateful", "stateless"]: ...
    @property
    def order(self) -> _HandlerOrder: ...
    @property
    def store(self) -> ClientStore: ...
