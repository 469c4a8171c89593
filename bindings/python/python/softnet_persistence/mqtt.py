"""Exactly once over a real MQTT broker: the delivery controllers run over a
paho-mqtt 2.x client (``pip install ./bindings/python[mqtt]``).

- :class:`MqttServiceBridge` publishes what a :class:`ServiceController`
  says, with QoS 1, and acknowledges an event when the broker's PUBACK for
  it arrives; raising works the same whether the broker is up or down.
- :class:`MqttClientBridge` receives with QoS 1 on a persistent session,
  decides with a :class:`ClientController` (and the event's sequence
  number) before the application's handler sees an event, and sends the
  PUBACK only once that decision is durable.

The wire mapping (topics, MQTT 5 user properties, session settings) and the
argument why the combination hands every event to the subscribing
application once are in docs/MQTT.md. MQTT 5 only: a client made for
MQTT 3.1.1 is refused.

Both bridges take a ``paho.mqtt.client.Client`` the application made and
configured (TLS, user name and password, client id); :func:`make_client`
makes a suitable one. The bridge installs its own ``on_connect``,
``on_disconnect``, ``on_publish`` / ``on_message`` and ``on_subscribe``
callbacks, connects (:meth:`connect`) and reconnects by itself, and is
driven by its own loop: :meth:`loop`, :meth:`loop_forever` or
:meth:`loop_start` / :meth:`loop_stop` (not the client's)::

    import paho.mqtt.client as paho
    import softnet_persistence as snp
    from softnet_persistence.mqtt import MqttServiceBridge, make_client

    client = make_client("gateway-7")
    client.tls_set()                          # the application's settings
    client.username_pw_set("gateway-7", secret)
    store = snp.ServiceStore.open_file("/var/lib/gateway", SERVICE_UID)
    bridge = MqttServiceBridge(store, client, "plant/gateway-7")
    bridge.connect("broker.example", 8883)
    bridge.loop_start()
    bridge.raise_event(snp.EventKind.QUEUEING, "Temperature", b"21.5")
"""

import collections
import dataclasses
import logging
import threading
import time
import uuid
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Optional,
    Tuple,
    Union,
    cast,
)

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ._enums import Decision, EventKind
from ._native import (
    ClientController,
    ClientStore,
    ServiceController,
    ServiceStore,
    StoredEvent,
)
from ._outputs import Rejected, SendEvent, SendStorageUid

__all__ = [
    "WIRE_VERSION",
    "DEFAULT_SESSION_EXPIRY",
    "MqttServiceBridge",
    "MqttClientBridge",
    "Subscription",
    "ReceivedEvent",
    "make_client",
    "event_topic",
    "storage_uid_topic",
    "encode_name",
    "decode_name",
    "event_properties",
]

_log = logging.getLogger("softnet_persistence.mqtt")

WIRE_VERSION = "1"
"""The value of the ``snp-v`` user property (docs/MQTT.md)."""

DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600
"""Seconds the broker keeps a subscriber's session (and its queued events)
while it is away; an outage longer than this loses the queued events."""

_KIND_TOKENS = {
    EventKind.REPLACING: "replacing",
    EventKind.QUEUEING: "queueing",
    EventKind.PRIVATE: "private",
    EventKind.REPLACING_NULL: "replacing-null",
}
_KINDS_BY_TOKEN = {token: kind for kind, token in _KIND_TOKENS.items()}
# Topic level of each kind family (Replacing-null shares Replacing's).
_FAMILY = {
    EventKind.REPLACING: "replacing",
    EventKind.REPLACING_NULL: "replacing",
    EventKind.QUEUEING: "queueing",
    EventKind.PRIVATE: "private",
}
# PUBACK reason codes that mean "the broker refuses this name": Not
# authorized, Topic Name invalid. Other failures are resent.
_REFUSED = (0x87, 0x90)
_I64 = 1 << 63
_SENTINEL = -_I64  # the seq key's value while a new storage uid is recorded
_UID_HI = " @storage-uid.hi"
_UID_LO = " @storage-uid.lo"


# --- the wire mapping ------------------------------------------------------------


def encode_name(name: str) -> str:
    """An event name as one topic level: ``%``, ``/``, ``+`` and ``#`` are
    written as ``%25``, ``%2F``, ``%2B`` and ``%23``; every other character
    an event name may hold (docs/BEHAVIOUR.md section 2) stays as it is."""
    return (
        name.replace("%", "%25").replace("/", "%2F").replace("+", "%2B").replace("#", "%23")
    )


def decode_name(level: str) -> str:
    """The inverse of :func:`encode_name`."""
    return (
        level.replace("%2F", "/").replace("%2B", "+").replace("%23", "#").replace("%25", "%")
    )


def _check_prefix(topic_prefix: str) -> None:
    if not topic_prefix or "+" in topic_prefix or "#" in topic_prefix or "\0" in topic_prefix:
        raise ValueError(
            f"topic prefix {topic_prefix!r} must be non-empty and hold no '+', '#' or NUL"
        )
    if topic_prefix.startswith("$") or topic_prefix.endswith("/"):
        raise ValueError(f"topic prefix {topic_prefix!r} must not start with '$' or end with '/'")


def event_topic(
    topic_prefix: str, kind: Union[EventKind, int], name: str, client_id: Optional[int] = None
) -> str:
    """The topic an event is published on: ``PREFIX/queueing/NAME``,
    ``PREFIX/replacing/NAME`` (Replacing and Replacing-null) or
    ``PREFIX/private/CLIENT-ID/NAME``, NAME as :func:`encode_name` writes it."""
    kind = EventKind(kind)
    family = _FAMILY[kind]
    if kind is EventKind.PRIVATE:
        if client_id is None:
            raise ValueError("a Private event's topic needs the target client id")
        return f"{topic_prefix}/{family}/{client_id}/{encode_name(name)}"
    return f"{topic_prefix}/{family}/{encode_name(name)}"


def storage_uid_topic(topic_prefix: str) -> str:
    """The retained topic on which a service announces its storage uid."""
    return f"{topic_prefix}/storage-uid"


def event_properties(event: StoredEvent, storage_uid: uuid.UUID) -> List[Tuple[str, str]]:
    """The MQTT 5 user properties of an event's PUBLISH, in this order."""
    props = [
        ("snp-v", WIRE_VERSION),
        ("snp-kind", _KIND_TOKENS[EventKind(event.kind)]),
        ("snp-name", event.name),
        ("snp-uid", str(event.uid)),
        ("snp-storage-uid", str(storage_uid)),
        ("snp-seq", str(event.seq)),
    ]
    if event.client_id is not None:
        props.append(("snp-client-id", str(event.client_id)))
    if event.raised_at_ms is not None:
        props.append(("snp-raised-at", str(event.raised_at_ms)))
    return props


# paho's Properties constructor carries no annotations.
_new_properties = cast(Callable[[int], Properties], Properties)


def _publish_properties(pairs: List[Tuple[str, str]]) -> Properties:
    props = _new_properties(PacketTypes.PUBLISH)
    props.UserProperty = pairs
    return props


def _connect_properties(session_expiry: int) -> Properties:
    props = _new_properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    return props


def make_client(client_id: str, **kwargs: Any) -> paho.Client:
    """A paho client the bridges accept: MQTT 5, callback API version 2, the
    given client id (a subscriber's must stay the same across restarts: the
    broker keeps its session under it). Other keyword arguments go to
    ``paho.mqtt.client.Client``. Configure TLS and authentication on the
    result as usual (``tls_set``, ``username_pw_set``)."""
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        **kwargs,
    )


def _check_client(client: paho.Client) -> None:
    if client.protocol != MQTTProtocolVersion.MQTTv5:
        raise ValueError(
            "the MQTT bridges need an MQTT 5 client (protocol=MQTTv5): the event's "
            "uid, storage uid and sequence number travel as user properties (docs/MQTT.md)"
        )
    if getattr(client, "_callback_api_version", None) != CallbackAPIVersion.VERSION2:
        raise ValueError("the MQTT bridges need a client made with CallbackAPIVersion.VERSION2")


# --- the driving common to both bridges -------------------------------------------


class _Bridge:
    """Connection upkeep and the loop; callbacks only queue what happened, the
    loop hands it to the controller under the bridge's lock (never under
    paho's own locks)."""

    def __init__(
        self,
        client: paho.Client,
        reconnect_delay: Tuple[float, float],
        session_expiry: int,
        clean_start: bool,
    ) -> None:
        _check_client(client)
        if not 0 < reconnect_delay[0] <= reconnect_delay[1]:
            raise ValueError("reconnect_delay must be (min, max) with 0 < min <= max")
        self.client = client
        self._lock = threading.RLock()
        self._queue: Deque[Tuple[str, Any]] = collections.deque()
        self._delay_range = reconnect_delay
        self._delay = reconnect_delay[0]
        self._session_expiry = session_expiry
        self._clean_start = clean_start
        self._configured = False
        self._up = False  # CONNACK success seen, no disconnect since
        # Counts connects and disconnects as the client's thread sees them: a
        # message's mid is valid only while the count is what it was when
        # the message arrived.
        self._link = 0
        self._next_attempt = 0.0
        self._thread: Optional[threading.Thread] = None
        self._looping: Optional[int] = None  # the thread in loop_forever, if any
        self._stop = threading.Event()
        self.connections = 0
        self.last_connect_error: Optional[str] = None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    def connect(self, host: str, port: int = 1883, keepalive: int = 60) -> None:
        """Says where the broker is; the loop connects (and reconnects after
        every loss) by itself. TLS and credentials are the client's."""
        self.client.connect_async(
            host,
            port,
            keepalive,
            clean_start=self._clean_start,
            properties=_connect_properties(self._session_expiry),
        )
        self._configured = True

    @property
    def is_connected(self) -> bool:
        """Whether the broker accepted the connection and it has not been lost
        since (as far as the loop has seen)."""
        return self._up

    def _on_connect(
        self,
        _client: paho.Client,
        _userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Optional[Properties],
    ) -> None:
        self._link += 1
        self._queue.append(("connect", (reason, flags.session_present)))

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: object,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Optional[Properties],
    ) -> None:
        self._link += 1
        self._queue.append(("disconnect", reason))

    def _attempt(self, now: float) -> None:
        """Reconnects if there is no connection (not even one waiting for its
        CONNACK) and the back-off allows."""
        if not self._configured or self.client.socket() is not None or now < self._next_attempt:
            return
        self._next_attempt = now + self._delay
        self._delay = min(self._delay * 2, self._delay_range[1])
        try:
            self.client.reconnect()
        except (OSError, ValueError) as error:
            self.last_connect_error = str(error)

    def _handle(self, what: str, arg: Any) -> None:
        raise NotImplementedError

    def _after(self, now: float) -> Optional[float]:
        """Work after the queue: returns the next time the loop must act."""
        raise NotImplementedError

    def loop(self, timeout: float = 0.1) -> None:
        """One round: (re)connect if due, let the client exchange packets for
        at most ``timeout`` seconds, then hand what happened to the
        controller and send what it says."""
        self._attempt(time.monotonic())
        with self._lock:
            wake = self._after(time.monotonic())
        now = time.monotonic()
        wait = timeout if wake is None else max(0.0, min(timeout, wake - now))
        if self.client.socket() is not None:
            self.client.loop(wait)
        else:
            # Nothing to wait on but the clock (the next reconnect attempt).
            self._stop.wait(max(0.0, min(wait, self._next_attempt - now)))
        with self._lock:
            while self._queue:
                what, arg = self._queue.popleft()
                self._handle(what, arg)
            self._after(time.monotonic())

    def loop_forever(self) -> None:
        """Runs :meth:`loop` until :meth:`loop_stop` is called (from another
        thread or a handler)."""
        self._stop.clear()
        self._looping = threading.get_ident()
        try:
            while not self._stop.is_set():
                self.loop(0.05)
        finally:
            self._looping = None

    def loop_start(self) -> None:
        """Runs :meth:`loop_forever` in a daemon thread of its own."""
        if self._thread is not None:
            raise RuntimeError("the bridge's loop is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.loop_forever, name="snp-mqtt-bridge", daemon=True
        )
        self._thread.start()

    def loop_stop(self) -> None:
        """Stops the loop (and joins its thread if :meth:`loop_start` made one)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _connected(self, arg: Any) -> bool:
        """The bookkeeping of a CONNACK; True if it accepted us."""
        reason, _session_present = arg
        if reason.is_failure:
            self.last_connect_error = f"the broker refused the connection: {reason}"
            return False
        self._up = True
        self._delay = self._delay_range[0]
        self.connections += 1
        return True

    def disconnect(self) -> None:
        """Stops the loop and closes the connection cleanly. The store stays
        open (it is the application's)."""
        self.loop_stop()
        with self._lock:
            self._configured = False
            self.client.disconnect()
            if self._up:
                self._up = False
                self._lost()

    def _lost(self) -> None:
        raise NotImplementedError

    def _drop_connection(self) -> None:
        """Closes the connection now and opens a new one (the loop retries if
        the broker cannot be reached)."""
        self._link += 1
        if self._up:
            self._up = False
            self._lost()
        self._next_attempt = time.monotonic()
        try:
            self.client.reconnect()
        except (OSError, ValueError) as error:
            self.last_connect_error = str(error)


# --- the service side -----------------------------------------------------------


class MqttServiceBridge(_Bridge):
    """Runs a :class:`ServiceController` over a paho client: each event goes
    out as a QoS 1 PUBLISH on its topic (:func:`event_topic`) with its uid,
    storage uid and sequence number as user properties; the PUBACK
    acknowledges it to the controller (a PUBACK with reason Not authorized or
    Topic Name invalid rejects it); the controller resends after
    ``resend_timeout``. The storage uid is announced, retained, on
    :func:`storage_uid_topic`. ``raise_event`` stores the event whether or
    not the broker is reachable; it is sent when the controller allows.

    ``on_rejected(event)`` is called (in the loop's thread) for each event the
    broker refused; without it the refusal is logged."""

    def __init__(
        self,
        store: ServiceStore,
        client: paho.Client,
        topic_prefix: str,
        *,
        resend_timeout: float = 30.0,
        reconnect_delay: Tuple[float, float] = (0.5, 10.0),
        on_rejected: Optional[Callable[[StoredEvent], None]] = None,
    ) -> None:
        _check_prefix(topic_prefix)
        super().__init__(client, reconnect_delay, session_expiry=0, clean_start=True)
        self.topic_prefix = topic_prefix
        self.controller = ServiceController(store, resend_timeout=resend_timeout)
        self.store = store
        self._on_rejected = on_rejected
        self._mids: Dict[int, uuid.UUID] = {}
        self._stamp: Optional[uuid.UUID] = None  # the storage uid events go out under
        self.published = 0
        self.rejected = 0
        client.on_publish = self._on_publish
        self.controller.tick(time.monotonic())

    def raise_event(
        self,
        kind: Union[EventKind, int],
        name: str,
        args: bytes = b"",
        client_id: Optional[int] = None,
    ) -> uuid.UUID:
        """Stores the event (durably, for a level-2 store with "sync") and, if
        the controller allows, publishes it: at once when called from the
        thread that drives the loop (or with no loop running), otherwise
        from the loop's next round (within 50 ms; only that thread writes to
        the connection). Returns its uid. Thread safe; the errors are the
        store's."""
        with self._lock:
            uid = self.controller.raise_event(kind, name, args, client_id)
            if self._looping is None or self._looping == threading.get_ident():
                self._flush()
            return uid

    def _on_publish(
        self,
        _client: paho.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._queue.append(("puback", (mid, reason)))

    def _handle(self, what: str, arg: Any) -> None:
        ctl = self.controller
        if what == "connect":
            if not self._connected(arg):
                return
            ctl.tick(time.monotonic())
            ctl.connected()
            # The duplicate state lives in the subscribers, keyed by the
            # storage uid each event carries: nothing must be invalidated.
            # Events still stored under the uid the store had before a
            # fallback go out under it first (docs/PROTOCOL.md section 2.9).
            known = self.store.previous_storage_uid or self.store.storage_uid
            self._stamp = known
            ctl.online(known)
            self._announce(known)
        elif what == "disconnect":
            if self._up:
                self._up = False
                self._lost()
        elif what == "puback":
            mid, reason = arg
            uid = self._mids.pop(mid, None)
            if uid is None:
                return
            if not reason.is_failure:
                ctl.ack(uid)
            elif reason.value in _REFUSED:
                ctl.rejected(uid)
            else:
                _log.warning("the broker did not accept event %s (%s); resent later", uid, reason)
        self._flush()

    def _lost(self) -> None:
        self.controller.disconnected()

    def _announce(self, storage_uid: uuid.UUID) -> None:
        self.client.publish(
            storage_uid_topic(self.topic_prefix),
            str(storage_uid).encode(),
            qos=1,
            retain=True,
            properties=_publish_properties([("snp-v", WIRE_VERSION)]),
        )

    def _flush(self) -> None:
        for output in self.controller.drain_outputs():
            if isinstance(output, SendStorageUid):
                self._stamp = output.storage_uid
                self._announce(output.storage_uid)
            elif isinstance(output, SendEvent):
                event = output.event
                stamp = self._stamp or self.store.storage_uid
                info = self.client.publish(
                    event_topic(self.topic_prefix, event.kind, event.name, event.client_id),
                    event.args,
                    qos=1,
                    properties=_publish_properties(event_properties(event, stamp)),
                )
                self._mids[info.mid] = event.uid
                self.published += 1
            elif isinstance(output, Rejected):
                self.rejected += 1
                if self._on_rejected is not None:
                    self._on_rejected(output.event)
                else:
                    _log.warning("the broker refused event %s %r", output.event.uid, output.event.name)

    def _after(self, now: float) -> Optional[float]:
        self.controller.tick(now)
        self._flush()
        return self.controller.next_deadline()

    @property
    def pending(self) -> int:
        """Events the store still holds (not yet acknowledged by the broker)."""
        return self.store.stats().pending_events


# --- the client side ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Subscription:
    """An event stream a client subscribes to: one (service, kind family,
    name), plus the target client id for Private events. ``key`` names the
    stream in the :class:`ClientStore` (event-name rules, at most 240
    characters); it defaults to ``name``, so give one where two
    subscriptions share a name."""

    topic_prefix: str
    name: str
    kind: EventKind = EventKind.QUEUEING
    client_id: Optional[int] = None
    key: Optional[str] = None

    @property
    def store_key(self) -> str:
        return self.key if self.key is not None else self.name

    @property
    def topic(self) -> str:
        return event_topic(self.topic_prefix, self.kind, self.name, self.client_id)


@dataclasses.dataclass(frozen=True)
class ReceivedEvent:
    """An event handed to the application's handler: the subscription it
    came on, what the publisher raised (kind, name, arguments, target client
    id for Private events), its uid, the storage uid it went out under, its
    sequence number in that store, and its raise time (milliseconds since
    the Unix epoch; None when the publisher did not know it)."""

    subscription: Subscription
    kind: EventKind
    name: str
    args: bytes
    uid: uuid.UUID
    storage_uid: uuid.UUID
    seq: int
    raised_at_ms: Optional[int]
    client_id: Optional[int]


class _Malformed(Exception):
    pass


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= _I64 else value


def _parse(message: paho.MQTTMessage, sub: Subscription) -> ReceivedEvent:
    props = getattr(message.properties, "UserProperty", None) or []
    fields: Dict[str, str] = {}
    for key, value in props:
        fields.setdefault(key, value)
    try:
        if fields.get("snp-v") != WIRE_VERSION:
            raise _Malformed(f"wire version {fields.get('snp-v')!r}")
        kind = _KINDS_BY_TOKEN[fields["snp-kind"]]
        seq = int(fields["snp-seq"])
        if not 0 <= seq < _I64:
            raise _Malformed(f"seq {seq} out of range")
        raised = fields.get("snp-raised-at")
        cid = fields.get("snp-client-id")
        event = ReceivedEvent(
            subscription=sub,
            kind=kind,
            name=fields["snp-name"],
            args=bytes(message.payload),
            uid=uuid.UUID(fields["snp-uid"]),
            storage_uid=uuid.UUID(fields["snp-storage-uid"]),
            seq=seq,
            raised_at_ms=None if raised is None else int(raised),
            client_id=None if cid is None else int(cid),
        )
    except (KeyError, ValueError) as error:
        raise _Malformed(f"missing or bad property: {error}") from error
    if event.name != sub.name or _FAMILY[kind] != _FAMILY[sub.kind]:
        raise _Malformed(f"{_KIND_TOKENS[kind]} {event.name!r} on topic {message.topic!r}")
    return event


class MqttClientBridge(_Bridge):
    """Receives events with QoS 1 on a persistent session (clean start off,
    ``session_expiry`` seconds) and hands each to ``handler(event)`` once:
    the decision is the :class:`ClientController`'s, over the event's
    sequence number, in an id space per storage uid of the publisher
    (docs/MQTT.md); the PUBACK is sent only after the decision (and, in
    ``record_after_handle`` order, the handling) is recorded in the store.

    If the handler raises, the event is not acknowledged: the bridge stops
    handing events over, drops the connection and resumes on the next one,
    where the broker sends the unacknowledged events again, in order (under
    ``record_before_handle`` that event counts as handled and is acked as a
    duplicate). ``on_error(event, exception)`` is told; without it the
    failure is logged.

    The client's id must not be empty and must stay the same across
    restarts: the broker keeps the session, with the events queued while
    this client is away, under it. The session must exist before events are
    published (an MQTT broker queues nothing for a subscriber it does not
    know): connect once, wait for :attr:`subscribed`."""

    def __init__(
        self,
        store: ClientStore,
        client: paho.Client,
        subscriptions: Iterable[Subscription],
        handler: Callable[[ReceivedEvent], object],
        order: str = "record_after_handle",
        *,
        session_expiry: int = DEFAULT_SESSION_EXPIRY,
        reconnect_delay: Tuple[float, float] = (0.5, 10.0),
        on_error: Optional[Callable[[Optional[ReceivedEvent], Exception], None]] = None,
    ) -> None:
        if order not in ("record_after_handle", "record_before_handle"):
            raise ValueError(f"order must be record_after_handle or record_before_handle: {order!r}")
        if not getattr(client, "_client_id", b""):
            raise ValueError("the subscriber's client needs a fixed, non-empty client id")
        if not 0 < session_expiry <= 0xFFFFFFFF:
            raise ValueError("session_expiry must be 1..4294967295 seconds")
        super().__init__(client, reconnect_delay, session_expiry, clean_start=False)
        self.store = store
        self.controller = ClientController(
            store,
            "stateful",
            "record_before_handle" if order == "record_before_handle" else "record_after_handle",
        )
        self.handler = handler
        self._on_error = on_error
        self.subscriptions: List[Subscription] = list(subscriptions)
        self._by_topic: Dict[str, Subscription] = {}
        keys = set()
        for sub in self.subscriptions:
            _check_prefix(sub.topic_prefix)
            if sub.kind is EventKind.REPLACING_NULL:
                raise ValueError("subscribe to EventKind.REPLACING (it carries Replacing-null too)")
            if (sub.kind is EventKind.PRIVATE) != (sub.client_id is not None):
                raise ValueError("a Private subscription, and only one, names this client's id")
            key = sub.store_key
            if len(key) > 240 or key.endswith(_UID_HI) or key.endswith(_UID_LO):
                raise ValueError(f"subscription key {key!r} is too long or ends in a reserved suffix")
            if key in keys or sub.topic in self._by_topic:
                raise ValueError(f"two subscriptions share the key or topic of {key!r}: give each a key")
            keys.add(key)
            self._by_topic[sub.topic] = sub
        self._blocked = False  # a handler failed: hand nothing over until a new connection
        self.subscribed = False
        self.handled = 0
        self.stale = 0  # repeats older than the last handled event of their stream
        self.malformed = 0
        self.handler_errors = 0
        client.manual_ack_set(True)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    @property
    def duplicates(self) -> int:
        """Events received again and not handed to the application."""
        return self.controller.duplicates + self.stale

    def _on_message(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        self._queue.append(("message", (self._link, message)))

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: object,
        _mid: int,
        reasons: List[ReasonCode],
        _properties: Properties,
    ) -> None:
        self._queue.append(("suback", (self._link, reasons)))

    def _handle(self, what: str, arg: Any) -> None:
        if what == "connect":
            if not self._connected(arg):
                return
            self._blocked = False
            self.controller.connected()
            topics = [(sub.topic, 1) for sub in self.subscriptions]
            if topics:
                self.client.subscribe(topics)
            else:
                self.subscribed = True
        elif what == "disconnect":
            if self._up:
                self._up = False
                self._lost()
        elif what == "suback":
            generation, reasons = arg
            if generation == self._link:
                failed = [r for r in reasons if r.is_failure]
                if failed:
                    self._error(None, RuntimeError(f"the broker refused a subscription: {failed}"))
                else:
                    self.subscribed = True
        elif what == "message":
            generation, message = arg
            self._message(generation, message)

    def _lost(self) -> None:
        self.subscribed = False

    def _error(self, event: Optional[ReceivedEvent], error: Exception) -> None:
        if self._on_error is not None:
            self._on_error(event, error)
        else:
            _log.error("MQTT subscriber: %s (event %s)", error, event)

    def _ack(self, generation: int, message: paho.MQTTMessage) -> None:
        # A message of an earlier connection is not acknowledged: its mid now
        # names another message; the broker sends it again on this one.
        if generation == self._link:
            self.client.ack(message.mid, message.qos)

    def _space(self, key: str, storage_uid: uuid.UUID) -> None:
        """Makes the key's id space that of ``storage_uid``: on a change, the
        last id is cleared first, then the uid recorded (a crash in between
        leaves a cleared id: nothing of the new uid was handled yet)."""
        hi = _signed(storage_uid.int >> 64)
        lo = _signed(storage_uid.int & ((1 << 64) - 1))
        store = self.store
        if store.get(key + _UID_HI) == hi and store.get(key + _UID_LO) == lo:
            return
        store.put(key, _SENTINEL)
        store.put(key + _UID_HI, hi)
        store.put(key + _UID_LO, lo)

    def _message(self, generation: int, message: paho.MQTTMessage) -> None:
        if self._blocked:
            return  # neither handled nor acked: the broker sends it again
        sub = self._by_topic.get(message.topic)
        if sub is None:
            self.malformed += 1
            self._error(None, ValueError(f"a message on an unknown topic {message.topic!r}"))
            self._ack(generation, message)
            return
        try:
            event = _parse(message, sub)
        except _Malformed as error:
            self.malformed += 1
            self._error(None, ValueError(f"a malformed event on {message.topic!r}: {error}"))
            self._ack(generation, message)
            return
        key = sub.store_key
        self._space(key, event.storage_uid)
        last = self.store.get(key)
        if last is not None and last != _SENTINEL and event.seq < last:
            # Older than the last event handled in this id space: a repeat
            # (each stream's events are first sent in raise order).
            self.stale += 1
            self._ack(generation, message)
            return
        if self.controller.incoming(key, event.seq) is Decision.HANDLE:
            try:
                self.handler(event)
            except Exception as error:  # noqa: BLE001 - the application's
                self.handler_errors += 1
                self._blocked = True
                self._error(event, error)
                self._drop_connection()
                return
            self.controller.handled(key, event.seq)
            self.handled += 1
        self._ack(generation, message)

    def _after(self, now: float) -> Optional[float]:
        return None
