#!/usr/bin/env python3
"""Writes the hand-made seed inputs of both fuzz targets.

    python3 fuzz/make_seeds.py      # into fuzz/corpus/<target>/seed-*

The committed corpus is these seeds plus what the fuzzers found, minimised
with `cargo fuzz cmin` (which may drop a seed whose coverage others have).

capi_calls reads one byte per choice (fuzz_targets/capi_calls/input.rs):
the first byte of each call is the operation (mod 27), the next ones its
arguments; 0 always picks the common valid choice, so short calls below
spell out only what differs from it.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Operations of fuzz_targets/capi_calls.rs `State::step`.
(OPEN, CLOSE, REOPEN, RAISE, RAISE_UID, PEEK, ACK, PEEK_NAME, ACK_NAME,
 STORAGE_MODE, MODE, UIDS, INVALIDATE, RESET_FLUSH, DRAIN_NAMES, STATS,
 C_OPEN, C_CLOSE, C_GET, C_PUT, C_DUP, C_FOR_EACH, C_RESET_FLUSH, C_STATS,
 ERROR_MESSAGE, STATUS_TEXT, DRAIN) = range(27)

# Kinds (input::kind), names (input::name: NAMES[b / 16] when b % 16 <= 8),
# arguments (input::args).
QUEUEING, REPLACING, PRIVATE, REPLACING_NULL = 0, 1, 2, 3
SENSOR, DOOR, A, TEMP, ODD, ALARM = 0, 16, 32, 48, 64, 112
LONG_NAME, RAW_NAME, BAD_NAME, NULL_NAME, OVER_NAME = 9, 10, 12, 14, 15
NO_ARGS, ARGS_20, ARGS_500, ARGS_1500, ARGS_2048 = 0, 9, 17, 25, 3
NULL_ARGS_16, OVER_ARGS = 6, 7


def service(slot=0, level=0, dir_=0, uid=0, fcap=0, mcap=0, dur=0,
            overflow=0, size=0, flags=0):
    """Open a service store: level 0 file, 1 memory; uid 0 A, 4 B, 6 nil;
    overflow 2 reject-new; dir 10 '<tmp>/.', 11 missing, 12 not a dir,
    13 not UTF-8, 14 NULL; durability 3 batch, 5 sync, 7 invalid."""
    return [OPEN, slot, level, dir_, uid, fcap, mcap, dur, overflow, size, flags]


def raise_(slot=0, kind=QUEUEING, name=SENSOR, args=ARGS_20, id_=0):
    return [RAISE, slot, kind, name, args, id_, 0, 0]


def raise_uid(slot=0, kind=QUEUEING, name=SENSOR, args=ARGS_20, uid=0):
    """uid 0 new, 3 one raised before (a duplicate), 5 nil, 6 NULL."""
    return [RAISE_UID, slot, kind, name, args, 0, 0, uid]


def client(slot=0, level=0, dir_=0, server=0, key=0, dur=0, size=0, flags=0):
    """Open a client store: level 0 file, 1 memory; server 2 'fe80::1',
    3 'broker-5000', 4 'bad/addr'; key 2 'k2', 3 'bad key', 8 long."""
    return [C_OPEN, slot, level, dir_, server, key, dur, size, flags]


def seq(*calls):
    return bytes(b for call in calls for b in call)


CAPI = {
    "file_round_trip": seq(
        service(), raise_(), raise_(kind=REPLACING, name=DOOR),
        raise_(kind=PRIVATE, name=A, id_=3), raise_(kind=REPLACING_NULL, name=DOOR, args=NO_ARGS),
        [PEEK, 0, 0], [ACK, 0, 0], [ACK, 0, 5] + [9] * 16, [DRAIN, 0, 0], [REOPEN, 0],
        [STATS, 0, 0, 0],
        [DRAIN, 0, 15], [PEEK, 0, 0], [MODE, 0, 0]),
    "overflow": seq(
        service(level=1, overflow=2),
        *[raise_(args=ARGS_1500) for _ in range(4)],
        service(slot=1, level=1), *[raise_(slot=1, args=ARGS_1500) for _ in range(4)],
        [STATS, 1, 0, 0], [DRAIN, 1, 15]),
    "cache_mode": seq(
        service(), *[raise_(kind=REPLACING, name=SENSOR) for _ in range(3)],
        raise_(name=DOOR), raise_(kind=PRIVATE, name=ALARM),
        [PEEK, 0, 0], [DRAIN, 0, 15],
        raise_(kind=REPLACING, name=SENSOR), raise_(name=DOOR), raise_(name=DOOR),
        [PEEK_NAME, 0, REPLACING, SENSOR, 0], raise_(kind=REPLACING, name=SENSOR),
        [ACK_NAME, 0, 0], [DRAIN_NAMES, 0, 0], [PEEK, 0, 0], [STORAGE_MODE, 0], [PEEK, 0, 0]),
    "lock": seq(
        service(), service(slot=1), service(slot=1, dir_=10), [CLOSE, 0],
        service(slot=1, dir_=10), raise_(slot=1), service(slot=0, uid=4), [REOPEN, 1]),
    "bad_options": seq(
        service(dir_=11), service(dir_=12), service(dir_=13), service(dir_=14),
        service(uid=6), service(level=6), service(dur=7), service(overflow=3),
        service(size=5), service(size=6), service(size=7), service(flags=15),
        service(fcap=4, mcap=4), service(fcap=6), service(mcap=6), service(dur=3 + 8 * 4)),
    "bad_events": seq(
        service(level=1),
        raise_(name=BAD_NAME), raise_(name=BAD_NAME + 16), raise_(name=NULL_NAME),
        raise_(name=NULL_NAME + 16), raise_(name=OVER_NAME), raise_(name=LONG_NAME),
        raise_(name=LONG_NAME + 16), raise_(args=NULL_ARGS_16), raise_(args=OVER_ARGS),
        raise_(kind=REPLACING_NULL, args=ARGS_20), raise_(kind=6), raise_(kind=6 + 48),
        [RAISE, 0, 0, 0, 0, 0, 15, 0], [RAISE, 7, 0, 0, 0, 0, 0, 0],
        raise_(name=ODD, args=ARGS_2048), [ERROR_MESSAGE, 5], [ERROR_MESSAGE, 1],
        [ERROR_MESSAGE, 63], [STATUS_TEXT, 0], [STATUS_TEXT, 2], [STATUS_TEXT, 36],
        [ACK, 0, 6], [PEEK_NAME, 0, 0, 0, 0], [PEEK, 0, 7], [MODE, 0, 7], [UIDS, 0, 7]),
    "ancient": seq(
        service(), raise_(), raise_(name=DOOR), [CLOSE, 0], service(),
        raise_uid(), raise_uid(uid=3), raise_uid(uid=5), raise_uid(uid=6),
        [UIDS, 0, 0], [INVALIDATE, 0, 0], [INVALIDATE, 0, 0], [RESET_FLUSH, 0, 1],
        *[[STATS, 0, i, 0] for i in range(11)], [STATS, 0, 0, 15],
        [RESET_FLUSH, 0, 0], [PEEK, 0, 0]),
    "client_file": seq(
        client(), [C_PUT, 0, SENSOR, 0], [C_PUT, 0, DOOR, 2], [C_PUT, 0, A, 3],
        [C_GET, 0, SENSOR, 0], [C_GET, 0, ALARM, 0], [C_DUP, 0, SENSOR, 0, 0],
        [C_DUP, 0, DOOR, 0, 1, 4], [C_FOR_EACH, 0, 1], [C_CLOSE, 2], [C_FOR_EACH, 0, 0],
        client(slot=1), client(slot=1, server=3), [C_PUT, 1, TEMP, 0], [C_CLOSE, 0],
        client(), [C_FOR_EACH, 0, 1], client(slot=1, server=2),
        [C_RESET_FLUSH, 0, 1], [C_RESET_FLUSH, 0, 0], *[[C_STATS, 0, i] for i in range(11)]),
    "client_bad": seq(
        client(level=1), [C_PUT, 0, BAD_NAME, 0], [C_PUT, 0, NULL_NAME, 0],
        [C_PUT, 0, OVER_NAME, 0], [C_GET, 0, SENSOR, 7], [C_DUP, 0, SENSOR, 7, 0],
        [C_FOR_EACH, 0, 7], [C_GET, 7, SENSOR, 0], client(slot=1, server=4),
        client(slot=1, key=3), client(slot=1, key=8), client(slot=1, key=9),
        client(slot=1, server=6), client(slot=1, dir_=11), client(slot=1, dir_=13),
        client(slot=1, level=6), client(slot=1, dur=6), client(slot=1, size=6),
        client(slot=1, flags=15), [C_CLOSE, 7]),
}


def recovery_input(at, patch):
    """fuzz_targets/recovery.rs: 8 bytes choose where the patch lands."""
    return struct.pack("<Q", at) + bytes(patch)


DATA = 8192  # the ring starts here (docs/FORMAT.md); records of the seed
REC = 104  # journal take 104 bytes each: 32 + roundup(40 + 6 + 20, 8)
# (the event payload's 40 fixed bytes include the raise time, format
# version 3; seeds made before it, with 96-byte records, are still valid
# input, their patches landing elsewhere in the records)
# The seed journal's length: DATA plus a ring of (capacity 8192 + 4 longest
# records + 128) rounded up to 4096 (journal/format.rs `data_size_for`).
FILE_LEN = DATA + 20480


def truncated(rem):
    """A patch that runs `rem + 1` bytes past the end of the file from
    `rem` bytes before it (odd length): the file is cut `rem / 2` bytes
    short."""
    return recovery_input(FILE_LEN - rem, b"\0" * (rem + 1))


RECOVERY = {
    "unchanged": b"",
    "magic_slot0": recovery_input(0, b"XXXXXXXX"),
    "generation_slot0": recovery_input(16, b"\xff" * 8),
    "both_slots": recovery_input(0, b"\0" * (4096 + 256)),
    "tail_pos": recovery_input(64, struct.pack("<Q", REC)),
    "record1_crc": recovery_input(DATA, b"\0\0\0\0"),
    "record1_acked": recovery_input(DATA + 4, b"A"),
    "record1_state": recovery_input(DATA + 4, b"Z"),
    "record2_payload": recovery_input(DATA + REC + 40, b"\xde\xad\xbe\xef"),
    "record2_len": recovery_input(DATA + REC + 8, struct.pack("<I", 4000)),
    "record3_seq": recovery_input(DATA + 2 * REC + 16, struct.pack("<Q", 99)),
    "after_end": recovery_input(DATA + 3 * REC, b"\x01" * 24),
    "wrap_marker": recovery_input(DATA + 3 * REC + 12, b"\x02"),
    "truncated_tail": truncated(200),
    "truncated_1k": truncated(2048),
}


def write(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("capi_calls", CAPI)
    write("recovery", RECOVERY)
