"""What ``ServiceController.drain_outputs`` returns (pure Python; the
native part makes the instances).

Each output is a small frozen dataclass: compare, hash, print, and on
Python 3.10 and later ``match`` them::

    for output in controller.drain_outputs():
        if isinstance(output, snp.SendStorageUid):
            send_storage_uid(output.storage_uid)
        elif isinstance(output, snp.SendEvent):
            send_event(output.event)
        else:  # snp.Rejected
            log.warning("the broker refused %s", output.event)
"""

import dataclasses
import uuid
from typing import Union

from ._native import StoredEvent

__all__ = ["Rejected", "SendEvent", "SendStorageUid", "ServiceOutput"]


@dataclasses.dataclass(frozen=True)
class SendEvent:
    """Send ``event`` to the broker (again, with the same uid, on a resend)."""

    event: StoredEvent


@dataclasses.dataclass(frozen=True)
class SendStorageUid:
    """Tell the broker the store's ``storage_uid`` (its duplicate detection
    is tied to it); it comes before the events that depend on it."""

    storage_uid: uuid.UUID


@dataclasses.dataclass(frozen=True)
class Rejected:
    """The broker refused the name of ``event``; the event was dropped from
    the store. For the application's log."""

    event: StoredEvent


ServiceOutput = Union[SendEvent, SendStorageUid, Rejected]
"""One output of ``ServiceController.drain_outputs``."""
