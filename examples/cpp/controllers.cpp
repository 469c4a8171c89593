// softnet-persistence from C++: the delivery controllers. A gateway raises
// events while the broker is away; ServiceController runs the storage-uid
// handshake, the in-order drain, a resend after a lost ack and a
// disconnect. ClientController drops a duplicate on the client side. The
// "broker" here is a few lines in the same program; a real application
// sends the outputs over its own connection.
//
//   c++ -std=c++17 controllers.cpp -o controllers
//       $(pkg-config --cflags --libs softnet-persistence)   (one line)
//   ./controllers
#include <softnet/persistence.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <type_traits>
#include <variant>
#include <vector>

namespace sp = softnet::persistence;
using std::chrono::milliseconds;

// Sends what the controller hands out, in order; returns the uids of the
// events sent (the broker acknowledges them).
static std::vector<sp::Uuid> send_outputs(sp::ServiceController &ctl) {
    std::vector<sp::Uuid> sent;
    for (const sp::ServiceOutput &out : ctl.drain_outputs()) {
        std::visit(
            [&sent](const auto &o) {
                using T = std::decay_t<decltype(o)>;
                if constexpr (std::is_same_v<T, sp::SendStorageUid>) {
                    std::printf("  -> storage uid %s\n", o.storage_uid.to_string().c_str());
                } else if constexpr (std::is_same_v<T, sp::SendEvent>) {
                    std::printf("  -> event %s %s\n", o.event.name.c_str(),
                                o.event.args_string().c_str());
                    sent.push_back(o.event.uid);
                } else {
                    std::printf("  rejected by the broker: %s\n", o.event.name.c_str());
                }
            },
            out);
    }
    return sent;
}

int main() {
    try {
        sp::ServiceStore store = sp::ServiceStore::open_memory();
        sp::ServiceController ctl(store, std::chrono::seconds(5));  // resend after 5 s
        const auto start = std::chrono::steady_clock::now();
        auto now = [start] {
            return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                            start);
        };
        ctl.tick(now());

        // Offline: stored, not sent.
        ctl.raise(sp::EventKind::Replacing, "temperature", "21.5");
        ctl.raise(sp::EventKind::Queueing, "door/opened", "front");

        std::puts("connected; the broker remembers no storage uid:");
        ctl.connected();
        ctl.online(std::nullopt);
        std::vector<sp::Uuid> sent = send_outputs(ctl);  // the uid, then the oldest

        // The ack of the first event is lost; at the deadline it goes again,
        // with the same uid (the broker recognises the repeat).
        std::puts("no ack; at the deadline:");
        const std::optional<milliseconds> deadline = ctl.next_deadline();
        ctl.tick(deadline.value_or(now()));
        sent = send_outputs(ctl);
        ctl.ack(sent.at(0));
        std::puts("acked; the next one:");
        sent = send_outputs(ctl);

        // The link drops before its ack: after the next online it is sent
        // again first.
        ctl.disconnected();
        ctl.raise(sp::EventKind::Queueing, "door/opened", "back");
        std::puts("reconnected; the broker remembers our uid:");
        ctl.connected();
        ctl.online(store.storage_uid());
        for (sent = send_outputs(ctl); !sent.empty(); sent = send_outputs(ctl)) {
            ctl.ack(sent.at(0));
        }
        const sp::ServiceControllerStats stats = ctl.stats();
        std::printf("drained: %llu in flight, %llu stale acks, store in %s mode\n",
                    static_cast<unsigned long long>(stats.in_flight),
                    static_cast<unsigned long long>(stats.stale_acks),
                    store.mode() == sp::Mode::Cache ? "cache" : "storage");

        // The client: the broker resends 1001 (our ack was lost).
        sp::ClientStore client_store = sp::ClientStore::open_memory();
        sp::ClientController client(client_store, sp::ClientKind::Stateful);
        const std::int64_t ids[] = {1001, 1001, 1002};
        for (std::int64_t id : ids) {
            if (client.incoming("temperature", id) == sp::Decision::AckDuplicate) {
                std::printf("client: %lld is a duplicate, acknowledged\n",
                            static_cast<long long>(id));
                continue;
            }
            std::printf("client: handling %lld\n", static_cast<long long>(id));
            client.handled("temperature", id);  // records the id; then send the ack
        }
        std::printf("client: %llu duplicate(s)\n",
                    static_cast<unsigned long long>(client.duplicates()));
    } catch (const sp::Error &e) {
        std::fprintf(stderr, "error %d (%s): %s\n", static_cast<int>(e.status()), e.status_text(),
                     e.what());
        return 1;
    }
    return 0;
}
