"""The MQTT bridges (softnet_persistence.mqtt, docs/MQTT.md) against a real
mosquitto, with the publisher and the subscribers killed with SIGKILL at
random and the broker stopped and restarted while events are raised.

The test process starts a mosquitto of its own (tests/mqtt_broker.py: a
free loopback port, a temporary configuration and persistence file) and
three kinds of child, each this file run as a script:

- a publisher (``python test_mqtt_kill.py publisher ...``): a level-2
  ServiceStore (durability "sync") under an MqttServiceBridge (resend
  timeout 1 s). It raises Queueing events on three names at random moments
  (0..30 ms apart), a global number in the arguments (the raise order),
  and writes "P n name" before each raise and "O n name uid" once it
  returned. It raises whether the broker is up or not.
- two subscribers, one per handler order (record_after_handle and
  record_before_handle), each a level-2 ClientStore (durability "sync")
  under an MqttClientBridge on a persistent session; the handler writes
  "H name n seq" (its effect, seen by the parent).

Each child reports on its stdout, a pipe (a write shorter than PIPE_BUF is
all or nothing, so a kill never leaves half a line). The parent kills each
child with SIGKILL at a random moment (10% of the runs 0..150 ms after the
spawn, while the store opens; the others 0.2..1.2 s after "READY") and
starts a new one on the same files, until the publisher and each subscriber
were killed KILLS times; meanwhile it stops the broker cleanly (SIGTERM:
mosquitto saves its persistence) every 4..6 s, leaves it down 0.2..1 s
(the publisher keeps raising; every connection is cut) and starts it again
on the same port and files, at least BROKER_RESTARTS times. Then a last
publisher raises 20 more events and exits once its store holds nothing,
the last subscribers run until they handled every event, and the parent
checks, per subscriber and event name, over the handlings in order:

- nothing invented: every handled number was raised (a "P"), on that name;
- in raise order; every event whose raise returned ("O") is handled;
- record_after_handle (at least once): an event handled twice only where
  the first handling was the last handling of a killed run and the second
  the first handling of that name in a later run (at most one repeat per
  subscription per kill);
- record_before_handle: never twice; an event missing only where a kill
  fell between two handlings of the name (the kill struck between the
  record and the handler's effect: at most one per kill), counted and
  reported as lost.

SNP_SEED replays the seed's choices (printed; process timing is not
replayed); SNP_MQTT_KILLS and SNP_MQTT_RESTARTS change the counts. The
whole file takes about a minute.
"""

import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mqtt_broker import Mosquitto, require_mosquitto  # noqa: E402

SEED = int(os.environ.get("SNP_SEED", str(int(time.time() * 1000) % 1_000_000_007)))
KILLS = int(os.environ.get("SNP_MQTT_KILLS", "50"))
BROKER_RESTARTS = int(os.environ.get("SNP_MQTT_RESTARTS", "10"))

NAMES = ["Temperature", "Door", "Pump"]
PREFIX = "plant/gateway-1"
RESEND = 1.0
RAISE_GAP_MAX = 0.03
EARLY_KILL = 0.10
EARLY_KILL_MAX = 0.15
LIFE = (0.2, 1.2)
BROKER_UP = (4.0, 6.0)
BROKER_DOWN = (0.2, 1.0)
FINAL_RAISES = 20
HANDLER_MAX = 0.0015  # the handler works 0..1.5 ms before and after its effect
FINAL_TIMEOUT = 90.0
ORDERS = ["record_after_handle", "record_before_handle"]


# --- the children ------------------------------------------------------------


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())


def stdin_closed() -> bool:
    readable, _, _ = select.select([0], [], [], 0)
    return bool(readable) and not os.read(0, 4096)


def publisher_child(directory: str, service_uid: str, port: int, start: int, final: bool, seed: int) -> None:
    import softnet_persistence as snp
    from softnet_persistence.mqtt import MqttServiceBridge, make_client

    rng = random.Random(seed)
    store = snp.ServiceStore.open_file(
        directory, uuid.UUID(service_uid), capacity=1 << 22, durability="sync"
    )
    bridge = MqttServiceBridge(
        store, make_client(f"publisher-{os.getpid()}"), PREFIX,
        resend_timeout=RESEND, reconnect_delay=(0.05, 0.2),
    )
    bridge.connect("127.0.0.1", port, keepalive=5)
    say("READY")
    n = start
    left = FINAL_RAISES if final else -1
    next_raise = time.monotonic() + rng.uniform(0, RAISE_GAP_MAX)
    while True:
        now = time.monotonic()
        if left != 0 and now >= next_raise:
            name = NAMES[rng.randrange(len(NAMES))]
            say(f"P {n} {name}")
            uid = bridge.raise_event(snp.EventKind.QUEUEING, name, str(n).encode())
            say(f"O {n} {name} {uid}")
            n += 1
            left -= 1
            next_raise = now + rng.uniform(0, RAISE_GAP_MAX)
        if left == 0 and bridge.pending == 0:
            say("D")
            bridge.disconnect()
            store.close()
            return
        bridge.loop(max(0.0, min(0.05, next_raise - time.monotonic())) if left != 0 else 0.05)
        if stdin_closed():
            return


def subscriber_child(directory: str, port: int, order: str, seed: int) -> None:
    import softnet_persistence as snp
    from softnet_persistence.mqtt import MqttClientBridge, ReceivedEvent, Subscription, make_client

    rng = random.Random(seed)
    store = snp.ClientStore.open_file(directory, "127.0.0.1", f"sub-{order}", durability="sync")

    def handler(event: ReceivedEvent) -> None:
        # The application's handler works, has its effect, works on.
        time.sleep(rng.uniform(0, HANDLER_MAX))
        say(f"H {event.name} {event.args.decode()} {event.seq}")
        time.sleep(rng.uniform(0, HANDLER_MAX))

    bridge = MqttClientBridge(
        store,
        make_client(f"subscriber-{order}"),
        [Subscription(PREFIX, name) for name in NAMES],
        handler,
        order=order,
        reconnect_delay=(0.05, 0.2),
    )
    bridge.connect("127.0.0.1", port, keepalive=5)
    say("READY")
    told = False
    duplicates = 0
    while True:
        bridge.loop(0.05)
        if bridge.subscribed and not told:
            say("SUBSCRIBED")
            told = True
        if bridge.duplicates != duplicates:
            duplicates = bridge.duplicates
            say(f"X {duplicates}")
        if stdin_closed():
            bridge.disconnect()
            store.close()
            return


# --- the parent --------------------------------------------------------------


class Child:
    """One role's runs: a process at a time, its report lines per run."""

    def __init__(self, role: str, argv_of, log: Path) -> None:
        self.role = role
        self.argv_of = argv_of
        self.log = log
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.runs: List[Tuple[bool, List[str]]] = []  # (killed, lines)
        self.lines: List[str] = []
        self.buf = b""
        self.kill_at: Optional[float] = None
        self.kills = 0
        self.max_kills = KILLS
        self.early_kills = 0
        self.killable = False

    def spawn(self, rng: random.Random, now: float, final: bool = False, first: bool = False) -> None:
        """A new run; killed at random unless ``final`` or the role was
        killed ``max_kills`` times already."""
        self.killable = not final and self.kills < self.max_kills
        self.lines, self.buf = [], b""
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *self.argv_of(final)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "ab"),
        )
        self.kill_at = None
        if self.killable and not first and rng.random() < EARLY_KILL:
            self.kill_at = now + rng.uniform(0, EARLY_KILL_MAX)
            self.early_kills += 1

    def fd(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def read(self, rng: random.Random, now: float) -> bool:
        """Takes in what the child wrote; False once its stdout closed."""
        data = os.read(self.fd(), 65536)
        self.buf += data
        *complete, self.buf = self.buf.split(b"\n")
        for line in complete:
            text = line.decode()
            self.lines.append(text)
            ready = "SUBSCRIBED" if self.role.startswith("sub") and not self.runs else "READY"
            if text == ready and self.killable and self.kill_at is None:
                self.kill_at = now + rng.uniform(*LIFE)
        return bool(data)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.end(killed=True)

    def end(self, killed: bool) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        proc.wait()
        while True:
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            self.buf += data
        self.lines += [line.decode() for line in self.buf.split(b"\n")[:-1]]
        proc.stdout.close()
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        expected = -signal.SIGKILL if killed else 0
        if proc.returncode != expected:
            raise AssertionError(
                f"seed {SEED}: {self.role} exited with {proc.returncode}:\n"
                f"{self.log.read_text(errors='replace')[-4000:]}"
            )
        self.runs.append((killed, self.lines))
        if killed:
            self.kills += 1
        self.proc = None
        self.kill_at = None

    def close_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()


def check_subscriber(
    order: str,
    runs: List[Tuple[bool, List[str]]],
    raised: Dict[int, str],
    returned: Dict[int, str],
) -> Dict[str, int]:
    """The checks of the docstring; returns the counts of the table."""
    context = f"seed {SEED} {order}"
    handled: Dict[str, List[Tuple[int, int]]] = defaultdict(list)  # name -> [(n, run)]
    last_of_run: Dict[int, Tuple[str, int]] = {}
    for r, (_killed, lines) in enumerate(runs):
        for line in lines:
            if line.startswith("H "):
                _, name, number, _seq = line.split(" ")
                n = int(number)
                assert raised.get(n) == name, f"{context}: handled {name} {n}, never raised as such"
                handled[name].append((n, r))
                last_of_run[r] = (name, n)
    killed_runs = [r for r, (killed, _) in enumerate(runs) if killed]
    twice = lost = 0
    times: Dict[int, int] = defaultdict(int)
    for name in NAMES:
        prev, prev_run = -1, -1
        first_in_run: Set[int] = set()
        for n, r in handled[name]:
            times[n] += 1
            new_run = r not in first_in_run
            first_in_run.add(r)
            if n == prev:
                assert order == "record_after_handle", f"{context}: {name} {n} handled twice"
                assert runs[prev_run][0] and last_of_run[prev_run] == (name, n), (
                    f"{context}: {name} {n} handled again although run {prev_run} recorded it"
                )
                assert r > prev_run and new_run, f"{context}: {name} {n} repeated within a run"
                twice += 1
            elif n < prev:
                raise AssertionError(f"{context}: {name}: {n} handled after {prev}")
            else:
                skipped = [m for m in returned if prev < m < n and returned[m] == name]
                if skipped:
                    assert order == "record_before_handle", f"{context}: {name} {skipped} lost"
                    assert len(skipped) == 1 and r > prev_run and any(
                        prev_run <= k < r for k in killed_runs
                    ), f"{context}: {name} {skipped} lost (handled {prev} in run {prev_run}, {n} in run {r})"
                    lost += 1
            prev, prev_run = n, r
        left = [m for m in returned if m > prev and returned[m] == name]
        assert not left, f"{context}: {name} never handled: {left[:10]} ({len(left)})"
    assert lost <= len(killed_runs), f"{context}: {lost} lost in {len(killed_runs)} kills"
    once = sum(1 for n in returned if times[n] == 1)
    dropped = sum(max([0] + [int(line.split(" ")[1]) for line in lines if line.startswith("X ")])
                  for _, lines in runs)
    return {"once": once, "twice": twice, "lost": lost, "dropped": dropped,
            "interrupted handled": sum(1 for n in times if n not in returned)}


def test_mqtt_bridges_killed(tmp_path: Path) -> None:
    binary = require_mosquitto()
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    broker = Mosquitto(tmp_path / "broker", binary)
    service_uid = str(uuid.uuid4())
    next_n = [0]

    def publisher_argv(final: bool) -> List[str]:
        directory = tmp_path / "publisher"
        directory.mkdir(exist_ok=True)
        return ["publisher", str(directory), service_uid, str(broker.port), str(next_n[0]),
                "1" if final else "0", str(rng.getrandbits(32))]

    def subscriber_argv(order: str) -> Callable[[bool], List[str]]:
        def argv(_final: bool) -> List[str]:
            directory = tmp_path / order
            directory.mkdir(exist_ok=True)
            return ["subscriber", str(directory), str(broker.port), order, str(rng.getrandbits(32))]
        return argv

    publisher = Child("publisher", publisher_argv, tmp_path / "publisher.log")
    subs = {order: Child(f"sub {order}", subscriber_argv(order), tmp_path / f"{order}.log")
            for order in ORDERS}
    schedule = Schedule(seed=SEED, restarts=BROKER_RESTARTS, broker_up=BROKER_UP,
                        broker_down=BROKER_DOWN, kill_limit=600.0, final_timeout=FINAL_TIMEOUT)
    started = time.monotonic()
    restarts = drive(broker, rng, schedule, publisher, list(subs.values()), next_n)
    counts = report("Python publisher -> Python subscribers", schedule, publisher, subs, restarts,
                    {order: order for order in ORDERS})
    assert sum(counts[o]["dropped"] for o in ORDERS) > 0, f"seed {SEED}: no repeat reached a subscriber"
    print(f"{time.monotonic() - started:.0f} s")
    print(f"interrupted raises handed over: {[counts[o]['interrupted handled'] for o in ORDERS]}")


def handled_lines(child: Child) -> List[Tuple[str, int, int]]:
    """(name, number, seq) of every H line of every run, and the current one."""
    out = []
    for lines in [lines for _, lines in child.runs] + [child.lines if child.proc else []]:
        for line in lines:
            if line.startswith("H "):
                _, name, number, seq = line.split(" ")
                out.append((name, int(number), int(seq)))
    return out


@dataclass
class Schedule:
    """What a run of ``drive`` may take: the seed it reports, the broker
    restarts it must reach, the broker's up and down times (seconds), and
    the time limits of the kill phase and of the last runs."""

    seed: int
    restarts: int
    broker_up: Tuple[float, float]
    broker_down: Tuple[float, float]
    kill_limit: float
    final_timeout: float


def drive(
    broker: Mosquitto,
    rng: random.Random,
    schedule: Schedule,
    publisher: Child,
    subs: List[Child],
    next_n: List[int],
    before_end: Optional[Callable[[], None]] = None,
) -> int:
    """The schedule of the module docstring: subscribers first (their
    sessions must exist), then the publisher; kills and broker restarts
    until every role was killed its ``max_kills`` times; then a last
    publisher raising FINAL_RAISES more, unkilled, and the subscribers
    until they handled everything. ``before_end`` runs before the
    subscribers are told to stop. Returns the broker restarts."""
    SEED = schedule.seed
    children = [publisher, *subs]
    started = time.monotonic()
    broker.start()
    restarts = 0
    broker_at = time.monotonic() + rng.uniform(*schedule.broker_up)
    try:
        for sub in subs:
            sub.spawn(rng, time.monotonic(), first=True)
        while not all(any(l == "SUBSCRIBED" for l in s.lines) for s in subs):
            assert time.monotonic() - started < 30, f"seed {SEED}: the subscribers did not subscribe"
            for sub in subs:
                if sub.proc is not None and select.select([sub.fd()], [], [], 0.05)[0]:
                    if not sub.read(rng, time.monotonic()):
                        raise AssertionError(f"seed {SEED}: {sub.role} exited:\n{sub.log.read_text()[-4000:]}")
        publisher.spawn(rng, time.monotonic(), first=True)

        while any(c.kills < c.max_kills for c in children) or restarts < schedule.restarts:
            now = time.monotonic()
            assert now - started < schedule.kill_limit, f"seed {SEED}: the kill phase took too long"
            if now >= broker_at:
                if broker.running:
                    broker.stop()
                    broker_at = now + rng.uniform(*schedule.broker_down)
                else:
                    broker.start()
                    restarts += 1
                    broker_at = time.monotonic() + rng.uniform(*schedule.broker_up)
            for child in children:
                if child.kill_at is not None and now >= child.kill_at:
                    child.kill()
                    if child is publisher:
                        next_n[0] = max([next_n[0]] + [int(line.split(" ")[1]) + 1 for line in
                                                       publisher.runs[-1][1] if line.startswith("P ")])
                    child.spawn(rng, time.monotonic())
            live = [c for c in children if c.proc is not None]
            wake = [broker_at] + [c.kill_at for c in live if c.kill_at is not None]
            timeout = max(0.0, min(wake) - time.monotonic())
            readable, _, _ = select.select([c.fd() for c in live], [], [], min(timeout, 0.2))
            now = time.monotonic()
            for child in live:
                if child.fd() in readable and not child.read(rng, now):
                    raise AssertionError(f"seed {SEED}: {child.role} exited:\n{child.log.read_text()[-4000:]}")

        if not broker.running:
            broker.start()
            restarts += 1
        for child in children:
            child.killable = False
            child.kill_at = None
        publisher.close_stdin()
        while publisher.read(rng, time.monotonic()):
            pass
        publisher.end(killed=False)
        next_n[0] = max([next_n[0]] + [int(line.split(" ")[1]) + 1 for line in publisher.runs[-1][1]
                                       if line.startswith("P ")])
        publisher.spawn(rng, time.monotonic(), final=True)
        final_started = time.monotonic()
        while publisher.proc is not None or any(s.proc is not None for s in subs):
            assert time.monotonic() - final_started < schedule.final_timeout, (
                f"seed {SEED}: the last runs did not finish; broker log:\n{broker.tail()}"
            )
            live = [c for c in children if c.proc is not None]
            readable, _, _ = select.select([c.fd() for c in live], [], [], 0.2)
            for child in live:
                if child.fd() in readable and not child.read(rng, time.monotonic()):
                    child.end(killed=False)
            if publisher.proc is not None:
                continue
            assert publisher.runs[-1][1][-1:] == ["D"], f"seed {SEED}: the publisher did not drain"
            returned = returned_events(publisher.runs)
            last = {name: max((n for n, nm in returned.items() if nm == name), default=-1)
                    for name in NAMES}
            caught_up = [s for s in subs if s.proc is not None and all(
                max([-1] + [n for nm, n, _ in handled_lines(s) if nm == name]) >= last[name]
                for name in NAMES)]
            if len(caught_up) == len([s for s in subs if s.proc is not None]) and caught_up:
                if before_end is not None:
                    before_end()
                    before_end = None
                for sub in caught_up:
                    sub.close_stdin()
    finally:
        for child in children:
            if child.proc is not None:
                child.proc.kill()
                child.proc.wait()
        broker.stop()
    return restarts


def report(title: str, schedule: Schedule, publisher: Child, subs: Dict[str, Child], restarts: int,
           orders: Dict[str, str]) -> Dict[str, Dict[str, int]]:
    """Runs the checks of the module docstring and prints the table;
    returns the counts per role (``orders``: the handler order of each)."""
    SEED = schedule.seed
    raised: Dict[int, str] = {}
    for _, lines in publisher.runs:
        for line in lines:
            if line.startswith("P "):
                _, number, name = line.split(" ")
                raised[int(number)] = name
    returned = returned_events(publisher.runs)
    try:
        counts = {role: check_subscriber(orders[role], sub.runs, raised, returned)
                  for role, sub in subs.items()}
    except AssertionError as error:
        # check_subscriber names this file's seed; the run's is SEED.
        raise AssertionError(f"{title}, seed {SEED}: {error}") from error
    worked = sum(1 for killed, lines in publisher.runs if killed and any(l.startswith("O ") for l in lines))
    assert worked >= publisher.max_kills // 2, f"seed {SEED}: the publisher kills mostly missed the raising"
    for role, sub in subs.items():
        handling = sum(1 for killed, lines in sub.runs if killed and any(l.startswith("H ") for l in lines))
        assert handling >= sub.max_kills // 3, f"seed {SEED}: the {role} kills mostly missed the handling"
    assert restarts >= schedule.restarts
    print(f"\n{title} (seed {SEED}): {len(returned)} events raised (returned), "
          f"{len(raised) - len(returned)} raises interrupted by a kill; publisher killed "
          f"{publisher.kills} times ({publisher.early_kills} while opening), broker restarted {restarts} times")
    print("| subscriber | handler order | kills | repeats dropped | delivered once | delivered twice | lost |")
    print("|---|---|---|---|---|---|---|")
    for role, sub in subs.items():
        c = counts[role]
        print(f"| {role} | {orders[role]} | {sub.kills} ({sub.early_kills} while opening) | "
              f"{c['dropped']} | {c['once']} | {c['twice']} | {c['lost']} |")
    return counts


def returned_events(runs: List[Tuple[bool, List[str]]]) -> Dict[int, str]:
    returned: Dict[int, str] = {}
    for _, lines in runs:
        for line in lines:
            if line.startswith("O "):
                _, number, name, _uid = line.split(" ")
                returned[int(number)] = name
    return returned


if __name__ == "__main__":
    if sys.argv[1] == "publisher":
        d, uid, port, start, final, seed = sys.argv[2:8]
        publisher_child(d, uid, int(port), int(start), final == "1", int(seed))
    else:
        d, port, order, seed = sys.argv[2:6]
        subscriber_child(d, int(port), order, int(seed))
