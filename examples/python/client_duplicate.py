"""A client drops an event the broker delivers twice: once after a
reconnect, and once more after the client process restarted.

Run (after ``pip install ./bindings/python``, or with the test venv that
``bindings/python/run_tests.sh`` makes):

    target/venv-python/bin/python examples/python/client_duplicate.py [DIRECTORY]

With no DIRECTORY a temporary one is used. The client keeps the id of the
last event it handled per subscription in a file (level 2), so a redelivery
is acknowledged without handing the event to the application again.
"""

import sys
import tempfile
from typing import List, Tuple

import softnet_persistence as snp

BROKER = "broker.example.net:7778"
CLIENT_KEY = "gateway-42"

# What the broker delivers: (subscription, instance id, arguments). The last
# event is delivered again after a reconnect.
DELIVERIES: List[Tuple[str, int, bytes]] = [
    ("Temperature", 1001, b"21.5"),
    ("Temperature", 1002, b"21.9"),
    ("DoorState", 77, b"open"),
    ("DoorState", 77, b"open"),  # redelivered after a reconnect
]


def application(name: str, args: bytes) -> None:
    print(f"  application handles {name} = {args.decode()!r}")


def receive(client: snp.ClientStore, name: str, instance_id: int, args: bytes) -> None:
    handled = client.handle(name, instance_id, lambda: application(name, args))
    verdict = "handled" if handled else "duplicate: acknowledged, not handled again"
    print(f"  {name} #{instance_id}: {verdict}")


def main(directory: str) -> None:
    with snp.ClientStore.open_file(directory, BROKER, CLIENT_KEY) as client:
        print(f"client ids in {client.file_path}")
        for name, instance_id, args in DELIVERIES:
            receive(client, name, instance_id, args)
    print("--- the client restarts; the broker delivers DoorState #77 once more ---")
    with snp.ClientStore.open_file(directory, BROKER, CLIENT_KEY) as client:
        print(f"  ids kept across the restart: {client.entries()}")
        receive(client, "DoorState", 77, b"open")
        receive(client, "DoorState", 78, b"closed")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        main(sys.argv[1] if len(sys.argv) > 1 else scratch)
