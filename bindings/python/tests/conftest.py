"""Shared fixtures of the softnet_persistence tests."""

import threading
import uuid
from typing import List, Tuple

import pytest

import softnet_persistence as snp


class Reports:
    """An ``on_failure`` callback that records what it receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: List[Tuple[snp.FailureKind, str, int]] = []

    def __call__(self, kind: snp.FailureKind, message: str, events_lost: int) -> None:
        with self.lock:
            self.calls.append((kind, message, events_lost))

    def kinds(self) -> List[snp.FailureKind]:
        return [k for k, _, _ in self.calls]


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def service_uid() -> uuid.UUID:
    return uuid.uuid4()
