"""A gateway raises events while its network is down, its process exits, and
a new process drains them in raise order once the broker is reachable.

Run (after ``pip install ./bindings/python``, or with the test venv that
``bindings/python/run_tests.sh`` makes):

    target/venv-python/bin/python examples/python/service_restart.py [DIRECTORY]

With no DIRECTORY a temporary one is used. The script runs itself twice, as
two processes: ``raise`` stores the events in a journal file and exits;
``drain`` opens the same file and delivers them.
"""

import subprocess
import sys
import tempfile
import uuid

import softnet_persistence as snp

# A fixed service uid: the journal file is named after it, so the second
# process finds the first one's events.
SERVICE_UID = uuid.UUID("5e7f0b3a-9c1d-4e2f-8a6b-1c0d2e3f4a5b")


def report(kind: snp.FailureKind, message: str, events_lost: int) -> None:
    print(f"[report] {kind.name}: {message} ({events_lost} lost)")


def raise_offline(directory: str) -> None:
    with snp.ServiceStore.open_file(directory, SERVICE_UID, on_failure=report) as store:
        print(f"offline: raising events into {store.journal_path}")
        for i, celsius in enumerate(["21.5", "21.9", "22.4"], start=1):
            uid = store.raise_event(snp.EventKind.QUEUEING, "Temperature", celsius.encode())
            print(f"  raised Temperature #{i} = {celsius} C  uid {uid}")
        store.raise_event(snp.EventKind.REPLACING, "DoorState", b"open")
        store.raise_event(snp.EventKind.REPLACING, "DoorState", b"closed")
        print("  raised DoorState open, then closed (only the newest state is kept)")
        stats = store.stats()
        print(f"  {stats.pending_events} events pending, storage uid {stats.storage_uid}")


def drain_online(directory: str) -> None:
    with snp.ServiceStore.open_file(directory, SERVICE_UID, on_failure=report) as store:
        print(f"online: {store.stats().pending_events} events survived the restart")
        while (event := store.peek()) is not None:
            # ... send the event to the broker and wait for its ack ...
            print(f"  delivered {event.kind.name} {event.name} = {event.args.decode()!r}")
            store.ack(event.uid)
        print(f"  backlog drained; the store is now in {store.mode} mode")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("raise", "drain"):
        {"raise": raise_offline, "drain": drain_online}[sys.argv[1]](sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as scratch:
        directory = sys.argv[1] if len(sys.argv) > 1 else scratch
        subprocess.run([sys.executable, __file__, "raise", directory], check=True)
        print("--- the process exited; a new one starts ---")
        subprocess.run([sys.executable, __file__, "drain", directory], check=True)


if __name__ == "__main__":
    main()
