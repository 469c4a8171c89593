/* A gateway that delivers its readings exactly once through kill -9 and a
 * dropped connection: snp_service_controller over a real TCP socket,
 * against a small broker of the example's own on the loopback interface.
 *
 *   gateway DIR     run the whole demonstration in DIR (a fresh directory)
 *
 * Three processes take part. The broker listens on 127.0.0.1, remembers
 * the storage uid the gateway last told it, drops a repeated event uid
 * (its duplicate detection, tied to that storage uid), queues every other
 * event and acknowledges it after a short delay (a slow uplink). The
 * gateway opens a level-2 journal in DIR and a controller over it, and
 * raises one reading every 30 ms; it knows nothing of the network but
 * what the controller tells it to send and what the broker answers.
 *
 *   run 1  raises readings 1-8; killed with SIGKILL after 200 ms, with
 *          readings stored but not yet acknowledged, one of them on the
 *          wire;
 *   run 2  a new process over the same journal: the events in flight are
 *          sent again first, then the backlog, then readings 9-16. The
 *          broker drops the connection once, mid-way; the gateway
 *          reconnects and the controller resends what was in flight.
 *
 * At the end the demonstration checks what the broker queued against what
 * the gateway raised (every raise that returned SNP_OK): each exactly
 * once, in order; a raise the kill interrupted may be there once, or not.
 * It exits with status 0 if so, 1 if not.
 *
 * Wire protocol (one line per message):
 *   gateway -> broker  HELLO <service uid>
 *   broker -> gateway  ONLINE <storage uid the broker remembers | none>
 *   gateway -> broker  UID <storage uid>           (SNP_OUTPUT_SEND_STORAGE_UID)
 *   gateway -> broker  EVENT <uid> <name> <args>   (SNP_OUTPUT_SEND_EVENT)
 *   broker -> gateway  ACK <uid>
 *
 * Build (after `make lib`; `make gateway-demo` builds and runs it):
 *   cc -std=c11 -Icapi/include examples/c/gateway.c -Ltarget/release \
 *      -Wl,-rpath,$PWD/target/release -lsoftnet_persistence -o gateway
 */
#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "softnet_persistence.h"

static const snp_uuid SERVICE_UID = {{0x6a, 0x7e, 0x11, 0x0c, 0x52, 0x4f, 0x4d, 0x3b, 0x9e, 0x2a,
                                      0x71, 0x58, 0x0f, 0xc3, 0x2d, 0x90}};
enum { READINGS_PER_RUN = 8, RAISE_EVERY_MS = 30, ACK_DELAY_MS = 60, RESEND_MS = 400 };
/* The broker drops the connection once, after this many events. */
enum { DROP_AFTER_EVENTS = 11 };

/* ----- small helpers ------------------------------------------------------ */

static void check(snp_status st, const char *what) {
    if (st == SNP_OK || st == SNP_EMPTY) return;
    char message[1024];
    snp_last_error_message(message, sizeof message);
    fprintf(stderr, "gateway: %s: %s: %s\n", what, snp_status_str(st), message);
    exit(2);
}

static void on_failure(void *user_data, int32_t kind, const char *message, uint64_t lost) {
    (void)user_data;
    fprintf(stderr, "gateway: store report %d: %s (%llu lost)\n", (int)kind, message,
            (unsigned long long)lost);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void uid_text(const snp_uuid *u, char out[37]) {
    static const char hex[] = "0123456789abcdef";
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
        out[j++] = hex[u->bytes[i] >> 4];
        out[j++] = hex[u->bytes[i] & 15];
    }
    out[j] = '\0';
}

static bool parse_uid(const char *text, snp_uuid *u) {
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (text[j] == '-') j++;
        unsigned v;
        if (sscanf(text + j, "%2x", &v) != 1) return false;
        u->bytes[i] = (uint8_t)v;
        j += 2;
    }
    return true;
}

/* Writes a whole line to a socket or pipe; false if the peer is gone. */
static bool send_line(int fd, const char *line) {
    size_t len = strlen(line), done = 0;
    while (done < len) {
        ssize_t n = send(fd, line + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(fd, line + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += (size_t)n;
    }
    return true;
}

/* A line reader over a socket. */
typedef struct {
    int fd;
    char buf[4096];
    size_t len;
} reader;

/* The next complete line (without '\n') into `line`: 1, 0 if none is
 * complete yet, -1 at end of stream or error. Reads at most once. */
static int read_line(reader *r, char *line, size_t cap, bool may_read) {
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl) {
            size_t n = (size_t)(nl - r->buf);
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(line, r->buf, copy);
            line[copy] = '\0';
            memmove(r->buf, nl + 1, r->len - n - 1);
            r->len -= n + 1;
            return 1;
        }
        if (!may_read) return 0;
        ssize_t got = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        r->len += (size_t)got;
        may_read = false;
    }
}

/* ----- the broker ---------------------------------------------------------- */

typedef struct {
    snp_uuid storage_uid;
    bool knows_uid;
    char (*seen)[37];
    size_t seen_len, seen_cap;
    unsigned events, duplicates, connections;
    bool dropped_once;
} broker_state;

static bool broker_seen(broker_state *b, const char *uid) {
    for (size_t i = 0; i < b->seen_len; i++)
        if (strcmp(b->seen[i], uid) == 0) return true;
    if (b->seen_len == b->seen_cap) {
        b->seen_cap = b->seen_cap ? 2 * b->seen_cap : 64;
        b->seen = realloc(b->seen, b->seen_cap * sizeof *b->seen);
        if (!b->seen) exit(2);
    }
    snprintf(b->seen[b->seen_len++], 37, "%s", uid);
    return false;
}

/* One message from the gateway; false to drop the connection. */
static bool broker_message(broker_state *b, int conn, int queue_fd, char *line) {
    char reply[256], uid[64] = "", name[64] = "", args[64] = "";
    if (strncmp(line, "HELLO ", 6) == 0) {
        char text[37] = "none";
        if (b->knows_uid) uid_text(&b->storage_uid, text);
        snprintf(reply, sizeof reply, "ONLINE %s\n", text);
        return send_line(conn, reply);
    }
    if (sscanf(line, "UID %63s", uid) == 1 && parse_uid(uid, &b->storage_uid)) {
        b->knows_uid = true;
        b->seen_len = 0; /* duplicate detection starts afresh for a new storage uid */
        printf("broker:  storage uid %s\n", uid);
        return true;
    }
    if (sscanf(line, "EVENT %63s %63s %63s", uid, name, args) != 3) return true;
    b->events++;
    if (broker_seen(b, uid)) {
        b->duplicates++;
        printf("broker:  %s %s again (uid %.8s...): a repeat, dropped\n", name, args, uid);
    } else {
        printf("broker:  queued %s %s\n", name, args);
        snprintf(reply, sizeof reply, "%s %s %s\n", uid, name, args);
        send_line(queue_fd, reply);
    }
    fflush(stdout);
    if (!b->dropped_once && b->events == DROP_AFTER_EVENTS) {
        b->dropped_once = true;
        printf("broker:  -- dropping the connection (network trouble) --\n");
        return false;
    }
    sleep_ms(ACK_DELAY_MS);
    snprintf(reply, sizeof reply, "ACK %s\n", uid);
    return send_line(conn, reply);
}

/* Serves gateways one connection at a time until killed; each queued
 * event is written to `queue_fd` as "<uid> <name> <args>". */
static void broker(int listen_fd, int queue_fd) {
    broker_state b = {0};
    for (;;) {
        int conn = accept(listen_fd, NULL, NULL);
        if (conn < 0) continue;
        b.connections++;
        reader r = {.fd = conn};
        char line[256];
        while (read_line(&r, line, sizeof line, true) == 1) {
            if (!broker_message(&b, conn, queue_fd, line)) break;
            while (read_line(&r, line, sizeof line, false) == 1)
                if (!broker_message(&b, conn, queue_fd, line)) goto next;
        }
    next:
        close(conn);
    }
}

/* ----- the gateway ----------------------------------------------------------- */

static int connect_to(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* Sends everything the controller asks for; false if the socket broke. */
static bool send_outputs(snp_service_controller *ctl, int conn) {
    snp_service_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    char line[4096], uid[37];
    while (snp_service_controller_next_output(ctl, &out) == SNP_OK) {
        if (out.kind == SNP_OUTPUT_SEND_STORAGE_UID) {
            uid_text(&out.storage_uid, uid);
            snprintf(line, sizeof line, "UID %s\n", uid);
        } else if (out.kind == SNP_OUTPUT_SEND_EVENT) {
            uid_text(&out.event.uid, uid);
            snprintf(line, sizeof line, "EVENT %s %s %.*s\n", uid, out.event.name,
                     (int)out.event.args_len, (const char *)out.event.args);
        } else {
            printf("gateway: the broker refused %s\n", out.event.name);
            continue;
        }
        if (!send_line(conn, line)) return false;
    }
    return true;
}

/* Connects, says hello and goes online; -1 if the broker is not there. */
static int go_online(snp_service_controller *ctl, uint16_t port, reader *r) {
    int conn = connect_to(port);
    if (conn < 0) return -1;
    char hello[64], uid[37], line[128];
    uid_text(&SERVICE_UID, uid);
    snprintf(hello, sizeof hello, "HELLO %s\n", uid);
    *r = (reader){.fd = conn};
    if (!send_line(conn, hello) || read_line(r, line, sizeof line, true) != 1 ||
        strncmp(line, "ONLINE ", 7) != 0) {
        close(conn);
        return -1;
    }
    snp_uuid theirs;
    bool remembers = parse_uid(line + 7, &theirs);
    check(snp_service_controller_connected(ctl), "connected");
    check(snp_service_controller_online(ctl, remembers ? &theirs : NULL), "online");
    printf("gateway: online (the broker remembers %s)\n", remembers ? "our storage uid" : "none");
    fflush(stdout);
    return conn;
}

/* Raises readings first..last, one every RAISE_EVERY_MS, reporting each
 * uid whose raise returned SNP_OK to `report_fd`; then stays until nothing
 * is pending, and exits. */
static void gateway(const char *dir, uint16_t port, int first, int last, int report_fd) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.service_uid = SERVICE_UID;
    o.on_failure = on_failure;
    snp_service *store = NULL;
    check(snp_service_open(&o, &store), "open");
    snp_service_controller *ctl = NULL;
    check(snp_service_controller_new(store, RESEND_MS, &ctl), "controller");
    snp_service_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    check(snp_service_get_stats(store, &st), "stats");
    printf("gateway: started, %llu event(s) pending in the journal\n",
           (unsigned long long)st.pending_events);
    fflush(stdout);
    reader r;
    int conn = -1, next = first;
    uint64_t next_raise = now_ms();
    for (;;) {
        if (conn < 0 && (conn = go_online(ctl, port, &r)) < 0) sleep_ms(50);
        uint64_t now = now_ms();
        if (next <= last && now >= next_raise) {
            char args[32];
            int n = snprintf(args, sizeof args, "reading-%02d", next);
            snp_event e = {SNP_EVENT_QUEUEING, "Temperature", strlen("Temperature"),
                           (const uint8_t *)args, (size_t)n, 0};
            /* "P" before the raise, "O" once it returned SNP_OK: a kill in
             * between leaves a raise that may or may not be stored. */
            char line[96];
            snprintf(line, sizeof line, "P %s\n", args);
            send_line(report_fd, line);
            snp_uuid uid;
            check(snp_service_controller_raise(ctl, &e, &uid), "raise");
            snprintf(line, sizeof line, "O %s\n", args);
            send_line(report_fd, line);
            printf("gateway: raised %s\n", args);
            fflush(stdout);
            next++;
            next_raise = now + RAISE_EVERY_MS;
        }
        check(snp_service_controller_tick(ctl, now), "tick");
        if (conn >= 0 && !send_outputs(ctl, conn)) {
            close(conn);
            conn = -1;
            check(snp_service_controller_disconnected(ctl), "disconnected");
            printf("gateway: connection lost; reconnecting\n");
            continue;
        }
        check(snp_service_get_stats(store, &st), "stats");
        if (next > last && st.pending_events == 0) break;
        struct pollfd p = {.fd = conn, .events = POLLIN};
        int wait = next <= last ? (int)(next_raise > now ? next_raise - now : 0) : 100;
        if (conn >= 0 && poll(&p, 1, wait) > 0) {
            char line[128];
            int got;
            while ((got = read_line(&r, line, sizeof line, true)) == 1) {
                snp_uuid acked;
                if (strncmp(line, "ACK ", 4) == 0 && parse_uid(line + 4, &acked))
                    check(snp_service_controller_ack(ctl, &acked), "ack");
                if (r.len == 0 || !memchr(r.buf, '\n', r.len)) break;
            }
            if (got < 0) {
                close(conn);
                conn = -1;
                check(snp_service_controller_disconnected(ctl), "disconnected");
                printf("gateway: connection lost; reconnecting\n");
            }
        } else if (conn < 0) {
            sleep_ms((unsigned)wait);
        }
    }
    printf("gateway: everything acknowledged; exiting\n");
    if (conn >= 0) close(conn);
    snp_service_controller_free(ctl);
    snp_service_close(store);
}

/* ----- the demonstration ------------------------------------------------------ */

/* Reads every line of `fd` (until end of stream) into `lines`. */
static size_t read_all(int fd, char lines[][96], size_t cap) {
    reader r = {.fd = fd};
    size_t n = 0;
    while (n < cap && read_line(&r, lines[n], 96, true) == 1) {
        n++;
        while (n < cap && read_line(&r, lines[n], 96, false) == 1) n++;
    }
    return n;
}

static pid_t start_gateway(const char *dir, uint16_t port, int first, int last, int report_w) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        gateway(dir, port, first, last, report_w);
        _exit(0);
    }
    return pid;
}

/* How many lines of `lines` end with " <reading>". */
static size_t copies(char lines[][96], size_t n, const char *reading) {
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        const char *space = strrchr(lines[i], ' ');
        if (space && strcmp(space + 1, reading) == 0) found++;
    }
    return found;
}

/* True if the broker queued every reading whose raise returned SNP_OK
 * ("O") exactly once, a reading whose raise a kill interrupted ("P" only)
 * at most once, nothing else, and in raise order. Counts the readings
 * raised into *ok. */
static bool exactly_once(char report[][96], size_t n_report, char queued[][96], size_t n_queued,
                         size_t *ok) {
    size_t accounted = 0;
    *ok = 0;
    for (size_t i = 0; i < n_report; i++) {
        if (report[i][0] != 'P') continue;
        const char *reading = report[i] + 2;
        bool returned = false;
        for (size_t j = 0; j < n_report; j++)
            if (report[j][0] == 'O' && strcmp(report[j] + 2, reading) == 0) returned = true;
        size_t c = copies(queued, n_queued, reading);
        if (returned ? c != 1 : c > 1) return false;
        *ok += returned;
        accounted += c;
    }
    for (size_t j = 1; j < n_queued; j++) {
        const char *a = strrchr(queued[j - 1], ' '), *b = strrchr(queued[j], ' ');
        if (!a || !b || strcmp(a, b) >= 0) return false; /* reading-NN sorts by number */
    }
    return accounted == n_queued;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (a fresh directory for the journal)\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        perror(dir);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(listen_fd, 4) != 0 || getsockname(listen_fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("broker socket");
        return 2;
    }
    uint16_t port = ntohs(a.sin_port);
    int queue[2], report[2];
    if (pipe(queue) != 0 || pipe(report) != 0) return 2;
    pid_t broker_pid = fork();
    if (broker_pid == 0) {
        close(queue[0]);
        close(report[0]);
        close(report[1]);
        broker(listen_fd, queue[1]);
        _exit(0);
    }
    close(listen_fd);
    close(queue[1]);

    printf("-- run 1: the gateway raises readings; killed with SIGKILL after 200 ms\n");
    pid_t g = start_gateway(dir, port, 1, READINGS_PER_RUN, report[1]);
    sleep_ms(200);
    kill(g, SIGKILL);
    waitpid(g, NULL, 0);
    printf("-- run 1 killed\n");
    printf("-- run 2: a new gateway process over the same journal\n");
    g = start_gateway(dir, port, READINGS_PER_RUN + 1, 2 * READINGS_PER_RUN, report[1]);
    int status = 0;
    waitpid(g, &status, 0);
    close(report[1]);
    kill(broker_pid, SIGTERM);
    waitpid(broker_pid, NULL, 0);

    static char report_lines[128][96], queued[256][96];
    size_t n_report = read_all(report[0], report_lines, 128);
    size_t n_queued = read_all(queue[0], queued, 256);
    size_t n_raised = 0;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
              exactly_once(report_lines, n_report, queued, n_queued, &n_raised);
    printf("-- %zu reading(s) raised (each raise returned SNP_OK), %zu queued by the broker: %s\n",
           n_raised, n_queued, ok ? "each exactly once, in order" : "MISMATCH");
    if (ok && n_queued > n_raised)
        printf("   (and the reading whose raise the kill interrupted, stored before it)\n");
    return ok ? 0 : 1;
}
