// Tests of the C++ wrapper (bindings/cpp/include/softnet/persistence.hpp):
// every method, the error statuses, move semantics, the failure callback
// and custom backends. Built by `make cpp-test` with -Wall -Wextra
// -Wpedantic -Werror under AddressSanitizer and UBSan.

#include <softnet/persistence.hpp>

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sp = softnet::persistence;

static int checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        ++checks;                                                                    \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
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

namespace {

std::vector<std::uint8_t> bytes_of(const std::string &s) {
    return std::vector<std::uint8_t>(s.begin(), s.end());
}

bool contains(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}

const sp::Uuid kServiceUid = *sp::Uuid::parse("67e55044-10b1-426f-9247-bb680e5fe0c8");

// A directory under /tmp, removed (with its contents) at the end.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/snp-cpp-test-XXXXXX";
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

void test_version_and_check() {
    CHECK(sp::abi_version() == SNP_ABI_VERSION);
    CHECK(!sp::version().empty());
    CHECK(sp::check(SNP_OK));
    CHECK(!sp::check(SNP_EMPTY));
    // On a fresh thread there is no detailed message: the status text.
    std::thread t([] {
        CHECK_THROWS(sp::check(SNP_ERR_IO), SNP_ERR_IO);
        try {
            sp::check(SNP_ERR_LOCKED);
        } catch (const sp::Error &e) {
            CHECK(std::string(e.what()) == snp_status_str(SNP_ERR_LOCKED));
            CHECK(std::string(e.status_text()) == snp_status_str(SNP_ERR_LOCKED));
        }
    });
    t.join();
}

void test_uuid() {
    sp::Uuid nil;
    CHECK(nil.is_nil());
    CHECK(nil.to_string() == "00000000-0000-0000-0000-000000000000");
    sp::Uuid u;
    for (std::size_t i = 0; i < 16; ++i) {
        u.bytes[i] = static_cast<std::uint8_t>(i * 0x11);
    }
    CHECK(u.to_string() == "00112233-4455-6677-8899-aabbccddeeff");
    auto back = sp::Uuid::parse(u.to_string());
    CHECK(back.has_value());
    CHECK(*back == u);
    CHECK(!(*back != u));
    CHECK(u != nil);
    CHECK(nil < u);
    auto upper = sp::Uuid::parse("00112233-4455-6677-8899-AABBCCDDEEFF");
    CHECK(upper && *upper == u);
    CHECK(kServiceUid.to_string() == "67e55044-10b1-426f-9247-bb680e5fe0c8");
    CHECK(sp::Uuid::from_c(u.to_c()) == u);
    CHECK(!sp::Uuid::parse(""));
    CHECK(!sp::Uuid::parse("00112233-4455-6677-8899-aabbccddeef"));     // short
    CHECK(!sp::Uuid::parse("00112233-4455-6677-8899-aabbccddeeff0"));   // long
    CHECK(!sp::Uuid::parse("00112233+4455-6677-8899-aabbccddeeff"));    // separator
    CHECK(!sp::Uuid::parse("0011223-34455-6677-8899-aabbccddeeff"));    // misplaced
    CHECK(!sp::Uuid::parse("00112233-4455-6677-8899-aabbccddeefg"));    // not hex
    CHECK(!sp::Uuid::parse("001122334455667788990aabbccddeeff000"));    // no hyphens
}

void test_option_defaults_match_c() {
    snp_service_options c;
    snp_service_options_init(&c);
    sp::ServiceOptions s;
    CHECK(static_cast<std::int32_t>(s.level) == c.level);
    CHECK(s.directory.empty() && c.directory == nullptr);
    CHECK(s.service_uid == sp::Uuid::from_c(c.service_uid));
    CHECK(s.file_capacity == c.file_capacity);
    CHECK(s.memory_capacity == c.memory_capacity);
    CHECK(static_cast<std::int32_t>(s.durability) == c.durability);
    CHECK(s.batch_max_ops == c.batch_max_ops);
    CHECK(s.batch_max_delay_ms == c.batch_max_delay_ms);
    CHECK(static_cast<std::int32_t>(s.overflow) == c.overflow);
    CHECK(static_cast<std::int32_t>(s.open_policy) == c.open_policy);
    CHECK(!s.on_failure && c.on_failure == nullptr);

    snp_client_options cc;
    snp_client_options_init(&cc);
    sp::ClientOptions k;
    CHECK(static_cast<std::int32_t>(k.level) == cc.level);
    CHECK(static_cast<std::int32_t>(k.durability) == cc.durability);
    CHECK(k.batch_max_ops == cc.batch_max_ops);
    CHECK(k.batch_max_delay_ms == cc.batch_max_delay_ms);
    CHECK(!k.on_failure && cc.on_failure == nullptr);
}

// Raise, peek, ack; drained means cache mode; peek_name/ack_name; back to
// storage mode. Shared by the level-1 and level-2 tests.
void round_trip(sp::ServiceStore &store) {
    CHECK(store.mode() == sp::Mode::Storage);
    const sp::Uuid a = store.raise(sp::EventKind::Queueing, "door/opened", bytes_of("front"));
    const sp::Uuid b = store.raise(sp::EventKind::Replacing, "temperature", std::string_view("21.5"));
    const std::uint8_t raw[3] = {0, 1, 255};
    const sp::Uuid c = store.raise(sp::EventKind::Queueing, "raw", raw, sizeof raw);
    const sp::Uuid d = store.raise_private("notice", bytes_of("hi"), 42);
    const sp::Uuid e = store.raise(sp::EventKind::ReplacingNull, "alarm");
    CHECK(a != b && b != c && c != d && d != e);
    CHECK(store.stats().pending_events == 5);

    // Every pending event in raise order, nothing changed.
    const std::vector<sp::StoredEvent> all = store.pending();
    CHECK(all.size() == 5);
    CHECK(all.size() == 5 && all[0].uid == a && all[1].uid == b && all[2].uid == c &&
          all[3].uid == d && all[4].uid == e);
    CHECK(all.size() == 5 && all[3].client_id == std::optional<std::int64_t>(42) &&
          all[1].args_string() == "21.5" && all[0].name == "door/opened");
    // Sequence numbers grow in raise order; raise times are the clock's.
    for (std::size_t i = 0; i < all.size(); ++i) {
        CHECK(all[i].raised_at.has_value());
        CHECK(*all[i].raised_at <= std::chrono::system_clock::now());
        CHECK(*all[i].raised_at > std::chrono::system_clock::now() - std::chrono::minutes(1));
        CHECK(i == 0 || all[i].seq > all[i - 1].seq);
    }
    int visited = 0;
    try {
        store.for_each_pending([&visited](const sp::StoredEvent &) {
            if (++visited == 2) {
                throw std::runtime_error("enough");
            }
        });
        CHECK(false);
    } catch (const std::runtime_error &stop) {
        CHECK(std::string(stop.what()) == "enough");
    }
    CHECK(visited == 2);  // the rest were skipped
    CHECK(store.stats().pending_events == 5);

    auto ev = store.peek();
    CHECK(ev.has_value());
    CHECK(ev->uid == a && ev->kind == sp::EventKind::Queueing && ev->name == "door/opened");
    CHECK(ev->args == bytes_of("front") && ev->args_string() == "front");
    CHECK(!ev->client_id.has_value());
    auto again = store.peek();  // the same one until acknowledged
    CHECK(again && again->uid == a);
    store.ack(a);

    ev = store.peek();
    CHECK(ev && ev->uid == b && ev->kind == sp::EventKind::Replacing && ev->args_string() == "21.5");
    store.ack(b);
    ev = store.peek();
    CHECK(ev && ev->uid == c && ev->args == std::vector<std::uint8_t>({0, 1, 255}));
    store.ack(c);
    ev = store.peek();
    CHECK(ev && ev->uid == d && ev->kind == sp::EventKind::Private);
    CHECK(ev->client_id.has_value() && *ev->client_id == 42);
    store.ack(d);
    ev = store.peek();
    CHECK(ev && ev->uid == e && ev->kind == sp::EventKind::ReplacingNull && ev->args.empty());
    store.ack(e);

    CHECK(!store.peek().has_value());
    CHECK(store.mode() == sp::Mode::Cache);
    CHECK(store.stats().mode == sp::Mode::Cache);
    CHECK(store.stats().pending_events == 0);

    // Cache mode: one pipeline per name.
    const sp::Uuid q1 = store.raise(sp::EventKind::Queueing, "q", "1");
    const sp::Uuid q2 = store.raise(sp::EventKind::Queueing, "q", "2");
    const sp::Uuid r1 = store.raise(sp::EventKind::Replacing, "r", "x");
    auto first = store.peek_name(sp::EventKind::Queueing, "q");
    CHECK(first && first->uid == q1 && first->args_string() == "1");
    auto next = store.ack_name(sp::EventKind::Queueing, "q", q1);
    CHECK(next && next->uid == q2 && next->args_string() == "2");
    CHECK(!store.ack_name(sp::EventKind::Queueing, "q", q2).has_value());
    CHECK(!store.peek_name(sp::EventKind::Queueing, "none").has_value());
    CHECK(!store.peek_name(sp::EventKind::Replacing, "q").has_value());  // kind is part of the key

    // Back to storage mode: r is still pending.
    store.set_storage_mode();
    CHECK(store.mode() == sp::Mode::Storage);
    ev = store.peek();
    CHECK(ev && ev->uid == r1 && ev->name == "r");
    store.reset();
    CHECK(store.stats().pending_events == 0);
    CHECK(!store.peek().has_value());
    store.set_storage_mode();
}

// ServiceOptions::max_age: an event older than it is dropped when it
// comes up for delivery, reported as FailureKind::Expired, counted in
// expired_events and not as a failure; a negative age is refused.
void test_max_age() {
    std::vector<sp::Failure> seen;
    sp::ServiceOptions options;
    options.level = sp::Level::Memory;
    options.max_age = std::chrono::milliseconds(40);
    options.on_failure = [&seen](const sp::Failure &f) { seen.push_back(f); };
    sp::ServiceStore store = sp::ServiceStore::open(options);
    store.raise(sp::EventKind::Queueing, "old", std::string_view("1"));
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    const sp::Uuid fresh = store.raise(sp::EventKind::Queueing, "fresh", std::string_view("2"));
    auto ev = store.peek();
    CHECK(ev.has_value() && ev->uid == fresh);
    const sp::ServiceStats st = store.stats();
    CHECK(st.expired_events == 1 && st.failures == 0 && st.events_lost == 0);
    CHECK(seen.size() == 1 && seen[0].kind == sp::FailureKind::Expired &&
          seen[0].events_lost == 0);

    sp::ServiceOptions negative;
    negative.level = sp::Level::Memory;
    negative.max_age = std::chrono::milliseconds(-1);
    CHECK_THROWS(sp::ServiceStore::open(negative), SNP_ERR_INVALID_ARGUMENT);
}

void test_level1_round_trip() {
    sp::ServiceStore store = sp::ServiceStore::open_memory();
    CHECK(static_cast<bool>(store));
    CHECK(store.get() != nullptr);
    CHECK(store.stats().level == sp::Level::Memory);
    CHECK(!store.storage_uid().is_nil());
    round_trip(store);
    store.flush();
    CHECK(store.invalidate_ancient() == 0);
}

void test_level2_round_trip_and_reopen() {
    TempDir dir;
    sp::Uuid storage;
    sp::Uuid first;
    {
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        const sp::ServiceStats s = store.stats();
        CHECK(s.level == sp::Level::File);
        CHECK(s.capacity_bytes == 1024 * 1024);
        storage = store.storage_uid();
        CHECK(s.storage_uid == storage);
        round_trip(store);
        first = store.raise(sp::EventKind::Queueing, "boot", "1");
        store.raise(sp::EventKind::Queueing, "boot", "2");
        store.raise_private("p", "3", -7);
        store.flush();
    }
    CHECK(std::filesystem::exists(dir.path + "/softnet.service.persistence_" +
                                  kServiceUid.to_string() + ".ssp"));
    {
        // Reopen: the events are there, the storage uid is the same.
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        CHECK(store.storage_uid() == storage);
        CHECK(store.stats().pending_events == 3);
        auto ev = store.peek();
        CHECK(ev && ev->uid == first && ev->name == "boot" && ev->args_string() == "1");
        store.ack(first);
        // A new event, then drop the ancient ones: only the new one stays.
        const sp::Uuid fresh = store.raise(sp::EventKind::Replacing, "fresh");
        CHECK(store.invalidate_ancient() == 2);
        CHECK(store.stats().invalidated_events == 2);
        ev = store.peek();
        CHECK(ev && ev->uid == fresh);
        // raise_with_uid keeps the caller's uid.
        const sp::Uuid mine = *sp::Uuid::parse("11111111-2222-4333-8444-555555555555");
        store.ack(fresh);
        store.raise_with_uid(mine, sp::EventKind::Private, "with.uid", bytes_of("z"), 9);
        ev = store.peek();
        CHECK(ev && ev->uid == mine && ev->client_id && *ev->client_id == 9);
    }
    {
        sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));
        auto ev = store.peek();
        CHECK(ev && ev->name == "with.uid");
    }
}

void test_errors() {
    TempDir dir;
    sp::ServiceStore store = sp::ServiceStore::open(file_options(dir.path));

    // Invalid names.
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, ""), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, std::string_view()), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, "1abc"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, "trailing "), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, std::string(257, 'a')), SNP_ERR_INVALID_ARGUMENT);
    store.raise(sp::EventKind::Queueing, std::string(256, 'a'));
    try {
        store.raise(sp::EventKind::Queueing, "9lives");
        CHECK(false);
    } catch (const sp::Error &e) {
        CHECK(contains(e.what(), "9lives"));  // the library's detailed message
        CHECK(contains(e.what(), "letter"));
        // The status's text once, in front of the message.
        const std::string what = e.what();
        const std::string status = snp_status_str(SNP_ERR_INVALID_ARGUMENT);
        CHECK(what.rfind(status + ": ", 0) == 0);
        CHECK(what.find(status, status.size()) == std::string::npos);
    }

    // Arguments: 2048 bytes fit, 2049 do not.
    store.raise(sp::EventKind::Queueing, "big", std::vector<std::uint8_t>(2048, 7));
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, "big", std::vector<std::uint8_t>(2049, 7)),
                 SNP_ERR_INVALID_ARGUMENT);
    try {
        store.raise(sp::EventKind::Queueing, "big", std::vector<std::uint8_t>(2049, 7));
    } catch (const sp::Error &e) {
        CHECK(contains(e.what(), "2049"));
    }
    CHECK_THROWS(store.raise(sp::EventKind::ReplacingNull, "cleared", "x"), SNP_ERR_INVALID_ARGUMENT);

    // Private through raise(): refused (it would target client 0), by every
    // overload, and nothing is stored; raise_private is the way.
    const std::uint64_t pending = store.stats().pending_events;
    CHECK_THROWS(store.raise(sp::EventKind::Private, "notice"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Private, "notice", bytes_of("hi")),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Private, "notice", std::string_view("hi")),
                 SNP_ERR_INVALID_ARGUMENT);
    const std::uint8_t hi[2] = {'h', 'i'};
    CHECK_THROWS(store.raise(sp::EventKind::Private, "notice", hi, sizeof hi),
                 SNP_ERR_INVALID_ARGUMENT);
    try {
        store.raise(sp::EventKind::Private, "notice", "hi");
        CHECK(false);
    } catch (const sp::Error &e) {
        CHECK(e.status() == SNP_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.what(), "raise_private"));
    }
    CHECK(store.stats().pending_events == pending);
    store.raise_private("notice", "hi", 7);
    CHECK(store.stats().pending_events == pending + 1);
    CHECK_THROWS(store.raise(static_cast<sp::EventKind>(3), "bad.kind"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(store.raise(sp::EventKind::Queueing, "n", nullptr, 4), SNP_ERR_INVALID_ARGUMENT);

    // Wrong mode: cache-mode calls in storage mode...
    CHECK(store.mode() == sp::Mode::Storage);
    CHECK_THROWS(store.peek_name(sp::EventKind::Queueing, "big"), SNP_ERR_STATE);
    CHECK_THROWS(store.ack_name(sp::EventKind::Queueing, "big", sp::Uuid()), SNP_ERR_STATE);

    // ...stale acks in storage mode...
    auto ev = store.peek();
    CHECK(ev.has_value());
    CHECK_THROWS(store.ack(sp::Uuid()), SNP_ERR_STATE);
    store.ack(ev->uid);
    CHECK_THROWS(store.ack(ev->uid), SNP_ERR_STATE);  // repeated ack
    while (auto next = store.peek()) {
        store.ack(next->uid);
    }
    // ...and storage-mode calls in cache mode.
    CHECK(store.mode() == sp::Mode::Cache);
    CHECK_THROWS(store.peek(), SNP_ERR_STATE);
    CHECK_THROWS(store.ack(ev->uid), SNP_ERR_STATE);
    const sp::Uuid q = store.raise(sp::EventKind::Queueing, "q");
    CHECK(store.peek_name(sp::EventKind::Queueing, "q")->uid == q);
    CHECK_THROWS(store.ack_name(sp::EventKind::Queueing, "q", sp::Uuid()), SNP_ERR_STATE);
    CHECK_THROWS(store.peek_name(sp::EventKind::Queueing, "bad  name"), SNP_ERR_INVALID_ARGUMENT);

    // Locked: a second handle on the same journal.
    CHECK_THROWS(sp::ServiceStore::open(file_options(dir.path)), SNP_ERR_LOCKED);
    try {
        sp::ServiceStore::open(file_options(dir.path));
    } catch (const sp::Error &e) {
        CHECK(std::string(e.status_text()) == snp_status_str(SNP_ERR_LOCKED));
    }
    store.close();
    CHECK(!store);
    sp::ServiceStore reopened = sp::ServiceStore::open(file_options(dir.path));  // lock released
    CHECK(reopened.stats().pending_events == 1);

    // Bad options.
    sp::ServiceOptions no_dir;
    CHECK_THROWS(sp::ServiceStore::open(no_dir), SNP_ERR_INVALID_ARGUMENT);
    sp::ServiceOptions nul_dir = file_options(std::string("/tmp\0x", 6));
    CHECK_THROWS(sp::ServiceStore::open(nul_dir), SNP_ERR_INVALID_ARGUMENT);
    sp::ServiceOptions bad_overflow;
    bad_overflow.overflow = static_cast<sp::Overflow>(9);
    CHECK_THROWS(sp::ServiceStore::open_memory(bad_overflow), SNP_ERR_INVALID_ARGUMENT);
    sp::ServiceOptions bad_durability = file_options(dir.path);
    bad_durability.durability = static_cast<sp::Durability>(7);
    CHECK_THROWS(sp::ServiceStore::open(bad_durability), SNP_ERR_INVALID_ARGUMENT);

    // Storage full with the reject-new policy.
    sp::ServiceOptions reject;
    reject.memory_capacity = 4096;
    reject.overflow = sp::Overflow::RejectNew;
    sp::ServiceStore small = sp::ServiceStore::open_memory(reject);
    bool full = false;
    for (int i = 0; i < 10 && !full; ++i) {
        try {
            small.raise(sp::EventKind::Queueing, "fill", std::vector<std::uint8_t>(1500, 1));
        } catch (const sp::Error &e) {
            full = e.status() == SNP_ERR_STORAGE_FULL;
        }
    }
    CHECK(full);
    CHECK(small.stats().rejected_events == 1);
}

void test_move_semantics_and_callback() {
    Reports reports;
    sp::ServiceOptions o;
    o.memory_capacity = 4096;  // the minimum: a few 2 KiB events overflow it
    o.on_failure = reports.callback();
    sp::ServiceStore a = sp::ServiceStore::open_memory(o);
    o.on_failure = nullptr;  // the store has its own copy
    const sp::Uuid storage = a.storage_uid();

    sp::ServiceStore b(std::move(a));
    CHECK(!a);
    CHECK(a.get() == nullptr);
    CHECK(static_cast<bool>(b));
    CHECK(b.storage_uid() == storage);
    CHECK_THROWS(a.raise(sp::EventKind::Queueing, "x"), SNP_ERR_CLOSED);
    CHECK_THROWS(a.peek(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.stats(), SNP_ERR_CLOSED);
    CHECK_THROWS(a.mode(), SNP_ERR_CLOSED);
    a.close();  // fine on an empty store

    sp::ServiceStore c;
    CHECK(!c);
    c = std::move(b);
    CHECK(!b);
    CHECK(c.storage_uid() == storage);

    // The callback still fires after two moves: capacity drops.
    for (int i = 0; i < 6; ++i) {
        c.raise(sp::EventKind::Queueing, "big", std::vector<std::uint8_t>(2000, 1));
    }
    CHECK(reports.count(sp::FailureKind::CapacityDrop) >= 1);
    CHECK(c.stats().dropped_events >= 1);
    {
        std::lock_guard<std::mutex> lock(reports.mutex);
        CHECK(reports.list.front().events_lost >= 1);
        CHECK(!reports.list.front().message.empty());
    }

    // Move-assigning over a live level-2 store closes it (the lock is
    // released) and frees its callback only after the close.
    TempDir dir;
    Reports file_reports;
    sp::ServiceOptions fo = file_options(dir.path);
    fo.on_failure = file_reports.callback();
    sp::ServiceStore f = sp::ServiceStore::open(fo);
    f.raise(sp::EventKind::Queueing, "kept");
    f = sp::ServiceStore::open_memory();
    CHECK(f.stats().level == sp::Level::Memory);
    sp::ServiceStore g = sp::ServiceStore::open(fo);  // not Locked
    CHECK(g.stats().pending_events == 1);
    std::swap(f, g);
    CHECK(f.stats().level == sp::Level::File);
    CHECK(g.stats().level == sp::Level::Memory);
}

void test_callback_exception_is_contained() {
    std::atomic<int> calls{0};
    sp::ServiceOptions o;
    o.memory_capacity = 4096;
    o.on_failure = [&calls](const sp::Failure &) {
        ++calls;
        throw std::runtime_error("from the callback");
    };
    sp::ServiceStore store = sp::ServiceStore::open_memory(o);
    for (int i = 0; i < 6; ++i) {
        store.raise(sp::EventKind::Queueing, "big", std::vector<std::uint8_t>(2000, 1));
    }
    CHECK(calls.load() >= 1);
    CHECK(store.stats().pending_events >= 1);  // the store works on
}

void test_fallback_reported_at_open() {
    // A directory that cannot be created: level 2 fails at open, the store
    // starts at level 1 and reports it during open().
    Reports reports;
    sp::ServiceOptions o = file_options("/proc/no/such/dir");
    o.on_failure = reports.callback();
    sp::ServiceStore store = sp::ServiceStore::open(o);
    CHECK(store.stats().level == sp::Level::Memory);
    CHECK(reports.count(sp::FailureKind::Fallback) == 1);
    CHECK(store.stats().failures == 1);
    store.raise(sp::EventKind::Queueing, "still.works");
    CHECK(store.peek()->name == "still.works");

    // Options missing at level 2 are named in C++ terms.
    try {
        sp::ServiceStore never = sp::ServiceStore::open(sp::ServiceOptions());
        CHECK(false);
    } catch (const sp::Error &e) {
        CHECK(e.status() == SNP_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.what(), "ServiceOptions::directory"));
        CHECK(contains(e.what(), "Level::Memory"));
        CHECK(!contains(e.what(), "options->") && !contains(e.what(), "SNP_LEVEL"));
    }
    sp::ClientOptions no_key;
    no_key.level = sp::Level::File;
    no_key.directory = "/tmp";
    no_key.server_address = "broker";
    try {
        sp::ClientStore never = sp::ClientStore::open(no_key);
        CHECK(false);
    } catch (const sp::Error &e) {
        CHECK(e.status() == SNP_ERR_INVALID_ARGUMENT);
        CHECK(contains(e.what(), "ClientOptions::client_key"));
        CHECK(!contains(e.what(), "options->"));
    }

    // Strict: the same open throws, naming the directory.
    sp::ServiceOptions strict = file_options("/proc/no/such/dir");
    strict.open_policy = sp::OpenPolicy::Strict;
    try {
        sp::ServiceStore never = sp::ServiceStore::open(strict);
        CHECK(false);
    } catch (const sp::Error &e) {
        CHECK(e.status() == SNP_ERR_IO);
        CHECK(contains(e.what(), "/proc/no/such/dir"));
    }
    sp::ClientOptions client;
    client.level = sp::Level::File;
    client.directory = "/proc/no/such/dir";
    client.server_address = "broker";
    client.client_key = "strict";
    client.open_policy = sp::OpenPolicy::Strict;
    CHECK_THROWS(sp::ClientStore::open(client), SNP_ERR_IO);
}

void test_corruption_reported_at_open() {
    TempDir dir;
    {
        std::ofstream junk(dir.path + "/softnet.service.persistence_" + kServiceUid.to_string() +
                           ".ssp");
        junk << std::string(10000, 'x');
    }
    Reports reports;
    sp::ServiceOptions o = file_options(dir.path);
    o.on_failure = reports.callback();
    sp::ServiceStore store = sp::ServiceStore::open(o);
    CHECK(reports.count(sp::FailureKind::Corruption) == 1);
    CHECK(store.stats().level == sp::Level::File);
    CHECK(!store.peek().has_value());
}

void test_concurrent_raises() {
    sp::ServiceOptions o;
    o.memory_capacity = 1024 * 1024;
    sp::ServiceStore store = sp::ServiceStore::open_memory(o);
    auto work = [&store](const char *name) {
        for (int i = 0; i < 200; ++i) {
            store.raise(sp::EventKind::Queueing, name, std::to_string(i));
        }
    };
    std::thread t1(work, "one");
    std::thread t2(work, "two");
    t1.join();
    t2.join();
    CHECK(store.stats().pending_events == 400);
    int one = 0;
    int last_one = -1;
    while (auto ev = store.peek()) {
        if (ev->name == "one") {
            const int i = std::stoi(ev->args_string());
            CHECK(i == last_one + 1);  // per-thread order kept
            last_one = i;
            ++one;
        }
        store.ack(ev->uid);
    }
    CHECK(one == 200);
}

void test_client_memory() {
    sp::ClientStore client = sp::ClientStore::open_memory();
    CHECK(static_cast<bool>(client));
    CHECK(client.stats().level == sp::Level::Memory);
    CHECK(!client.get("temperature").has_value());
    CHECK(!client.is_duplicate("temperature", 1));
    client.put("temperature", 5);
    client.put("alarm", 9);
    client.put("door/opened", -3);
    CHECK(client.get("temperature") == std::optional<std::int64_t>(5));
    CHECK(client.is_duplicate("temperature", 5));
    CHECK(!client.is_duplicate("temperature", 6));
    client.put("temperature", 6);
    CHECK(*client.get("temperature") == 6);
    CHECK(client.stats().subscriptions == 3);

    const auto entries = client.entries();
    CHECK(entries.size() == 3);
    CHECK(entries[0].first == "alarm" && entries[0].second == 9);  // name order
    CHECK(entries[1].first == "door/opened" && entries[1].second == -3);
    CHECK(entries[2].first == "temperature" && entries[2].second == 6);

    // for_each with an lvalue visitor (a const one too).
    std::int64_t sum = 0;
    auto add = [&sum](std::string_view, std::int64_t id) { sum += id; };
    client.for_each(add);
    CHECK(sum == 12);
    const auto add_const = add;
    client.for_each(add_const);
    CHECK(sum == 24);

    // for_each: an exception from the visitor comes back after the C call.
    int seen = 0;
    try {
        client.for_each([&seen](std::string_view, std::int64_t) {
            ++seen;
            throw std::logic_error("stop");
        });
        CHECK(false);
    } catch (const std::logic_error &e) {
        CHECK(std::string(e.what()) == "stop");
    }
    CHECK(seen == 1);

    CHECK_THROWS(client.put("", 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(client.put("1bad", 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(client.put(std::string(257, 'n'), 1), SNP_ERR_INVALID_ARGUMENT);
    // get/is_duplicate apply the same name rules as put.
    CHECK_THROWS(client.get("1bad"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(client.is_duplicate(std::string(257, 'n'), 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(client.get("\xff\xfe"), SNP_ERR_INVALID_ARGUMENT);
    CHECK_THROWS(client.is_duplicate("\xff", 1), SNP_ERR_INVALID_ARGUMENT);

    client.flush();
    client.reset();
    CHECK(client.entries().empty());
    CHECK(!client.get("alarm").has_value());
    CHECK(client.stats().subscriptions == 0);

    // Move semantics.
    sp::ClientStore other(std::move(client));
    CHECK(!client);
    CHECK_THROWS(client.get("alarm"), SNP_ERR_CLOSED);
    CHECK_THROWS(client.entries(), SNP_ERR_CLOSED);
    other.put("alarm", 1);
    sp::ClientStore third;
    third = std::move(other);
    CHECK(!other);
    CHECK(*third.get("alarm") == 1);
    third.close();
    CHECK(!third);
}

sp::ClientOptions client_file_options(const std::string &dir) {
    sp::ClientOptions o;
    o.level = sp::Level::File;
    o.directory = dir;
    o.server_address = "broker.local:7778";
    o.client_key = "gateway-1";
    return o;
}

void test_client_file() {
    TempDir dir;
    {
        sp::ClientStore client = sp::ClientStore::open(client_file_options(dir.path));
        CHECK(client.stats().level == sp::Level::File);
        client.put("temperature", 41);
        client.put("alarm", 7);
        CHECK_THROWS(sp::ClientStore::open(client_file_options(dir.path)), SNP_ERR_LOCKED);
    }
    CHECK(std::filesystem::exists(dir.path +
                                  "/softnet.client.persistence_broker.local%3A7778_gateway-1.scp"));
    {
        sp::ClientStore client = sp::ClientStore::open(client_file_options(dir.path));
        CHECK(*client.get("temperature") == 41);
        CHECK(client.is_duplicate("alarm", 7));
        CHECK(client.entries().size() == 2);
        client.reset();
    }
    {
        sp::ClientStore client = sp::ClientStore::open(client_file_options(dir.path));
        CHECK(client.entries().empty());
    }
    sp::ClientOptions missing_key = client_file_options(dir.path);
    missing_key.client_key.clear();
    CHECK_THROWS(sp::ClientStore::open(missing_key), SNP_ERR_INVALID_ARGUMENT);
    sp::ClientOptions bad_key = client_file_options(dir.path);
    bad_key.client_key = "a/b";
    CHECK_THROWS(sp::ClientStore::open(bad_key), SNP_ERR_INVALID_ARGUMENT);

    // I/O failure at open: level 1 and a Fallback report.
    Reports reports;
    sp::ClientOptions unreachable = client_file_options("/proc/no/such/dir");
    unreachable.on_failure = reports.callback();
    sp::ClientStore client = sp::ClientStore::open(unreachable);
    CHECK(client.stats().level == sp::Level::Memory);
    CHECK(client.stats().failures == 1);
    CHECK(reports.count(sp::FailureKind::Fallback) == 1);
    client.put("x", 1);
    CHECK(*client.get("x") == 1);
}

// A RecordLog in memory whose state outlives the store (like a file).
struct LogState {
    std::map<std::uint64_t, std::vector<std::uint8_t>> records;
    std::vector<std::uint8_t> meta;
    std::uint64_t next_seq = 1;
    int commits = 0;
    int flushes = 0;
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
    void commit() override { ++s_->commits; }
    void flush() override { ++s_->flushes; }
    void clear() override { s_->records.clear(); }
    std::vector<std::uint8_t> metadata() override { return s_->meta; }
    void set_metadata(const std::uint8_t *meta, std::size_t len) override {
        s_->meta.assign(meta, meta + len);
    }

private:
    std::shared_ptr<LogState> s_;
};

void test_custom_service_backend() {
    auto state = std::make_shared<LogState>();
    sp::Uuid storage;
    sp::Uuid first;
    {
        sp::ServiceStore store =
            sp::ServiceStore::open_custom(std::make_unique<VectorLog>(state));
        CHECK(store.stats().level == sp::Level::File);
        storage = store.storage_uid();
        first = store.raise(sp::EventKind::Queueing, "custom", "a");
        store.raise(sp::EventKind::Queueing, "custom", "b");
        store.flush();
        CHECK(state->records.size() == 2);
        CHECK(state->commits >= 2);
        CHECK(state->flushes >= 1);
    }
    CHECK(state.use_count() == 1);  // the backend was freed with the store
    {
        sp::ServiceStore store =
            sp::ServiceStore::open_custom(std::make_unique<VectorLog>(state));
        CHECK(store.storage_uid() == storage);
        auto ev = store.peek();
        CHECK(ev && ev->uid == first && ev->args_string() == "a");
        store.ack(first);
        CHECK(state->records.size() == 1);

        // A backend exception is a level-2 failure: fallback, reported.
        state->fail_appends = true;
        store.raise(sp::EventKind::Queueing, "after", "c");
        CHECK(store.stats().level == sp::Level::Memory);
        ev = store.peek();
        CHECK(ev && ev->args_string() == "b");
    }
    Reports reports;
    sp::ServiceOptions o;
    o.on_failure = reports.callback();
    state->fail_appends = false;
    sp::ServiceStore store = sp::ServiceStore::open_custom(std::make_unique<VectorLog>(state), o);
    state->fail_appends = true;
    store.raise(sp::EventKind::Queueing, "x");
    CHECK(reports.count(sp::FailureKind::Fallback) == 1);
    {
        std::lock_guard<std::mutex> lock(reports.mutex);
        CHECK(contains(reports.list.front().message, "append"));
    }
    CHECK_THROWS(sp::ServiceStore::open_custom(nullptr), SNP_ERR_INVALID_ARGUMENT);
    sp::ServiceOptions bad;
    bad.overflow = static_cast<sp::Overflow>(5);
    CHECK_THROWS(sp::ServiceStore::open_custom(std::make_unique<VectorLog>(state), bad),
                 SNP_ERR_INVALID_ARGUMENT);
}

struct IdState {
    std::map<std::string, std::int64_t> ids;
    bool fail_puts = false;
};

class MapIds : public sp::IdStore {
public:
    explicit MapIds(std::shared_ptr<IdState> state) : s_(std::move(state)) {}
    void load(const sp::IdVisitor &visit) override {
        for (const auto &p : s_->ids) {
            visit(p.first, p.second);
        }
    }
    void put(std::string_view name, std::int64_t id) override {
        if (s_->fail_puts) {
            throw std::runtime_error("flash worn out");
        }
        s_->ids[std::string(name)] = id;
    }
    void clear() override { s_->ids.clear(); }

private:
    std::shared_ptr<IdState> s_;
};

void test_custom_client_backend() {
    auto state = std::make_shared<IdState>();
    state->ids["preloaded"] = 77;
    {
        sp::ClientStore client = sp::ClientStore::open_custom(std::make_unique<MapIds>(state));
        CHECK(*client.get("preloaded") == 77);
        client.put("temperature", 3);
        CHECK(state->ids.at("temperature") == 3);
        client.flush();  // flush() not overridden: nothing to do
    }
    CHECK(state.use_count() == 1);
    Reports reports;
    sp::ClientOptions o;
    o.on_failure = reports.callback();
    sp::ClientStore client = sp::ClientStore::open_custom(std::make_unique<MapIds>(state), o);
    CHECK(client.is_duplicate("temperature", 3));
    state->fail_puts = true;
    client.put("temperature", 4);  // falls back to memory, reported
    CHECK(reports.count(sp::FailureKind::Fallback) == 1);
    CHECK(client.stats().level == sp::Level::Memory);
    CHECK(*client.get("temperature") == 4);
    CHECK(client.entries().size() == 2);
    CHECK_THROWS(sp::ClientStore::open_custom(nullptr), SNP_ERR_INVALID_ARGUMENT);
}

// The natural pattern: on_failure raises an event into its own full store
// for every capacity drop (each of those raises drops one more event).
// The callback is never entered recursively: the drop its first raise
// causes is passed on after it returns, the drop its second raise causes is
// held back, and one FailureKind::CallbackLoop report per outer raise says
// so. Every raised event is pending or counted dropped. (The release before
// nested the callback once per raise until the stack overflowed.)
void test_callback_raising_into_full_store() {
    struct State {
        sp::ServiceStore *store = nullptr;
        bool raise_on_drop = false;
        int depth = 0;
        int max_depth = 0;
        std::size_t drops = 0;
        std::size_t loops = 0;
        std::uint64_t loop_lost = 0;
        std::string loop_message;
        std::size_t raised = 0;
        std::size_t raise_errors = 0;
    };
    State state;
    sp::ServiceOptions o;
    o.memory_capacity = 4096;
    o.on_failure = [&state](const sp::Failure &f) {
        ++state.depth;
        state.max_depth = std::max(state.max_depth, state.depth);
        if (f.kind == sp::FailureKind::CapacityDrop) {
            ++state.drops;
            if (state.raise_on_drop) {
                try {
                    state.store->raise(sp::EventKind::Queueing, "fromcb", "cb-000000000");
                    ++state.raised;
                } catch (const sp::Error &) {
                    ++state.raise_errors;
                }
            }
        } else if (f.kind == sp::FailureKind::CallbackLoop) {
            ++state.loops;
            state.loop_lost += f.events_lost;
            state.loop_message = f.message;
        }
        --state.depth;
    };
    sp::ServiceStore store = sp::ServiceStore::open_memory(o);
    state.store = &store;

    // Fill to the brim: every event below has the same size, so each raise
    // into the full store drops exactly one.
    std::size_t filled = 0;
    while (store.stats().dropped_events == 0) {
        store.raise(sp::EventKind::Queueing, "fillup", "fi-" + std::to_string(100000000 + filled));
        ++filled;
        CHECK(filled < 1000);
    }
    const std::uint64_t brim = store.stats().pending_events;
    CHECK(brim == filled - 1);
    CHECK(state.drops == 1 && state.loops == 0);

    state.raise_on_drop = true;
    const int outer = 1000;
    int wrong = 0;
    for (int i = 0; i < outer; ++i) {
        const std::size_t drops = state.drops;
        const std::size_t loops = state.loops;
        const std::size_t raised = state.raised;
        store.raise(sp::EventKind::Queueing, "outers", "ou-" + std::to_string(100000000 + i));
        if (state.drops - drops != 2 || state.loops - loops != 1 || state.raised - raised != 2) {
            ++wrong;
        }
    }
    CHECK(wrong == 0);
    CHECK(state.max_depth == 1);
    CHECK(state.depth == 0);
    CHECK(state.raise_errors == 0);
    CHECK(state.loops == static_cast<std::size_t>(outer));
    CHECK(state.loop_lost == 0);
    CHECK(contains(state.loop_message, "1 failure report"));
    CHECK(state.raised == 2 * static_cast<std::size_t>(outer));

    const sp::ServiceStats st = store.stats();
    CHECK(st.pending_events == brim);
    CHECK(st.dropped_events == 1 + 3 * static_cast<std::uint64_t>(outer));
    CHECK(st.pending_events + st.dropped_events == filled + outer + state.raised);

    // The newest events are kept, in raise order: the last outer raise and
    // the callback's two raises after it.
    state.raise_on_drop = false;
    std::vector<sp::StoredEvent> pending;
    while (auto ev = store.peek()) {
        pending.push_back(*ev);
        store.ack(ev->uid);
    }
    CHECK(pending.size() == brim);
    CHECK(pending[brim - 3].name == "outers");
    CHECK(pending[brim - 3].args_string() == "ou-" + std::to_string(100000000 + outer - 1));
    CHECK(pending[brim - 2].name == "fromcb" && pending[brim - 1].name == "fromcb");
}

}  // namespace

int main() {
    test_version_and_check();
    test_uuid();
    test_option_defaults_match_c();
    test_level1_round_trip();
    test_max_age();
    test_level2_round_trip_and_reopen();
    test_errors();
    test_move_semantics_and_callback();
    test_callback_exception_is_contained();
    test_callback_raising_into_full_store();
    test_fallback_reported_at_open();
    test_corruption_reported_at_open();
    test_concurrent_raises();
    test_client_memory();
    test_client_file();
    test_custom_service_backend();
    test_custom_client_backend();
    std::printf("test_wrapper: %d checks passed\n", checks);
    return 0;
}
