"""Crash test with real processes: a child raises events into a journal with
durability "sync" and reports each one after raise_event returns; it is
SIGKILLed at a random moment, many times. After every kill the parent
reopens the journal and finds every reported event exactly once, in order,
plus at most the raise that was in progress; it then acknowledges them all
and checks that no acknowledged event ever comes back.

SNP_CRASH_RUNS sets the number of kills (default 60), SNP_CRASH_SEED the
random seed (printed on failure)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import softnet_persistence as snp

RUNS = int(os.environ.get("SNP_CRASH_RUNS", "60"))
SEED = int(os.environ.get("SNP_CRASH_SEED", str(int(time.time()))))

CHILD = textwrap.dedent(
    """
    import os, sys, uuid
    import softnet_persistence as snp
    directory, service_uid, run, report = sys.argv[1], uuid.UUID(sys.argv[2]), sys.argv[3], sys.argv[4]
    fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    store = snp.ServiceStore.open_file(directory, service_uid, durability="sync")
    i = 0
    while True:
        uid = store.raise_event(snp.EventKind.QUEUEING, "Counter", b"%s:%d" % (run.encode(), i))
        os.write(fd, b"%s:%d:%s\\n" % (run.encode(), i, str(uid).encode()))
        i += 1
    """
)


def reported(report_path, run):
    """(i, uid) of each complete line the child wrote for this run."""
    out = []
    if not report_path.exists():
        return out
    for line in report_path.read_bytes().split(b"\n")[:-1]:
        r, i, uid = line.decode().split(":")
        if int(r) == run:
            out.append((int(i), uuid.UUID(uid)))
    return out


def test_sigkill_at_random_moments(tmp_path):
    rng = random.Random(SEED)
    service_uid = uuid.uuid4()
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    report_path = tmp_path / "reported.log"
    killed_while_raising = 0
    total_reported = 0
    for run in range(RUNS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(journal_dir), str(service_uid), str(run), str(report_path)],
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.02, 0.3))
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, (
            f"seed {SEED} run {run}: the child exited by itself ({child.returncode}): {stderr.decode()}"
        )

        acked = reported(report_path, run)
        assert [i for i, _ in acked] == list(range(len(acked)))
        total_reported += len(acked)
        if acked:
            killed_while_raising += 1

        with snp.ServiceStore.open_file(journal_dir, service_uid, durability="none") as store:
            assert store.level == 2
            pending = store.pending()
            found = []
            for event in pending:
                r, i = event.args.decode().split(":")
                assert int(r) == run, (
                    f"seed {SEED} run {run}: event {event} of an earlier run came back after its ack"
                )
                found.append((int(i), event.uid))
            context = f"seed {SEED} run {run}: reported {len(acked)}, found {len(found)}"
            assert found[: len(acked)] == acked, context + ": a reported event is missing or out of order"
            extra = found[len(acked):]
            assert len(extra) <= 1, context + ": more than the raise in progress"
            if extra:
                assert extra[0][0] == len(acked), context
            # Deliver everything: the next run must not see these again.
            delivered = []
            while (event := store.peek()) is not None:
                delivered.append(event.uid)
                store.ack(event.uid)
            assert delivered == [uid for _, uid in found], context

    assert RUNS >= 50 or "SNP_CRASH_RUNS" in os.environ
    # The kills must land while events are being raised, not only at start-up.
    assert killed_while_raising >= RUNS // 2, (killed_while_raising, RUNS)
    assert total_reported > 0
    print(f"{RUNS} kills, {killed_while_raising} while raising, {total_reported} events reported")
