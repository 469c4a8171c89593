"""The exception hierarchy and the one mapping of the core error kinds."""

import errno

import pytest

import softnet_persistence as snp
from softnet_persistence import _native

SUBCLASSES = [
    snp.PersistenceIOError,
    snp.PersistenceFormatError,
    snp.StorageFullError,
    snp.StoreLockedError,
    snp.InvalidStateError,
    snp.InvalidArgumentError,
    snp.StoreClosedError,
    snp.BackendError,
]


def test_one_base():
    assert issubclass(snp.PersistenceError, Exception)
    for cls in SUBCLASSES:
        assert issubclass(cls, snp.PersistenceError), cls
        assert cls.__module__ == "softnet_persistence", cls
        assert cls.__doc__, cls
    assert issubclass(snp.PersistenceIOError, OSError)
    assert issubclass(snp.InvalidArgumentError, ValueError)
    assert not issubclass(snp.StoreClosedError, (OSError, ValueError))


@pytest.mark.parametrize(
    "kind, cls, text",
    [
        ("invalid_argument", snp.InvalidArgumentError, "the rule"),
        ("io", snp.PersistenceIOError, "open /some/file"),
        ("format", snp.PersistenceFormatError, "the rule"),
        ("storage_full", snp.StorageFullError, "the event needs"),
        ("locked", snp.StoreLockedError, "the rule is locked by another process"),
        ("state", snp.InvalidStateError, "the rule"),
        ("closed", snp.StoreClosedError, "the store is closed"),
        ("backend", snp.BackendError, "the rule"),
    ],
)
def test_every_error_kind_maps_to_its_exception(kind, cls, text):
    message = "open /some/file" if kind == "io" else "the rule"
    with pytest.raises(cls) as info:
        _native._raise_error_kind(kind, message)
    assert type(info.value) is cls
    # The message starts with what happened: the class names the category
    # ("InvalidArgumentError: invalid argument: ..." would say it twice).
    assert str(info.value).startswith(text), str(info.value)


def test_io_error_carries_errno_and_the_file():
    with pytest.raises(OSError) as info:
        _native._raise_error_kind("io", "sync /var/lib/x.ssp")
    assert info.value.errno == errno.EIO
    assert "/var/lib/x.ssp" in str(info.value)
    assert isinstance(info.value, snp.PersistenceError)


def test_locked_error_names_the_file():
    with pytest.raises(snp.StoreLockedError, match="/data/journal.ssp"):
        _native._raise_error_kind("locked", "/data/journal.ssp")
