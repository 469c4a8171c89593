"""The C MQTT examples (examples/mqtt: gateway.c, subscriber.c, over Paho C)
against the Python bridges (softnet_persistence.mqtt) through a real
mosquitto, in both directions, with kills: the wire mapping of docs/MQTT.md
checked across languages.

(a) C gateway -> Python subscriber: the C gateway (SPL-2, "sync") raises
    Queueing events on three names every 15 ms and is killed with SIGKILL at
    random (C_GATEWAY_KILLS times) and restarted on the same journal; a
    Python MqttClientBridge (record_after_handle, test_mqtt_kill.py's
    subscriber child) is killed SUB_KILLS times; the broker is stopped and
    restarted at least BROKER_RESTARTS times.
(b) Python publisher -> C subscribers: the Python MqttServiceBridge
    (test_mqtt_kill.py's publisher child) is killed PY_PUBLISHER_KILLS times,
    two C subscribers (record_after_handle and record_before_handle; their
    handler works 0..1.5 ms before and after its effect) C_SUB_KILLS times
    each, the broker restarted as in (a). Then copies of events already
    handled are published by hand: each subscriber must drop them.

The checks are test_mqtt_kill.py's (check_subscriber): nothing invented,
in raise order per name, every event whose raise returned handed over;
record_after_handle: a repeat only right after a kill of that subscriber,
at most one per kill, nothing lost; record_before_handle: never twice, a
loss only at a kill. For the C subscriber, "nothing lost" under
record_after_handle is also the measurement of when Paho C sends the
PUBACK (subscriber.c's comment): had it been sent before the decision, a
kill in between would lose that event.

The binaries are built by `make mqtt-examples` (run here; `make test`
builds them before the Python tests). Without mosquitto or Paho C the tests
fail with the command that installs them. SNP_SEED replays the choices.
"""

import os
import random
import select
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))

import test_mqtt_kill as tk  # noqa: E402
from mqtt_broker import Mosquitto, require_mosquitto  # noqa: E402

SEED = int(os.environ.get("SNP_SEED", str(int(time.time() * 1000) % 1_000_000_007)))
C_GATEWAY_KILLS = 20
SUB_KILLS = 10
PY_PUBLISHER_KILLS = 10
C_SUB_KILLS = 20
BROKER_RESTARTS = 2
BROKER_UP = (3.0, 5.0)
BROKER_DOWN = (0.2, 1.0)
FINAL_RAISES = 20
FINAL_TIMEOUT = 60.0
GATEWAY = ROOT / "target" / "c" / "mqtt-gateway"
SUBSCRIBER = ROOT / "target" / "c" / "mqtt-subscriber"
PAHO_HINT = "Paho C is missing; install it with: sudo apt-get install libpaho-mqtt-dev"


def build_c_examples() -> None:
    """`make mqtt-examples` (fails the test, naming the package, without
    Paho C)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "-s", "mqtt-examples"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        hint = PAHO_HINT if "libpaho-mqtt-dev" in output else "make mqtt-examples failed"
        pytest.fail(f"{hint}:\n{output[-3000:]}", pytrace=False)
    assert GATEWAY.exists() and SUBSCRIBER.exists()


SCHEDULE = tk.Schedule(seed=SEED, restarts=BROKER_RESTARTS, broker_up=BROKER_UP,
                       broker_down=BROKER_DOWN, kill_limit=300.0, final_timeout=FINAL_TIMEOUT)


class Proc(tk.Child):
    """A role's runs (test_mqtt_kill.Child) whose command line is given whole."""

    def __init__(self, role: str, argv_of: Callable[[bool], List[str]], log: Path, kills: int) -> None:
        super().__init__(role, argv_of, log)
        self.max_kills = kills

    def spawn(self, rng: random.Random, now: float, final: bool = False, first: bool = False) -> None:
        self.killable = not final and self.kills < self.max_kills
        self.lines, self.buf = [], b""
        self.proc = subprocess.Popen(
            self.argv_of(final), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.log, "ab"),
        )
        self.kill_at = None
        if self.killable and not first and rng.random() < tk.EARLY_KILL:
            self.kill_at = now + rng.uniform(0, tk.EARLY_KILL_MAX)
            self.early_kills += 1


def test_c_gateway_to_python_subscriber(tmp_path: Path) -> None:
    binary = require_mosquitto()
    build_c_examples()
    rng = random.Random(SEED)
    broker = Mosquitto(tmp_path / "broker", binary)
    service_uid = str(uuid.uuid4())
    next_n = [0]
    (tmp_path / "gateway").mkdir()
    (tmp_path / "subscriber").mkdir()

    def gateway_argv(final: bool) -> List[str]:
        return [str(GATEWAY), "--dir", str(tmp_path / "gateway"), "--port", str(broker.port),
                "--prefix", tk.PREFIX, "--service-uid", service_uid, "--resend-ms", "1000",
                "--every", "15", "--start", str(next_n[0]),
                "--count", str(FINAL_RAISES) if final else "-1", *tk.NAMES]

    def subscriber_argv(_final: bool) -> List[str]:
        return [sys.executable, tk.__file__, "subscriber", str(tmp_path / "subscriber"),
                str(broker.port), "record_after_handle", str(rng.getrandbits(32))]

    gateway = Proc("C gateway", gateway_argv, tmp_path / "gateway.log", C_GATEWAY_KILLS)
    sub = Proc("sub python", subscriber_argv, tmp_path / "subscriber.log", SUB_KILLS)
    restarts = tk.drive(broker, rng, SCHEDULE, gateway, [sub], next_n)
    tk.report("C gateway -> Python subscriber", SCHEDULE, gateway, {"Python": sub}, restarts,
           {"Python": "record_after_handle"})


def test_python_publisher_to_c_subscribers(tmp_path: Path) -> None:
    binary = require_mosquitto()
    build_c_examples()
    import paho.mqtt.client as paho
    from softnet_persistence.mqtt import make_client

    rng = random.Random(SEED + 1)
    broker = Mosquitto(tmp_path / "broker", binary)
    service_uid = str(uuid.uuid4())
    next_n = [0]
    (tmp_path / "publisher").mkdir()

    def publisher_argv(final: bool) -> List[str]:
        return [sys.executable, tk.__file__, "publisher", str(tmp_path / "publisher"), service_uid,
                str(broker.port), str(next_n[0]), "1" if final else "0", str(rng.getrandbits(32))]

    def subscriber_argv(order: str) -> Callable[[bool], List[str]]:
        directory = tmp_path / f"sub-{order}"
        directory.mkdir()

        def argv(_final: bool) -> List[str]:
            return [str(SUBSCRIBER), "--dir", str(directory), "--port", str(broker.port),
                    "--client-id", f"c-subscriber-{order}", "--prefix", tk.PREFIX, "--order", order,
                    "--handler-us", "1500", "--seed", str(rng.getrandbits(31)), *tk.NAMES]
        return argv

    orders = {"C after": "after", "C before": "before"}
    subs = {role: Proc(f"sub {role}", subscriber_argv(order), tmp_path / f"{order}.log", C_SUB_KILLS)
            for role, order in orders.items()}
    publisher = Proc("Python publisher", publisher_argv, tmp_path / "publisher.log", PY_PUBLISHER_KILLS)
    injected: Dict[str, int] = {}

    def inject_copies() -> None:
        """Publishes, by hand, a copy of the last event each subscriber
        handled on "Door" and, if there is one, of the one before it
        (a stale repeat), with the publisher's storage uid (read from its
        retained announcement); each subscriber must drop them (X lines)
        and hand nothing over."""
        got = threading.Event()
        stamp: List[str] = []
        client = make_client("interop-injector")

        def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
            stamp.append(message.payload.decode())
            got.set()

        client.on_message = on_message
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            client.subscribe(f"{tk.PREFIX}/storage-uid", qos=1)
            assert got.wait(10), "no retained storage uid"
            from softnet_persistence.mqtt import _publish_properties

            for role, sub in subs.items():
                doors = [(n, seq) for name, n, seq in tk.handled_lines(sub) if name == "Door"]
                copies = [doors[-1]] + ([doors[-2]] if len(doors) > 1 else [])
                before = len([l for l in sub.lines if l.startswith("X ")])
                for n, seq in copies:
                    props = [("snp-v", "1"), ("snp-kind", "queueing"), ("snp-name", "Door"),
                             ("snp-uid", str(uuid.uuid4())), ("snp-storage-uid", stamp[-1]),
                             ("snp-seq", str(seq))]
                    client.publish(f"{tk.PREFIX}/queueing/Door", str(n).encode(), qos=1,
                                   properties=_publish_properties(props)).wait_for_publish(10)
                injected[role] = len(copies)
                deadline = time.monotonic() + 20
                while len([l for l in sub.lines if l.startswith("X ")]) < before + len(copies):
                    assert time.monotonic() < deadline, f"seed {SEED}: {role} did not drop the copies"
                    if select.select([sub.fd()], [], [], 0.2)[0]:
                        sub.read(rng, time.monotonic())
        finally:
            client.loop_stop()
            client.disconnect()

    restarts = tk.drive(broker, rng, SCHEDULE, publisher, list(subs.values()), next_n,
                        before_end=inject_copies)
    counts = tk.report("Python publisher -> C subscribers", SCHEDULE, publisher, subs, restarts,
                    {role: f"record_{order}_handle" for role, order in orders.items()})
    assert set(injected) == set(subs)
    print(f"copies published by hand and dropped: {injected}")
    assert counts["C after"]["lost"] == 0


class Lines:
    """The report lines of a child, awaited one by one."""

    def __init__(self, argv: List[str], log: Path) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "ab"))
        self.buf = b""
        self.lines: List[str] = []

    def wait_for(self, prefix: str, timeout: float = 20.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.lines):
                if line.startswith(prefix):
                    del self.lines[: i + 1]
                    return line
            left = deadline - time.monotonic()
            assert left > 0, f"no {prefix!r} line within {timeout} s (got {self.lines})"
            if select.select([self.proc.stdout], [], [], left)[0]:
                data = os.read(self.proc.stdout.fileno(), 65536)
                assert data, f"the child exited before a {prefix!r} line"
                self.buf += data
                *complete, self.buf = self.buf.split(b"\n")
                self.lines += [line.decode() for line in complete]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=20) == 0


PUBACK_ROUNDS = 5


def test_c_subscriber_killed_inside_the_callback(tmp_path: Path) -> None:
    """When Paho C's MQTTAsync sends the PUBACK: the C subscriber
    (--pause-ms) announces each message as its callback starts (R) and
    waits; it is killed there, before any decision. Had Paho acknowledged
    the message before calling back, the broker would have dropped it from
    the session; it must come again to the next run and be handed over once.
    PUBACK_ROUNDS rounds, one event each."""
    binary = require_mosquitto()
    build_c_examples()
    import softnet_persistence as snp
    from softnet_persistence.mqtt import MqttServiceBridge, make_client

    broker = Mosquitto(tmp_path / "broker", binary)
    broker.start()
    (tmp_path / "sub").mkdir()
    (tmp_path / "pub").mkdir()
    store = snp.ServiceStore.open_file(str(tmp_path / "pub"), uuid.uuid4(), durability="sync")
    bridge = MqttServiceBridge(store, make_client("puback-publisher"), tk.PREFIX,
                               reconnect_delay=(0.05, 0.2))

    def subscriber(pause_ms: int) -> Lines:
        return Lines([str(SUBSCRIBER), "--dir", str(tmp_path / "sub"), "--port", str(broker.port),
                      "--client-id", "c-subscriber-puback", "--prefix", tk.PREFIX,
                      "--pause-ms", str(pause_ms), "Door"], tmp_path / "subscriber.log")

    handled: List[str] = []
    redelivered = 0
    try:
        first = subscriber(0)
        first.wait_for("SUBSCRIBED")  # the session exists before anything is published
        first.stop()
        bridge.connect("127.0.0.1", broker.port, keepalive=5)
        bridge.loop_start()
        for round_ in range(PUBACK_ROUNDS):
            paused = subscriber(60_000)
            paused.wait_for("READY")
            bridge.raise_event(snp.EventKind.QUEUEING, "Door", str(round_).encode())
            paused.wait_for(f"R {tk.PREFIX}/queueing/Door")
            paused.kill()
            again = subscriber(0)
            line = again.wait_for("H Door ")
            assert line.split(" ")[2] == str(round_), f"round {round_}: handed over {line!r}"
            handled.append(line)
            redelivered += 1
            again.stop()
            assert not [l for l in again.lines if l.startswith("H ")], again.lines
        deadline = time.monotonic() + 20
        while bridge.pending:
            assert time.monotonic() < deadline, "the publisher's events were not acknowledged"
            time.sleep(0.05)  # polling the store: no event tells the test
    finally:
        bridge.disconnect()
        store.close()
        broker.stop()
    print(f"\nC subscriber killed inside the message callback {PUBACK_ROUNDS} times (before its "
          f"decision): {redelivered} events sent again by the broker and handed over, 0 lost")
    assert redelivered == PUBACK_ROUNDS
