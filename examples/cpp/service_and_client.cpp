// softnet-persistence from C++: a gateway keeps events while the broker is
// away and delivers them when it is back; a client drops a duplicate.
//
//   c++ -std=c++17 service_and_client.cpp -o service_and_client
//       $(pkg-config --cflags --libs softnet-persistence)   (one line)
//   ./service_and_client [directory]
#include <softnet/persistence.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

namespace sp = softnet::persistence;

int main(int argc, char **argv) {
    try {
        // The service store: a journal file in the directory, named after the
        // service uid, so a restarted process finds what it left.
        sp::ServiceOptions options;
        options.directory = argc > 1 ? argv[1] : "/tmp";
        options.service_uid = *sp::Uuid::parse("67e55044-10b1-426f-9247-bb680e5fe0c8");
        options.on_failure = [](const sp::Failure &f) {
            std::fprintf(stderr, "persistence: %s (%llu events lost)\n", f.message.c_str(),
                         static_cast<unsigned long long>(f.events_lost));
        };
        sp::ServiceStore service = sp::ServiceStore::open(options);
        std::printf("storage uid %s, %llu events from an earlier run\n",
                    service.storage_uid().to_string().c_str(),
                    static_cast<unsigned long long>(service.stats().pending_events));

        // Offline: each event is in the journal when raise() returns.
        service.raise(sp::EventKind::Replacing, "temperature", "21.5");
        service.raise(sp::EventKind::Queueing, "door/opened", "front");
        service.raise_private("notice", "filter replaced", 42);

        // The broker is back: storage mode delivers the oldest first; an
        // event stays until the broker acknowledges it.
        while (auto event = service.peek()) {
            std::printf("deliver %-12s %s\n", event->name.c_str(), event->args_string().c_str());
            service.ack(event->uid);
        }
        // Drained: the store is in cache mode (one pipeline per name).
        std::printf("mode: %s\n", service.mode() == sp::Mode::Cache ? "cache" : "storage");

        // The client store: the last handled id per subscription.
        sp::ClientStore client = sp::ClientStore::open_memory();
        const std::int64_t ids[] = {1001, 1001, 1002};  // the broker resends 1001
        for (std::int64_t id : ids) {
            if (client.is_duplicate("temperature", id)) {
                std::printf("event %lld: duplicate, acknowledged without handling\n",
                            static_cast<long long>(id));
                continue;
            }
            std::printf("event %lld: handled\n", static_cast<long long>(id));
            client.put("temperature", id);
        }
    } catch (const sp::Error &e) {
        // One exception type: the C status and the library's message.
        std::fprintf(stderr, "error %d (%s): %s\n", static_cast<int>(e.status()), e.status_text(),
                     e.what());
        return 1;
    }
    return 0;
}
