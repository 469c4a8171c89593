"""A service delivers its events with a ServiceController: the storage-uid
handshake, the in-order drain of what was raised offline, and a resend after
the broker's ack was lost. The broker here is a stand-in object in the same
process; a real service sends the outputs over its connection instead.

Run (after ``pip install ./bindings/python``, or with the test venv that
``bindings/python/run_tests.sh`` makes):

    target/venv-python/bin/python examples/python/service_controller.py [DIRECTORY]

With no DIRECTORY a temporary one is used.
"""

import sys
import tempfile
import uuid
from typing import Dict, Optional

import softnet_persistence as snp

SERVICE_UID = uuid.UUID("5e7f0b3a-9c1d-4e2f-8a6b-1c0d2e3f4a5b")
RESEND_TIMEOUT = 2.0  # seconds; the default is 30


class Broker:
    """Just enough of a broker: it remembers our storage uid and, per
    name, the last uid it acknowledged (a repeat is acked, not queued)."""

    def __init__(self) -> None:
        self.storage_uid: Optional[uuid.UUID] = None
        self.last_acked: Dict[str, uuid.UUID] = {}
        self.lose_next_ack = False

    def receive(self, output: snp.ServiceOutput, ctl: snp.ServiceController) -> None:
        if isinstance(output, snp.SendStorageUid):
            print(f"  broker: storage uid {output.storage_uid}")
            self.storage_uid = output.storage_uid
            self.last_acked.clear()
        elif isinstance(output, snp.SendEvent):
            event = output.event
            repeat = self.last_acked.get(event.name) == event.uid
            self.last_acked[event.name] = event.uid
            verdict = "a repeat: acked again, not queued" if repeat else "queued"
            print(f"  broker: {event.name} = {event.args.decode()!r} {verdict}")
            if self.lose_next_ack:
                self.lose_next_ack = False
                print("  (the ack is lost on the way)")
                return
            ctl.ack(event.uid)
        else:
            print(f"  broker refused {output.event.name}")


def send_outputs(ctl: snp.ServiceController, broker: Broker) -> None:
    # In order: a storage uid comes before the events that depend on it.
    # The broker's acks produce new outputs, hence the loop.
    while outputs := ctl.drain_outputs():
        for output in outputs:
            broker.receive(output, ctl)


def main(directory: str) -> None:
    broker = Broker()
    with snp.ServiceStore.open_file(directory, SERVICE_UID) as store:
        ctl = snp.ServiceController(store, resend_timeout=RESEND_TIMEOUT)
        now = 0.0  # a real service passes time.monotonic()
        ctl.tick(now)
        print("offline: raising events")
        for celsius in ["21.5", "21.9"]:
            ctl.raise_event(snp.EventKind.QUEUEING, "Temperature", celsius.encode())
        ctl.raise_event(snp.EventKind.REPLACING, "DoorState", b"open")
        broker.lose_next_ack = True
        print("online: the broker remembers no storage uid for us")
        ctl.connected()
        ctl.online(broker.storage_uid)
        send_outputs(ctl, broker)
        while (deadline := ctl.next_deadline()) is not None:
            now = deadline
            print(f"t={now:.1f} s: resend timeout")
            ctl.tick(now)
            send_outputs(ctl, broker)
        print(f"delivered; the store is in {store.mode} mode, {ctl.stale_acks} stale acks")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        main(sys.argv[1] if len(sys.argv) > 1 else scratch)
