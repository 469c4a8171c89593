"""Another process truncating a store's open file (docs/BEHAVIOUR.md section
5.6). A forked child truncates the service journal or the client file with
``os.truncate`` (to 0 bytes or to half its length) while the store raises,
peeks and acknowledges. Without the library's SIGBUS handler the next access
to a lost page of the map kills the interpreter with SIGBUS (pytest's
faulthandler prints "Fatal Python error: Bus error" first). With it, every
call succeeds, the store falls back to level 1 with one FALLBACK report
naming the file, and keeps working there. A SIGBUS that is not the
library's still reaches faulthandler."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import softnet_persistence as snp
from softnet_persistence import EventKind, FailureKind

Q = EventKind.QUEUEING
MAX_STEPS = 5000


def truncate_in_child(path, half, delay=0.0):
    """Forks a child that truncates ``path`` (after ``delay`` seconds) as
    another program would, and exits; returns its pid."""
    size = os.stat(path).st_size
    to = size // 2 if half else 0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            time.sleep(delay)
            os.truncate(path, to)
            code = 0
        finally:
            os._exit(code)
    return pid, to


def wait_for(pid):
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def the_fallback(reports, path):
    assert reports.kinds() == [FailureKind.FALLBACK], reports.calls
    _, message, lost = reports.calls[0]
    assert str(path) in message
    assert "truncated by another program" in message
    return lost


class Ledger:
    def __init__(self, store):
        self.store = store
        self.raised = {}
        self.acked = set()

    def raise_one(self):
        args = len(self.raised).to_bytes(4, "little") * 75
        uid = self.store.raise_event(Q, "Meter", args)
        self.raised[uid] = args

    def deliver_one(self):
        """Peeks and acks the oldest pending event; False if none."""
        event = self.store.peek()
        if event is None:
            self.store.set_storage_mode()
            return False
        assert self.raised[event.uid] == event.args, "an event changed"
        assert event.uid not in self.acked, "an acknowledged event came back"
        self.store.ack(event.uid)
        self.acked.add(event.uid)
        return True


@pytest.mark.parametrize("durability", ["none", "sync"])
@pytest.mark.parametrize("half", [False, True], ids=["to_zero", "to_half"])
def test_service_journal_truncated_by_another_process(tmp_path, reports, durability, half):
    store = snp.ServiceStore.open_file(
        tmp_path,
        uuid.uuid4(),
        capacity=64 * 1024,
        memory_capacity=1 << 20,
        durability=durability,
        on_failure=reports,
    )
    path = store.journal_path
    ledger = Ledger(store)
    for _ in range(150):
        ledger.raise_one()
    for _ in range(10):
        assert ledger.deliver_one()
    assert store.level == 2
    pending_at_cut = store.stats().pending_events

    pid, _ = truncate_in_child(path, half)
    wait_for(pid)
    steps = 0
    while store.level == 2:
        assert steps < MAX_STEPS, "the truncation was never noticed"
        ledger.raise_one()
        ledger.deliver_one()
        steps += 1
    lost = the_fallback(reports, path)
    assert store.level == 1 and store.journal_path is None
    if half:
        assert 0 < lost < pending_at_cut
    else:
        assert lost == pending_at_cut
    for _ in range(20):
        ledger.raise_one()
    drained = 0
    while ledger.deliver_one():
        drained += 1
    stats = store.stats()
    assert stats.level == 1 and stats.dropped_events == 0 and stats.events_lost == lost
    assert len(ledger.raised) == len(ledger.acked) + lost
    store.close()


def test_service_journal_truncated_during_calls(tmp_path, reports):
    """The child truncates at a moment of its own while the parent keeps
    raising, peeking and acking: the fault can hit any access."""
    store = snp.ServiceStore.open_file(
        tmp_path, uuid.uuid4(), capacity=64 * 1024, memory_capacity=1 << 20, on_failure=reports
    )
    path = store.journal_path
    ledger = Ledger(store)
    for _ in range(100):
        ledger.raise_one()
    pid, _ = truncate_in_child(path, half=False, delay=0.05)
    deadline = time.monotonic() + 30
    while store.level == 2:
        assert time.monotonic() < deadline, "the truncation was never noticed"
        ledger.raise_one()
        ledger.deliver_one()
    wait_for(pid)
    lost = the_fallback(reports, path)
    for _ in range(20):
        ledger.raise_one()
    while ledger.deliver_one():
        pass
    # An event whose ack was under way when its page was lost can be both
    # acknowledged and counted lost; none is ever neither.
    assert len(ledger.acked) <= len(ledger.raised) <= len(ledger.acked) + lost
    assert store.level == 1
    store.close()


@pytest.mark.parametrize("durability", ["none", "sync"])
@pytest.mark.parametrize("half", [False, True], ids=["to_zero", "to_half"])
def test_client_file_truncated_by_another_process(tmp_path, reports, durability, half):
    store = snp.ClientStore.open_file(
        tmp_path, "broker.local", "truncate", durability=durability, on_failure=reports
    )
    path = store.file_path
    ids = {}
    counter = iter(range(1, 1 << 30))

    def put():
        n = next(counter)
        name = "Subscription/%d" % (n % 20)
        store.put(name, n)
        ids[name] = n

    for _ in range(20):
        put()
    assert store.level == 2
    pid, _ = truncate_in_child(path, half)
    wait_for(pid)
    steps = 0
    while store.level == 2:
        assert steps < MAX_STEPS, "the truncation was never noticed"
        put()
        steps += 1
    assert the_fallback(reports, path) == 0
    assert store.file_path is None
    for _ in range(20):
        put()
    assert store.level == 1
    assert store.entries() == ids
    store.close()


FOREIGN_FAULT = """
import faulthandler, mmap, os, sys, uuid
import softnet_persistence as snp
faulthandler.enable()
directory = sys.argv[1]
# Opening a store installs the library's handler, after faulthandler's.
store = snp.ServiceStore.open_file(directory, uuid.uuid4(), durability="none")
store.raise_event(snp.EventKind.QUEUEING, "Meter", b"x")
path = os.path.join(directory, "own")
with open(path, "wb") as f:
    f.write(b"\\x11" * 8192)
f = open(path, "r+b")
m = mmap.mmap(f.fileno(), 8192)
os.truncate(path, 0)
print("touching", flush=True)
m[4096]
print("survived", flush=True)
"""


def test_a_foreign_sigbus_still_reaches_faulthandler(tmp_path):
    """A SIGBUS that is not the library's (a map of the application's own)
    goes on to the handler installed before the library's, here Python's
    faulthandler, and ends the process as it would have."""
    child = subprocess.run(
        [sys.executable, "-c", FOREIGN_FAULT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGBUS, (child.stdout, child.stderr)
    assert "touching" in child.stdout and "survived" not in child.stdout
    assert "Fatal Python error: Bus error" in child.stderr
