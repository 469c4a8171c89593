"""Exactly once over a real MQTT broker (``make mqtt-demo``; docs/MQTT.md).

A mosquitto of the demo's own (a free loopback port, a temporary
persistence file), a gateway that raises a temperature reading every 20 ms
through an MqttServiceBridge over a journal file, and a subscriber that
hands each reading to its application through an MqttClientBridge over a
client file. The demo kills the gateway and the subscriber with SIGKILL and
stops and restarts the broker, a few times each, then lets a last gateway
drain and counts what the application received.

Run (needs mosquitto: ``sudo apt-get install mosquitto``; and the module
with paho-mqtt, e.g. the test venv of ``bindings/python/run_tests.sh``):

    target/venv-python/bin/python examples/python/mqtt_demo.py

It exits non-zero unless every reading whose raise returned was handed to
the application, in order, at most once more per subscriber kill.
"""

import os
import pwd
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, List, Optional, cast

import softnet_persistence as snp
from softnet_persistence.mqtt import (
    MqttClientBridge,
    MqttServiceBridge,
    ReceivedEvent,
    Subscription,
    make_client,
)

PREFIX = "demo/gateway-1"
SERVICE_UID = "5e7f0b3a-9c1d-4e2f-8a6b-1c0d2e3f4a5b"
ROUNDS = 4


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())


def parent_gone() -> bool:
    readable, _, _ = select.select([0], [], [], 0)
    return bool(readable) and not os.read(0, 4096)


def gateway(directory: str, port: int, start: int, final: int) -> None:
    """Raises readings start, start+1, ...; with ``final`` > 0 raises that
    many, waits until the broker acknowledged everything, and exits."""
    store = snp.ServiceStore.open_file(directory, uuid.UUID(SERVICE_UID))
    bridge = MqttServiceBridge(
        store, make_client(f"gateway-{os.getpid()}"), PREFIX,
        resend_timeout=1.0, reconnect_delay=(0.05, 0.5),
    )
    bridge.connect("127.0.0.1", port, keepalive=5)
    n, next_raise = start, time.monotonic()
    while final == 0 or n < start + final or bridge.pending:
        if (final == 0 or n < start + final) and time.monotonic() >= next_raise:
            say(f"P {n}")
            bridge.raise_event(snp.EventKind.QUEUEING, "Temperature", f"{n}".encode())
            say(f"O {n}")
            n += 1
            next_raise += 0.02
        bridge.loop(0.01)
        if parent_gone():
            return
    bridge.disconnect()
    store.close()


def subscriber(directory: str, port: int) -> None:
    store = snp.ClientStore.open_file(directory, "127.0.0.1", "demo-subscriber")

    def application(event: ReceivedEvent) -> None:
        say(f"H {event.args.decode()}")

    bridge = MqttClientBridge(
        store, make_client("demo-subscriber"), [Subscription(PREFIX, "Temperature")],
        application, reconnect_delay=(0.05, 0.5),
    )
    bridge.connect("127.0.0.1", port, keepalive=5)
    told = False
    while not parent_gone():
        bridge.loop(0.05)
        if bridge.subscribed and not told:
            say("SUBSCRIBED")
            told = True
    bridge.disconnect()
    store.close()


class Broker:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(binary, os.X_OK):
            sys.exit("mosquitto is missing; install it with: sudo apt-get install mosquitto")
        # A free port below Linux's ephemeral range: no outgoing connection
        # takes it while the broker is down.
        for port in random.sample(range(20000, 32000), 1000):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                self.port = port
                break
        else:
            sys.exit("no free port in 20000..32000")
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {directory}/\nmax_queued_messages 0\n"
            f"log_dest file {directory}/mosquitto.log\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        )
        self.binary = binary
        self.proc: Optional["subprocess.Popen[bytes]"] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("mosquitto did not start")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


class Child:
    def __init__(self, argv: List[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.out = cast(IO[bytes], self.proc.stdout)
        self.buf = b""
        self.lines: List[str] = []

    def pump(self, seconds: float, until: str = "") -> None:
        """Reads what the child says for ``seconds`` (or until a line)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in self.lines):
            readable, _, _ = select.select([self.out], [], [], max(0.0, deadline - time.monotonic()))
            if readable:
                data = os.read(self.out.fileno(), 65536)
                if not data:
                    return
                self.buf += data
                *done, self.buf = self.buf.split(b"\n")
                self.lines += [line.decode() for line in done]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.pump(0.2)

    def finish(self) -> None:
        cast(IO[bytes], self.proc.stdin).close()
        self.pump(30)
        self.proc.wait()


def main(scratch: Path) -> int:
    rng = random.Random(7)
    broker = Broker(scratch)
    for name in ("gateway", "subscriber"):
        (scratch / name).mkdir()
    broker.start()
    gateway_lines: List[str] = []
    handled: List[str] = []
    kills: "Counter[str]" = Counter()
    next_n = 0

    def start_gateway(final: int = 0) -> Child:
        return Child(["gateway", str(scratch / "gateway"), str(broker.port), str(next_n), str(final)])

    def start_subscriber() -> Child:
        return Child(["subscriber", str(scratch / "subscriber"), str(broker.port)])

    sub = start_subscriber()
    sub.pump(10, until="SUBSCRIBED")
    gw = start_gateway()
    try:
        for round_ in range(ROUNDS):
            for child in (gw, sub):
                child.pump(rng.uniform(0.5, 1.5))
            gw.kill()
            kills["gateway"] += 1
            gateway_lines += gw.lines
            next_n = 1 + max([-1] + [int(line.split()[1]) for line in gw.lines if line.startswith("P")])
            print(f"round {round_ + 1}: gateway killed after raising up to {next_n - 1}")
            gw = start_gateway()
            sub.pump(rng.uniform(0.3, 1.0))
            sub.kill()
            kills["subscriber"] += 1
            handled += [line[2:] for line in sub.lines if line.startswith("H ")]
            print(f"round {round_ + 1}: subscriber killed, {len(handled)} handed over so far")
            sub = start_subscriber()
            if round_ % 2 == 1:
                broker.stop()
                gw.pump(0.5)
                broker.start()
                kills["broker restart"] += 1
                print(f"round {round_ + 1}: broker stopped and restarted")
        gw.finish()  # told to stop: a last gateway raises 20 more and drains
        gateway_lines += gw.lines
        next_n = 1 + max([-1] + [int(line.split()[1]) for line in gateway_lines if line.startswith("P")])
        gw = start_gateway(final=20)
        gw.pump(60, until=f"O {next_n + 19}")
        gw.proc.wait(timeout=60)
        gw.pump(0.1)
        gateway_lines += gw.lines
        returned = {int(line.split()[1]) for line in gateway_lines if line.startswith("O")}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sub.pump(0.2)
            seen = {int(line[2:]) for line in sub.lines if line.startswith("H ")}
            if max(returned) in seen:
                break
        sub.finish()
        handled += [line[2:] for line in sub.lines if line.startswith("H ")]
    finally:
        for child in (gw, sub):
            if child.proc.poll() is None:
                child.proc.kill()
        broker.stop()

    counts = Counter(int(n) for n in handled)
    once = sum(1 for n in returned if counts[n] == 1)
    twice = sum(1 for n in returned if counts[n] == 2)
    lost = sorted(n for n in returned if counts[n] == 0)
    in_order = [int(n) for n in handled] == sorted(int(n) for n in handled)
    print(f"\n{len(returned)} readings raised; gateway killed {kills['gateway']} times, "
          f"subscriber killed {kills['subscriber']} times, broker restarted "
          f"{kills['broker restart']} times")
    print(f"delivered once: {once}, twice: {twice} (at most one per subscriber kill), "
          f"lost: {len(lost)}, in order: {in_order}")
    ok = not lost and twice <= kills["subscriber"] and max(counts.values()) <= 2
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "gateway":
        gateway(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "subscriber":
        subscriber(sys.argv[2], int(sys.argv[3]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            sys.exit(main(Path(scratch)))
