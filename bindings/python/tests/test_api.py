"""The public surface: every name is exported, documented and typed."""

import inspect
import pathlib

import softnet_persistence as snp


def public_members(obj):
    for name, member in inspect.getmembers(obj):
        if not name.startswith("_"):
            yield name, member


def test_every_public_name_has_a_docstring():
    assert snp.__doc__
    undocumented = []
    for name in snp.__all__:
        obj = getattr(snp, name)
        # Type aliases: documented by the string that follows them.
        if name in ("__version__", "FailureCallback", "ServiceOutput"):
            continue
        if not (obj.__doc__ or "").strip():
            undocumented.append(name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member_name, member in public_members(obj):
                if isinstance(member, (int, str)):  # enum members
                    continue
                doc = inspect.getdoc(member)
                if not (doc or "").strip():
                    undocumented.append(f"{name}.{member_name}")
    assert not undocumented


def test_exports():
    # Submodules loaded on demand (softnet_persistence.mqtt) are not exports.
    names = {n for n in dir(snp) if not n.startswith("_") and not inspect.ismodule(getattr(snp, n))}
    assert set(snp.__all__) == names | {"__version__"}
    assert isinstance(snp.__version__, str)


def test_typed_package():
    package = pathlib.Path(snp.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_native.pyi").exists()


def test_protocols_describe_the_backends():
    assert {"append", "remove", "read", "scan", "commit", "flush", "clear", "metadata", "set_metadata"} <= set(
        dir(snp.RecordLogBackend)
    )
    assert {"load", "put", "clear", "flush"} <= set(dir(snp.IdStoreBackend))


def test_signatures_are_introspectable():
    sig = inspect.signature(snp.ServiceStore.open_file)
    assert sig.parameters["durability"].default == "sync"
    assert sig.parameters["capacity"].default == 1 << 20
    sig = inspect.signature(snp.ServiceStore.raise_event)
    assert sig.parameters["args"].default == b""


def test_controller_signatures_are_introspectable():
    sig = inspect.signature(snp.ServiceController)
    assert list(sig.parameters) == ["store", "resend_timeout"]
    assert sig.parameters["resend_timeout"].default == 30.0
    sig = inspect.signature(snp.ServiceController.raise_event)
    assert sig.parameters["args"].default == b""
    assert sig.parameters["uid"].kind is inspect.Parameter.KEYWORD_ONLY
    sig = inspect.signature(snp.ClientController)
    assert sig.parameters["kind"].default == "stateful"
    assert sig.parameters["order"].default == "record_after_handle"
    assert list(inspect.signature(snp.ClientController.incoming).parameters) == [
        "self", "name", "instance_id"]
