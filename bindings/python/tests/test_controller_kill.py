"""The delivery controllers in a child process killed with SIGKILL at random
moments, talking over a real socket to a broker model with message loss and
random disconnects (docs/PROTOCOL.md); the Python twin of
capi/tests/test_controller_kill.c.

The test process is the broker model; each child is this file run as a
script (``python test_controller_kill.py service|client ...``): an endpoint
that opens a level-2 file store (durability "sync") in a temporary
directory, makes a controller over it and connects to the parent over
loopback TCP (the kernel closes the socket when the child dies). The parent
kills the child with SIGKILL at a random moment and starts a new one on the
same files, SNP_KILLS times; then a last child runs unkilled until
everything is delivered, and the parent checks what arrived. Each child
reports what it did on its stdout, a pipe (a write shorter than PIPE_BUF is
all or nothing, so a kill never leaves half a line).

1. Service controller (SNP_KILLS, default 30). Each child raises Queueing
   events on three names (a global sequence number in the arguments: the
   raise order) at random moments, drives tick/next_deadline with
   time.monotonic() and a 50 ms resend timeout, and reconnects at once when
   the socket closes. It writes "P seq name" before each raise and
   "O seq name uid" once the raise returned. The broker follows
   PROTOCOL.md 2.1 and 2.6: on accept it says online(the storage uid it
   remembers, or none); a storage uid other than the remembered one
   replaces it and clears the duplicate state; per name it keeps the uid of
   the last event it acknowledged: a repeat of it is acknowledged again and
   not queued, any other event is queued and acknowledged. An event that
   arrives while the broker remembers no storage uid (the service's uid
   message was lost) is a protocol error: the broker closes the connection,
   and the next online(none) makes the service send it again. The last
   child raises 20 more events and exits once its store holds nothing
   pending.
   Check: every event whose raise returned is in the broker's queue exactly
   once, with the uid the raise returned; per name the queue is in raise
   order; nothing else is queued except, at most once, the event whose
   raise a kill interrupted (its "P" is the killed child's last and it has
   no "O"). The store holds nothing at the end.
2. Client controller, in both handler orders, each with a stateful and a
   stateless client (4 runs of SNP_CLIENT_KILLS, default 20). The broker
   streams numbered events (ids 1, 2, ...) on three subscriptions, one in
   flight per subscription, in order, resent with the same id every 50 ms
   until acknowledged; it keeps the last acknowledged id per subscription
   and resumes after it (stateful), or resumes after the ids of the
   client's hello (stateless; PROTOCOL.md 3.1 and 3.3). A child writes
   "I sub id" before ``incoming``; its handler works 0..1.5 ms, has its
   effect: writing "H sub id" (the parent sees each handling once, in
   order), and works 0..1.5 ms more (a kill lands between incoming and
   the effect, or between the effect and ``handled``, often enough to
   show both orders' costs); it writes "K sub id" once ``handled``
   returned, then acknowledges. For the last child the streams
   end 10 events after the highest id sent so far; the parent closes the
   child's stdin when every subscription is acknowledged to its end, and
   the child exits.
   Check, per subscription, over the handlings in order: ids 1..end, each
   the previous + 1, except
   - record_after_handle (at least once): the same id again only where the
     previous handling was the last one of a killed child that had not
     written "K" for it (the kill struck between handling and recording);
   - record_before_handle (at most once): never the same id twice; an id
     skipped only if a killed child's last "I" was that id and it has no
     "H" for it (the kill struck between incoming, which recorded it, and
     the handling).

Message loss: the parent drops 10% of the frames it receives and 10% of
those it would send. Random disconnects: each connection lives 20..400 ms,
2% of received frames close it, and a connection silent for 150 ms is
closed (a handshake frame was lost). Kills: 10% of the children are killed
0..150 ms after the spawn (starting, opening and recovering the store), the
others 0..300 ms after they said they are ready.

SNP_SEED replays a seed's choices (printed; process timing is not
replayed). The whole file takes about 30 s.
"""

import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import softnet_persistence as snp

SEED = int(os.environ.get("SNP_SEED", str(int(time.time() * 1000) % 1_000_000_007)))
KILLS = int(os.environ.get("SNP_KILLS", "30"))
CLIENT_KILLS = int(os.environ.get("SNP_CLIENT_KILLS", "20"))

RESEND = 0.05  # controller and broker resend timeout
IDLE_CLOSE = 0.15  # the broker closes a silent connection
CONN_LIFE = (0.02, 0.4)  # random lifetime of a connection
DROP = 0.10  # frames lost each way
CLOSE = 0.02  # received frames that close the connection
EARLY_KILL = 0.10  # share of children killed 0..EARLY_KILL_MAX after the spawn
EARLY_KILL_MAX = 0.15
LIFE_MAX = 0.3  # otherwise killed 0..LIFE_MAX after "READY"
RAISE_GAP_MAX = 0.02  # service: 0..20 ms between raises
HANDLER_MAX = 0.0015  # client: the handler works 0..1.5 ms before and after its effect
FINAL_RAISES = 20  # raised by the last service child
FINAL_EXTRA = 10  # events per subscription for the last client
FINAL_TIMEOUT = 60.0

NAMES = ["Temperature", "Door", "Pump"]
SUBS = NAMES
SERVER = "127.0.0.1"
CLIENT_KEY = "kill-test"


# --- the children ------------------------------------------------------------


def say(text):
    """A report line to the parent, in one write."""
    os.write(1, (text + "\n").encode())


class Conn:
    """The child's side of the socket: frames are lines."""

    def __init__(self, port):
        self.sock = socket.create_connection((SERVER, port))
        self.buf = b""

    def send(self, frame):
        self.sock.sendall((frame + "\n").encode())

    def frames(self):
        """The complete frames received; None once the peer closed."""
        data = self.sock.recv(65536)
        if not data:
            return None
        self.buf += data
        *frames, self.buf = self.buf.split(b"\n")
        return [f.decode() for f in frames]

    def close(self):
        self.sock.close()


def service_child(directory, service_uid, port, start_seq, final, seed):
    rng = random.Random(seed)
    store = snp.ServiceStore.open_file(
        directory, uuid.UUID(service_uid), capacity=1 << 22, durability="sync"
    )
    ctl = snp.ServiceController(store, resend_timeout=RESEND)
    ctl.tick(time.monotonic())
    say("READY")
    seq = start_seq
    left = FINAL_RAISES if final else -1
    next_raise = time.monotonic() + rng.uniform(0, RAISE_GAP_MAX)
    conn = None

    def lost():
        nonlocal conn
        conn.close()
        conn = None
        ctl.disconnected()

    def flush():
        for output in ctl.drain_outputs():
            if conn is None:
                break  # resent after the next online
            if isinstance(output, snp.SendStorageUid):
                frame = f"U {output.storage_uid}"
            elif isinstance(output, snp.SendEvent):
                e = output.event
                frame = f"E {e.uid} {e.name} {e.args.decode()}"
            else:
                raise AssertionError(f"unexpected output {output}")
            try:
                conn.send(frame)
            except OSError:
                lost()

    while True:
        now = time.monotonic()
        ctl.tick(now)
        if conn is None:
            conn = Conn(port)
            ctl.connected()
        if left != 0 and now >= next_raise:
            name = NAMES[rng.randrange(len(NAMES))]
            say(f"P {seq} {name}")
            uid = ctl.raise_event(snp.EventKind.QUEUEING, name, str(seq).encode())
            say(f"O {seq} {name} {uid}")
            seq += 1
            left -= 1
            next_raise = now + rng.uniform(0, RAISE_GAP_MAX)
        flush()
        if left == 0 and store.stats().pending_events == 0:
            say("D")
            store.close()
            return
        wake = [now + 0.05]
        if left != 0:
            wake.append(next_raise)
        deadline = ctl.next_deadline()
        if deadline is not None:
            wake.append(deadline)
        timeout = max(0.0, min(wake) - time.monotonic())
        fds = [0] + ([conn.sock] if conn is not None else [])
        readable, _, _ = select.select(fds, [], [], timeout)
        if 0 in readable and not os.read(0, 4096):
            return  # the parent is done with us
        if conn is not None and conn.sock in readable:
            try:
                frames = conn.frames()
            except OSError:
                frames = None
            if frames is None:
                lost()
                continue
            for frame in frames:
                tag, arg = frame.split(" ")
                if tag == "O":
                    ctl.online(None if arg == "-" else arg)
                elif tag == "A":
                    ctl.ack(arg)
                elif tag == "R":
                    ctl.rejected(arg)
                else:
                    raise AssertionError(f"unexpected frame {frame!r}")
                flush()
                if conn is None:
                    break


def client_child(directory, port, kind, order, seed):
    rng = random.Random(seed)
    store = snp.ClientStore.open_file(directory, SERVER, CLIENT_KEY, durability="sync")
    ctl = snp.ClientController(store, kind, order)
    say("READY")
    conn = None
    while True:
        if conn is None:
            conn = Conn(port)
            hello = ctl.connected()
            if hello is None:
                frame = "H S"
            else:
                frame = "H L " + ",".join(f"{name}={last}" for name, last in hello)
            try:
                conn.send(frame.rstrip())
            except OSError:
                conn.close()
                conn = None
                continue
        readable, _, _ = select.select([0, conn.sock], [], [], 1.0)
        if 0 in readable and not os.read(0, 4096):
            store.close()
            return
        if conn.sock not in readable:
            continue
        try:
            frames = conn.frames()
        except OSError:
            frames = None
        if frames is None:
            conn.close()
            conn = None
            continue
        for frame in frames:
            tag, sub, number = frame.split(" ")
            assert tag == "E", frame
            instance_id = int(number)
            say(f"I {sub} {instance_id}")
            if ctl.incoming(sub, instance_id) is snp.Decision.HANDLE:
                # The application's handler works, has its effect, works on.
                time.sleep(rng.uniform(0, HANDLER_MAX))
                say(f"H {sub} {instance_id}")
                time.sleep(rng.uniform(0, HANDLER_MAX))
                ctl.handled(sub, instance_id)
                say(f"K {sub} {instance_id}")
            try:
                conn.send(f"A {sub} {instance_id}")
            except OSError:
                conn.close()
                conn = None
                break


# --- the broker models (parent side) --------------------------------------------


class ServiceBroker:
    """The service agent of the broker: handshake, duplicate rule, queues."""

    def __init__(self):
        self.storage_uid = None
        self.last_acked = {}
        self.queues = defaultdict(list)  # name -> [(seq, uid)]
        self.repeats = 0
        self.protocol_closes = 0

    def on_connect(self, now):
        return ["O " + (self.storage_uid or "-")]

    def on_disconnect(self):
        pass

    def on_frame(self, frame, now):
        """Returns (frames to send, close the connection)."""
        tag, *rest = frame.split(" ")
        if tag == "U":
            if rest[0] != self.storage_uid:
                self.storage_uid = rest[0]
                self.last_acked.clear()
            return [], False
        assert tag == "E", f"unexpected frame {frame!r}"
        uid, name, args = rest
        if self.storage_uid is None:
            self.protocol_closes += 1
            return [], True
        if self.last_acked.get(name) == uid:
            self.repeats += 1
        else:
            self.queues[name].append((int(args), uid))
            self.last_acked[name] = uid
        return [f"A {uid}"], False

    def tick(self, now):
        return []

    def wake(self):
        return None


class ClientBroker:
    """The client agent of the broker: numbered streams, one event in flight
    per subscription, resends, stateful or stateless resumption."""

    def __init__(self, stateful):
        self.stateful = stateful
        self.remembered = {s: 0 for s in SUBS}  # stateful: last acked id
        self.highest = {s: 0 for s in SUBS}  # highest id ever sent
        self.end = None  # per subscription, for the last child
        self.acked = None  # this connection: last acked id, None before the hello
        self.in_flight = {}  # sub -> (id, resend at)
        self.resends = 0
        self.stale_acks = 0

    def on_connect(self, now):
        self.acked = None
        self.in_flight = {}
        return []

    def on_disconnect(self):
        self.acked = None
        self.in_flight = {}

    def pump(self, now):
        out = []
        for sub in SUBS:
            nxt = self.acked[sub] + 1
            if sub in self.in_flight or (self.end is not None and nxt > self.end[sub]):
                continue
            self.in_flight[sub] = (nxt, now + RESEND)
            self.highest[sub] = max(self.highest[sub], nxt)
            out.append(f"E {sub} {nxt}")
        return out

    def on_frame(self, frame, now):
        tag, rest = frame.split(" ", 1)
        if tag == "H":
            if rest == "S":
                assert self.stateful, "a stateless client said hello as a stateful one"
                self.acked = dict(self.remembered)
            else:
                assert not self.stateful and rest.startswith("L"), frame
                given = dict(
                    (name, int(last))
                    for name, last in (p.split("=") for p in rest[1:].strip().split(",") if p)
                )
                assert list(given) == sorted(given), f"hello not sorted by name: {frame}"
                self.acked = {s: given.get(s, 0) for s in SUBS}
            self.in_flight = {}
            return self.pump(now), False
        assert tag == "A", f"unexpected frame {frame!r}"
        sub, number = rest.split(" ")
        instance_id = int(number)
        if self.acked is None or self.in_flight.get(sub, (None,))[0] != instance_id:
            self.stale_acks += 1
            return [], False
        del self.in_flight[sub]
        self.acked[sub] = instance_id
        if self.stateful:
            self.remembered[sub] = instance_id
        return self.pump(now), False

    def tick(self, now):
        out = []
        for sub, (instance_id, at) in list(self.in_flight.items()):
            if now >= at:
                self.resends += 1
                self.in_flight[sub] = (instance_id, now + RESEND)
                out.append(f"E {sub} {instance_id}")
        return out

    def wake(self):
        return min((at for _, at in self.in_flight.values()), default=None)

    def done(self):
        return self.acked is not None and all(self.acked[s] == self.end[s] for s in SUBS)


class Link:
    """The parent's side of one connection."""

    def __init__(self, sock, now, rng):
        self.sock = sock
        self.buf = b""
        self.close_at = now + rng.uniform(*CONN_LIFE)
        self.last_rx = now


class Parent:
    """Runs the children one after the other against one broker model,
    with the losses, disconnects and kills; counts what happened."""

    def __init__(self, broker, rng, stderr_path):
        self.broker = broker
        self.rng = rng
        self.listener = socket.create_server((SERVER, 0))
        self.port = self.listener.getsockname()[1]
        self.stderr_path = stderr_path
        self.link = None
        self.counts = defaultdict(int)

    def close_link(self, why):
        if self.link is not None:
            self.link.sock.close()
            self.link = None
            self.counts["closed by " + why] += 1
            self.broker.on_disconnect()

    def send(self, frames):
        for frame in frames:
            if self.link is None:
                return
            if self.rng.random() < DROP:
                self.counts["frames dropped down"] += 1
                continue
            try:
                self.link.sock.sendall((frame + "\n").encode())
            except OSError:
                self.close_link("peer")

    def receive(self, now):
        try:
            data = self.link.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.close_link("peer")
            return
        self.link.last_rx = now
        self.link.buf += data
        *frames, self.link.buf = self.link.buf.split(b"\n")
        for frame in frames:
            if self.rng.random() < DROP:
                self.counts["frames dropped up"] += 1
                continue
            if self.rng.random() < CLOSE:
                self.close_link("random close")
                return
            replies, close = self.broker.on_frame(frame.decode(), now)
            self.send(replies)
            if close:
                self.close_link("protocol error")
                return
            if self.link is None:
                return

    def run(self, argv, kill, until_done=None):
        """Runs one child; kills it at a random moment if ``kill``, else
        waits for it to exit (closing its stdin once ``until_done()``).
        Returns its report lines."""
        with open(self.stderr_path, "ab") as stderr:
            proc = subprocess.Popen(
                [sys.executable, __file__, *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        out = proc.stdout.fileno()
        lines, pending = [], b""
        started = time.monotonic()
        kill_at = None
        if kill and self.rng.random() < EARLY_KILL:
            kill_at = started + self.rng.uniform(0, EARLY_KILL_MAX)
            self.counts["early kills"] += 1
        stdout_open = True
        try:
            while True:
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    proc.send_signal(signal.SIGKILL)
                    break
                if not kill and now - started > FINAL_TIMEOUT:
                    raise AssertionError(f"seed {SEED}: the last child did not finish: {argv}")
                if until_done is not None and until_done() and not proc.stdin.closed:
                    proc.stdin.close()
                if not stdout_open:
                    break  # the child exited
                link = self.link
                if link is not None:
                    if now >= link.close_at:
                        self.close_link("lifetime")
                    elif now - link.last_rx >= IDLE_CLOSE:
                        self.close_link("idle")
                if self.link is not None:
                    self.send(self.broker.tick(now))
                wake = [now + 0.05]
                if kill_at is not None:
                    wake.append(kill_at)
                if self.link is not None:
                    wake += [self.link.close_at, self.link.last_rx + IDLE_CLOSE]
                    if self.broker.wake() is not None:
                        wake.append(self.broker.wake())
                timeout = max(0.0, min(wake) - now)
                fds = [self.listener, out] + ([self.link.sock] if self.link else [])
                readable, _, _ = select.select(fds, [], [], timeout)
                now = time.monotonic()
                if self.listener in readable:
                    sock, _ = self.listener.accept()
                    self.close_link("a new connection")
                    self.link = Link(sock, now, self.rng)
                    self.counts["connections"] += 1
                    self.send(self.broker.on_connect(now))
                if out in readable:
                    data = os.read(out, 65536)
                    if not data:
                        stdout_open = False
                    pending += data
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        lines.append(line.decode())
                        if line == b"READY" and kill and kill_at is None:
                            kill_at = now + self.rng.uniform(0, LIFE_MAX)
                if self.link is not None and self.link.sock in readable:
                    self.receive(now)
        finally:
            if proc.poll() is None and kill_at is None:
                proc.kill()
            proc.wait()
            self.close_link("the child's end")
        # What the child wrote before it died.
        while True:
            data = os.read(out, 65536)
            if not data:
                break
            pending += data
        proc.stdout.close()
        if not proc.stdin.closed:
            proc.stdin.close()
        lines += [line.decode() for line in pending.split(b"\n")[:-1]]
        if kill:
            assert proc.returncode == -signal.SIGKILL, self.failed(proc, argv)
        else:
            assert proc.returncode == 0, self.failed(proc, argv)
        return lines

    def failed(self, proc, argv):
        with open(self.stderr_path, "rb") as f:
            stderr = f.read().decode(errors="replace")[-4000:]
        return f"seed {SEED}: child {argv} exited with {proc.returncode}:\n{stderr}"

    def close(self):
        self.listener.close()


# --- the tests ---------------------------------------------------------------------


def test_service_controller_killed(tmp_path):
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    service_uid = str(uuid.uuid4())
    directory = tmp_path / "store"
    directory.mkdir()
    broker = ServiceBroker()
    parent = Parent(broker, rng, tmp_path / "stderr.log")
    runs = []  # (killed, report lines)
    next_seq = 0
    started = time.monotonic()
    try:
        for i in range(KILLS + 1):
            final = i == KILLS
            argv = ["service", str(directory), service_uid, str(parent.port), str(next_seq),
                    "1" if final else "0", str(rng.getrandbits(32))]
            lines = parent.run(argv, kill=not final)
            runs.append((not final, lines))
            for line in lines:
                if line.startswith("P "):
                    next_seq = max(next_seq, int(line.split(" ")[1]) + 1)
    finally:
        parent.close()

    context = f"seed {SEED}"
    returned = {}  # seq -> (name, uid)
    interrupted = {}  # seq -> name
    worked = 0
    for r, (killed, lines) in enumerate(runs):
        begun, done, last_p = {}, set(), None
        for line in lines:
            parts = line.split(" ")
            if parts[0] == "P":
                begun[int(parts[1])] = parts[2]
                last_p = int(parts[1])
            elif parts[0] == "O":
                returned[int(parts[1])] = (parts[2], parts[3])
                done.add(int(parts[1]))
        if done:
            worked += 1
        for seq, name in begun.items():
            if seq not in done:
                assert killed and seq == last_p, f"{context} run {r}: raise {seq} did not return"
                interrupted[seq] = name
        if not killed:
            assert lines[-1] == "D", f"{context}: the last child did not drain: {lines[-5:]}"

    seen = set()
    for name, items in broker.queues.items():
        seqs = [seq for seq, _ in items]
        assert seqs == sorted(set(seqs)), f"{context}: {name} is out of raise order or doubled: {seqs}"
        for seq, uid in items:
            if seq in returned:
                assert returned[seq] == (name, uid), f"{context}: event {seq} queued as {name} {uid}"
            else:
                assert interrupted.get(seq) == name, f"{context}: event {seq} was never raised"
            seen.add(seq)
    missing = sorted(set(returned) - seen)
    assert not missing, f"{context}: events lost: {missing}"
    with snp.ServiceStore.open_file(directory, uuid.UUID(service_uid)) as store:
        assert store.level == 2 and store.pending() == []
        assert str(store.storage_uid) == broker.storage_uid

    assert worked >= KILLS // 2, f"{context}: the kills mostly missed the raising ({worked})"
    assert broker.repeats > 0 and parent.counts["frames dropped up"] > 0
    print(
        f"service: {KILLS} kills, {len(returned)} raises returned, "
        f"{len(interrupted)} interrupted ({len(seen) - len(returned)} of them queued), "
        f"{broker.repeats} repeats acked again, {broker.protocol_closes} protocol closes, "
        f"{dict(parent.counts)}, {time.monotonic() - started:.1f} s"
    )


def check_client(order, runs, end, context):
    """The checks of the docstring, over the runs' report lines."""
    handled = defaultdict(list)  # sub -> [(id, run)]
    unrecorded = {}  # run -> (sub, id): handled, no "K" (killed in between)
    unhandled = {}  # run -> (sub, id): the last "I" of a killed run, no "H"
    for r, (killed, lines) in enumerate(runs):
        h, k, last_i = [], set(), None
        for line in lines:
            parts = line.split(" ")
            if parts[0] not in ("I", "H", "K"):
                continue
            key = (parts[1], int(parts[2]))
            if parts[0] == "I":
                last_i = key
            elif parts[0] == "H":
                h.append(key)
                handled[key[0]].append((key[1], r))
            else:
                k.add(key)
        no_k = [key for key in h if key not in k]
        assert len(no_k) <= 1 and (not no_k or (killed and no_k[0] == h[-1])), (
            f"{context} run {r}: handled and not recorded: {no_k}"
        )
        if no_k:
            unrecorded[r] = no_k[0]
        if killed and last_i is not None and last_i not in h:
            unhandled[r] = last_i

    duplicates = skipped = 0
    for sub in SUBS:
        prev, prev_run = 0, None
        for instance_id, r in handled[sub] + [(end[sub] + 1, None)]:
            if instance_id == prev + 1:
                pass
            elif instance_id == prev and order == "record_after_handle":
                assert unrecorded.get(prev_run) == (sub, prev) and r > prev_run, (
                    f"{context}: {sub} {prev} handled twice (runs {prev_run}, {r})"
                )
                duplicates += 1
            elif instance_id > prev + 1 and order == "record_before_handle":
                for lost in range(prev + 1, instance_id):
                    assert (sub, lost) in unhandled.values(), (
                        f"{context}: {sub} {lost} never handled"
                    )
                    skipped += 1
            else:
                raise AssertionError(
                    f"{context}: {sub}: {instance_id} handled after {prev} ({order})"
                )
            prev, prev_run = instance_id, r
    return duplicates, skipped, sum(len(v) for v in handled.values())


def run_client(tmp_path, kind, order):
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    directory = tmp_path / "store"
    directory.mkdir()
    broker = ClientBroker(stateful=kind == "stateful")
    parent = Parent(broker, rng, tmp_path / "stderr.log")
    runs = []
    started = time.monotonic()
    try:
        for i in range(CLIENT_KILLS + 1):
            final = i == CLIENT_KILLS
            argv = ["client", str(directory), str(parent.port), kind, order,
                    str(rng.getrandbits(32))]
            if final:
                broker.end = {s: broker.highest[s] + FINAL_EXTRA for s in SUBS}
            runs.append((not final, parent.run(
                argv, kill=not final, until_done=broker.done if final else None)))
    finally:
        parent.close()
    context = f"seed {SEED} {kind} {order}"
    duplicates, skipped, handlings = check_client(order, runs, broker.end, context)
    worked = sum(1 for killed, lines in runs if killed and any(l.startswith("H") for l in lines))
    assert worked >= CLIENT_KILLS // 2, f"{context}: the kills mostly missed the handling"
    assert broker.resends > 0 and parent.counts["frames dropped up"] > 0
    print(
        f"client {kind} {order}: {CLIENT_KILLS} kills, {handlings} handlings up to "
        f"{broker.end}, {duplicates} duplicates, {skipped} skipped, {broker.resends} broker "
        f"resends, {broker.stale_acks} stale acks, {dict(parent.counts)}, "
        f"{time.monotonic() - started:.1f} s"
    )


def test_client_controller_killed_at_least_once_stateful(tmp_path):
    run_client(tmp_path, "stateful", "record_after_handle")


def test_client_controller_killed_at_least_once_stateless(tmp_path):
    run_client(tmp_path, "stateless", "record_after_handle")


def test_client_controller_killed_at_most_once_stateful(tmp_path):
    run_client(tmp_path, "stateful", "record_before_handle")


def test_client_controller_killed_at_most_once_stateless(tmp_path):
    run_client(tmp_path, "stateless", "record_before_handle")


if __name__ == "__main__":
    if sys.argv[1] == "service":
        d, uid, port, start, final, seed = sys.argv[2:8]
        service_child(d, uid, int(port), int(start), final == "1", int(seed))
    else:
        d, port, kind, order, seed = sys.argv[2:7]
        client_child(d, int(port), kind, order, int(seed))
