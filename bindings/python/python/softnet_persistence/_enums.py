"""Enumerations of softnet_persistence (pure Python, shared with the native part)."""

import enum

__all__ = ["Decision", "EventKind", "FailureKind"]


class EventKind(enum.IntEnum):
    """The four kinds of Softnet events; the values are the wire codes.

    - ``REPLACING`` (1): the broker keeps only the newest instance; carries
      arguments.
    - ``QUEUEING`` (2): FIFO on the broker; carries arguments.
    - ``PRIVATE`` (4): FIFO per client on the broker; carries arguments and
      the target ``client_id``.
    - ``REPLACING_NULL`` (5): "condition cleared"; same broker queue as
      REPLACING, no arguments.
    """

    REPLACING = 1
    QUEUEING = 2
    PRIVATE = 4
    REPLACING_NULL = 5


class FailureKind(enum.IntEnum):
    """What a failure report is about: the first argument of ``on_failure``.

    The values are the stable codes of the C ABI (``SNP_FAILURE_*``).

    - ``FALLBACK`` (1): level 2 failed (I/O error, a custom backend raised);
      the store now runs at level 1 (memory) with a new storage uid.
    - ``CORRUPTION`` (2): a damaged or foreign file was found at open; it was
      set aside next to the original and what could be kept was kept.
    - ``CAPACITY_DROP`` (3): the oldest pending events were dropped to make
      room (overflow "drop_oldest").
    - ``INTERRUPTED_WRITE`` (4): a partial record from an interrupted write
      was discarded at open; no stored event was lost.
    - ``CALLBACK_LOOP`` (5): reports caused by the callback's own calls while
      it handled earlier reports were held back (a callback raising into a
      full store would otherwise loop); they are counted in the stats.
    - ``CAPACITY_UNCHANGED`` (6): the capacity asked for at open could not be
      applied (the journal's rewrite failed, e.g. a full disk); the journal
      keeps its old capacity and nothing was lost.
    - ``EXPIRED`` (7): pending events older than the store's ``max_age`` were
      dropped as they came up for delivery; asked for by the application,
      so not counted in ``failures`` (``events_lost`` is 0; the stats'
      ``expired_events`` counts them).
    """

    FALLBACK = 1
    CORRUPTION = 2
    CAPACITY_DROP = 3
    INTERRUPTED_WRITE = 4
    CALLBACK_LOOP = 5
    CAPACITY_UNCHANGED = 6
    EXPIRED = 7


class Decision(enum.IntEnum):
    """What to do with an incoming event: what ``ClientController.incoming``
    returns.

    The values are the stable codes of the C ABI (``SNP_DECISION_*``);
    compare with ``is`` (``HANDLE`` is 0, so it is falsy).

    - ``HANDLE`` (0): hand the event to the application, then call
      ``ClientController.handled`` and acknowledge it to the broker.
    - ``ACK_DUPLICATE`` (1): handled already: acknowledge it to the broker
      without handing it to the application.
    """

    HANDLE = 0
    ACK_DUPLICATE = 1
