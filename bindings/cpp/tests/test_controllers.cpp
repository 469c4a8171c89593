// Tests of the C++ delivery controllers (ServiceController, ClientController
// in bindings/cpp/include/softnet/persistence.hpp) against docs/PROTOCOL.md:
// the storage-uid handshake, the strict drain, cache mode, resends, stale
// acks, rejections, disconnects, closed stores, move semantics, and the
// client's duplicate decision in both kinds and orders. Built by
// `make cpp-test` with -Wall -Wextra -Wpedantic -Werror under
// AddressSanitizer and UBSan.

#include <softnet/persistence.hpp>

#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace sp = softnet::persistence;
using std::chrono::milliseconds;

static int checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        ++checks;                                                                    \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

// CHECK_EQ_STR(actual, expected): two std::strings, both printed on failure.
#define CHECK_EQ_STR(actual, expected)                                               \
    do {                                                                             \
        ++checks;                                                                    \
        const std::string a_ = (actual);                                             \
        const std::string e_ = (expected);                                           \
        if (a_ != e_) {                                                              \
            std::fprintf(stderr, "%s:%d: %s\n  is:       [%s]\n  expected: [%s]\n", \
                         __FILE__, __LINE__, #actual, a_.c_str(), e_.c_str());       \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

// CHECK_THROWS(expression, expected snp_status): the expression throws
// sp::Error with that status and a non-empty message.
#define CHECK_THROWS(expr, expected)                                                 \
    do {                                                                             \
        ++checks;                                                                    \
        bool threw_ = false;                                                         \
        try {                                                                        \
            (void)(expr);                                                            \
        } catch (const sp::Error &e_) {                                              \
            threw_ = true;                                                           \
            if (e_.status() != (expected) || std::string(e_.what()).empty()) {       \
                std::fprintf(stderr, "%s:%d: %s threw status %d (%s), expected %d\n", \
                             __FILE__, __LINE__, #expr, (int)e_.status(), e_.what(), \
                             (int)(expected));                                       \
                std::exit(1);                                                        \
            }                                                                        \
        }                                                                            \
        if (!threw_) {                                                               \
            std::fprintf(stderr, "%s:%d: %s did not throw\n", __FILE__, __LINE__, #expr); \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

// The classes are move-only, and moving never throws.
static_assert(!std::is_copy_constructible_v<sp::ServiceController>);
static_assert(!std::is_copy_assignable_v<sp::ServiceController>);
static_assert(std::is_nothrow_move_constructible_v<sp::ServiceController>);
static_assert(std::is_nothrow_move_assignable_v<sp::ServiceController>);
static_assert(std::is_nothrow_default_constructible_v<sp::ServiceController>);
static_assert(!std::is_copy_constructible_v<sp::ClientController>);
static_assert(!std::is_copy_assignable_v<sp::ClientController>);
static_assert(std::is_nothrow_move_constructible_v<sp::ClientController>);
static_assert(std::is_nothrow_move_assignable_v<sp::ClientController>);
static_assert(std::is_nothrow_default_constructible_v<sp::ClientController>);
// The store is not a timeout: the constructor is explicit.
static_assert(!std::is_convertible_v<sp::ServiceStore &, sp::ServiceController>);
static_assert(std::is_same_v<sp::ServiceController::Output, sp::ServiceOutput>);
static_assert(std::variant_size_v<sp::ServiceOutput> == 3);

namespace {

const sp::Uuid kServiceUid = *sp::Uuid::parse("67e55044-10b1-426f-9247-bb680e5fe0c8");
const sp::Uuid kOtherUid = *sp::Uuid::parse("0badc0de-0000-4000-8000-000000000001");

// A directory under /tmp, removed (with its contents) at the end.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/snp-cpp-ctl-XXXXXX";
        const char *made = mkdtemp(tmpl);
        if (made == nullptr) {
            std::perror("mkdtemp");
            std::exit(1);
        }
        path = made;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
};

sp::ServiceOptions file_options(const std::string &dir) {
    sp::ServiceOptions o;
    o.directory = dir;
    o.service_uid = kServiceUid;
    return o;
}

sp::ClientOptions client_file_options(const std::string &dir) {
    sp::ClientOptions o;
    o.level = sp::Level::File;
    o.directory = dir;
    o.server_address = "broker.local:7778";
    o.client_key = "gateway-1";
    return o;
}

// Records failure reports (thread-safe).
struct Reports {
    std::mutex mutex;
    std::vector<sp::Failure> list;
    sp::FailureCallback callback() {
        return [this](const sp::Failure &f) {
            std::lock_guard<std::mutex> lock(mutex);
            list.push_back(f);
        };
    }
    std::size_t count(sp::FailureKind kind) {
        std::lock_guard<std::mutex> lock(mutex);
        std::size_t n = 0;
        for (const auto &f : list) {
            n += f.kind == kind ? 1 : 0;
        }
        return n;
    }
};

// A RecordLog in memory whose state outlives the store (like a file), and
// that can be made to fail (a level-2 failure: fallback to level 1).
struct LogState {
    std::map<std::uint64_t, std::vector<std::uint8_t>> records;
    std::vector<std::uint8_t> meta;
    std::uint64_t next_seq = 1;
    bool fail_appends = false;
};

class VectorLog : public sp::RecordLog {
public:
    explicit VectorLog(std::shared_ptr<LogState> state) : s_(std::move(state)) {}
    std::uint64_t append(const std::uint8_t *payload, std::size_t len) override {
        if (s_->fail_appends) {
            throw std::runtime_error("disk on fire");
        }
        s_->records[s_->next_seq] = std::vector<std::uint8_t>(payload, payload + len);
        return s_->next_seq++;
    }
    void remove(std::uint64_t seq, sp::RemovalReason) override { s_->records.erase(seq); }
    std::vector<std::uint8_t> read(std::uint64_t seq) override { return s_->records.at(seq); }
    void scan(const sp::RecordVisitor &visit) override {
        for (const auto &r : s_->records) {
            visit(r.first, r.second.data(), r.second.size());
        }
    }
    void clear() override { s_->records.clear(); }
    std::vector<std::uint8_t> metadata() override { return s_->meta; }
    void set_metadata(const std::uint8_t *meta, std::size_t len) override {
        s_->meta.assign(meta, meta + len);
    }

private:
    std::shared_ptr<LogState> s_;
};

// One output as text: "uid <storage uid>", "send <name>:<args>" or
// "rejected <name>:<args>".
std::string describe(const sp::ServiceOutput &o) {
    if (const auto *s = std::get_if<sp::SendEvent>(&o)) {
        return "send " + s->event.name + ":" + s->event.args_string();
    }
    if (const auto *u = std::get_if<sp::SendStorageUid>(&o)) {
        return "uid " + u->storage_uid.to_string();
    }
    const auto &r = std::get<sp::Rejected>(o);
    return "rejected " + r.event.name + ":" + r.event.args_string();
}

// Outputs as text, joined with ", ".
std::string describe(const std::vector<sp::ServiceOutput> &outputs) {
    std::string s;
    for (const auto &o : outputs) {
        if (!s.empty()) {
            s += ", ";
        }
        s += describe(o);
    }
    return s;
}

// What the controller hands out now, as text.
std::string drained(sp::ServiceController &ctl) { return describe(ctl.drain_outputs()); }

std::string uid_line(const sp::Uuid &u) { return "uid " + u.to_string(); }

// The event of a SendEvent output (the check fails for another kind).
sp::StoredEvent sent_event(const sp::ServiceOutput &o) {
    const auto *s = std::get_if<sp::SendEvent>(&o);
    CHECK(s != nullptr);
    return s->event;
}

// ---------------------------------------------------------------------------
// Service controller
// ---------------------------------------------------------------------------

// 2.1: the broker remembers no storage uid: ours is sent, then the drain.
// Nothing is sent before online.
void test_handshake_broker_remembers_none() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    CHECK(static_cast<bool>(ctl));
    CHECK(ctl.get() != nullptr);
    const sp::ServiceControllerStats fresh = ctl.stats();
    CHECK(!fresh.online && fresh.in_flight == 0 && fresh.stale_acks == 0 && fresh.rejected == 0);
    CHECK(!ctl.next_output().has_value());
    CHECK(!ctl.next_deadline().has_value());

    const sp::Uuid a1 = ctl.raise(sp::EventKind::Queueing, "A", "1");
    CHECK(!a1.is_nil());
    CHECK(!ctl.next_output().has_value());  // offline: stored, not sent
    ctl.connected();
    ctl.raise(sp::EventKind::Queueing, "B", "1");
    CHECK(ctl.drain_outputs().empty());  // connected, not online: not sent
    CHECK(!ctl.stats().online);
    CHECK(store.stats().pending_events == 2);

    ctl.online(std::nullopt);
    // next_output one at a time: the storage uid first, then the oldest.
    auto first = ctl.next_output();
    CHECK(first.has_value());
    const auto *uid = std::get_if<sp::SendStorageUid>(&*first);
    CHECK(uid != nullptr && uid->storage_uid == store.storage_uid());
    auto second = ctl.next_output();
    CHECK(second.has_value());
    const sp::StoredEvent ev = sent_event(*second);
    CHECK(ev.uid == a1 && ev.kind == sp::EventKind::Queueing && ev.name == "A");
    CHECK(ev.args_string() == "1" && !ev.client_id.has_value());
    CHECK(!ctl.next_output().has_value());
    const sp::ServiceControllerStats s = ctl.stats();
    CHECK(s.online && s.in_flight == 1);
}

// 2.1: the broker remembers our uid: nothing to tell, the drain at once.
void test_handshake_broker_has_our_uid() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    ctl.raise(sp::EventKind::Queueing, "A", "1");
    ctl.connected();
    ctl.online(store.storage_uid());
    CHECK_EQ_STR(drained(ctl), "send A:1");
    CHECK(store.stats().invalidated_events == 0);

    // No events at all: nothing to send but nothing waits either.
    sp::ServiceStore empty = sp::ServiceStore::open_memory();
    sp::ServiceController idle(empty);
    idle.connected();
    idle.online(empty.storage_uid());
    CHECK(idle.drain_outputs().empty());
    CHECK(idle.stats().online && idle.stats().in_flight == 0);
    CHECK(empty.mode() == sp::Mode::Cache);  // drained: cache mode
}

// 2.1: the broker remembers another uid: the events stored before this
// open are ancient (discarded), those raised since are kept, and our uid is
// sent. With our uid instead, the events of the earlier run are delivered.
void test_handshake_broker_has_another_uid() {
    TempDir dir;
    sp::Uuid storage;
    {
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        storage = store.storage_uid();
        store.raise(sp::EventKind::Queueing, "old", "1");
        store.raise(sp::EventKind::Queueing, "old", "2");
    }
    {
        // Another uid: old:1 and old:2 go, new:1 stays.
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        CHECK(store.storage_uid() == storage);
        CHECK(store.stats().pending_events == 2);
        sp::ServiceController ctl(store);
        ctl.raise(sp::EventKind::Queueing, "new", "1");
        ctl.connected();
        ctl.online(kOtherUid);
        CHECK_EQ_STR(drained(ctl), uid_line(storage) + ", send new:1");
        CHECK(store.stats().invalidated_events == 2);
        CHECK(store.stats().pending_events == 1);
        CHECK(store.storage_uid() == storage);  // the uid is kept
    }
    {
        // The same file, our uid: the earlier run's new:1 is delivered.
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        store.raise(sp::EventKind::Queueing, "later", "1");
        sp::ServiceController ctl(store);
        ctl.connected();
        ctl.online(storage);
        CHECK_EQ_STR(drained(ctl), "send new:1");
        CHECK(store.stats().invalidated_events == 0);
        CHECK(store.stats().pending_events == 2);
    }
}

// 2.1 and 2.9: a level-2 failure gives the store a new storage uid. The new
// uid is told only once nothing stored under the old one is in flight; a
// broker that still remembers the previous uid invalidates nothing.
void test_new_storage_uid_after_fallback() {
    auto state = std::make_shared<LogState>();
    Reports reports;
    sp::ServiceOptions o;
    o.on_failure = reports.callback();
    sp::ServiceStore store = sp::ServiceStore::open_custom(std::make_unique<VectorLog>(state), o);
    CHECK(store.stats().level == sp::Level::File);
    const sp::Uuid old_uid = store.storage_uid();
    sp::ServiceController ctl(store);
    const sp::Uuid e1 = ctl.raise(sp::EventKind::Queueing, "E", "1");
    ctl.connected();
    ctl.online(old_uid);
    CHECK_EQ_STR(drained(ctl), "send E:1");

    state->fail_appends = true;
    ctl.raise(sp::EventKind::Queueing, "E", "2");  // falls back to level 1
    CHECK(reports.count(sp::FailureKind::Fallback) == 1);
    CHECK(store.stats().level == sp::Level::Memory);
    const sp::Uuid new_uid = store.storage_uid();
    CHECK(new_uid != old_uid);
    CHECK(store.previous_storage_uid() == std::optional<sp::Uuid>(old_uid));
    CHECK(ctl.drain_outputs().empty());  // E:1 still in flight under the old uid

    ctl.ack(e1);
    CHECK_EQ_STR(drained(ctl), uid_line(new_uid) + ", send E:2");

    // Reconnect; the broker never got the new uid: it remembers the
    // previous one, which invalidates nothing; the new uid is told again.
    ctl.disconnected();
    ctl.connected();
    ctl.online(old_uid);
    CHECK_EQ_STR(drained(ctl), uid_line(new_uid) + ", send E:2");
    CHECK(store.stats().invalidated_events == 0);
}

// 2.2 and 2.3: the backlog strictly in raise order, one event in flight;
// raises during the drain queue behind it; then one event in flight per
// name, a newer Replacing instance superseding the pending one.
void test_strict_drain_then_cache_mode() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    const sp::Uuid a1 = ctl.raise(sp::EventKind::Queueing, "A", "1");
    const sp::Uuid a2 = ctl.raise(sp::EventKind::Queueing, "A", "2");
    const sp::Uuid b1 = ctl.raise(sp::EventKind::Replacing, "B", "1");
    const sp::Uuid p1 = ctl.raise_private("P", "1", 42);
    ctl.connected();
    ctl.online(store.storage_uid());
    std::vector<sp::ServiceOutput> out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == a1);
    CHECK(ctl.stats().in_flight == 1);

    const sp::Uuid c1 = ctl.raise(sp::EventKind::Queueing, "C", "1");  // during the drain
    CHECK(ctl.drain_outputs().empty());
    CHECK(store.mode() == sp::Mode::Storage);

    ctl.ack(a1);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == a2);
    ctl.ack(a2);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == b1);
    CHECK(sent_event(out[0]).kind == sp::EventKind::Replacing);
    ctl.ack(b1);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1);
    const sp::StoredEvent private_event = sent_event(out[0]);
    CHECK(private_event.uid == p1 && private_event.kind == sp::EventKind::Private);
    CHECK(private_event.client_id.has_value() && *private_event.client_id == 42);
    CHECK(ctl.stats().in_flight == 1);
    ctl.ack(p1);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == c1);
    ctl.ack(c1);
    CHECK(ctl.drain_outputs().empty());
    CHECK(store.mode() == sp::Mode::Cache);
    CHECK(store.stats().pending_events == 0);
    CHECK(ctl.stats().in_flight == 0 && ctl.stats().stale_acks == 0);

    // Cache mode: names in parallel, one in flight each.
    const sp::Uuid a3 = ctl.raise(sp::EventKind::Queueing, "A", "3");
    CHECK_EQ_STR(drained(ctl), "send A:3");
    const sp::Uuid b2 = ctl.raise(sp::EventKind::Queueing, "B", "2");
    CHECK_EQ_STR(drained(ctl), "send B:2");
    ctl.raise(sp::EventKind::Queueing, "A", "4");
    CHECK(ctl.drain_outputs().empty());  // waits for A:3's ack
    CHECK(ctl.stats().in_flight == 2);
    ctl.ack(b2);
    CHECK(ctl.drain_outputs().empty());
    ctl.ack(a3);
    out = ctl.drain_outputs();
    CHECK_EQ_STR(describe(out), "send A:4");
    ctl.ack(sent_event(out[0]).uid);

    // Replacing: the one in flight and the newest pending instance.
    const sp::Uuid t1 = ctl.raise(sp::EventKind::Replacing, "T", "20");
    CHECK_EQ_STR(drained(ctl), "send T:20");
    ctl.raise(sp::EventKind::Replacing, "T", "21");
    ctl.raise(sp::EventKind::Replacing, "T", "22");
    CHECK(ctl.drain_outputs().empty());
    CHECK(store.stats().superseded_events == 1);
    ctl.ack(t1);
    out = ctl.drain_outputs();
    CHECK_EQ_STR(describe(out), "send T:22");
    // Replacing-null shares the Replacing name's pipeline.
    ctl.raise(sp::EventKind::ReplacingNull, "T");
    CHECK(ctl.drain_outputs().empty());
    ctl.ack(sent_event(out[0]).uid);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).kind == sp::EventKind::ReplacingNull);
    ctl.ack(sent_event(out[0]).uid);
    CHECK(store.stats().pending_events == 0);
    CHECK(ctl.stats().stale_acks == 0);
}

// 2.5: an event waits resend_timeout for its ack, then tick sends it again
// with the same uid; overdue events oldest first; nothing while offline.
void test_resend_after_timeout() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store, milliseconds(1000));
    ctl.tick(milliseconds(10000));
    const sp::Uuid a1 = ctl.raise(sp::EventKind::Queueing, "A", "1");
    const sp::Uuid b1 = ctl.raise(sp::EventKind::Queueing, "B", "1");
    CHECK(!ctl.next_deadline().has_value());  // nothing in flight offline
    ctl.connected();
    ctl.online(store.storage_uid());
    CHECK_EQ_STR(drained(ctl), "send A:1");
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(milliseconds(11000)));

    ctl.tick(milliseconds(10999));
    CHECK(ctl.drain_outputs().empty());
    ctl.tick(milliseconds(11000));
    std::vector<sp::ServiceOutput> out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == a1);  // the same uid
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(milliseconds(12000)));
    CHECK(ctl.stats().in_flight == 1);

    ctl.ack(a1);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == b1);
    // Sent at the controller's time, the last tick (11000).
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(milliseconds(12000)));
    ctl.tick(milliseconds(12500));
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == b1);
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(milliseconds(13500)));
    ctl.ack(b1);
    CHECK(ctl.drain_outputs().empty());
    CHECK(!ctl.next_deadline().has_value());
    CHECK(store.mode() == sp::Mode::Cache);

    // Two names in flight, both overdue: resent oldest first.
    ctl.tick(milliseconds(20000));
    const sp::Uuid x1 = ctl.raise(sp::EventKind::Queueing, "X", "1");
    ctl.tick(milliseconds(20500));
    const sp::Uuid y1 = ctl.raise(sp::EventKind::Queueing, "Y", "1");
    CHECK_EQ_STR(drained(ctl), "send X:1, send Y:1");
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(milliseconds(21000)));
    ctl.tick(milliseconds(22000));
    out = ctl.drain_outputs();
    CHECK(out.size() == 2 && sent_event(out[0]).uid == x1 && sent_event(out[1]).uid == y1);
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(milliseconds(23000)));

    // Offline: nothing in flight, nothing resent.
    ctl.disconnected();
    CHECK(!ctl.next_deadline().has_value());
    ctl.tick(milliseconds(100000));
    CHECK(ctl.drain_outputs().empty());

    // Negative times and non-positive timeouts are refused.
    CHECK_THROWS(ctl.tick(milliseconds(-1)), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(sp::ServiceController(store, milliseconds(0)), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(sp::ServiceController(store, milliseconds(-5)), SNP_ERR_INVALID_ARGUMENT);
}

// The default timeout is 30 s. Before the first tick the time is 0; the
// first tick moves the deadlines of what was sent before it by its time
// (the clock's origin is the caller's). tick with a steady_clock time point
// uses its time_since_epoch.
void test_default_timeout_and_clock_origin() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    ctl.connected();
    ctl.online(store.storage_uid());
    const sp::Uuid a = ctl.raise(sp::EventKind::Queueing, "A", "1");
    CHECK_EQ_STR(drained(ctl), "send A:1");
    CHECK(ctl.next_deadline() == std::optional<milliseconds>(std::chrono::seconds(30)));
    ctl.tick(std::chrono::hours(1));  // the first tick: not overdue, moved
    CHECK(ctl.drain_outputs().empty());
    CHECK(ctl.next_deadline() ==
          std::optional<milliseconds>(std::chrono::hours(1) + std::chrono::seconds(30)));
    ctl.tick(std::chrono::hours(1) + milliseconds(29999));
    CHECK(ctl.drain_outputs().empty());
    ctl.tick(std::chrono::hours(1) + std::chrono::seconds(30));  // converts to milliseconds
    CHECK_EQ_STR(drained(ctl), "send A:1");
    ctl.ack(a);
    CHECK(!ctl.next_deadline().has_value());

    sp::ServiceStore store2 = sp::ServiceStore::open_memory();
    sp::ServiceController timed(store2, std::chrono::seconds(2));
    using std::chrono::steady_clock;
    const steady_clock::time_point t0{std::chrono::hours(5)};
    timed.tick(t0 + std::chrono::microseconds(999));  // rounded down to 5 h
    timed.connected();
    timed.online(std::nullopt);
    CHECK_EQ_STR(drained(timed), uid_line(store2.storage_uid()));
    timed.raise(sp::EventKind::Queueing, "A", "1");
    CHECK_EQ_STR(drained(timed), "send A:1");
    const std::optional<milliseconds> d = timed.next_deadline();
    CHECK(d.has_value());
    CHECK(steady_clock::time_point(*d) == t0 + std::chrono::seconds(2));
    timed.tick(steady_clock::time_point(*d) - std::chrono::milliseconds(1));
    CHECK(timed.drain_outputs().empty());
    timed.tick(steady_clock::time_point(*d));
    CHECK_EQ_STR(drained(timed), "send A:1");
}

// 2.4: acks other than for the event in flight are ignored and counted.
void test_stale_acks() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    const sp::Uuid a1 = ctl.raise(sp::EventKind::Queueing, "A", "1");
    const sp::Uuid b1 = ctl.raise(sp::EventKind::Queueing, "B", "1");
    ctl.connected();
    ctl.online(store.storage_uid());
    CHECK_EQ_STR(drained(ctl), "send A:1");

    ctl.ack(b1);  // pending but not in flight
    CHECK(ctl.stats().stale_acks == 1);
    ctl.ack(kOtherUid);  // unknown
    CHECK(ctl.stats().stale_acks == 2);
    CHECK(ctl.drain_outputs().empty());
    CHECK(ctl.stats().in_flight == 1);
    CHECK(store.stats().pending_events == 2);

    ctl.ack(a1);
    CHECK_EQ_STR(drained(ctl), "send B:1");
    ctl.ack(a1);  // repeated
    CHECK(ctl.stats().stale_acks == 3);
    ctl.rejected(kOtherUid);  // a rejection not in flight: like a stale ack
    const sp::ServiceControllerStats s = ctl.stats();
    CHECK(s.stale_acks == 4 && s.rejected == 0 && s.in_flight == 1);
    CHECK(ctl.drain_outputs().empty());

    // An ack arriving after the disconnect is stale; B:1 is sent again.
    ctl.disconnected();
    ctl.ack(b1);
    CHECK(ctl.stats().stale_acks == 5);
    CHECK(store.stats().pending_events == 1);
    ctl.connected();
    ctl.online(store.storage_uid());
    std::vector<sp::ServiceOutput> out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == b1);
    ctl.ack(b1);
    CHECK(ctl.stats().stale_acks == 5);
    CHECK(store.stats().pending_events == 0);
}

// 2.7: a rejected event is dropped, handed out as Rejected, counted, and
// the next one is sent; in storage and in cache mode.
void test_rejection() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    const sp::Uuid bad = ctl.raise(sp::EventKind::Queueing, "Bad", "x");
    const sp::Uuid good = ctl.raise(sp::EventKind::Queueing, "Good", "y");
    ctl.connected();
    ctl.online(store.storage_uid());
    CHECK_EQ_STR(drained(ctl), "send Bad:x");
    ctl.rejected(bad);
    std::vector<sp::ServiceOutput> out = ctl.drain_outputs();
    CHECK_EQ_STR(describe(out), "rejected Bad:x, send Good:y");
    const auto *r = std::get_if<sp::Rejected>(&out[0]);
    CHECK(r != nullptr && r->event.uid == bad && r->event.kind == sp::EventKind::Queueing);
    CHECK(ctl.stats().rejected == 1 && ctl.stats().stale_acks == 0);
    CHECK(store.stats().pending_events == 1);
    ctl.ack(good);
    CHECK(store.mode() == sp::Mode::Cache);

    // Cache mode: later events of the name are sent and refused one by one.
    const sp::Uuid bad2 = ctl.raise(sp::EventKind::Queueing, "Bad", "2");
    const sp::Uuid bad3 = ctl.raise(sp::EventKind::Queueing, "Bad", "3");
    CHECK_EQ_STR(drained(ctl), "send Bad:2");
    ctl.rejected(bad2);
    // PROTOCOL 2.7 (and storage mode above): Rejected, then the next send.
    CHECK_EQ_STR(drained(ctl), "rejected Bad:2, send Bad:3");
    ctl.rejected(bad3);
    CHECK_EQ_STR(drained(ctl), "rejected Bad:3");
    ctl.rejected(bad3);  // again: not in flight any more
    const sp::ServiceControllerStats s = ctl.stats();
    CHECK(s.rejected == 3 && s.stale_acks == 1 && s.in_flight == 0);
    CHECK(store.stats().pending_events == 0);
}

// 2.8: after a disconnect the events in flight are sent again first, one at
// a time in the order first sent, then the drain from the oldest pending;
// the handshake runs again.
void test_disconnect_resends_in_flight_first() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    ctl.connected();
    ctl.online(std::nullopt);
    CHECK_EQ_STR(drained(ctl), uid_line(store.storage_uid()));
    CHECK(store.mode() == sp::Mode::Cache);

    const sp::Uuid a1 = ctl.raise(sp::EventKind::Queueing, "A", "1");
    const sp::Uuid a2 = ctl.raise(sp::EventKind::Queueing, "A", "2");
    const sp::Uuid b1 = ctl.raise(sp::EventKind::Queueing, "B", "1");
    CHECK_EQ_STR(drained(ctl), "send A:1, send B:1");  // A:2 waits for A:1
    CHECK(ctl.stats().in_flight == 2);

    ctl.disconnected();
    sp::ServiceControllerStats s = ctl.stats();
    CHECK(!s.online && s.in_flight == 0);
    CHECK(!ctl.next_deadline().has_value());
    const sp::Uuid c1 = ctl.raise(sp::EventKind::Queueing, "C", "1");  // offline: stored
    CHECK(ctl.drain_outputs().empty());
    CHECK(store.stats().pending_events == 4);

    ctl.connected();
    CHECK(ctl.drain_outputs().empty());
    ctl.online(std::nullopt);  // the broker forgot us: the uid again first
    std::vector<sp::ServiceOutput> out = ctl.drain_outputs();
    CHECK(out.size() == 2);
    CHECK_EQ_STR(describe(out[0]), uid_line(store.storage_uid()));
    CHECK(sent_event(out[1]).uid == a1);
    CHECK(ctl.stats().in_flight == 1);  // one at a time
    ctl.ack(a1);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == b1);  // B:1 before the older A:2
    ctl.ack(b1);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == a2);  // then the drain
    ctl.ack(a2);
    out = ctl.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == c1);
    ctl.ack(c1);
    CHECK(ctl.drain_outputs().empty());
    CHECK(store.mode() == sp::Mode::Cache);
    CHECK(store.stats().pending_events == 0);
    CHECK(ctl.stats().stale_acks == 0);

    // Storage mode: the event in flight is the oldest, sent again first
    // with its uid.
    sp::ServiceStore store2 = sp::ServiceStore::open_memory();
    sp::ServiceController ctl2(store2);
    const sp::Uuid d1 = ctl2.raise(sp::EventKind::Queueing, "D", "1");
    ctl2.raise(sp::EventKind::Queueing, "D", "2");
    ctl2.connected();
    ctl2.online(store2.storage_uid());
    CHECK_EQ_STR(drained(ctl2), "send D:1");
    ctl2.disconnected();
    CHECK(store2.mode() == sp::Mode::Storage);
    ctl2.connected();
    ctl2.online(store2.storage_uid());
    out = ctl2.drain_outputs();
    CHECK(out.size() == 1 && sent_event(out[0]).uid == d1);
}

// Raise errors come through the controller as from the store.
void test_raise_errors() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, ""), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, std::string_view()), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, "1abc"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, std::string(257, 'n')),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, "big", std::string(2049, 'x')),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(sp::EventKind::ReplacingNull, "n", "args"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(sp::EventKind::Private, "p", "x"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(ctl.raise(static_cast<sp::EventKind>(3), "k"), SNP_ERR_INVALID_ARGUMENT);
    CHECK(store.stats().pending_events == 0);
    const std::uint8_t raw[3] = {0, 1, 255};
    ctl.raise(sp::EventKind::Queueing, "raw", raw, sizeof raw);
    ctl.raise(sp::EventKind::Queueing, "vec", std::vector<std::uint8_t>{7});
    ctl.raise(sp::EventKind::Queueing, "none", nullptr, 0);
    ctl.raise_private("p", std::vector<std::uint8_t>{1, 2}, -3);
    CHECK(store.stats().pending_events == 4);

    // Reject-new: a full store refuses the raise.
    sp::ServiceOptions o;
    o.memory_capacity = 4096;
    o.overflow = sp::Overflow::RejectNew;
    sp::ServiceStore small = sp::ServiceStore::open_memory(o);
    sp::ServiceController full(small);
    const std::string args(2000, 'a');
    bool refused = false;
    for (int i = 0; i < 10 && !refused; ++i) {
        try {
            full.raise(sp::EventKind::Queueing, "fill", args);
        } catch (const sp::Error &e) {
            CHECK(e.status() == SNP_ERR_STORAGE_FULL);
            refused = true;
        }
    }
    CHECK(refused);
    CHECK(small.stats().rejected_events == 1);
}

// A failure callback of the store must not call its controller: such a
// call is refused with SNP_ERR_STATE (no deadlock).
void test_callback_calling_the_controller_is_refused() {
    std::mutex mutex;
    std::vector<snp_status> statuses;
    sp::ServiceController *target = nullptr;
    sp::ServiceOptions o;
    o.memory_capacity = 4096;  // drop-oldest: a capacity-drop report
    o.on_failure = [&](const sp::Failure &) {
        std::lock_guard<std::mutex> lock(mutex);
        if (target == nullptr) {
            return;
        }
        try {
            (void)target->stats();
            statuses.push_back(SNP_OK);
        } catch (const sp::Error &e) {
            statuses.push_back(e.status());
        }
    };
    sp::ServiceStore store = sp::ServiceStore::open_memory(o);
    sp::ServiceController ctl(store);
    {
        std::lock_guard<std::mutex> lock(mutex);
        target = &ctl;
    }
    const std::string args(2000, 'a');
    for (int i = 0; i < 6; ++i) {
        ctl.raise(sp::EventKind::Queueing, "fill", args);
    }
    CHECK(store.stats().dropped_events > 0);
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(!statuses.empty());
    for (snp_status st : statuses) {
        CHECK(st == SNP_ERR_STATE);
    }
    target = nullptr;
}

// The controller keeps the C store alive: once the C++ store is closed (or
// destroyed) its calls throw SNP_ERR_CLOSED, and the controller may be
// destroyed afterwards (ASan checks the callback and backend are no longer
// touched).
void test_closed_store() {
    {
        sp::ServiceStore store = sp::ServiceStore::open_memory();
        sp::ServiceController ctl(store);
        const sp::Uuid a = ctl.raise(sp::EventKind::Queueing, "A", "1");
        ctl.connected();
        ctl.online(std::nullopt);  // outputs waiting
        store.close();
        CHECK(!store);
        CHECK(static_cast<bool>(ctl));  // still a handle, over a closed store
        CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, "A", "2"), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.raise_private("p", "x", 1), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.connected(), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.online(std::nullopt), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.ack(a), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.rejected(a), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.disconnected(), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.tick(milliseconds(1)), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.next_output(), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.drain_outputs(), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.next_deadline(), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.stats(), SNP_ERR_CLOSED);
        // An empty (closed) store makes no controller.
        CHECK_THROWS(sp::ServiceController(store), SNP_ERR_CLOSED);
        sp::ServiceStore never_opened;
        CHECK_THROWS(sp::ServiceController(never_opened), SNP_ERR_CLOSED);
    }
    {
        // The controller outlives a level-2 store with a callback and a
        // custom backend, which the C++ store frees as it goes.
        auto state = std::make_shared<LogState>();
        sp::ServiceController ctl;
        {
            Reports reports;
            sp::ServiceOptions o;
            o.on_failure = reports.callback();
            sp::ServiceStore store =
                sp::ServiceStore::open_custom(std::make_unique<VectorLog>(state), o);
            ctl = sp::ServiceController(store, milliseconds(500));
            ctl.raise(sp::EventKind::Queueing, "A", "1");
            ctl.connected();
            ctl.online(store.storage_uid());
            CHECK_EQ_STR(drained(ctl), "send A:1");
            CHECK(state->records.size() == 1);
        }
        CHECK(state.use_count() == 1);  // the backend is gone
        CHECK_THROWS(ctl.raise(sp::EventKind::Queueing, "A", "2"), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.tick(milliseconds(10000)), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.stats(), SNP_ERR_CLOSED);
        CHECK(state->records.size() == 1);  // still pending in the "file"
    }
    {
        // A file store closed under a controller releases its lock: it can
        // be opened again while the old controller lives.
        TempDir dir;
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        sp::ServiceController ctl(store);
        ctl.raise(sp::EventKind::Queueing, "A", "1");
        store.close();
        sp::ServiceStore again = sp::ServiceStore::open(file_options(dir.path));
        CHECK(again.stats().pending_events == 1);
        CHECK_THROWS(ctl.stats(), SNP_ERR_CLOSED);
    }
    {
        sp::ClientStore store = sp::ClientStore::open_memory();
        sp::ClientController ctl(store, sp::ClientKind::Stateful);
        CHECK(ctl.incoming("temp", 1) == sp::Decision::Handle);
        store.close();
        CHECK_THROWS(ctl.incoming("temp", 1), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.handled("temp", 1), SNP_ERR_CLOSED);
        CHECK_THROWS(ctl.duplicates(), SNP_ERR_CLOSED);
        CHECK_THROWS(sp::ClientController(store, sp::ClientKind::Stateful), SNP_ERR_CLOSED);
    }
    {
        sp::ClientController ctl;
        {
            sp::ClientStore store = sp::ClientStore::open_memory();
            ctl = sp::ClientController(store, sp::ClientKind::Stateless,
                                       sp::HandlerOrder::RecordBeforeHandle);
        }
        CHECK_THROWS(ctl.incoming("temp", 1), SNP_ERR_CLOSED);
    }
}

// Move-only RAII: a moved-from controller is empty (calls throw
// SNP_ERR_CLOSED) and safe to destroy; move-assignment frees the old handle
// (LeakSanitizer checks); moving the store does not disturb the controller.
void test_move_semantics() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController a(store);
    a.raise(sp::EventKind::Queueing, "A", "1");
    snp_service_controller *raw = a.get();
    sp::ServiceController b(std::move(a));
    CHECK(!a && a.get() == nullptr);
    CHECK(b && b.get() == raw);
    CHECK_THROWS(a.raise(sp::EventKind::Queueing, "A", "2"), SNP_ERR_CLOSED);
    CHECK_THROWS(a.connected(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.online(std::nullopt), SNP_ERR_CLOSED);
    CHECK_THROWS(a.ack(sp::Uuid()), SNP_ERR_CLOSED);
    CHECK_THROWS(a.rejected(sp::Uuid()), SNP_ERR_CLOSED);
    CHECK_THROWS(a.disconnected(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.tick(milliseconds(0)), SNP_ERR_CLOSED);
    CHECK_THROWS(a.next_output(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.drain_outputs(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.next_deadline(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.stats(), SNP_ERR_CLOSED);

    // The store moves; the controller goes on over the same C store.
    sp::ServiceStore moved_store(std::move(store));
    b.connected();
    b.online(moved_store.storage_uid());
    CHECK_EQ_STR(drained(b), "send A:1");

    // Move-assign over a live controller (of another store): it is freed.
    sp::ServiceStore other = sp::ServiceStore::open_memory();
    sp::ServiceController c(other);
    c.raise(sp::EventKind::Queueing, "Z", "1");
    c = std::move(b);
    CHECK(!b && c.get() == raw);
    CHECK(c.stats().online && c.stats().in_flight == 1);
    sp::ServiceController d;
    CHECK(!d);
    CHECK_THROWS(d.stats(), SNP_ERR_CLOSED);
    d = std::move(c);
    CHECK(d.stats().in_flight == 1);
    // a, b, c are moved from: destroyed at the end of the scope.

    sp::ClientStore cstore = sp::ClientStore::open_memory();
    sp::ClientController x(cstore, sp::ClientKind::Stateless, sp::HandlerOrder::RecordBeforeHandle);
    CHECK(x.incoming("n", 1) == sp::Decision::Handle);
    sp::ClientController y(std::move(x));
    CHECK(!x && x.get() == nullptr && y);
    CHECK_THROWS(x.incoming("n", 1), SNP_ERR_CLOSED);
    CHECK_THROWS(x.handled("n", 1), SNP_ERR_CLOSED);
    CHECK_THROWS(x.duplicates(), SNP_ERR_CLOSED);
    CHECK(y.kind() == sp::ClientKind::Stateless);
    CHECK(y.order() == sp::HandlerOrder::RecordBeforeHandle);
    CHECK(y.incoming("n", 1) == sp::Decision::AckDuplicate);
    sp::ClientController z(cstore, sp::ClientKind::Stateful);
    z = std::move(y);
    CHECK(z.duplicates() == 1 && z.kind() == sp::ClientKind::Stateless);
    sp::ClientController empty;
    CHECK(!empty);
    CHECK_THROWS(empty.duplicates(), SNP_ERR_CLOSED);
}

// Raises from several threads through one controller (the C handle takes
// its lock): every event is sent once, each thread's in its raise order.
void test_concurrent_raises() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    sp::ServiceController ctl(store);
    constexpr int kThreads = 4;
    constexpr int kEach = 25;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&ctl, t] {
            for (int i = 0; i < kEach; ++i) {
                ctl.raise(sp::EventKind::Queueing, "T" + std::to_string(t), std::to_string(i));
            }
        });
    }
    for (auto &th : threads) {
        th.join();
    }
    CHECK(store.stats().pending_events == kThreads * kEach);
    ctl.connected();
    ctl.online(store.storage_uid());
    std::map<std::string, int> next;
    std::set<sp::Uuid> uids;
    int sent = 0;
    for (;;) {
        std::vector<sp::ServiceOutput> out = ctl.drain_outputs();
        if (out.empty()) {
            break;
        }
        CHECK(out.size() == 1);  // the drain: one at a time
        const sp::StoredEvent ev = sent_event(out[0]);
        CHECK(ev.args_string() == std::to_string(next[ev.name]));
        ++next[ev.name];
        CHECK(uids.insert(ev.uid).second);
        ++sent;
        ctl.ack(ev.uid);
    }
    CHECK(sent == kThreads * kEach);
    CHECK(store.stats().pending_events == 0);
    CHECK(ctl.stats().stale_acks == 0);
}

// ---------------------------------------------------------------------------
// Client controller
// ---------------------------------------------------------------------------

// 3.2 in both kinds and both orders: the duplicate decision, when the id is
// recorded, what a failed handler costs, and the duplicates counted.
void test_client_kinds_and_orders() {
    const sp::ClientKind kinds[] = {sp::ClientKind::Stateful, sp::ClientKind::Stateless};
    const sp::HandlerOrder orders[] = {sp::HandlerOrder::RecordAfterHandle,
                                       sp::HandlerOrder::RecordBeforeHandle};
    for (sp::ClientKind kind : kinds) {
        for (sp::HandlerOrder order : orders) {
            const bool before = order == sp::HandlerOrder::RecordBeforeHandle;
            sp::ClientStore store = sp::ClientStore::open_memory();
            sp::ClientController ctl(store, kind, order);
            CHECK(ctl.kind() == kind && ctl.order() == order);
            CHECK(ctl.duplicates() == 0);

            CHECK(ctl.incoming("temp", 1) == sp::Decision::Handle);
            // Recorded before the application sees it, or only once handled.
            CHECK(store.get("temp") == (before ? std::optional<std::int64_t>(1) : std::nullopt));
            ctl.handled("temp", 1);
            CHECK(store.get("temp") == std::optional<std::int64_t>(1));

            // The broker resends 1 (our ack was lost): a duplicate.
            CHECK(ctl.incoming("temp", 1) == sp::Decision::AckDuplicate);
            CHECK(ctl.duplicates() == 1);
            CHECK(store.get("temp") == std::optional<std::int64_t>(1));

            // Subscriptions are independent.
            CHECK(ctl.incoming("door", 1) == sp::Decision::Handle);
            ctl.handled("door", 1);

            // Event 2's handler fails: no handled(), no ack; the broker
            // resends it. At least once: handed again; at most once: not.
            CHECK(ctl.incoming("temp", 2) == sp::Decision::Handle);
            const sp::Decision again = ctl.incoming("temp", 2);
            CHECK(again == (before ? sp::Decision::AckDuplicate : sp::Decision::Handle));
            CHECK(ctl.duplicates() == (before ? 2u : 1u));
            if (!before) {
                ctl.handled("temp", 2);
                CHECK(ctl.incoming("temp", 2) == sp::Decision::AckDuplicate);
                CHECK(ctl.duplicates() == 2);
            }
            CHECK(store.get("temp") == std::optional<std::int64_t>(2));
            // An id other than the stored one is not a duplicate (the store
            // keeps the last id only).
            CHECK(ctl.incoming("temp", 1) == sp::Decision::Handle);
            ctl.handled("temp", 1);
            CHECK(ctl.duplicates() == 2);

            // The stateless hello is the store's entries, by name.
            const auto entries = store.entries();
            CHECK(entries.size() == 2 && entries[0].first == "door" && entries[1].first == "temp");

            // Name rules.
            CHECK_THROWS(ctl.incoming("", 1), SNP_ERR_INVALID_ARGUMENT);
            CHECK_THROWS(ctl.incoming(std::string_view(), 1), SNP_ERR_INVALID_ARGUMENT);
            CHECK_THROWS(ctl.incoming("1bad", 1), SNP_ERR_INVALID_ARGUMENT);
            CHECK_THROWS(ctl.incoming(std::string(257, 'n'), 1), SNP_ERR_INVALID_ARGUMENT);
            CHECK_THROWS(ctl.incoming("\xff", 1), SNP_ERR_INVALID_ARGUMENT);
            CHECK_THROWS(ctl.handled("", 1), SNP_ERR_INVALID_ARGUMENT);
            CHECK(ctl.duplicates() == 2);
        }
    }
    sp::ClientStore store = sp::ClientStore::open_memory();
    CHECK_THROWS(sp::ClientController(store, static_cast<sp::ClientKind>(7)),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(sp::ClientController(store, sp::ClientKind::Stateful,
                                      static_cast<sp::HandlerOrder>(-1)),
                 SNP_ERR_INVALID_ARGUMENT);
    // The default order is record-after-handle.
    sp::ClientController by_default(store, sp::ClientKind::Stateful);
    CHECK(by_default.order() == sp::HandlerOrder::RecordAfterHandle);
    CHECK(by_default.incoming("x", 5) == sp::Decision::Handle);
    CHECK(!store.get("x").has_value());
}

// A level-2 client store reopened (the process restarted between incoming
// and handled): record-after-handle hands the unhandled event again,
// record-before-handle acknowledges it as a duplicate.
void test_client_level2_reopen() {
    TempDir dir;
    {
        sp::ClientStore store = sp::ClientStore::open(client_file_options(dir.path));
        CHECK(store.stats().level == sp::Level::File);
        sp::ClientController ctl(store, sp::ClientKind::Stateful,
                                 sp::HandlerOrder::RecordAfterHandle);
        CHECK(ctl.incoming("temp", 1) == sp::Decision::Handle);
        ctl.handled("temp", 1);
        CHECK(ctl.incoming("temp", 2) == sp::Decision::Handle);
        // Crash before handled("temp", 2): the store and controller go.
    }
    {
        sp::ClientStore store = sp::ClientStore::open(client_file_options(dir.path));
        CHECK(store.get("temp") == std::optional<std::int64_t>(1));
        sp::ClientController ctl(store, sp::ClientKind::Stateful,
                                 sp::HandlerOrder::RecordAfterHandle);
        CHECK(ctl.incoming("temp", 2) == sp::Decision::Handle);  // handed again
        ctl.handled("temp", 2);
        CHECK(ctl.duplicates() == 0);
    }
    {
        sp::ClientStore store = sp::ClientStore::open(client_file_options(dir.path));
        sp::ClientController ctl(store, sp::ClientKind::Stateless,
                                 sp::HandlerOrder::RecordBeforeHandle);
        CHECK(ctl.incoming("temp", 2) == sp::Decision::AckDuplicate);  // handled before
        CHECK(ctl.duplicates() == 1);
        CHECK(ctl.incoming("temp", 3) == sp::Decision::Handle);
        // Crash before the handler ran: at most once, 3 was recorded.
    }
    {
        sp::ClientStore store = sp::ClientStore::open(client_file_options(dir.path));
        CHECK(store.get("temp") == std::optional<std::int64_t>(3));
        sp::ClientController ctl(store, sp::ClientKind::Stateless,
                                 sp::HandlerOrder::RecordBeforeHandle);
        CHECK(ctl.incoming("temp", 3) == sp::Decision::AckDuplicate);  // lost for the app
        CHECK(ctl.duplicates() == 1);
        const auto hello = store.entries();
        CHECK(hello.size() == 1 && hello[0].first == "temp" && hello[0].second == 3);
    }
}

}  // namespace

int main() {
    test_handshake_broker_remembers_none();
    test_handshake_broker_has_our_uid();
    test_handshake_broker_has_another_uid();
    test_new_storage_uid_after_fallback();
    test_strict_drain_then_cache_mode();
    test_resend_after_timeout();
    test_default_timeout_and_clock_origin();
    test_stale_acks();
    test_rejection();
    test_disconnect_resends_in_flight_first();
    test_raise_errors();
    test_callback_calling_the_controller_is_refused();
    test_closed_store();
    test_move_semantics();
    test_concurrent_raises();
    test_client_kinds_and_orders();
    test_client_level2_reopen();
    std::printf("test_controllers: %d checks passed\n", checks);
    return 0;
}
