/* The softnet-persistence demo: an offline gateway, a restart, the drain,
 * and a client that drops a duplicate.
 *
 *   demo DIR          both phases, each in its own process
 *   demo raise DIR    phase 1: the gateway is offline; it raises events into
 *                     a level-2 journal in DIR and exits without sending them
 *   demo drain DIR    phase 2: a new process opens the same journal, sends the
 *                     backlog in raise order (peek, send, ack), then a client
 *                     with a level-2 file in DIR drops a repeated event
 *
 * Build: cc -std=c11 -Icapi/include examples/c/demo.c -Ltarget/release \
 *          -Wl,-rpath,$PWD/target/release -lsoftnet_persistence -o demo
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "softnet_persistence.h"

/* The journal is named after the service uid, so the second process finds
 * the first one's events: softnet.service.persistence_<uid>.ssp */
static const snp_uuid SERVICE_UID = {{0x5e, 0x7f, 0x0b, 0x3a, 0x9c, 0x1d, 0x4e, 0x2f, 0x8a, 0x6b,
                                      0x1c, 0x0d, 0x2e, 0x3f, 0x4a, 0x5b}};

/* ----- small helpers ------------------------------------------------------ */

/* Stops the program with the status text and the library's detailed
 * message when a call fails. */
static void check(snp_status st, const char *what) {
    if (st == SNP_OK || st == SNP_EMPTY) return;
    char message[1024];
    snp_last_error_message(message, sizeof message);
    fprintf(stderr, "error: %s: %s\n  %s\n", what, snp_status_str(st), message);
    exit(1);
}

/* Every failure report of a store (fallback, corruption, capacity drop). */
static void on_failure(void *user_data, int32_t kind, const char *message, uint64_t lost) {
    fprintf(stderr, "  [%s report %d] %s (%llu lost)\n", (const char *)user_data, (int)kind,
            message, (unsigned long long)lost);
}

static const char *kind_name(int32_t kind) {
    switch (kind) {
    case SNP_EVENT_REPLACING: return "replacing";
    case SNP_EVENT_QUEUEING: return "queueing";
    case SNP_EVENT_PRIVATE: return "private";
    case SNP_EVENT_REPLACING_NULL: return "replacing-null";
    default: return "?";
    }
}

static void print_uid(const snp_uuid *u) {
    for (int i = 0; i < 16; i++) printf("%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "",
                                        u->bytes[i]);
}

static snp_service_stats stats_of(const snp_service *s) {
    snp_service_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    check(snp_service_get_stats(s, &st), "snp_service_get_stats");
    return st;
}

static snp_service *open_journal(const char *dir) {
    snp_service_options options;
    snp_service_options_init(&options); /* level 2, synchronous: survives power loss */
    options.directory = dir;
    options.service_uid = SERVICE_UID;
    options.on_failure = on_failure;
    options.user_data = "service";
    snp_service *s = NULL;
    check(snp_service_open(&options, &s), "snp_service_open");
    return s;
}

/* ----- phase 1: offline, raise ------------------------------------------- */

static void raise_one(snp_service *s, int32_t kind, const char *name, const char *args,
                      int64_t client_id, const char *note) {
    snp_event e = {kind, name, strlen(name), (const uint8_t *)args, args ? strlen(args) : 0,
                   client_id};
    snp_uuid uid;
    check(snp_service_raise(s, &e, &uid), "snp_service_raise");
    printf("  raised %-12s %-7s %s%s\n", name, args ? args : "", kind_name(kind), note);
}

static int phase_raise(const char *dir) {
    printf("== phase 1 (process %ld): the gateway is offline\n", (long)getpid());
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    snp_service *s = open_journal(dir);
    snp_service_stats st = stats_of(s);
    if (st.pending_events > 0)
        printf("  (%llu events from an earlier run are still pending)\n",
               (unsigned long long)st.pending_events);
    raise_one(s, SNP_EVENT_QUEUEING, "Temperature", "21.5", 0, "");
    raise_one(s, SNP_EVENT_QUEUEING, "Temperature", "21.9", 0, "");
    raise_one(s, SNP_EVENT_QUEUEING, "Temperature", "22.4", 0, "");
    raise_one(s, SNP_EVENT_REPLACING, "DoorState", "open", 0, "");
    raise_one(s, SNP_EVENT_REPLACING, "DoorState", "closed", 0,
              ", replaces 'open' (only the newest state matters)");
    raise_one(s, SNP_EVENT_PRIVATE, "Alarm", "smoke", 42, ", for client 42 only");
    st = stats_of(s);
    printf("  %llu events wait in the journal (%llu of %llu bytes, %llu superseded);\n"
           "  the process exits without sending them.\n",
           (unsigned long long)st.pending_events, (unsigned long long)st.used_bytes,
           (unsigned long long)st.capacity_bytes, (unsigned long long)st.superseded_events);
    snp_service_close(s);
    return 0;
}

/* ----- phase 2: back online, drain; a client drops a duplicate ------------- */

typedef struct client_report {
    int received, handled, duplicates;
} client_report;

/* What a client does with every event the broker delivers. */
static void client_receives(snp_client *c, const char *name, int64_t id, client_report *r) {
    bool duplicate = false;
    r->received++;
    check(snp_client_is_duplicate(c, name, strlen(name), id, &duplicate),
          "snp_client_is_duplicate");
    if (duplicate) {
        r->duplicates++;
        printf("  %s #%lld arrives: a duplicate -> acknowledged, not handled\n", name,
               (long long)id);
        return;
    }
    r->handled++;
    printf("  %s #%lld arrives: new -> handled, id stored, acknowledged\n", name, (long long)id);
    check(snp_client_put(c, name, strlen(name), id), "snp_client_put");
}

static snp_client *open_client(const char *dir) {
    snp_client_options options;
    snp_client_options_init(&options);
    options.level = SNP_LEVEL_FILE;
    options.directory = dir;
    options.server_address = "fd00::1"; /* the file name gets fd00--1 */
    options.client_key = "display-1";
    options.on_failure = on_failure;
    options.user_data = "client";
    snp_client *c = NULL;
    check(snp_client_open(&options, &c), "snp_client_open");
    return c;
}

static int phase_drain(const char *dir) {
    printf("== phase 2 (process %ld): the gateway is back online\n", (long)getpid());
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "error: %s is not a directory; run 'demo raise %s' first\n", dir, dir);
        return 1;
    }
    snp_service *s = open_journal(dir);
    snp_service_stats st = stats_of(s);
    if (st.level != SNP_LEVEL_FILE)
        printf("  warning: the journal could not be used (see the report above); the store "
               "runs in memory\n");
    printf("  %llu events pending in storage uid ", (unsigned long long)st.pending_events);
    print_uid(&st.storage_uid);
    printf("\n  (the broker knows this uid: the backlog is sent, not invalidated)\n");

    printf("  draining in raise order: peek, send to the broker, ack\n");
    snp_stored_event e;
    snp_status status;
    int delivered = 0;
    while ((status = snp_service_peek(s, &e)) == SNP_OK) {
        printf("  %d. %-12s %-8.*s %-10s uid ", ++delivered, e.name, (int)e.args_len,
               (const char *)e.args, kind_name(e.kind));
        print_uid(&e.uid);
        if (e.kind == SNP_EVENT_PRIVATE) printf("  (client %lld)", (long long)e.client_id);
        printf("\n");
        /* A real controller sends the event here and acks on the broker's ack. */
        check(snp_service_ack(s, &e.uid), "snp_service_ack");
    }
    check(status, "snp_service_peek");
    int32_t mode = -1;
    check(snp_service_mode(s, &mode), "snp_service_mode");
    st = stats_of(s);
    printf("  drained: the store is now in %s mode (one pipeline per event name)\n",
           mode == SNP_MODE_CACHE ? "cache" : "storage");
    snp_service_close(s);

    printf("\n  a display subscribes to Temperature (client store: a level-2 file in %s)\n", dir);
    client_report r = {0, 0, 0};
    snp_client *c = open_client(dir);
    client_receives(c, "Temperature", 1001, &r);
    client_receives(c, "Temperature", 1002, &r);
    printf("  -- the display restarts before its ack of #1002 reached the broker --\n");
    snp_client_close(c);
    c = open_client(dir);
    printf("  the broker sends #1002 again:\n");
    client_receives(c, "Temperature", 1002, &r);
    snp_client_close(c);

    printf("\nreport\n");
    printf("  service: %d events delivered after the restart, in raise order; "
           "%llu dropped, %llu failures\n",
           delivered, (unsigned long long)st.dropped_events, (unsigned long long)st.failures);
    printf("  client:  %d received, %d handled, %d duplicate dropped\n", r.received, r.handled,
           r.duplicates);
    return 0;
}

/* ----- both phases, each in its own process -------------------------------- */

static int run_phase(char *self, char *phase, char *dir) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        char *args[] = {self, phase, dir, NULL};
        if (strchr(self, '/')) execv(self, args);
        execv("/proc/self/exe", args);
        execvp(self, args);
        perror("exec");
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "raise") == 0) return phase_raise(argv[2]);
    if (argc == 3 && strcmp(argv[1], "drain") == 0) return phase_drain(argv[2]);
    if (argc == 2 && argv[1][0] != '-') {
        printf("softnet-persistence %s demo, journal and client file in %s\n\n", snp_version(),
               argv[1]);
        if (run_phase(argv[0], "raise", argv[1]) != 0) return 1;
        printf("\n--- the process exited; a new one starts ---\n\n");
        return run_phase(argv[0], "drain", argv[1]);
    }
    fprintf(stderr,
            "usage: %s DIR          raise, restart and drain (two processes)\n"
            "       %s raise DIR    phase 1 only\n"
            "       %s drain DIR    phase 2 only\n",
            argv[0], argv[0], argv[0]);
    return 2;
}
