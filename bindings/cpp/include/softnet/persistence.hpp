// softnet-persistence: the C++17 wrapper of the C ABI (header-only).
//
// One move-only class per C handle (ServiceStore owns an snp_service*,
// ClientStore an snp_client*, ServiceController an snp_service_controller*,
// ClientController an snp_client_controller*), each through a
// std::unique_ptr whose deleter closes or frees the handle. Failures are
// thrown as one exception type, softnet::persistence::Error, carrying the
// snp_status and the library's detailed message; "nothing there"
// (SNP_EMPTY) is not an error but an empty std::optional.
//
// Include <softnet/persistence.hpp> and link libsoftnet_persistence
// (`pkg-config --cflags --libs softnet-persistence`).
//
// Thread safety: the C handles may be used from several threads at once, and
// so may the const and non-const methods of one store or controller object,
// except that moving, assigning, close() and destruction must not race with
// other calls on the same object. Failure callbacks run on the thread whose
// call produced the report (possibly several threads at once).

#ifndef SOFTNET_PERSISTENCE_HPP
#define SOFTNET_PERSISTENCE_HPP

#include <softnet_persistence.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace softnet::persistence {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The one exception type of the wrapper: a failed C call (negative
/// snp_status) with the library's detailed message for it.
class Error : public std::runtime_error {
public:
    /// An error with `status` (a negative `SNP_ERR_*` code) and `message`.
    Error(snp_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}

    /// The `SNP_ERR_*` code, e.g. `SNP_ERR_INVALID_ARGUMENT`.
    snp_status status() const noexcept { return status_; }

    /// The fixed text of the status (`snp_status_str`), e.g. "storage full".
    const char *status_text() const noexcept { return snp_status_str(status_); }

private:
    snp_status status_;
};

namespace detail {

/// The status's fixed text and the calling thread's last detailed message
/// from the library ("storage full: the event needs..."), or the fixed
/// text alone when there is no message.
inline std::string last_error_message(snp_status status) {
    const std::string what = snp_status_str(status);
    char buf[512];
    const std::size_t full = snp_last_error_message(buf, sizeof buf);
    if (full == 0) {
        return what;
    }
    if (full < sizeof buf) {
        return what + ": " + std::string(buf, full);
    }
    std::string long_message(full + 1, '\0');
    const std::size_t again = snp_last_error_message(&long_message[0], long_message.size());
    long_message.resize(again < full ? again : full);
    return what + ": " + long_message;
}

}  // namespace detail

/// Maps a status from the C ABI: returns `true` for `SNP_OK`, `false` for
/// `SNP_EMPTY` ("nothing there", not an error) and throws Error, with the
/// thread's last detailed message, for every other status. Call it right
/// after the C call whose status it checks (the message is per thread and
/// kept until the next failure).
inline bool check(snp_status status) {
    if (status == SNP_OK) {
        return true;
    }
    if (status == SNP_EMPTY) {
        return false;
    }
    throw Error(status, detail::last_error_message(status));
}

/// The version of the loaded library, SNP_ABI_VERSION.minor.patch, e.g.
/// "2.1.0" (the version it is installed under).
inline std::string_view version() noexcept { return snp_version(); }

/// The ABI version of the loaded library (compare with `SNP_ABI_VERSION`,
/// the one this header was written for).
inline std::uint32_t abi_version() noexcept { return snp_abi_version(); }

// ---------------------------------------------------------------------------
// Plain types
// ---------------------------------------------------------------------------

/// Event kinds (`SNP_EVENT_*`).
enum class EventKind : std::int32_t {
    /// The broker keeps only the newest instance.
    Replacing = SNP_EVENT_REPLACING,
    /// FIFO on the broker.
    Queueing = SNP_EVENT_QUEUEING,
    /// FIFO per client, with a target client id.
    Private = SNP_EVENT_PRIVATE,
    /// "Condition cleared": same queue as Replacing, no arguments.
    ReplacingNull = SNP_EVENT_REPLACING_NULL,
};

/// Persistence levels (`SNP_LEVEL_*`).
enum class Level : std::int32_t {
    /// Level 1: memory.
    Memory = SNP_LEVEL_MEMORY,
    /// Level 2: a file (or a custom backend).
    File = SNP_LEVEL_FILE,
};

/// When level-2 writes reach the device (`SNP_DURABILITY_*`).
enum class Durability : std::int32_t {
    /// Sync before every call returns (the default).
    Sync = SNP_DURABILITY_SYNC,
    /// Sync after `batch_max_ops` operations or `batch_max_delay_ms`.
    Batch = SNP_DURABILITY_BATCH,
    /// Never sync on our own (survives a process crash only).
    None = SNP_DURABILITY_NONE,
};

/// What a full service store does with a new event (`SNP_OVERFLOW_*`).
enum class Overflow : std::int32_t {
    /// Drop the oldest pending events (reported as FailureKind::CapacityDrop).
    DropOldest = SNP_OVERFLOW_DROP_OLDEST,
    /// Refuse the new event: Error with `SNP_ERR_STORAGE_FULL`.
    RejectNew = SNP_OVERFLOW_REJECT_NEW,
};

/// What opening a level-2 store does when its file cannot be opened or
/// created (`SNP_OPEN_*`).
enum class OpenPolicy : std::int32_t {
    /// Start at level 1 (memory) and report the fallback (the default).
    Fallback = SNP_OPEN_FALLBACK,
    /// Throw Error (`SNP_ERR_IO`) naming the directory or file, the cause
    /// and the fix.
    Strict = SNP_OPEN_STRICT,
};

/// The delivery mode of a service store (`SNP_MODE_*`).
enum class Mode : std::int32_t {
    /// One FIFO: ServiceStore::peek / ServiceStore::ack.
    Storage = SNP_MODE_STORAGE,
    /// One pipeline per name: ServiceStore::peek_name / ServiceStore::ack_name.
    Cache = SNP_MODE_CACHE,
};

/// Kinds of failure reports (`SNP_FAILURE_*`).
enum class FailureKind : std::int32_t {
    /// Level 2 failed; the store continues at level 1.
    Fallback = SNP_FAILURE_FALLBACK,
    /// A damaged or foreign file was set aside at open.
    Corruption = SNP_FAILURE_CORRUPTION,
    /// Events were dropped to make room.
    CapacityDrop = SNP_FAILURE_CAPACITY_DROP,
    /// A partial record from an interrupted write was discarded at open.
    InterruptedWrite = SNP_FAILURE_INTERRUPTED_WRITE,
    /// Reports caused by the callback's own calls while it handled earlier
    /// reports were held back (counted in the stats).
    CallbackLoop = SNP_FAILURE_CALLBACK_LOOP,
    /// The capacity asked for at open could not be applied; the journal
    /// keeps its old capacity (nothing lost).
    CapacityUnchanged = SNP_FAILURE_CAPACITY_UNCHANGED,
    /// Pending events older than ServiceOptions::max_age were dropped as
    /// they came up for delivery (asked for: not counted in `failures`).
    Expired = SNP_FAILURE_EXPIRED,
};

/// Why a custom service backend is asked to remove a record
/// (`SNP_REMOVED_*`; for logs only).
enum class RemovalReason : std::int32_t {
    /// The broker acknowledged the event.
    Acknowledged = SNP_REMOVED_ACKNOWLEDGED,
    /// A newer Replacing instance made it obsolete.
    Superseded = SNP_REMOVED_SUPERSEDED,
    /// Dropped to make room.
    Dropped = SNP_REMOVED_DROPPED,
    /// Discarded as ancient data.
    Invalidated = SNP_REMOVED_INVALIDATED,
    /// Older than ServiceOptions::max_age.
    Expired = SNP_REMOVED_EXPIRED,
};

/// A 16-byte uid (event uid, storage uid, service uid), big-endian as in
/// its text form. Value-initialised, it is the nil uid.
struct Uuid {
    /// The bytes.
    std::array<std::uint8_t, 16> bytes{};

    /// The uid of a C `snp_uuid`.
    static Uuid from_c(const snp_uuid &c) noexcept {
        Uuid u;
        for (std::size_t i = 0; i < 16; ++i) {
            u.bytes[i] = c.bytes[i];
        }
        return u;
    }

    /// This uid as a C `snp_uuid`.
    snp_uuid to_c() const noexcept {
        snp_uuid c{};
        for (std::size_t i = 0; i < 16; ++i) {
            c.bytes[i] = bytes[i];
        }
        return c;
    }

    /// True for the all-zero uid.
    bool is_nil() const noexcept {
        for (std::uint8_t b : bytes) {
            if (b != 0) {
                return false;
            }
        }
        return true;
    }

    /// The text form: 8-4-4-4-12 lowercase hex digits, e.g.
    /// "67e55044-10b1-426f-9247-bb680e5fe0c8".
    std::string to_string() const {
        static const char digits[] = "0123456789abcdef";
        std::string s;
        s.reserve(36);
        for (std::size_t i = 0; i < 16; ++i) {
            if (i == 4 || i == 6 || i == 8 || i == 10) {
                s.push_back('-');
            }
            s.push_back(digits[bytes[i] >> 4]);
            s.push_back(digits[bytes[i] & 0x0f]);
        }
        return s;
    }

    /// Parses the 8-4-4-4-12 text form (hex digits in either case);
    /// std::nullopt for anything else.
    static std::optional<Uuid> parse(std::string_view text) noexcept {
        if (text.size() != 36) {
            return std::nullopt;
        }
        Uuid u;
        std::size_t pos = 0;
        for (std::size_t i = 0; i < 16; ++i) {
            if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
                if (text[pos] != '-') {
                    return std::nullopt;
                }
                ++pos;
            }
            const int hi = hex_value(text[pos]);
            const int lo = hex_value(text[pos + 1]);
            if (hi < 0 || lo < 0) {
                return std::nullopt;
            }
            u.bytes[i] = static_cast<std::uint8_t>((hi << 4) | lo);
            pos += 2;
        }
        return u;
    }

private:
    static int hex_value(char c) noexcept {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    }
};

/// True when both uids have the same bytes.
inline bool operator==(const Uuid &a, const Uuid &b) noexcept { return a.bytes == b.bytes; }

/// True when the uids differ.
inline bool operator!=(const Uuid &a, const Uuid &b) noexcept { return a.bytes != b.bytes; }

/// Byte-wise order (so a Uuid can key a std::map).
inline bool operator<(const Uuid &a, const Uuid &b) noexcept { return a.bytes < b.bytes; }

/// A stored event, copied out of the store.
struct StoredEvent {
    /// The kind.
    EventKind kind = EventKind::Queueing;
    /// The name.
    std::string name;
    /// The arguments (0..2048 bytes).
    std::vector<std::uint8_t> args;
    /// The target client of a Private event; empty for other kinds.
    std::optional<std::int64_t> client_id;
    /// The event's uid (what the broker acknowledges).
    Uuid uid;
    /// Its sequence number in the store: greater than that of every event
    /// raised before it into the same store, kept across restarts and a
    /// fallback to level 1.
    std::uint64_t seq = 0;
    /// When it was raised (wall clock); empty when unknown (stored by a
    /// release before raise times).
    std::optional<std::chrono::system_clock::time_point> raised_at;

    /// The event of a C `snp_stored_event`.
    static StoredEvent from_c(const snp_stored_event &c) {
        StoredEvent e;
        e.kind = static_cast<EventKind>(c.kind);
        e.name.assign(c.name, c.name_len);
        e.args.assign(c.args, c.args + c.args_len);
        if (e.kind == EventKind::Private) {
            e.client_id = c.client_id;
        }
        e.uid = Uuid::from_c(c.uid);
        e.seq = c.seq;
        if (c.raised_at_ms != 0) {
            e.raised_at = std::chrono::system_clock::time_point(
                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                    std::chrono::milliseconds(static_cast<std::int64_t>(c.raised_at_ms))));
        }
        return e;
    }

    /// The arguments as text (they are bytes; this copies them).
    std::string args_string() const { return std::string(args.begin(), args.end()); }
};

/// A failure report passed to an `on_failure` callback.
struct Failure {
    /// What happened.
    FailureKind kind = FailureKind::Fallback;
    /// A description for logs.
    std::string message;
    /// Events lost through it (0 when none).
    std::uint64_t events_lost = 0;
};

/// The failure callback type of ServiceOptions and ClientOptions.
///
/// It runs on the thread whose call produced the report, after the store's
/// lock is released (it may call the store). An exception it throws cannot
/// cross the C library: it is caught and ignored.
using FailureCallback = std::function<void(const Failure &)>;

/// Counters and state of a service store (ServiceStore::stats).
struct ServiceStats {
    /// Current level (drops to Memory after a level-2 failure).
    Level level = Level::Memory;
    /// Current mode.
    Mode mode = Mode::Storage;
    /// Events stored and not yet acknowledged.
    std::uint64_t pending_events = 0;
    /// Bytes of stored records.
    std::uint64_t used_bytes = 0;
    /// Capacity of the current level.
    std::uint64_t capacity_bytes = 0;
    /// Events dropped to make room.
    std::uint64_t dropped_events = 0;
    /// Raises refused with `SNP_ERR_STORAGE_FULL`.
    std::uint64_t rejected_events = 0;
    /// Replacing instances superseded by newer ones (not lost).
    std::uint64_t superseded_events = 0;
    /// Ancient events discarded by ServiceStore::invalidate_ancient.
    std::uint64_t invalidated_events = 0;
    /// Events dropped for being older than ServiceOptions::max_age (not
    /// counted in `failures` or `events_lost`).
    std::uint64_t expired_events = 0;
    /// Failure reports other than capacity drops.
    std::uint64_t failures = 0;
    /// Events lost through those failures.
    std::uint64_t events_lost = 0;
    /// The storage uid.
    Uuid storage_uid;
};

/// State of a client store (ClientStore::stats).
struct ClientStats {
    /// Current level (drops to Memory after a level-2 failure).
    Level level = Level::Memory;
    /// Subscriptions with a stored id.
    std::uint64_t subscriptions = 0;
    /// Failure reports so far.
    std::uint64_t failures = 0;
};

/// How to open a service store. The defaults are those of
/// `snp_service_options_init`.
struct ServiceOptions {
    /// Level::File (default) or Level::Memory.
    Level level = Level::File;
    /// Directory of the journal file (level 2; required there).
    std::string directory;
    /// The service uid; the journal is
    /// `softnet.service.persistence_<uid>.ssp` (level 2).
    Uuid service_uid;
    /// Level-2 capacity in bytes (0: 1 MiB; minimum 8 KiB).
    std::uint64_t file_capacity = 0;
    /// Level-1 capacity, also used after a fallback (0: 16 KiB; min 4 KiB).
    std::uint64_t memory_capacity = 0;
    /// When writes reach the device.
    Durability durability = Durability::Sync;
    /// Durability::Batch: sync after this many operations.
    std::uint32_t batch_max_ops = 64;
    /// Durability::Batch: sync when the oldest unsynced operation is this
    /// old, in milliseconds (checked on each call).
    std::uint32_t batch_max_delay_ms = 100;
    /// What a full store does with a new event.
    Overflow overflow = Overflow::DropOldest;
    /// Called with every failure report (may be empty). The store keeps its
    /// own copy for as long as the C handle lives.
    FailureCallback on_failure;
    /// Fall back to level 1 (default) or throw when the journal cannot be
    /// opened or created.
    OpenPolicy open_policy = OpenPolicy::Fallback;
    /// Age limit (zero, the default: none): a pending event raised longer
    /// ago is dropped when it would next be delivered, reported as
    /// FailureKind::Expired. An event whose raise time is unknown, from a
    /// clock not yet set (before 2020), or ahead of the clock now never
    /// expires.
    std::chrono::milliseconds max_age{0};
};

/// How to open a client store. The defaults are those of
/// `snp_client_options_init`.
struct ClientOptions {
    /// Level::Memory (default, CPL-1) or Level::File (CPL-2).
    Level level = Level::Memory;
    /// Directory of the file (level 2; required there).
    std::string directory;
    /// The broker's address (level 2; written `%3A` for `:` in the file
    /// name, as every byte other than `A-Z a-z 0-9 . -`).
    std::string server_address;
    /// The client's key (level 2).
    std::string client_key;
    /// When puts reach the device.
    Durability durability = Durability::Sync;
    /// Durability::Batch: sync after this many puts.
    std::uint32_t batch_max_ops = 64;
    /// Durability::Batch: sync when the oldest unsynced put is this old, in
    /// milliseconds.
    std::uint32_t batch_max_delay_ms = 100;
    /// Called with every failure report (may be empty). The store keeps its
    /// own copy for as long as the C handle lives.
    FailureCallback on_failure;
    /// Fall back to level 1 (default) or throw when the file cannot be
    /// opened or created.
    OpenPolicy open_policy = OpenPolicy::Fallback;
};

// ---------------------------------------------------------------------------
// Custom level-2 backends
// ---------------------------------------------------------------------------

/// Handed to RecordLog::scan: call it for every live record in increasing
/// sequence order. If the store wants the scan to stop it throws Error; let
/// it propagate out of scan.
class RecordVisitor {
public:
    /// Wraps the C visitor (used by the wrapper, not by backends).
    RecordVisitor(snp_record_visit_fn visit, void *visit_ctx) noexcept
        : visit_(visit), ctx_(visit_ctx) {}

    /// Hands one record to the store.
    void operator()(std::uint64_t seq, const std::uint8_t *payload, std::size_t len) const {
        const snp_status st = visit_(ctx_, seq, payload, len);
        if (st != SNP_OK) {
            throw Error(st == SNP_EMPTY ? SNP_ERR_CALLBACK : st, "the store stopped the scan");
        }
    }

private:
    snp_record_visit_fn visit_;
    void *ctx_;
};

/// A service-side level-2 backend written in C++ (the C++ face of
/// `snp_record_log_vtable`): ordered records with sequence numbers, and a
/// small metadata blob. The store calls one method at a time (under its
/// lock), possibly from different threads. Any exception thrown by a method
/// is a level-2 failure: the store falls back to level 1 and reports it
/// (FailureKind::Fallback); the exception does not reach the caller.
class RecordLog {
public:
    /// Called after the store that owns the backend has closed its handle.
    virtual ~RecordLog() = default;

    /// Stores a record; returns its sequence number, greater than every
    /// number returned before (across restarts and clear()).
    virtual std::uint64_t append(const std::uint8_t *payload, std::size_t len) = 0;

    /// Removes the live record `seq`.
    virtual void remove(std::uint64_t seq, RemovalReason reason) = 0;

    /// The bytes of the live record `seq` (at most `SNP_MAX_RECORD_LEN`).
    virtual std::vector<std::uint8_t> read(std::uint64_t seq) = 0;

    /// Calls `visit` for every live record in increasing sequence order.
    virtual void scan(const RecordVisitor &visit) = 0;

    /// End of one store operation: make it as durable as you promise.
    virtual void commit() {}

    /// Make everything durable now.
    virtual void flush() {}

    /// Removes every record (sequence numbers keep growing).
    virtual void clear() = 0;

    /// The metadata blob last set (at most 64 bytes; empty if never set).
    virtual std::vector<std::uint8_t> metadata() = 0;

    /// Replaces the metadata blob.
    virtual void set_metadata(const std::uint8_t *meta, std::size_t len) = 0;
};

/// Handed to IdStore::load: call it once per stored (name, id) pair.
class IdVisitor {
public:
    /// Wraps the C visitor (used by the wrapper, not by backends).
    IdVisitor(snp_id_visit_fn visit, void *visit_ctx) noexcept : visit_(visit), ctx_(visit_ctx) {}

    /// Hands one pair to the store.
    void operator()(std::string_view name, std::int64_t id) const noexcept {
        visit_(ctx_, name.data(), name.size(), id);
    }

private:
    snp_id_visit_fn visit_;
    void *ctx_;
};

/// A client-side level-2 backend written in C++ (the C++ face of
/// `snp_id_store_vtable`): the last id per subscription name. Calls are
/// serialized by the store; an exception from a method is a level-2 failure
/// (the store continues in memory and reports it).
class IdStore {
public:
    /// Called after the store that owns the backend has closed its handle.
    virtual ~IdStore() = default;

    /// Calls `visit` once per stored (name, id) pair.
    virtual void load(const IdVisitor &visit) = 0;

    /// Stores `id` for `name`, atomically with respect to crashes.
    virtual void put(std::string_view name, std::int64_t id) = 0;

    /// Forgets every pair.
    virtual void clear() = 0;

    /// Make every put durable now.
    virtual void flush() {}
};

namespace detail {

/// The status a C++ exception becomes at the C boundary.
inline snp_status status_of_current_exception() noexcept {
    try {
        throw;
    } catch (const Error &e) {
        return e.status() < 0 ? e.status() : SNP_ERR_CALLBACK;
    } catch (...) {
        return SNP_ERR_CALLBACK;
    }
}

/// Runs a backend method, turning any exception into a status.
template <class F>
snp_status guarded(F &&f) noexcept {
    try {
        f();
        return SNP_OK;
    } catch (...) {
        return status_of_current_exception();
    }
}

/// The C user_data of a failure callback: a heap object owned (through the
/// handle's deleter) for as long as the handle lives, so moving the C++
/// store never moves it.
struct FailureSink {
    /// The user's callback (a copy of the options' one).
    FailureCallback callback;

    /// The C callback. Exceptions from the user's callback are caught and
    /// ignored: they must not unwind through the library.
    static void trampoline(void *user_data, std::int32_t kind, const char *message,
                           std::uint64_t events_lost) noexcept {
        try {
            const auto *self = static_cast<const FailureSink *>(user_data);
            Failure f;
            f.kind = static_cast<FailureKind>(kind);
            if (message != nullptr) {
                f.message = message;
            }
            f.events_lost = events_lost;
            self->callback(f);
        } catch (...) {
            // Deliberately ignored (see FailureCallback).
        }
    }
};

/// The C vtable functions of a RecordLog (ctx is the RecordLog*).
struct RecordLogBridge {
    static RecordLog &self(void *ctx) noexcept { return *static_cast<RecordLog *>(ctx); }

    static snp_status append(void *ctx, const std::uint8_t *payload, std::size_t len,
                             std::uint64_t *out_seq) noexcept {
        return guarded([&] { *out_seq = self(ctx).append(payload, len); });
    }
    static snp_status remove(void *ctx, std::uint64_t seq, std::int32_t reason) noexcept {
        return guarded([&] { self(ctx).remove(seq, static_cast<RemovalReason>(reason)); });
    }
    static snp_status read(void *ctx, std::uint64_t seq, std::uint8_t *buf, std::size_t buf_len,
                           std::size_t *out_len) noexcept {
        return guarded([&] {
            const std::vector<std::uint8_t> record = self(ctx).read(seq);
            if (record.size() > buf_len) {
                throw Error(SNP_ERR_CALLBACK, "record larger than the read buffer");
            }
            for (std::size_t i = 0; i < record.size(); ++i) {
                buf[i] = record[i];
            }
            *out_len = record.size();
        });
    }
    static snp_status scan(void *ctx, snp_record_visit_fn visit, void *visit_ctx) noexcept {
        if (visit == nullptr) {
            return SNP_ERR_INVALID_ARGUMENT;
        }
        return guarded([&] { self(ctx).scan(RecordVisitor(visit, visit_ctx)); });
    }
    static snp_status commit(void *ctx) noexcept {
        return guarded([&] { self(ctx).commit(); });
    }
    static snp_status flush(void *ctx) noexcept {
        return guarded([&] { self(ctx).flush(); });
    }
    static snp_status clear(void *ctx) noexcept {
        return guarded([&] { self(ctx).clear(); });
    }
    static snp_status get_metadata(void *ctx, std::uint8_t *buf, std::size_t buf_len,
                                   std::size_t *out_len) noexcept {
        return guarded([&] {
            const std::vector<std::uint8_t> meta = self(ctx).metadata();
            if (meta.size() > buf_len) {
                throw Error(SNP_ERR_CALLBACK, "metadata larger than the buffer");
            }
            for (std::size_t i = 0; i < meta.size(); ++i) {
                buf[i] = meta[i];
            }
            *out_len = meta.size();
        });
    }
    static snp_status set_metadata(void *ctx, const std::uint8_t *meta, std::size_t len) noexcept {
        return guarded([&] { self(ctx).set_metadata(meta, len); });
    }

    /// The vtable for `log`; `destroy` stays NULL (the C++ side owns it).
    static snp_record_log_vtable vtable(RecordLog *log) noexcept {
        snp_record_log_vtable vt{};
        vt.struct_size = static_cast<std::uint32_t>(sizeof vt);
        vt.ctx = log;
        vt.append = &append;
        vt.remove = &remove;
        vt.read = &read;
        vt.scan = &scan;
        vt.commit = &commit;
        vt.flush = &flush;
        vt.clear = &clear;
        vt.get_metadata = &get_metadata;
        vt.set_metadata = &set_metadata;
        vt.destroy = nullptr;
        return vt;
    }
};

/// The C vtable functions of an IdStore (ctx is the IdStore*).
struct IdStoreBridge {
    static IdStore &self(void *ctx) noexcept { return *static_cast<IdStore *>(ctx); }

    static snp_status load(void *ctx, snp_id_visit_fn visit, void *visit_ctx) noexcept {
        if (visit == nullptr) {
            return SNP_ERR_INVALID_ARGUMENT;
        }
        return guarded([&] { self(ctx).load(IdVisitor(visit, visit_ctx)); });
    }
    static snp_status put(void *ctx, const char *name, std::size_t name_len,
                          std::int64_t id) noexcept {
        return guarded([&] { self(ctx).put(std::string_view(name, name_len), id); });
    }
    static snp_status clear(void *ctx) noexcept {
        return guarded([&] { self(ctx).clear(); });
    }
    static snp_status flush(void *ctx) noexcept {
        return guarded([&] { self(ctx).flush(); });
    }

    /// The vtable for `store`; `destroy` stays NULL (the C++ side owns it).
    static snp_id_store_vtable vtable(IdStore *store) noexcept {
        snp_id_store_vtable vt{};
        vt.struct_size = static_cast<std::uint32_t>(sizeof vt);
        vt.ctx = store;
        vt.load = &load;
        vt.put = &put;
        vt.clear = &clear;
        vt.flush = &flush;
        vt.destroy = nullptr;
        return vt;
    }
};

/// Deleter of an snp_service*: closes the handle, then (as the deleter
/// itself is destroyed or replaced) frees what the handle points into: the
/// failure callback and a custom backend. std::unique_ptr calls the old
/// deleter before replacing it, so these always outlive the handle.
struct ServiceCloser {
    /// The `user_data` of the C failure callback (or null).
    std::unique_ptr<FailureSink> sink;
    /// The `ctx` of a custom backend (or null).
    std::unique_ptr<RecordLog> backend;

    /// Closes the handle (`snp_service_close`).
    void operator()(snp_service *service) const noexcept { snp_service_close(service); }
};

/// Deleter of an snp_client*; as ServiceCloser.
struct ClientCloser {
    /// The `user_data` of the C failure callback (or null).
    std::unique_ptr<FailureSink> sink;
    /// The `ctx` of a custom backend (or null).
    std::unique_ptr<IdStore> backend;

    /// Closes the handle (`snp_client_close`).
    void operator()(snp_client *client) const noexcept { snp_client_close(client); }
};

/// A pointer to a NUL-terminated copy of `s`, or NULL when `s` is empty;
/// throws Error (`SNP_ERR_INVALID_ARGUMENT`) if `s` holds a NUL byte.
inline const char *c_string_or_null(const std::string &s, const char *what) {
    if (s.empty()) {
        return nullptr;
    }
    if (s.find('\0') != std::string::npos) {
        throw Error(SNP_ERR_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    }
    return s.c_str();
}

/// `view.data()`, or "" for a default-constructed view (the C ABI refuses
/// NULL text pointers even with length 0).
inline const char *text_ptr(std::string_view view) noexcept {
    return view.data() != nullptr ? view.data() : "";
}

/// The failure sink for `callback`, or null when it is empty.
inline std::unique_ptr<FailureSink> make_sink(const FailureCallback &callback) {
    if (!callback) {
        return nullptr;
    }
    std::unique_ptr<FailureSink> sink(new FailureSink);
    sink->callback = callback;
    return sink;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// ServiceStore
// ---------------------------------------------------------------------------

/// A service store (`snp_service`): events raised while the broker is away,
/// delivered in storage mode (peek/ack) after a reconnect, then per name in
/// cache mode (peek_name/ack_name). Move-only; the handle is closed when the
/// object is destroyed, assigned over, or close() is called. A moved-from
/// store is empty: every method except close(), get() and operator bool
/// throws Error with `SNP_ERR_CLOSED`.
class ServiceStore {
public:
    /// An empty store (no handle); assign an opened one to it.
    ServiceStore() noexcept = default;
    /// Takes over the handle (and its callback) of `other`, leaving it empty.
    ServiceStore(ServiceStore &&other) noexcept = default;
    /// Closes this store's handle, then takes over `other`'s.
    ServiceStore &operator=(ServiceStore &&other) noexcept = default;
    /// Not copyable: one owner per C handle.
    ServiceStore(const ServiceStore &) = delete;
    /// Not copyable: one owner per C handle.
    ServiceStore &operator=(const ServiceStore &) = delete;
    /// Closes the handle (syncing what the durability setting left pending).
    ~ServiceStore() = default;

    /// Opens a store as `options` say (level 2 in `options.directory` by
    /// default). A damaged journal is set aside and an I/O error starts the
    /// store at level 1; both are reported to `on_failure`, not thrown.
    /// Throws Error: `SNP_ERR_INVALID_ARGUMENT` (no directory at level 2,
    /// bad option value), `SNP_ERR_LOCKED` (another handle or process has
    /// the journal).
    static ServiceStore open(const ServiceOptions &options) {
        if (options.level == Level::File && options.directory.empty()) {
            // Said here in C++ terms (the C library would speak of
            // options->directory and SNP_LEVEL_MEMORY).
            throw Error(SNP_ERR_INVALID_ARGUMENT,
                        "ServiceOptions::directory is empty: a level-2 store needs the directory "
                        "of its journal (or set level = Level::Memory)");
        }
        std::unique_ptr<detail::FailureSink> sink = detail::make_sink(options.on_failure);
        snp_service_options o = c_options(options, sink.get());
        snp_service *raw = nullptr;
        check(snp_service_open(&o, &raw));
        return ServiceStore(raw, std::move(sink), nullptr);
    }

    /// Opens a level-1 (memory) store; `options.level` is ignored.
    static ServiceStore open_memory(const ServiceOptions &options = ServiceOptions()) {
        ServiceOptions memory = options;
        memory.level = Level::Memory;
        return open(memory);
    }

    /// Opens a level-2 store kept by `backend` (see RecordLog), which the
    /// store owns from now on (also when this throws). `options.level`,
    /// `directory`, `service_uid` and `durability` are ignored. A backend
    /// failure makes the store continue at level 1 (reported).
    /// Throws Error: `SNP_ERR_INVALID_ARGUMENT` (null backend, bad option).
    static ServiceStore open_custom(std::unique_ptr<RecordLog> backend,
                                    const ServiceOptions &options = ServiceOptions()) {
        if (!backend) {
            throw Error(SNP_ERR_INVALID_ARGUMENT, "open_custom: backend is null");
        }
        std::unique_ptr<detail::FailureSink> sink = detail::make_sink(options.on_failure);
        snp_service_options o = c_options(options, sink.get());
        const snp_record_log_vtable vt = detail::RecordLogBridge::vtable(backend.get());
        snp_service *raw = nullptr;
        check(snp_service_open_custom(&vt, &o, &raw));
        return ServiceStore(raw, std::move(sink), std::move(backend));
    }

    /// True when the store holds a handle (not moved from or closed).
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// The C handle, for calls the wrapper does not cover (still owned by
    /// this object); null when empty.
    snp_service *get() const noexcept { return handle_.get(); }

    /// Closes the handle now; the store is empty afterwards. Fine on an
    /// empty store.
    void close() noexcept { handle_.reset(); }

    /// Stores an event with a new random uid and returns the uid.
    /// Throws Error: `SNP_ERR_INVALID_ARGUMENT` (name rules: 1..256
    /// characters, an ASCII letter first, ...; more than 2048 bytes of
    /// arguments; arguments on ReplacingNull; EventKind::Private, which
    /// needs a target client: use raise_private), `SNP_ERR_STORAGE_FULL`
    /// (Overflow::RejectNew).
    Uuid raise(EventKind kind, std::string_view name,
               const std::vector<std::uint8_t> &args = std::vector<std::uint8_t>()) {
        return raise(kind, name, args.data(), args.size());
    }

    /// As raise(kind, name, args) with text arguments (sent as bytes).
    Uuid raise(EventKind kind, std::string_view name, std::string_view args) {
        return raise(kind, name, reinterpret_cast<const std::uint8_t *>(args.data()), args.size());
    }

    /// As raise(kind, name, args) with `args_len` bytes at `args` (NULL is
    /// fine when `args_len` is 0).
    Uuid raise(EventKind kind, std::string_view name, const std::uint8_t *args,
               std::size_t args_len) {
        if (kind == EventKind::Private) {
            // It would silently target client 0.
            throw Error(SNP_ERR_INVALID_ARGUMENT,
                        "ServiceStore::raise cannot store a Private event (it needs a target "
                        "client): use raise_private(name, args, client_id)");
        }
        return raise_raw(kind, name, args, args_len, 0);
    }

    /// Stores a Private event for `client_id`; returns its new uid. Throws
    /// as raise().
    Uuid raise_private(std::string_view name, const std::vector<std::uint8_t> &args,
                       std::int64_t client_id) {
        return raise_raw(EventKind::Private, name, args.data(), args.size(), client_id);
    }

    /// As raise_private(name, args, client_id) with text arguments.
    Uuid raise_private(std::string_view name, std::string_view args, std::int64_t client_id) {
        return raise_raw(EventKind::Private, name,
                         reinterpret_cast<const std::uint8_t *>(args.data()), args.size(),
                         client_id);
    }

    /// Stores an event under the caller's `uid` (e.g. one made earlier);
    /// `client_id` is used by Private events only. Throws as raise().
    void raise_with_uid(const Uuid &uid, EventKind kind, std::string_view name,
                        const std::vector<std::uint8_t> &args = std::vector<std::uint8_t>(),
                        std::int64_t client_id = 0) {
        const snp_event e = c_event(kind, name, args.data(), args.size(), client_id);
        const snp_uuid u = uid.to_c();
        check(snp_service_raise_with_uid(handle(), &e, &u));
    }

    /// Storage mode: the oldest pending event (the same one until it is
    /// acknowledged); std::nullopt when nothing is pending, after which the
    /// store is in cache mode. Throws Error: `SNP_ERR_STATE` (cache mode).
    std::optional<StoredEvent> peek() {
        snp_stored_event out;
        if (!check(snp_service_peek(handle(), &out))) {
            return std::nullopt;
        }
        return StoredEvent::from_c(out);
    }

    /// Calls `visit(const StoredEvent &)` once per pending event, in raise
    /// order, without changing anything (for diagnostics; it reads every
    /// record). An exception thrown by `visit` ends the visit (the
    /// remaining events are skipped) and is rethrown here, once the C call
    /// has returned.
    template <class Visit>
    void for_each_pending(Visit &&visit) const {
        struct Context {
            std::remove_reference_t<Visit> *visit;
            std::exception_ptr error;
        } ctx{&visit, nullptr};
        auto trampoline = [](void *user_data, const snp_stored_event *event) noexcept {
            auto *c = static_cast<Context *>(user_data);
            if (c->error) {
                return;
            }
            try {
                (*c->visit)(StoredEvent::from_c(*event));
            } catch (...) {
                c->error = std::current_exception();
            }
        };
        void (*fn)(void *, const snp_stored_event *) = trampoline;
        check(snp_service_for_each_pending(handle(), fn, &ctx));
        if (ctx.error) {
            std::rethrow_exception(ctx.error);
        }
    }

    /// Every pending event in raise order (see for_each_pending).
    std::vector<StoredEvent> pending() const {
        std::vector<StoredEvent> out;
        for_each_pending([&out](const StoredEvent &e) { out.push_back(e); });
        return out;
    }

    /// Storage mode: removes the oldest pending event if `uid` is its uid.
    /// Throws Error: `SNP_ERR_STATE` (cache mode, or `uid` is not the event
    /// in flight: a late or repeated ack).
    void ack(const Uuid &uid) {
        const snp_uuid u = uid.to_c();
        check(snp_service_ack(handle(), &u));
    }

    /// Cache mode: the oldest pending event of (`kind`, `name`), now in
    /// flight; std::nullopt if the name has none. Throws Error:
    /// `SNP_ERR_STATE` (storage mode), `SNP_ERR_INVALID_ARGUMENT`.
    std::optional<StoredEvent> peek_name(EventKind kind, std::string_view name) {
        snp_stored_event out;
        if (!check(snp_service_peek_name(handle(), static_cast<std::int32_t>(kind),
                                         detail::text_ptr(name), name.size(), &out))) {
            return std::nullopt;
        }
        return StoredEvent::from_c(out);
    }

    /// Cache mode: removes the event in flight of (`kind`, `name`) if `uid`
    /// is its uid, and returns the name's next event (now in flight), or
    /// std::nullopt if there is none. Throws Error: `SNP_ERR_STATE` (storage
    /// mode, or `uid` is not the event in flight).
    std::optional<StoredEvent> ack_name(EventKind kind, std::string_view name, const Uuid &uid) {
        snp_stored_event out;
        const snp_uuid u = uid.to_c();
        if (!check(snp_service_ack_name(handle(), static_cast<std::int32_t>(kind),
                                        detail::text_ptr(name), name.size(), &u, &out))) {
            return std::nullopt;
        }
        return StoredEvent::from_c(out);
    }

    /// Back to storage mode (on disconnect); nothing is in flight afterwards.
    void set_storage_mode() { check(snp_service_set_storage_mode(handle())); }

    /// The current mode.
    Mode mode() const {
        std::int32_t m = 0;
        check(snp_service_mode(handle(), &m));
        return static_cast<Mode>(m);
    }

    /// The storage uid (what the broker's duplicate detection is tied to).
    Uuid storage_uid() const {
        snp_uuid u{};
        check(snp_service_storage_uid(handle(), &u));
        return Uuid::from_c(u);
    }

    /// The storage uid the store had before a level-2 failure moved it to
    /// level 1 with a new one; empty if that never happened.
    std::optional<Uuid> previous_storage_uid() const {
        snp_uuid u{};
        if (!check(snp_service_previous_storage_uid(handle(), &u))) return std::nullopt;
        return Uuid::from_c(u);
    }

    /// Discards the events stored when the store was opened ("ancient data":
    /// call it when the broker remembers another storage uid); keeps events
    /// raised since. Returns how many were discarded.
    std::uint64_t invalidate_ancient() {
        std::uint64_t n = 0;
        check(snp_service_invalidate_ancient(handle(), &n));
        return n;
    }

    /// Discards every pending event; keeps the storage uid.
    void reset() { check(snp_service_reset(handle())); }

    /// Forces everything written to the device, whatever the durability (an
    /// I/O error falls back to level 1 and is reported, not thrown).
    void flush() { check(snp_service_flush(handle())); }

    /// Counters and state.
    ServiceStats stats() const {
        snp_service_stats s{};
        s.struct_size = static_cast<std::uint32_t>(sizeof s);
        check(snp_service_get_stats(handle(), &s));
        ServiceStats out;
        out.level = static_cast<Level>(s.level);
        out.mode = static_cast<Mode>(s.mode);
        out.pending_events = s.pending_events;
        out.used_bytes = s.used_bytes;
        out.capacity_bytes = s.capacity_bytes;
        out.dropped_events = s.dropped_events;
        out.rejected_events = s.rejected_events;
        out.superseded_events = s.superseded_events;
        out.invalidated_events = s.invalidated_events;
        out.expired_events = s.expired_events;
        out.failures = s.failures;
        out.events_lost = s.events_lost;
        out.storage_uid = Uuid::from_c(s.storage_uid);
        return out;
    }

private:
    using Handle = std::unique_ptr<snp_service, detail::ServiceCloser>;

    ServiceStore(snp_service *raw, std::unique_ptr<detail::FailureSink> sink,
                 std::unique_ptr<RecordLog> backend) noexcept
        : handle_(raw, detail::ServiceCloser{std::move(sink), std::move(backend)}) {}

    static snp_service_options c_options(const ServiceOptions &options,
                                         detail::FailureSink *sink) {
        snp_service_options o;
        snp_service_options_init(&o);
        o.level = static_cast<std::int32_t>(options.level);
        o.directory = detail::c_string_or_null(options.directory, "ServiceOptions::directory");
        o.service_uid = options.service_uid.to_c();
        o.file_capacity = options.file_capacity;
        o.memory_capacity = options.memory_capacity;
        o.durability = static_cast<std::int32_t>(options.durability);
        o.batch_max_ops = options.batch_max_ops;
        o.batch_max_delay_ms = options.batch_max_delay_ms;
        o.overflow = static_cast<std::int32_t>(options.overflow);
        o.open_policy = static_cast<std::int32_t>(options.open_policy);
        if (options.max_age.count() < 0) {
            throw Error(SNP_ERR_INVALID_ARGUMENT, "ServiceOptions::max_age is negative");
        }
        o.max_age_ms = static_cast<std::uint64_t>(options.max_age.count());
        if (sink != nullptr) {
            o.on_failure = &detail::FailureSink::trampoline;
            o.user_data = sink;
        }
        return o;
    }

    static snp_event c_event(EventKind kind, std::string_view name, const std::uint8_t *args,
                             std::size_t args_len, std::int64_t client_id) noexcept {
        snp_event e{};
        e.kind = static_cast<std::int32_t>(kind);
        e.name = detail::text_ptr(name);
        e.name_len = name.size();
        e.args = args;
        e.args_len = args_len;
        e.client_id = client_id;
        return e;
    }

    Uuid raise_raw(EventKind kind, std::string_view name, const std::uint8_t *args,
                   std::size_t args_len, std::int64_t client_id) {
        const snp_event e = c_event(kind, name, args, args_len, client_id);
        snp_uuid uid{};
        check(snp_service_raise(handle(), &e, &uid));
        return Uuid::from_c(uid);
    }

    snp_service *handle() const {
        if (!handle_) {
            throw Error(SNP_ERR_CLOSED, "the ServiceStore is empty (moved from or closed)");
        }
        return handle_.get();
    }

    Handle handle_;
};

// ---------------------------------------------------------------------------
// ClientStore
// ---------------------------------------------------------------------------

/// A client store (`snp_client`): the last handled id per subscription, to
/// drop duplicates after a reconnect. Move-only, closed like ServiceStore; a
/// moved-from store is empty and its methods throw Error (`SNP_ERR_CLOSED`).
class ClientStore {
public:
    /// An empty store (no handle); assign an opened one to it.
    ClientStore() noexcept = default;
    /// Takes over the handle (and its callback) of `other`, leaving it empty.
    ClientStore(ClientStore &&other) noexcept = default;
    /// Closes this store's handle, then takes over `other`'s.
    ClientStore &operator=(ClientStore &&other) noexcept = default;
    /// Not copyable: one owner per C handle.
    ClientStore(const ClientStore &) = delete;
    /// Not copyable: one owner per C handle.
    ClientStore &operator=(const ClientStore &) = delete;
    /// Closes the handle.
    ~ClientStore() = default;

    /// Opens a store as `options` say (level 1, memory, by default). A
    /// damaged file is salvaged and an I/O error starts the store at level
    /// 1; both are reported, not thrown. Throws Error:
    /// `SNP_ERR_INVALID_ARGUMENT` (directory, server address or key missing
    /// at level 2, characters that cannot be in a file name),
    /// `SNP_ERR_LOCKED`.
    static ClientStore open(const ClientOptions &options) {
        if (options.level == Level::File) {
            // Said here in C++ terms (the C library would speak of
            // options->... and SNP_LEVEL_MEMORY).
            for (const auto &[field, value] :
                 {std::pair<const char *, const std::string *>{"directory", &options.directory},
                  {"server_address", &options.server_address},
                  {"client_key", &options.client_key}}) {
                if (value->empty()) {
                    throw Error(SNP_ERR_INVALID_ARGUMENT,
                                std::string("ClientOptions::") + field +
                                    " is empty: a level-2 client store needs its directory, "
                                    "server_address and client_key (or set level = "
                                    "Level::Memory)");
                }
            }
        }
        std::unique_ptr<detail::FailureSink> sink = detail::make_sink(options.on_failure);
        snp_client_options o = c_options(options, sink.get());
        snp_client *raw = nullptr;
        check(snp_client_open(&o, &raw));
        return ClientStore(raw, std::move(sink), nullptr);
    }

    /// Opens a level-1 (memory) store; `options.level` is ignored.
    static ClientStore open_memory(const ClientOptions &options = ClientOptions()) {
        ClientOptions memory = options;
        memory.level = Level::Memory;
        return open(memory);
    }

    /// Opens a level-2 store kept by `backend` (see IdStore), which the store
    /// owns from now on (also when this throws). A backend failure makes the
    /// store continue in memory (reported). Throws Error:
    /// `SNP_ERR_INVALID_ARGUMENT`.
    static ClientStore open_custom(std::unique_ptr<IdStore> backend,
                                   const ClientOptions &options = ClientOptions()) {
        if (!backend) {
            throw Error(SNP_ERR_INVALID_ARGUMENT, "open_custom: backend is null");
        }
        std::unique_ptr<detail::FailureSink> sink = detail::make_sink(options.on_failure);
        snp_client_options o = c_options(options, sink.get());
        const snp_id_store_vtable vt = detail::IdStoreBridge::vtable(backend.get());
        snp_client *raw = nullptr;
        check(snp_client_open_custom(&vt, &o, &raw));
        return ClientStore(raw, std::move(sink), std::move(backend));
    }

    /// True when the store holds a handle (not moved from or closed).
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// The C handle (still owned by this object); null when empty.
    snp_client *get() const noexcept { return handle_.get(); }

    /// Closes the handle now; the store is empty afterwards.
    void close() noexcept { handle_.reset(); }

    /// The last handled id of `name`, or std::nullopt if none is stored.
    /// Throws Error: `SNP_ERR_INVALID_ARGUMENT` (name rules, not UTF-8).
    std::optional<std::int64_t> get(std::string_view name) const {
        std::int64_t id = 0;
        if (!check(snp_client_get(handle(), detail::text_ptr(name), name.size(), &id))) {
            return std::nullopt;
        }
        return id;
    }

    /// Records `id` as the last handled id of `name` (durably at level 2, as
    /// the durability setting says; a level-2 failure falls back to memory
    /// and is reported, not thrown). Throws Error:
    /// `SNP_ERR_INVALID_ARGUMENT` (name rules).
    void put(std::string_view name, std::int64_t id) {
        check(snp_client_put(handle(), detail::text_ptr(name), name.size(), id));
    }

    /// True when `id` equals the stored id of `name`: a duplicate to
    /// acknowledge without handling. Throws Error:
    /// `SNP_ERR_INVALID_ARGUMENT` (name rules, not UTF-8).
    bool is_duplicate(std::string_view name, std::int64_t id) const {
        bool dup = false;
        check(snp_client_is_duplicate(handle(), detail::text_ptr(name), name.size(), id, &dup));
        return dup;
    }

    /// Calls `visit(std::string_view name, std::int64_t id)` once per stored
    /// pair, in name order. An exception thrown by `visit` ends the visit
    /// (the remaining pairs are skipped) and is rethrown here, once the C
    /// call has returned.
    template <class Visit>
    void for_each(Visit &&visit) const {
        struct Context {
            std::remove_reference_t<Visit> *visit;
            std::exception_ptr error;
        } ctx{&visit, nullptr};
        auto trampoline = [](void *user_data, const char *name, std::size_t name_len,
                             std::int64_t id) noexcept {
            auto *c = static_cast<Context *>(user_data);
            if (c->error) {
                return;
            }
            try {
                (*c->visit)(std::string_view(name, name_len), id);
            } catch (...) {
                c->error = std::current_exception();
            }
        };
        void (*fn)(void *, const char *, std::size_t, std::int64_t) = trampoline;
        check(snp_client_for_each(handle(), fn, &ctx));
        if (ctx.error) {
            std::rethrow_exception(ctx.error);
        }
    }

    /// Every stored (name, id) pair in name order (what a stateless client
    /// sends when it connects).
    std::vector<std::pair<std::string, std::int64_t>> entries() const {
        std::vector<std::pair<std::string, std::int64_t>> out;
        for_each([&out](std::string_view name, std::int64_t id) {
            out.emplace_back(std::string(name), id);
        });
        return out;
    }

    /// Forgets every stored id.
    void reset() { check(snp_client_reset(handle())); }

    /// Forces every put to the device.
    void flush() { check(snp_client_flush(handle())); }

    /// Level, subscriptions and failures.
    ClientStats stats() const {
        snp_client_stats s{};
        s.struct_size = static_cast<std::uint32_t>(sizeof s);
        check(snp_client_get_stats(handle(), &s));
        ClientStats out;
        out.level = static_cast<Level>(s.level);
        out.subscriptions = s.subscriptions;
        out.failures = s.failures;
        return out;
    }

private:
    using Handle = std::unique_ptr<snp_client, detail::ClientCloser>;

    ClientStore(snp_client *raw, std::unique_ptr<detail::FailureSink> sink,
                std::unique_ptr<IdStore> backend) noexcept
        : handle_(raw, detail::ClientCloser{std::move(sink), std::move(backend)}) {}

    static snp_client_options c_options(const ClientOptions &options,
                                        detail::FailureSink *sink) {
        snp_client_options o;
        snp_client_options_init(&o);
        o.level = static_cast<std::int32_t>(options.level);
        o.directory = detail::c_string_or_null(options.directory, "ClientOptions::directory");
        o.server_address =
            detail::c_string_or_null(options.server_address, "ClientOptions::server_address");
        o.client_key = detail::c_string_or_null(options.client_key, "ClientOptions::client_key");
        o.durability = static_cast<std::int32_t>(options.durability);
        o.batch_max_ops = options.batch_max_ops;
        o.batch_max_delay_ms = options.batch_max_delay_ms;
        o.open_policy = static_cast<std::int32_t>(options.open_policy);
        if (sink != nullptr) {
            o.on_failure = &detail::FailureSink::trampoline;
            o.user_data = sink;
        }
        return o;
    }

    snp_client *handle() const {
        if (!handle_) {
            throw Error(SNP_ERR_CLOSED, "the ClientStore is empty (moved from or closed)");
        }
        return handle_.get();
    }

    Handle handle_;
};

// ---------------------------------------------------------------------------
// Delivery controllers
// ---------------------------------------------------------------------------

/// ServiceController output: send `event` to the broker (again, with the
/// same uid, on a resend).
struct SendEvent {
    /// The event to send.
    StoredEvent event;
};

/// ServiceController output: tell the broker our storage uid (its duplicate
/// detection is tied to it). Always comes before the events that depend on
/// it.
struct SendStorageUid {
    /// The storage uid to send.
    Uuid storage_uid;
};

/// ServiceController output: the broker refused `event`'s name; the event
/// was dropped from the store. For the application's log; nothing to send.
struct Rejected {
    /// The event that was dropped.
    StoredEvent event;
};

/// One thing a ServiceController asks its caller to do (`SNP_OUTPUT_*`).
/// Handle every output, in the order given (e.g. with std::visit).
using ServiceOutput = std::variant<SendEvent, SendStorageUid, Rejected>;

/// State of a service controller (ServiceController::stats).
struct ServiceControllerStats {
    /// True between ServiceController::online and
    /// ServiceController::disconnected.
    bool online = false;
    /// Events sent and not yet acknowledged.
    std::uint64_t in_flight = 0;
    /// Acks (and rejections) that matched no event in flight (stale or
    /// repeated), ignored.
    std::uint64_t stale_acks = 0;
    /// Events the broker refused (handed out as Rejected).
    std::uint64_t rejected = 0;
};

/// Whether the broker remembers a client between connections
/// (`SNP_CLIENT_*`).
enum class ClientKind : std::int32_t {
    /// The broker keeps the last event delivered per subscription and
    /// resumes after it (the hello says "resume").
    Stateful = SNP_CLIENT_STATEFUL,
    /// The broker keeps nothing: on connect the client sends the last id it
    /// holds per subscription (ClientStore::entries()).
    Stateless = SNP_CLIENT_STATELESS,
};

/// When a ClientController records a handled id (`SNP_ORDER_*`).
enum class HandlerOrder : std::int32_t {
    /// Handle, then record the id in ClientController::handled (at least
    /// once; the default): a crash in between hands the event to the
    /// application again after the restart.
    RecordAfterHandle = SNP_ORDER_RECORD_AFTER_HANDLE,
    /// Record the id in ClientController::incoming, then handle (at most
    /// once): a crash in between loses the event for the application.
    RecordBeforeHandle = SNP_ORDER_RECORD_BEFORE_HANDLE,
};

/// What to do with an incoming event (`SNP_DECISION_*`).
enum class Decision : std::int32_t {
    /// Hand it to the application, then call ClientController::handled and
    /// acknowledge it to the broker.
    Handle = SNP_DECISION_HANDLE,
    /// Already handled: acknowledge it to the broker without handing it to
    /// the application.
    AckDuplicate = SNP_DECISION_ACK_DUPLICATE,
};

namespace detail {

/// Deleter of an snp_service_controller* (`snp_service_controller_free`).
struct ServiceControllerFree {
    /// Frees the controller (its store stays open until its own handle is
    /// closed).
    void operator()(snp_service_controller *controller) const noexcept {
        snp_service_controller_free(controller);
    }
};

/// Deleter of an snp_client_controller* (`snp_client_controller_free`).
struct ClientControllerFree {
    /// Frees the controller.
    void operator()(snp_client_controller *controller) const noexcept {
        snp_client_controller_free(controller);
    }
};

/// `d` as the C ABI's unsigned milliseconds; throws Error
/// (`SNP_ERR_INVALID_ARGUMENT`) for a negative duration.
inline std::uint64_t c_millis(std::chrono::milliseconds d, const char *what) {
    if (d.count() < 0) {
        throw Error(SNP_ERR_INVALID_ARGUMENT, std::string(what) + " is negative");
    }
    return static_cast<std::uint64_t>(d.count());
}

/// The C ABI's unsigned milliseconds as a duration (clamped to
/// std::chrono::milliseconds::max()).
inline std::chrono::milliseconds cpp_millis(std::uint64_t ms) noexcept {
    using rep = std::chrono::milliseconds::rep;
    const auto max = static_cast<std::uint64_t>(std::chrono::milliseconds::max().count());
    return std::chrono::milliseconds(static_cast<rep>(ms > max ? max : ms));
}

}  // namespace detail

// ---------------------------------------------------------------------------
// ServiceController
// ---------------------------------------------------------------------------

/// The service side of the delivery protocol (`snp_service_controller`,
/// docs/PROTOCOL.md section 2) over a ServiceStore: the storage-uid
/// handshake, the strict in-order drain of the backlog with one event in
/// flight, then one event in flight per name, resends after a timeout with
/// the same uid, acks counted only for the event in flight, and back to
/// storage mode on disconnect (the events in flight are sent again first
/// after the next online).
///
/// It does no I/O, reads no clock and has no thread: feed it what happened
/// (raise, connected, online, ack, rejected, disconnected) and the time
/// (tick), then send what next_output()/drain_outputs() hand out, in
/// order, after every input, and call tick() again by next_deadline().
///
/// Time: a std::chrono::milliseconds on a monotonic clock of your choice
/// (any origin, e.g. the time since your program started; the
/// steady_clock overload of tick() uses `time_since_epoch()`); use one
/// clock for the controller's whole life. An event sent gets the deadline
/// "the last time given to tick() + resend_timeout". Until the first
/// tick() the controller's time is 0, and the first tick() moves the
/// deadlines of events sent before it by the time it gives (so a clock far
/// from 0 does not make them overdue at once). next_deadline() answers on
/// the same clock (relative to 0 before the first tick()). Simplest: tick()
/// with the current time before each input, and again at next_deadline().
///
/// Lifetime: the C controller keeps its store alive, so this object may
/// outlive the ServiceStore object it was made from (and the store may be
/// moved). Once that store is closed (close(), destruction, assignment
/// over it) every call here throws Error with `SNP_ERR_CLOSED`; destroying
/// the controller is always fine. While the controller is in use, the
/// store may still be read directly (stats(), storage_uid(), mode()...)
/// but peek, ack and their cache-mode forms are the controller's: use one
/// controller per store at a time.
///
/// Move-only; the C handle is freed when the object is destroyed or
/// assigned over. A moved-from (or default-constructed) controller is
/// empty: every method except get() and operator bool throws Error with
/// `SNP_ERR_CLOSED`. A failure callback of the store must not call its
/// controller (such a call throws Error with `SNP_ERR_STATE`).
class ServiceController {
public:
    /// One output (see ServiceOutput).
    using Output = ServiceOutput;

    /// An empty controller (no handle); assign a made one to it.
    ServiceController() noexcept = default;
    /// Takes over the handle of `other`, leaving it empty.
    ServiceController(ServiceController &&other) noexcept = default;
    /// Frees this controller's handle, then takes over `other`'s.
    ServiceController &operator=(ServiceController &&other) noexcept = default;
    /// Not copyable: one owner per C handle.
    ServiceController(const ServiceController &) = delete;
    /// Not copyable: one owner per C handle.
    ServiceController &operator=(const ServiceController &) = delete;
    /// Frees the handle (the store stays open until its own handle is
    /// closed).
    ~ServiceController() = default;

    /// A controller over `store`, offline. `resend_timeout` is how long a
    /// sent event waits for its ack before tick() sends it again (30 s by
    /// default; it must be positive). Throws Error: `SNP_ERR_CLOSED` (an
    /// empty or closed store), `SNP_ERR_INVALID_ARGUMENT` (a timeout of
    /// zero or less).
    explicit ServiceController(
        ServiceStore &store, std::chrono::milliseconds resend_timeout = std::chrono::seconds(30)) {
        if (!store) {
            throw Error(SNP_ERR_CLOSED,
                        "ServiceController: the ServiceStore is empty (moved from or closed)");
        }
        if (resend_timeout.count() <= 0) {
            // The C ABI reads 0 as "the default"; a C++ caller asking for 0
            // would not expect 30 s.
            throw Error(SNP_ERR_INVALID_ARGUMENT,
                        "ServiceController: resend_timeout must be positive");
        }
        snp_service_controller *raw = nullptr;
        check(snp_service_controller_new(
            store.get(), detail::c_millis(resend_timeout, "resend_timeout"), &raw));
        handle_.reset(raw);
    }

    /// True when the controller holds a handle (not moved from).
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// The C handle (still owned by this object); null when empty.
    snp_service_controller *get() const noexcept { return handle_.get(); }

    /// The application raised an event: stores it with a new random uid,
    /// returned, and sends it now if the protocol allows (see
    /// next_output()). Throws as ServiceStore::raise, plus `SNP_ERR_CLOSED`.
    Uuid raise(EventKind kind, std::string_view name,
               const std::vector<std::uint8_t> &args = std::vector<std::uint8_t>()) {
        return raise(kind, name, args.data(), args.size());
    }

    /// As raise(kind, name, args) with text arguments (sent as bytes).
    Uuid raise(EventKind kind, std::string_view name, std::string_view args) {
        return raise(kind, name, reinterpret_cast<const std::uint8_t *>(args.data()), args.size());
    }

    /// As raise(kind, name, args) with `args_len` bytes at `args` (NULL is
    /// fine when `args_len` is 0). EventKind::Private is refused
    /// (`SNP_ERR_INVALID_ARGUMENT`): use raise_private.
    Uuid raise(EventKind kind, std::string_view name, const std::uint8_t *args,
               std::size_t args_len) {
        if (kind == EventKind::Private) {
            throw Error(SNP_ERR_INVALID_ARGUMENT,
                        "ServiceController::raise cannot store a Private event (it needs a "
                        "target client): use raise_private(name, args, client_id)");
        }
        return raise_raw(kind, name, args, args_len, 0);
    }

    /// Raises a Private event for `client_id`; returns its new uid. Throws
    /// as raise().
    Uuid raise_private(std::string_view name, const std::vector<std::uint8_t> &args,
                       std::int64_t client_id) {
        return raise_raw(EventKind::Private, name, args.data(), args.size(), client_id);
    }

    /// As raise_private(name, args, client_id) with text arguments.
    Uuid raise_private(std::string_view name, std::string_view args, std::int64_t client_id) {
        return raise_raw(EventKind::Private, name,
                         reinterpret_cast<const std::uint8_t *>(args.data()), args.size(),
                         client_id);
    }

    /// The transport to the broker is up; its "online" comes next.
    void connected() { check(snp_service_controller_connected(handle())); }

    /// The broker is ready and remembers `broker_storage_uid` for this
    /// service (std::nullopt: none). Runs the storage-uid handshake
    /// (SendStorageUid unless the broker has our uid; the store's ancient
    /// events are discarded when it remembers another uid than ours or
    /// our previous one), sends again what was in flight at the last
    /// disconnect, then starts the drain.
    void online(const std::optional<Uuid> &broker_storage_uid) {
        if (broker_storage_uid) {
            const snp_uuid u = broker_storage_uid->to_c();
            check(snp_service_controller_online(handle(), &u));
        } else {
            check(snp_service_controller_online(handle(), nullptr));
        }
    }

    /// The broker acknowledged `uid`. Only the event in flight counts; a
    /// stale or repeated ack is ignored and counted (stats().stale_acks).
    void ack(const Uuid &uid) {
        const snp_uuid u = uid.to_c();
        check(snp_service_controller_ack(handle(), &u));
    }

    /// The broker refused the name of event `uid` (in flight): the event is
    /// dropped from the store and handed out as Rejected. For a uid not in
    /// flight it is ignored like a stale ack.
    void rejected(const Uuid &uid) {
        const snp_uuid u = uid.to_c();
        check(snp_service_controller_rejected(handle(), &u));
    }

    /// The transport is gone: nothing is in flight any more; what was is
    /// sent again first after the next online().
    void disconnected() { check(snp_service_controller_disconnected(handle())); }

    /// The time is `now` (see the class comment for the clock): events
    /// whose ack is overdue are sent again, with the same uid (only while
    /// online). Throws Error: `SNP_ERR_INVALID_ARGUMENT` (a negative time).
    void tick(std::chrono::milliseconds now) {
        check(snp_service_controller_tick(handle(), detail::c_millis(now, "tick: now")));
    }

    /// tick() with `now.time_since_epoch()` in milliseconds (rounded down):
    /// use one clock for a controller's whole life, and convert
    /// next_deadline() back with `std::chrono::steady_clock::time_point(*d)`.
    void tick(std::chrono::steady_clock::time_point now) {
        tick(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()));
    }

    /// When tick() must be called next (the earliest resend, on the clock of
    /// the times given to tick()), or std::nullopt when nothing is in
    /// flight.
    std::optional<std::chrono::milliseconds> next_deadline() const {
        std::uint64_t ms = 0;
        if (!check(snp_service_controller_next_deadline(handle(), &ms))) {
            return std::nullopt;
        }
        return detail::cpp_millis(ms);
    }

    /// The next thing to do, or std::nullopt when there is nothing. Take
    /// every output after each input, in order.
    std::optional<Output> next_output() {
        snp_service_output out{};
        out.struct_size = static_cast<std::uint32_t>(sizeof out);
        if (!check(snp_service_controller_next_output(handle(), &out))) {
            return std::nullopt;
        }
        switch (out.kind) {
        case SNP_OUTPUT_SEND_EVENT:
            return Output(SendEvent{StoredEvent::from_c(out.event)});
        case SNP_OUTPUT_SEND_STORAGE_UID:
            return Output(SendStorageUid{Uuid::from_c(out.storage_uid)});
        case SNP_OUTPUT_REJECTED:
            return Output(Rejected{StoredEvent::from_c(out.event)});
        default:
            throw Error(SNP_ERR_STATE, "ServiceController::next_output: unknown output kind " +
                                           std::to_string(out.kind) +
                                           " (a library newer than this header?)");
        }
    }

    /// Every output waiting, in order (empty when there is none). If a call
    /// fails part way (the store closed by another thread meanwhile), the
    /// outputs taken so far are lost with the exception.
    std::vector<Output> drain_outputs() {
        std::vector<Output> outputs;
        while (std::optional<Output> next = next_output()) {
            outputs.push_back(std::move(*next));
        }
        return outputs;
    }

    /// Online state and counters.
    ServiceControllerStats stats() const {
        snp_service_controller_stats s{};
        s.struct_size = static_cast<std::uint32_t>(sizeof s);
        check(snp_service_controller_get_stats(handle(), &s));
        ServiceControllerStats out;
        out.online = s.online != 0;
        out.in_flight = s.in_flight;
        out.stale_acks = s.stale_acks;
        out.rejected = s.rejected;
        return out;
    }

private:
    using Handle = std::unique_ptr<snp_service_controller, detail::ServiceControllerFree>;

    Uuid raise_raw(EventKind kind, std::string_view name, const std::uint8_t *args,
                   std::size_t args_len, std::int64_t client_id) {
        snp_event e{};
        e.kind = static_cast<std::int32_t>(kind);
        e.name = detail::text_ptr(name);
        e.name_len = name.size();
        e.args = args;
        e.args_len = args_len;
        e.client_id = client_id;
        snp_uuid uid{};
        check(snp_service_controller_raise(handle(), &e, &uid));
        return Uuid::from_c(uid);
    }

    snp_service_controller *handle() const {
        if (!handle_) {
            throw Error(SNP_ERR_CLOSED, "the ServiceController is empty (moved from)");
        }
        return handle_.get();
    }

    Handle handle_;
};

// ---------------------------------------------------------------------------
// ClientController
// ---------------------------------------------------------------------------

/// The client side of the delivery protocol (`snp_client_controller`,
/// docs/PROTOCOL.md section 3) over a ClientStore: which incoming events
/// reach the application, and when their ids are recorded (HandlerOrder).
/// For each event the broker delivers: incoming(name, id); on
/// Decision::Handle hand it to the application, then handled(name, id) and
/// acknowledge (name, id) to the broker; on Decision::AckDuplicate only
/// acknowledge it. If the handler fails, skip handled() and the ack: the
/// broker sends the event again.
///
/// The hello on connect is the application's: "resume" for
/// ClientKind::Stateful, ClientStore::entries() for ClientKind::Stateless.
///
/// Lifetime: the C controller keeps its store alive, so this object may
/// outlive the ClientStore object it was made from; once that store is
/// closed every call here throws Error with `SNP_ERR_CLOSED`. Move-only,
/// like ServiceController; a moved-from controller is empty and its calls
/// throw Error with `SNP_ERR_CLOSED`.
class ClientController {
public:
    /// An empty controller (no handle); assign a made one to it.
    ClientController() noexcept = default;
    /// Takes over the handle of `other`, leaving it empty.
    ClientController(ClientController &&other) noexcept = default;
    /// Frees this controller's handle, then takes over `other`'s.
    ClientController &operator=(ClientController &&other) noexcept = default;
    /// Not copyable: one owner per C handle.
    ClientController(const ClientController &) = delete;
    /// Not copyable: one owner per C handle.
    ClientController &operator=(const ClientController &) = delete;
    /// Frees the handle.
    ~ClientController() = default;

    /// A controller over `store`. Throws Error: `SNP_ERR_CLOSED` (an empty
    /// or closed store), `SNP_ERR_INVALID_ARGUMENT` (a value outside the
    /// enums).
    ClientController(ClientStore &store, ClientKind kind,
                     HandlerOrder order = HandlerOrder::RecordAfterHandle)
        : kind_(kind), order_(order) {
        if (!store) {
            throw Error(SNP_ERR_CLOSED,
                        "ClientController: the ClientStore is empty (moved from or closed)");
        }
        snp_client_controller *raw = nullptr;
        check(snp_client_controller_new(store.get(), static_cast<std::int32_t>(kind),
                                        static_cast<std::int32_t>(order), &raw));
        handle_.reset(raw);
    }

    /// True when the controller holds a handle (not moved from).
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /// The C handle (still owned by this object); null when empty.
    snp_client_controller *get() const noexcept { return handle_.get(); }

    /// The kind it was made with.
    ClientKind kind() const noexcept { return kind_; }

    /// The handler order it was made with.
    HandlerOrder order() const noexcept { return order_; }

    /// Event `id` of subscription `name` arrived: Decision::AckDuplicate if
    /// `id` is the id stored for `name` (counted in duplicates()), else
    /// Decision::Handle (under HandlerOrder::RecordBeforeHandle the id is
    /// recorded now). Throws Error: `SNP_ERR_INVALID_ARGUMENT` (name
    /// rules), `SNP_ERR_CLOSED`.
    Decision incoming(std::string_view name, std::int64_t id) {
        std::int32_t decision = 0;
        check(snp_client_controller_incoming(handle(), detail::text_ptr(name), name.size(), id,
                                             &decision));
        switch (decision) {
        case SNP_DECISION_HANDLE:
            return Decision::Handle;
        case SNP_DECISION_ACK_DUPLICATE:
            return Decision::AckDuplicate;
        default:
            throw Error(SNP_ERR_STATE, "ClientController::incoming: unknown decision " +
                                           std::to_string(decision) +
                                           " (a library newer than this header?)");
        }
    }

    /// The application handled event `id` of `name` (under
    /// HandlerOrder::RecordAfterHandle the id is recorded now); then
    /// acknowledge (name, id) to the broker. Throws as incoming().
    void handled(std::string_view name, std::int64_t id) {
        check(snp_client_controller_handled(handle(), detail::text_ptr(name), name.size(), id));
    }

    /// How many duplicates were acknowledged without reaching the
    /// application.
    std::uint64_t duplicates() const {
        std::uint64_t n = 0;
        check(snp_client_controller_duplicates(handle(), &n));
        return n;
    }

private:
    using Handle = std::unique_ptr<snp_client_controller, detail::ClientControllerFree>;

    snp_client_controller *handle() const {
        if (!handle_) {
            throw Error(SNP_ERR_CLOSED, "the ClientController is empty (moved from)");
        }
        return handle_.get();
    }

    Handle handle_;
    ClientKind kind_ = ClientKind::Stateful;
    HandlerOrder order_ = HandlerOrder::RecordAfterHandle;
};

}  // namespace softnet::persistence

#endif  // SOFTNET_PERSISTENCE_HPP
