/* The delivery controllers of the C ABI (snp_service_controller_*,
 * snp_client_controller_*) in a child process killed with SIGKILL at random
 * moments, talking over a real socket to a broker model with message loss
 * and random disconnects (docs/PROTOCOL.md, docs/BEHAVIOUR.md section 6).
 *
 * The parent is the broker model; each child is an endpoint process that
 * opens a level-2 store (SNP_LEVEL_FILE, SNP_DURABILITY_SYNC) in a mkdtemp
 * directory, makes a controller over it and connects to the parent over a
 * UNIX stream socket in that directory (a real socket: the kernel closes it
 * when the child dies, as it would a TCP connection; unlike loopback TCP it
 * needs no port and leaves no TIME_WAIT behind a thousand connections). The
 * frames are the test's own (type, length, payload). The parent kills the
 * child with SIGKILL at a random moment and starts a new one on the same
 * files, SNP_KILLS times (default 200); then a last child runs unkilled
 * until everything is delivered, and the parent checks what arrived.
 *
 * Runs:
 * 1. Service controller. Each child raises Queueing events on three names
 *    (a global sequence number in the arguments, the raise order) at random
 *    moments, drives tick/next_deadline with CLOCK_MONOTONIC and a 50 ms
 *    resend timeout, and reconnects at once when the socket closes. Before
 *    each raise it writes "P seq" to a pipe to the parent, and "O seq uid"
 *    once the raise returned SNP_OK (a pipe write of less than PIPE_BUF is
 *    all or nothing, so a kill never leaves half a line; "P" also says
 *    whether the store was in cache mode, to count it). The broker model
 *    follows PROTOCOL.md 2.1 and 2.6: on accept it says
 *    online(the storage uid it remembers, or none); a storage uid other
 *    than the remembered one replaces it and clears the duplicate state;
 *    per name it keeps the uid of the last event it acknowledged: a repeat
 *    of it is acknowledged again and not queued, any other event is queued
 *    and acknowledged. An event that arrives while the broker remembers no
 *    storage uid (the service's uid message was lost) is a protocol error:
 *    the broker closes the connection, and the next online(none) makes the
 *    service send it again. The last child raises 20 more events and exits
 *    once its store holds nothing pending ("D").
 *    Check: every event whose raise returned SNP_OK is in the broker's
 *    queue exactly once, with the uid the raise returned; per name the
 *    queue is in raise order; nothing else is queued except, at most once,
 *    the event whose raise a kill interrupted (its "P" is the killed
 *    child's last and it has no "O": whether it was stored is unknown).
 *    The storage uid the broker was told must never change, and no
 *    failure report may count an event lost.
 * 2. Client controller, in both handler orders, each with a stateful and a
 *    stateless client (4 runs; SNP_ORDER_RECORD_AFTER_HANDLE is at least
 *    once, SNP_ORDER_RECORD_BEFORE_HANDLE at most once). The broker model
 *    streams numbered events (ids 1, 2, ...) on three subscriptions, one in
 *    flight per subscription, in order, resent with the same id every
 *    50 ms until acknowledged; it keeps the last acknowledged id per
 *    subscription and resumes after it (stateful), or resumes after the
 *    ids of the client's hello (stateless: snp_client_for_each over the
 *    store; PROTOCOL.md 3.1 and 3.3). A child writes "I sub id" before
 *    snp_client_controller_incoming, "handles" an event by writing
 *    "H sub id" to the pipe (the parent sees each handling once, in
 *    order) and then doing its own durable work (append to a file and
 *    fdatasync it: a handler that takes a while, so that kills do strike
 *    between handling and recording), writes "K sub id" once
 *    snp_client_controller_handled returned, then acknowledges ("A sub
 *    id" instead of "H" when the controller says it is a duplicate). Both
 *    client kinds are run because the kill is answered differently: the
 *    stateful broker resends what was not acknowledged, the stateless one
 *    resumes after the ids the store holds. For the last child the
 *    streams end 10 events after the highest id sent so far; the parent
 *    closes the child's control pipe when every subscription is
 *    acknowledged to its end, and the child exits.
 *    Check, per subscription, over the handlings in order: ids 1..end, each
 *    next one the previous + 1, except
 *    - record-after-handle: the same id again (a duplicate) only where the
 *      previous handling was the last one of a killed child and that child
 *      had not written "K" for it (the kill struck between handling and
 *      recording): at most one per kill per subscription;
 *    - record-before-handle: never the same id twice; an id skipped only if
 *      a killed child's last "I" for the subscription was that id and it
 *      has no "H" for it (the kill struck between incoming, which recorded
 *      it, and the handling): at most one per kill per subscription.
 *
 * Message loss: the parent drops 10% of the frames it receives and 10% of
 * those it would send (seeded RNG: SNP_SEED=<number> replays a seed, which
 * is printed; the timing of processes is not replayed, so a seed gives the
 * same choices but not necessarily the same run). Random disconnects: each
 * connection gets a random lifetime of 10..250 ms, 2% of received frames
 * close it, and a connection that sent nothing for 150 ms is closed (a
 * handshake message was lost). Kills: 10% of the children are killed within
 * 3 ms of the fork (while opening the store, recovering the journal),
 * the others 0..60 ms after they said they are ready, plus up to as long
 * again as their start took (so that under valgrind, where a start takes
 * some 150 ms instead of 3, a child still gets somewhere).
 *
 * Waits are poll() on the sockets and pipes with the protocol's timers
 * (resend, connection lifetime, kill moment) as timeouts, and waitpid():
 * no sleep is used as synchronisation. The children exit with exit(0)
 * after freeing everything, so ASan and valgrind check them too (a killed
 * child is not checked). Under valgrind, `make c-test` passes SNP_KILLS=20.
 * SNP_RUN=1..5 runs only that run (with SNP_SEED, to replay a failure).
 *
 * The numbers measured (events, kills, duplicates, lost to a kill, frames
 * dropped, connections, disconnects) are printed per run. If the library
 * loses or duplicates beyond what the protocol allows, the test fails with
 * the seed and what it saw; it is never loosened to pass. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"

/* ----- parameters --------------------------------------------------------- */

#define DEFAULT_KILLS 200
#define RESEND_MS 50          /* controller and broker resend timeout */
#define IDLE_CLOSE_MS 150     /* broker closes a silent connection */
#define CONN_LIFE_MIN_MS 10   /* random lifetime of a connection */
#define CONN_LIFE_MAX_MS 250
#define DROP_PERMILLE 100     /* 10% of frames lost each way */
#define CLOSE_PERMILLE 20     /* 2% of received frames close the connection */
#define EARLY_KILL_PERCENT 10 /* killed within EARLY_KILL_MAX_MS of the fork */
#define EARLY_KILL_MAX_MS 3
#define LIFE_MAX_MS 60        /* otherwise 0..60 ms (+ start time) after "ready" */
#define RAISE_GAP_MAX_MS 20   /* service: 0..20 ms between raises */
#define FINAL_RAISES 20       /* raised by the last service child */
#define FINAL_EXTRA 10        /* events per subscription for the last client */
#define READY_TIMEOUT_MS 60000
#define FINAL_TIMEOUT_MS 300000

#define NAMES 3
static const char *const NAME[NAMES] = {"svc.alpha", "svc.beta", "svc.gamma"};
#define SUBS 3
static const char *const SUB[SUBS] = {"feed.one", "feed.two", "feed.three"};

static const snp_uuid SERVICE_UID = {{0x3c, 0x1f, 0x8a, 0x52, 0x6e, 0x04, 0x4b, 0x9d, 0xa1,
                                      0x77, 0x20, 0xc5, 0x91, 0x0e, 0x6b, 0xd3}};

/* Frames: type (1 byte), payload length (2 bytes, host order), payload. */
enum {
    M_ONLINE = 1,  /* broker -> service: has (1), uid (16) */
    M_STORAGE_UID, /* service -> broker: uid (16) */
    M_EVENT,       /* service -> broker: kind (1), uid (16), args_len (2), args, name */
    M_ACK,         /* broker -> service: uid (16) */
    M_HELLO,       /* client -> broker: kind (1), n (1), n x [len (1), name, id (8)] */
    M_DELIVER,     /* broker -> client: id (8), name */
    M_CACK         /* client -> broker: id (8), name */
};
#define FRAME_MAX 1024
#define LINK_BUF 16384

/* ----- small tools -------------------------------------------------------- */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct {
    uint64_t s;
} rng_t;

/* splitmix64 */
static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in 0..n-1 (0 when n is 0). */
static uint64_t rng_below(rng_t *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

static int rng_permille(rng_t *r, unsigned permille) { return rng_below(r, 1000) < permille; }

static void hex_of(const snp_uuid *u, char out[33]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[u->bytes[i] >> 4];
        out[2 * i + 1] = digits[u->bytes[i] & 15];
    }
    out[32] = 0;
}

static int nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int uid_of_hex(const char *hex, snp_uuid *out) {
    for (int i = 0; i < 16; i++) {
        int hi = nibble(hex[2 * i]), lo = hi < 0 ? -1 : nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out->bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void write_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        CHECK(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* One line to the parent: a single write() of less than PIPE_BUF bytes, so
 * it is in the pipe whole or not at all. */
static void report(int fd, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    CHECK(n > 0 && (size_t)n < sizeof line);
    write_all(fd, line, (size_t)n);
}

static void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    CHECK(flags >= 0);
    CHECK(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    if (v == NULL || *v == 0) return fallback;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    CHECK(end != NULL && *end == 0 && n >= 0 && n <= 100000);
    return (int)n;
}

static int name_index(const char *const *names, int count, const unsigned char *p, size_t n) {
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == n && memcmp(names[i], p, n) == 0) return i;
    return -1;
}

/* A growing array of *cap items of item_size bytes: returns it with room
 * for index i, the new items zeroed. */
static void *grow(void *items, size_t *cap, size_t item_size, size_t i) {
    if (i < *cap) return items;
    size_t n = *cap ? *cap : 64;
    while (n <= i) n *= 2;
    char *p = realloc(items, n * item_size);
    CHECK(p != NULL);
    memset(p + *cap * item_size, 0, (n - *cap) * item_size);
    *cap = n;
    return p;
}

/* ----- a framed link over a stream socket -------------------------------- */

typedef struct {
    int fd; /* -1: none */
    int broken;
    unsigned char buf[LINK_BUF];
    size_t len;
} link_t;

/* Sends one frame; a failure marks the link broken (the peer is gone). */
static void link_send(link_t *l, int type, const unsigned char *payload, size_t n) {
    unsigned char frame[3 + FRAME_MAX];
    CHECK(n <= FRAME_MAX);
    if (l->fd < 0 || l->broken) return;
    uint16_t len16 = (uint16_t)n;
    frame[0] = (unsigned char)type;
    memcpy(frame + 1, &len16, 2);
    if (n) memcpy(frame + 3, payload, n);
    size_t off = 0, total = 3 + n;
    while (off < total) {
        ssize_t w = send(l->fd, frame + off, total - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            /* Parent side (non-blocking): a full buffer loses the frame, or
             * the connection if part of the frame went. */
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && off == 0) return;
            l->broken = 1;
            return;
        }
        off += (size_t)w;
    }
}

/* Reads what is there: 1 if something was read, 0 if nothing (would
 * block), -1 at end of stream or error (marks the link broken). */
static int link_read(link_t *l) {
    for (;;) {
        if (l->len == sizeof l->buf) return 1; /* a full buffer: parse first */
        ssize_t n = read(l->fd, l->buf + l->len, sizeof l->buf - l->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n <= 0) {
            l->broken = 1;
            return -1;
        }
        l->len += (size_t)n;
        return 1;
    }
}

/* Takes the next whole frame from the buffer: 1 and its parts, or 0. */
static int link_frame(link_t *l, int *type, unsigned char *payload, size_t *n) {
    if (l->len < 3) return 0;
    uint16_t len16;
    memcpy(&len16, l->buf + 1, 2);
    CHECK(len16 <= FRAME_MAX);
    if (l->len < 3u + len16) return 0;
    *type = l->buf[0];
    memcpy(payload, l->buf + 3, len16);
    *n = len16;
    memmove(l->buf, l->buf + 3 + len16, l->len - 3 - len16);
    l->len -= 3u + len16;
    return 1;
}

/* ----- a run: the parent's state ------------------------------------------ */

enum { RUN_SERVICE, RUN_CLIENT };

/* A child process, one per generation. */
typedef struct {
    int killed, early;
    uint64_t last_p; /* service: seq of its last "P" (0: none) */
    int64_t last_i[SUBS], last_h[SUBS], last_k[SUBS], last_a[SUBS]; /* client: -1 none */
} gen_info;

/* What the parent learnt of one sequence number (service). */
typedef struct {
    int gen;
    int name;
    int pending; /* "P" seen */
    int ok;      /* "O" seen */
    snp_uuid uid;
    int queued; /* times it entered the broker's queue */
} seq_info;

typedef struct {
    uint64_t seq;
    int name;
    snp_uuid uid;
} queued_event;

typedef struct {
    int gen;
    int64_t id;
} handling;

typedef struct {
    int kind; /* RUN_* */
    int order, client_kind;
    const char *label;
    rng_t rng;
    uint64_t seed;
    int kills;
    char dir[64];
    char sock_path[96];
    struct sockaddr_un sock_addr;
    int listen_fd;

    /* the current connection */
    link_t conn;
    uint64_t conn_close_at, conn_last_rx;
    int conn_hello; /* client: hello received on this connection */
    int64_t in_flight[SUBS];
    uint64_t resend_at[SUBS];

    /* the current child */
    int gen;
    pid_t pid;
    int final_run;
    int report_fd, control_fd;
    char line[4096];
    size_t line_len;
    uint64_t spawned_at, kill_at; /* kill_at 0: not yet decided */
    int ready, drained;
    gen_info *gens;
    size_t gens_cap;

    /* service broker */
    int has_uid;
    snp_uuid uid;
    int has_last[NAMES];
    snp_uuid last_acked[NAMES];
    queued_event *queue;
    size_t queue_len, queue_cap;
    seq_info *seqs;
    size_t seqs_cap;
    uint64_t next_seq; /* the next sequence number a child raises */
    int uid_seen;
    snp_uuid child_uid; /* storage uid the children said */

    /* client broker */
    int64_t position[SUBS]; /* last acknowledged id */
    int64_t max_sent[SUBS];
    int64_t limit[SUBS];
    int control_closed;
    handling *hs[SUBS];
    size_t hs_len[SUBS], hs_cap[SUBS];

    /* counters */
    uint64_t dropped_in, dropped_out, frames_in, frames_out, connections, random_closes,
        idle_closes, protocol_closes, peer_closes, repeats, broker_resends, stale_acks,
        early_kills, raised_ok, raised_in_cache, interrupted, interrupted_queued, incoming,
        ack_dups, uid_changes, failure_reports[8], failure_lost;
} run;

/* The run in progress: everything the parent allocates hangs from here, so
 * a child's leak check (valgrind, LSan) sees it as reachable. */
static run *current;

static void fail(run *r, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "test_controller_kill: %s: FAILED (SNP_SEED=%" PRIu64 ", kills %d, child %d): ",
            r->label, r->seed, r->kills, r->gen);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(the files are left in %s)\n", r->dir);
    if (r->pid > 0) kill(r->pid, SIGKILL);
    exit(1);
}

/* ----- the children --------------------------------------------------------- */

typedef struct {
    int report_fd;
} failure_sink;

/* on_failure of a child's store: tells the parent. */
static void child_on_failure(void *user_data, int32_t kind, const char *message,
                             uint64_t events_lost) {
    const failure_sink *sink = user_data;
    (void)message;
    report(sink->report_fd, "F %d %" PRIu64 "\n", (int)kind, events_lost);
}

static int child_connect(const run *r) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int rc;
    do {
        rc = connect(fd, (const struct sockaddr *)&r->sock_addr, sizeof r->sock_addr);
    } while (rc != 0 && errno == EINTR);
    CHECK(rc == 0);
    return fd;
}

/* Frees the link and exits: ASan and valgrind check the child's memory. */
static void child_exit(link_t *l, int control_fd, int report_fd) {
    if (l->fd >= 0) close(l->fd);
    free(l);
    close(control_fd);
    close(report_fd);
    exit(0);
}

/* Sends what the controller asks for, in order. */
static void service_flush(snp_service_controller *c, link_t *l) {
    snp_service_output out;
    unsigned char p[FRAME_MAX];
    for (;;) {
        memset(&out, 0, sizeof out);
        out.struct_size = sizeof out;
        snp_status st = snp_service_controller_next_output(c, &out);
        if (st == SNP_EMPTY) return;
        CHECK_OK(st);
        switch (out.kind) {
        case SNP_OUTPUT_SEND_STORAGE_UID:
            link_send(l, M_STORAGE_UID, out.storage_uid.bytes, 16);
            break;
        case SNP_OUTPUT_SEND_EVENT: {
            const snp_stored_event *e = &out.event;
            uint16_t args_len = (uint16_t)e->args_len;
            size_t n = 0;
            CHECK(1 + 16 + 2 + e->args_len + e->name_len <= sizeof p);
            p[n++] = (unsigned char)e->kind;
            memcpy(p + n, e->uid.bytes, 16);
            n += 16;
            memcpy(p + n, &args_len, 2);
            n += 2;
            memcpy(p + n, e->args, e->args_len);
            n += e->args_len;
            memcpy(p + n, e->name, e->name_len);
            n += e->name_len;
            link_send(l, M_EVENT, p, n);
            break;
        }
        default:
            /* The broker refuses nothing: a rejection is not expected. */
            CHECK(out.kind == SNP_OUTPUT_SEND_EVENT || out.kind == SNP_OUTPUT_SEND_STORAGE_UID);
        }
    }
}

static void service_child(const run *r, uint64_t seed, uint64_t first_seq, int final_run,
                          int report_fd, int control_fd) {
    rng_t rng = {seed};
    failure_sink sink = {report_fd};
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = r->dir;
    o.service_uid = SERVICE_UID;
    o.durability = SNP_DURABILITY_SYNC;
    o.on_failure = child_on_failure;
    o.user_data = &sink;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    snp_service_controller *c = NULL;
    CHECK_OK(snp_service_controller_new(s, RESEND_MS, &c));
    snp_uuid su;
    char hex[33];
    CHECK_OK(snp_service_storage_uid(s, &su));
    hex_of(&su, hex);
    report(report_fd, "Y %s\n", hex);

    link_t *l = calloc(1, sizeof *l);
    CHECK(l != NULL);
    l->fd = child_connect(r);
    CHECK_OK(snp_service_controller_tick(c, now_ms()));
    CHECK_OK(snp_service_controller_connected(c));
    service_flush(c, l);

    uint64_t seq = first_seq;
    int raised = 0, raising = 1;
    uint64_t next_raise = now_ms() + rng_below(&rng, RAISE_GAP_MAX_MS + 1);
    unsigned char p[FRAME_MAX];
    for (;;) {
        uint64_t now = now_ms();
        CHECK_OK(snp_service_controller_tick(c, now));
        service_flush(c, l);
        if (raising && now >= next_raise) {
            int name = (int)rng_below(&rng, NAMES);
            unsigned char args[8];
            memcpy(args, &seq, 8);
            snp_event e = make_event(SNP_EVENT_QUEUEING, NAME[name], NULL);
            e.args = args;
            e.args_len = 8;
            snp_uuid uid;
            int32_t mode = -1;
            CHECK_OK(snp_service_mode(s, &mode));
            report(report_fd, "P %" PRIu64 " %d %d\n", seq, name, (int)mode);
            CHECK_OK(snp_service_controller_raise(c, &e, &uid));
            hex_of(&uid, hex);
            report(report_fd, "O %" PRIu64 " %s\n", seq, hex);
            service_flush(c, l);
            seq++;
            raised++;
            if (final_run && raised >= FINAL_RAISES) raising = 0;
            next_raise = now + rng_below(&rng, RAISE_GAP_MAX_MS + 1);
        }
        if (l->broken) {
            CHECK_OK(snp_service_controller_disconnected(c));
            service_flush(c, l);
            close(l->fd);
            l->fd = child_connect(r);
            l->broken = 0;
            l->len = 0;
            CHECK_OK(snp_service_controller_connected(c));
            service_flush(c, l);
            continue;
        }
        if (final_run && !raising && service_stats(s).pending_events == 0) {
            report(report_fd, "D\n");
            snp_service_controller_free(c);
            snp_service_close(s);
            child_exit(l, control_fd, report_fd);
        }
        int timeout = -1;
        uint64_t deadline = 0;
        snp_status st = snp_service_controller_next_deadline(c, &deadline);
        CHECK(st == SNP_OK || st == SNP_EMPTY);
        now = now_ms();
        if (st == SNP_OK) timeout = deadline > now ? (int)(deadline - now) : 0;
        if (raising) {
            int t = next_raise > now ? (int)(next_raise - now) : 0;
            if (timeout < 0 || t < timeout) timeout = t;
        }
        struct pollfd pf[2] = {{l->fd, POLLIN, 0}, {control_fd, POLLIN, 0}};
        int rc = poll(pf, 2, timeout);
        CHECK(rc >= 0 || errno == EINTR);
        if (rc <= 0) continue;
        if (pf[1].revents) {
            /* The parent is gone: stop. */
            snp_service_controller_free(c);
            snp_service_close(s);
            child_exit(l, control_fd, report_fd);
        }
        if (pf[0].revents == 0) continue;
        link_read(l);
        int type;
        size_t n;
        while (!l->broken && link_frame(l, &type, p, &n)) {
            CHECK_OK(snp_service_controller_tick(c, now_ms()));
            if (type == M_ONLINE) {
                CHECK(n == 17);
                snp_uuid u;
                memcpy(u.bytes, p + 1, 16);
                CHECK_OK(snp_service_controller_online(c, p[0] ? &u : NULL));
            } else {
                CHECK(type == M_ACK && n == 16);
                snp_uuid u;
                memcpy(u.bytes, p, 16);
                CHECK_OK(snp_service_controller_ack(c, &u));
            }
            service_flush(c, l);
        }
    }
}

typedef struct {
    unsigned char *p;
    size_t n;
    int count;
} hello_buf;

static void hello_entry(void *user_data, const char *name, size_t name_len, int64_t id) {
    hello_buf *h = user_data;
    CHECK(name_len < 64 && h->n + 1 + name_len + 8 <= FRAME_MAX);
    h->p[h->n++] = (unsigned char)name_len;
    memcpy(h->p + h->n, name, name_len);
    h->n += name_len;
    memcpy(h->p + h->n, &id, 8);
    h->n += 8;
    h->count++;
}

static void client_hello(const run *r, snp_client *s, link_t *l) {
    unsigned char p[FRAME_MAX];
    hello_buf h = {p, 2, 0};
    p[0] = (unsigned char)r->client_kind;
    if (r->client_kind == SNP_CLIENT_STATELESS) CHECK_OK(snp_client_for_each(s, hello_entry, &h));
    p[1] = (unsigned char)h.count;
    link_send(l, M_HELLO, p, h.n);
}

static void client_child(const run *r, int report_fd, int control_fd) {
    failure_sink sink = {report_fd};
    snp_client_options o;
    snp_client_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = r->dir;
    o.server_address = "broker.test";
    o.client_key = "kill-test";
    o.durability = SNP_DURABILITY_SYNC;
    o.on_failure = child_on_failure;
    o.user_data = &sink;
    snp_client *s = NULL;
    CHECK_OK(snp_client_open(&o, &s));
    CHECK(client_stats(s).level == SNP_LEVEL_FILE);
    snp_client_controller *c = NULL;
    CHECK_OK(snp_client_controller_new(s, r->client_kind, r->order, &c));
    char log_path[128];
    snprintf(log_path, sizeof log_path, "%s/handled.log", r->dir);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    CHECK(log_fd >= 0);
    report(report_fd, "Y\n");

    link_t *l = calloc(1, sizeof *l);
    CHECK(l != NULL);
    l->fd = child_connect(r);
    client_hello(r, s, l);
    unsigned char p[FRAME_MAX];
    for (;;) {
        if (l->broken) {
            close(l->fd);
            l->fd = child_connect(r);
            l->broken = 0;
            l->len = 0;
            client_hello(r, s, l);
            continue;
        }
        struct pollfd pf[2] = {{l->fd, POLLIN, 0}, {control_fd, POLLIN, 0}};
        int rc = poll(pf, 2, -1);
        CHECK(rc >= 0 || errno == EINTR);
        if (rc <= 0) continue;
        if (pf[1].revents) {
            /* Told to stop (or the parent is gone). */
            snp_client_controller_free(c);
            snp_client_close(s);
            close(log_fd);
            child_exit(l, control_fd, report_fd);
        }
        if (pf[0].revents == 0) continue;
        link_read(l);
        int type;
        size_t n;
        while (!l->broken && link_frame(l, &type, p, &n)) {
            CHECK(type == M_DELIVER && n > 8);
            int64_t id;
            memcpy(&id, p, 8);
            const char *name = (const char *)p + 8;
            size_t name_len = n - 8;
            int sub = name_index(SUB, SUBS, p + 8, name_len);
            CHECK(sub >= 0);
            report(report_fd, "I %d %" PRId64 "\n", sub, id);
            int32_t decision = -1;
            CHECK_OK(snp_client_controller_incoming(c, name, name_len, id, &decision));
            if (decision == SNP_DECISION_HANDLE) {
                /* The handling: the parent sees it once it is in the pipe;
                 * then the handler's own durable work, which takes a while
                 * (a kill there is a kill between handling and recording). */
                report(report_fd, "H %d %" PRId64 "\n", sub, id);
                char entry[64];
                int len = snprintf(entry, sizeof entry, "%d %" PRId64 "\n", sub, id);
                write_all(log_fd, entry, (size_t)len);
                CHECK(fdatasync(log_fd) == 0);
                CHECK_OK(snp_client_controller_handled(c, name, name_len, id));
                report(report_fd, "K %d %" PRId64 "\n", sub, id);
            } else {
                CHECK(decision == SNP_DECISION_ACK_DUPLICATE);
                report(report_fd, "A %d %" PRId64 "\n", sub, id);
            }
            link_send(l, M_CACK, p, n); /* the same (id, name) */
        }
    }
}

/* ----- the broker model (parent) ----------------------------------------- */

static void broker_send(run *r, int type, const unsigned char *p, size_t n) {
    if (r->conn.fd < 0) return;
    if (rng_permille(&r->rng, DROP_PERMILLE)) {
        r->dropped_out++;
        return;
    }
    r->frames_out++;
    link_send(&r->conn, type, p, n);
}

static void conn_close(run *r) {
    if (r->conn.fd >= 0) close(r->conn.fd);
    r->conn.fd = -1;
    r->conn.broken = 0;
    r->conn.len = 0;
    r->conn_hello = 0;
    for (int i = 0; i < SUBS; i++) r->in_flight[i] = 0;
}

static void client_deliver(run *r, int sub, int64_t id) {
    unsigned char p[FRAME_MAX];
    size_t len = strlen(SUB[sub]);
    memcpy(p, &id, 8);
    memcpy(p + 8, SUB[sub], len);
    broker_send(r, M_DELIVER, p, 8 + len);
}

/* Client broker: the subscription's next event, if none is in flight. */
static void client_pump(run *r, int sub) {
    if (r->conn.fd < 0 || !r->conn_hello || r->in_flight[sub] != 0) return;
    int64_t next = r->position[sub] + 1;
    if (next > r->limit[sub]) return;
    r->in_flight[sub] = next;
    r->resend_at[sub] = now_ms() + RESEND_MS;
    if (next > r->max_sent[sub]) r->max_sent[sub] = next;
    client_deliver(r, sub, next);
}

static void on_accept(run *r) {
    r->connections++;
    uint64_t now = now_ms();
    r->conn_last_rx = now;
    r->conn_close_at =
        now + CONN_LIFE_MIN_MS + rng_below(&r->rng, CONN_LIFE_MAX_MS - CONN_LIFE_MIN_MS + 1);
    if (r->kind == RUN_SERVICE) {
        unsigned char p[17];
        p[0] = (unsigned char)r->has_uid;
        memcpy(p + 1, r->uid.bytes, 16);
        if (!r->has_uid) memset(p + 1, 0, 16);
        broker_send(r, M_ONLINE, p, sizeof p);
    }
}

static void service_frame(run *r, int type, const unsigned char *p, size_t n) {
    if (type == M_STORAGE_UID) {
        if (n != 16) fail(r, "storage uid frame of %zu bytes", n);
        snp_uuid u;
        memcpy(u.bytes, p, 16);
        if (!r->has_uid || !uid_eq(&u, &r->uid)) {
            /* PROTOCOL.md 2.6: a new storage uid clears the duplicate state. */
            if (r->has_uid) r->uid_changes++;
            r->has_uid = 1;
            r->uid = u;
            memset(r->has_last, 0, sizeof r->has_last);
        }
        return;
    }
    if (type != M_EVENT) fail(r, "service sent frame type %d", type);
    if (n < 1 + 16 + 2) fail(r, "short event frame (%zu bytes)", n);
    int kind = p[0];
    snp_uuid uid;
    memcpy(uid.bytes, p + 1, 16);
    uint16_t args_len;
    memcpy(&args_len, p + 17, 2);
    if (kind != SNP_EVENT_QUEUEING || args_len != 8 || n < 19u + 8u + 1u)
        fail(r, "unexpected event (kind %d, %u bytes of arguments)", kind, (unsigned)args_len);
    uint64_t seq;
    memcpy(&seq, p + 19, 8);
    int name = name_index(NAME, NAMES, p + 27, n - 27);
    if (name < 0) fail(r, "event with an unknown name (seq %" PRIu64 ")", seq);
    if (!r->has_uid) {
        /* The storage uid was lost: this event cannot be placed. */
        r->protocol_closes++;
        conn_close(r);
        return;
    }
    if (!(r->has_last[name] && uid_eq(&r->last_acked[name], &uid))) {
        r->queue = grow(r->queue, &r->queue_cap, sizeof *r->queue, r->queue_len);
        r->queue[r->queue_len].seq = seq;
        r->queue[r->queue_len].name = name;
        r->queue[r->queue_len].uid = uid;
        r->queue_len++;
        r->has_last[name] = 1;
        r->last_acked[name] = uid;
    } else {
        r->repeats++;
    }
    broker_send(r, M_ACK, uid.bytes, 16);
}

static void client_frame(run *r, int type, const unsigned char *p, size_t n) {
    if (type == M_HELLO) {
        if (n < 2 || p[0] != r->client_kind) fail(r, "bad hello");
        if (r->client_kind == SNP_CLIENT_STATELESS) {
            /* Resume after the ids the client holds; from the head without. */
            for (int i = 0; i < SUBS; i++) r->position[i] = 0;
            size_t off = 2;
            for (int k = 0; k < p[1]; k++) {
                size_t len = off < n ? p[off] : 0;
                if (off + 1 + len + 8 > n) fail(r, "bad hello entry");
                int sub = name_index(SUB, SUBS, p + off + 1, len);
                if (sub < 0) fail(r, "hello names an unknown subscription");
                memcpy(&r->position[sub], p + off + 1 + len, 8);
                off += 1 + len + 8;
            }
        }
        r->conn_hello = 1;
        for (int i = 0; i < SUBS; i++) client_pump(r, i);
        return;
    }
    if (type != M_CACK || n <= 8) fail(r, "client sent frame type %d", type);
    int64_t id;
    memcpy(&id, p, 8);
    int sub = name_index(SUB, SUBS, p + 8, n - 8);
    if (sub < 0) fail(r, "ack for an unknown subscription");
    if (r->in_flight[sub] != 0 && r->in_flight[sub] == id) {
        r->position[sub] = id;
        r->in_flight[sub] = 0;
        client_pump(r, sub);
    } else {
        r->stale_acks++;
    }
}

/* Reads and handles what the connection holds (drops, random closes). */
static void conn_input(run *r) {
    int got = link_read(&r->conn);
    if (got > 0) r->conn_last_rx = now_ms();
    int type;
    size_t n;
    unsigned char p[FRAME_MAX];
    while (r->conn.fd >= 0 && link_frame(&r->conn, &type, p, &n)) {
        if (rng_permille(&r->rng, DROP_PERMILLE)) {
            r->dropped_in++;
            continue;
        }
        r->frames_in++;
        if (r->kind == RUN_SERVICE)
            service_frame(r, type, p, n);
        else
            client_frame(r, type, p, n);
        if (r->conn.fd >= 0 && rng_permille(&r->rng, CLOSE_PERMILLE)) {
            r->random_closes++;
            conn_close(r);
        }
    }
    if (r->conn.fd >= 0 && r->conn.broken) {
        r->peer_closes++;
        conn_close(r);
    }
}

static void accept_all(run *r) {
    for (;;) {
        int fd = accept(r->listen_fd, NULL, NULL);
        if (fd < 0) {
            CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                  errno == ECONNABORTED);
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        set_nonblocking(fd);
        /* A child has one connection at a time: the newest is the live one. */
        conn_close(r);
        r->conn.fd = fd;
        on_accept(r);
    }
}

/* ----- reports from the child ------------------------------------------- */

static void child_line(run *r, const char *line) {
    gen_info *g = &r->gens[r->gen];
    char tag = line[0];
    if (tag == 'Y') {
        if (r->kind == RUN_SERVICE) {
            snp_uuid u;
            if (strlen(line) != 34 || uid_of_hex(line + 2, &u) != 0) fail(r, "bad line '%s'", line);
            if (r->uid_seen && !uid_eq(&u, &r->child_uid)) {
                /* A new journal (only a kill during its creation may do this
                 * legitimately): counted and shown. */
                printf("  (child %d: the store has a new storage uid %s)\n", r->gen, line + 2);
            }
            r->uid_seen = 1;
            r->child_uid = u;
        }
        r->ready = 1;
        if (!r->final_run && r->kill_at == 0) {
            /* 0..60 ms, plus as long again as the start took: a slow
             * process (valgrind) gets as far as a fast one. */
            uint64_t now = now_ms();
            r->kill_at = now + rng_below(&r->rng, LIFE_MAX_MS + (now - r->spawned_at) + 1);
        }
        return;
    }
    if (tag == 'F') {
        int kind = 0;
        uint64_t lost = 0;
        if (sscanf(line, "F %d %" SCNu64, &kind, &lost) != 2) fail(r, "bad line '%s'", line);
        r->failure_reports[kind & 7]++;
        r->failure_lost += lost;
        return;
    }
    if (tag == 'D') {
        r->drained = 1;
        return;
    }
    if (r->kind == RUN_SERVICE) {
        uint64_t seq = 0;
        if (tag == 'P') {
            int name = -1, mode = -1;
            if (sscanf(line, "P %" SCNu64 " %d %d", &seq, &name, &mode) != 3 ||
                seq != r->next_seq || name < 0 || name >= NAMES)
                fail(r, "bad line '%s' (expected seq %" PRIu64 ")", line, r->next_seq);
            r->seqs = grow(r->seqs, &r->seqs_cap, sizeof *r->seqs, seq);
            r->seqs[seq].gen = r->gen;
            r->seqs[seq].name = name;
            r->seqs[seq].pending = 1;
            if (mode == SNP_MODE_CACHE) r->raised_in_cache++;
            g->last_p = seq;
            r->next_seq++;
            return;
        }
        if (tag == 'O') {
            char hex[40];
            if (sscanf(line, "O %" SCNu64 " %39s", &seq, hex) != 2 || seq != g->last_p ||
                seq == 0 || uid_of_hex(hex, &r->seqs[seq].uid) != 0)
                fail(r, "bad line '%s'", line);
            r->seqs[seq].ok = 1;
            r->raised_ok++;
            return;
        }
        fail(r, "bad line '%s'", line);
    }
    int sub = -1;
    int64_t id = 0;
    if (sscanf(line + 1, " %d %" SCNd64, &sub, &id) != 2 || sub < 0 || sub >= SUBS || id <= 0)
        fail(r, "bad line '%s'", line);
    switch (tag) {
    case 'I':
        g->last_i[sub] = id;
        r->incoming++;
        break;
    case 'H':
        g->last_h[sub] = id;
        r->hs[sub] = grow(r->hs[sub], &r->hs_cap[sub], sizeof *r->hs[sub], r->hs_len[sub]);
        r->hs[sub][r->hs_len[sub]].gen = r->gen;
        r->hs[sub][r->hs_len[sub]].id = id;
        r->hs_len[sub]++;
        break;
    case 'K':
        if (g->last_h[sub] != id) fail(r, "'%s' does not follow its H", line);
        g->last_k[sub] = id;
        break;
    case 'A':
        g->last_a[sub] = id;
        r->ack_dups++;
        break;
    default:
        fail(r, "bad line '%s'", line);
    }
}

/* Reads the report pipe: 1 while it is open, 0 at its end. */
static int child_reports(run *r) {
    for (;;) {
        if (r->line_len == sizeof r->line) fail(r, "report line too long");
        ssize_t n = read(r->report_fd, r->line + r->line_len, sizeof r->line - r->line_len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        CHECK(n >= 0);
        if (n == 0) return 0;
        r->line_len += (size_t)n;
        char *start = r->line, *nl;
        while ((nl = memchr(start, '\n', r->line_len - (size_t)(start - r->line))) != NULL) {
            *nl = 0;
            child_line(r, start);
            start = nl + 1;
        }
        r->line_len -= (size_t)(start - r->line);
        memmove(r->line, start, r->line_len);
    }
}

/* ----- one run -------------------------------------------------------------- */

static void spawn(run *r) {
    int rp[2], cp[2];
    CHECK(pipe(rp) == 0);
    CHECK(pipe(cp) == 0);
    uint64_t child_seed = rng_next(&r->rng);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(rp[0]);
        close(cp[1]);
        close(r->listen_fd);
        if (r->kind == RUN_SERVICE)
            service_child(r, child_seed, r->next_seq, r->final_run, rp[1], cp[0]);
        else
            client_child(r, rp[1], cp[0]);
        _exit(3); /* not reached */
    }
    close(rp[1]);
    close(cp[0]);
    set_nonblocking(rp[0]);
    r->pid = pid;
    r->report_fd = rp[0];
    r->control_fd = cp[1];
    r->line_len = 0;
    r->ready = 0;
    r->drained = 0;
    r->control_closed = 0;
    r->spawned_at = now_ms();
    r->kill_at = 0;
    gen_info *g = &r->gens[r->gen];
    for (int i = 0; i < SUBS; i++) g->last_i[i] = g->last_h[i] = g->last_k[i] = g->last_a[i] = -1;
    if (!r->final_run && rng_below(&r->rng, 100) < EARLY_KILL_PERCENT) {
        g->early = 1;
        r->early_kills++;
        r->kill_at = r->spawned_at + rng_below(&r->rng, EARLY_KILL_MAX_MS + 1);
    }
}

static int wait_child(run *r) {
    int status = 0;
    pid_t got;
    do {
        got = waitpid(r->pid, &status, 0);
    } while (got < 0 && errno == EINTR);
    CHECK(got == r->pid);
    r->pid = 0;
    return status;
}

/* After the child is gone: everything it wrote, and the data it sent. */
static void after_child(run *r) {
    set_nonblocking(r->report_fd); /* already; the writer is gone: reads end */
    while (child_reports(r)) {
        struct pollfd pf = {r->report_fd, POLLIN, 0};
        CHECK(poll(&pf, 1, -1) >= 0 || errno == EINTR);
    }
    close(r->report_fd);
    if (!r->control_closed) close(r->control_fd);
    r->control_closed = 1;
    /* What the dead child had sent still arrives, as over TCP. */
    while (r->conn.fd >= 0) {
        struct pollfd pf = {r->conn.fd, POLLIN, 0};
        CHECK(poll(&pf, 1, -1) >= 0 || errno == EINTR);
        conn_input(r);
    }
    /* Connections it made that were never accepted. */
    accept_all(r);
    conn_close(r);
}

static void kill_child(run *r) {
    CHECK(kill(r->pid, SIGKILL) == 0);
    int status = wait_child(r);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
        fail(r, "the child ended by itself before the kill (status %#x)", (unsigned)status);
    r->gens[r->gen].killed = 1;
    after_child(r);
}

/* The next time something must happen in the parent (ms), or 0. */
static uint64_t next_timer(const run *r) {
    uint64_t t = 0;
#define EARLIEST(x)                                                                           \
    do {                                                                                      \
        uint64_t x_ = (x);                                                                    \
        if (x_ && (t == 0 || x_ < t)) t = x_;                                                 \
    } while (0)
    EARLIEST(r->kill_at);
    if (!r->ready) EARLIEST(r->spawned_at + READY_TIMEOUT_MS);
    if (r->final_run) EARLIEST(r->spawned_at + FINAL_TIMEOUT_MS);
    if (r->conn.fd >= 0) {
        EARLIEST(r->conn_close_at);
        EARLIEST(r->conn_last_rx + IDLE_CLOSE_MS);
        for (int i = 0; i < SUBS; i++)
            if (r->in_flight[i]) EARLIEST(r->resend_at[i]);
    }
#undef EARLIEST
    return t;
}

static int client_done(const run *r) {
    for (int i = 0; i < SUBS; i++)
        if (r->position[i] < r->limit[i]) return 0;
    return 1;
}

static void final_state(const run *r) {
    fprintf(stderr, "state: ready %d, drained %d, connection %d, broker uid %d", r->ready,
            r->drained, r->conn.fd >= 0, r->has_uid);
    if (r->kind == RUN_CLIENT)
        for (int i = 0; i < SUBS; i++)
            fprintf(stderr, ", %s at %" PRId64 " of %" PRId64 " (in flight %" PRId64 ")", SUB[i],
                    r->position[i], r->limit[i], r->in_flight[i]);
    fprintf(stderr, "\n");
}

/* One child's life: until it is killed or, the last one, it is done. */
static void generation(run *r) {
    spawn(r);
    for (;;) {
        uint64_t now = now_ms();
        if (r->kill_at && now >= r->kill_at) {
            kill_child(r);
            return;
        }
        if (!r->ready && now >= r->spawned_at + READY_TIMEOUT_MS)
            fail(r, "the child did not open its store within %d ms", READY_TIMEOUT_MS);
        if (r->final_run && now >= r->spawned_at + FINAL_TIMEOUT_MS) {
            final_state(r);
            fail(r, "the last child did not finish within %d ms", FINAL_TIMEOUT_MS);
        }
        if (r->conn.fd >= 0 && now >= r->conn_close_at) {
            r->random_closes++;
            conn_close(r);
        }
        if (r->conn.fd >= 0 && now >= r->conn_last_rx + IDLE_CLOSE_MS) {
            r->idle_closes++;
            conn_close(r);
        }
        if (r->kind == RUN_CLIENT && r->conn.fd >= 0)
            for (int i = 0; i < SUBS; i++)
                if (r->in_flight[i] && now >= r->resend_at[i]) {
                    r->broker_resends++;
                    r->resend_at[i] = now + RESEND_MS;
                    client_deliver(r, i, r->in_flight[i]);
                }
        if (r->conn.fd >= 0 && r->conn.broken) {
            r->peer_closes++;
            conn_close(r);
        }
        if (r->kind == RUN_CLIENT && r->final_run && !r->control_closed && client_done(r)) {
            close(r->control_fd); /* the child frees everything and exits */
            r->control_closed = 1;
        }
        uint64_t t = next_timer(r);
        now = now_ms();
        int timeout = t == 0 ? -1 : (t > now ? (int)(t - now) : 0);
        struct pollfd pf[3] = {{r->listen_fd, POLLIN, 0},
                               {r->report_fd, POLLIN, 0},
                               {r->conn.fd, POLLIN, 0}};
        int rc = poll(pf, r->conn.fd >= 0 ? 3 : 2, timeout);
        CHECK(rc >= 0 || errno == EINTR);
        if (rc <= 0) continue;
        if (pf[1].revents && !child_reports(r)) {
            /* The child ended on its own: only the last one may. */
            int status = wait_child(r);
            if (!r->final_run || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail(r, "the child ended on its own (exit %d, signal %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            after_child(r);
            if (r->kind == RUN_SERVICE && !r->drained)
                fail(r, "the last child exited without draining its store");
            if (r->kind == RUN_CLIENT && !client_done(r)) {
                final_state(r);
                fail(r, "the last child exited before the end of the streams");
            }
            return;
        }
        if (r->conn.fd >= 0 && pf[2].revents) conn_input(r);
        if (pf[0].revents) accept_all(r);
    }
}

/* ----- checks ----------------------------------------------------------------- */

static void check_service(run *r) {
    uint64_t last_seq[NAMES] = {0};
    for (size_t i = 0; i < r->queue_len; i++) {
        const queued_event *q = &r->queue[i];
        if (q->seq == 0 || q->seq >= r->next_seq || !r->seqs[q->seq].pending)
            fail(r, "the broker queued an event never raised (seq %" PRIu64 ")", q->seq);
        seq_info *s = &r->seqs[q->seq];
        char want[33], got[33];
        hex_of(&s->uid, want);
        hex_of(&q->uid, got);
        if (q->name != s->name)
            fail(r, "event %" PRIu64 " was raised on %s but reached the broker on %s", q->seq,
                 NAME[s->name], NAME[q->name]);
        if (s->ok && !uid_eq(&s->uid, &q->uid))
            fail(r, "event %" PRIu64 " reached the broker with uid %s, its raise returned %s",
                 q->seq, got, want);
        if (!s->ok && !(r->gens[s->gen].killed && r->gens[s->gen].last_p == q->seq))
            fail(r, "event %" PRIu64 " reached the broker but its raise did not return SNP_OK "
                    "and no kill interrupted it",
                 q->seq);
        if (++s->queued > 1)
            fail(r, "event %" PRIu64 " (%s, uid %s, raised by child %d%s) reached the broker's "
                    "queue %d times (expected exactly once)",
                 q->seq, NAME[q->name], got, s->gen, r->gens[s->gen].killed ? ", killed" : "",
                 s->queued);
        if (q->seq <= last_seq[q->name])
            fail(r, "%s: event %" PRIu64 " reached the broker after event %" PRIu64
                    " (raise order broken)",
                 NAME[q->name], q->seq, last_seq[q->name]);
        last_seq[q->name] = q->seq;
        if (!s->ok) r->interrupted_queued++;
    }
    for (uint64_t seq = 1; seq < r->next_seq; seq++) {
        const seq_info *s = &r->seqs[seq];
        if (!s->ok) {
            r->interrupted++;
            continue;
        }
        if (s->queued != 1) {
            char hex[33];
            hex_of(&s->uid, hex);
            fail(r, "event %" PRIu64 " (%s, uid %s, raised by child %d) whose raise returned "
                    "SNP_OK never reached the broker",
                 seq, NAME[s->name], hex, s->gen);
        }
    }
    if (r->uid_changes) fail(r, "the service told %" PRIu64 " new storage uids", r->uid_changes);
    CHECK(r->queue_len == r->raised_ok + r->interrupted_queued);
}

/* Counts duplicates and events lost to kills; fails on anything else.
 * *window: kills that struck a subscription between handling and recording
 * (after handle: an "H" without its "K") or between incoming and handling
 * (before handle: an "I" with neither "H" nor "A"), an upper bound of the
 * duplicates or losses (the kill may have come before incoming recorded, or
 * after handled did). */
static void check_client(run *r, uint64_t *handled, uint64_t *dups, uint64_t *lost,
                         uint64_t *window) {
    *handled = *dups = *lost = *window = 0;
    for (int g = 0; g < r->kills; g++)
        for (int s = 0; s < SUBS; s++) {
            const gen_info *gi = &r->gens[g];
            if (r->order == SNP_ORDER_RECORD_AFTER_HANDLE)
                *window += gi->last_h[s] >= 0 && gi->last_k[s] != gi->last_h[s];
            else
                *window += gi->last_i[s] >= 0 && gi->last_h[s] != gi->last_i[s] &&
                           gi->last_a[s] != gi->last_i[s];
        }
    for (int s = 0; s < SUBS; s++) {
        int64_t prev = 0;
        int prev_gen = 0;
        for (size_t i = 0; i < r->hs_len[s]; i++) {
            const handling *h = &r->hs[s][i];
            (*handled)++;
            if (h->id == prev + 1) {
                /* in order */
            } else if (h->id == prev && r->order == SNP_ORDER_RECORD_AFTER_HANDLE) {
                const gen_info *g = &r->gens[prev_gen];
                if (!(h->gen != prev_gen && g->killed && g->last_h[s] == prev &&
                      g->last_k[s] != prev))
                    fail(r, "%s: event %" PRId64 " handled again by child %d; the child that "
                            "handled it before (%d, %s) %s",
                         SUB[s], h->id, h->gen, prev_gen, g->killed ? "killed" : "not killed",
                         g->last_k[s] == prev ? "had recorded it" : "was not interrupted there");
                (*dups)++;
            } else if (h->id > prev + 1 && r->order == SNP_ORDER_RECORD_BEFORE_HANDLE) {
                for (int64_t y = prev + 1; y < h->id; y++) {
                    int found = 0;
                    for (int g = prev_gen; g < h->gen && !found; g++)
                        found = r->gens[g].killed && r->gens[g].last_i[s] == y &&
                                r->gens[g].last_h[s] != y;
                    if (!found)
                        fail(r, "%s: event %" PRId64 " was never handled, and no kill struck "
                                "between its incoming and its handling (next handled: %" PRId64
                                " by child %d)",
                             SUB[s], y, h->id, h->gen);
                    (*lost)++;
                }
            } else {
                fail(r, "%s: child %d handled event %" PRId64 " after event %" PRId64
                        " (handled by child %d)",
                     SUB[s], h->gen, h->id, prev, prev_gen);
            }
            prev = h->id;
            prev_gen = h->gen;
        }
        if (prev != r->limit[s])
            fail(r, "%s: the last event handled is %" PRId64 ", the stream ends at %" PRId64,
                 SUB[s], prev, r->limit[s]);
    }
}

/* ----- driver ------------------------------------------------------------------- */

static void run_one(run *r) {
    double t0 = (double)now_ms();
    r->rng.s = r->seed ^ (uint64_t)(r->kind * 31 + r->order * 7 + r->client_kind + 1) *
                             0x2545F4914F6CDD1Dull;
    snprintf(r->dir, sizeof r->dir, "/tmp/snp_test_controller_kill_XXXXXX");
    CHECK(mkdtemp(r->dir) != NULL);
    snprintf(r->sock_path, sizeof r->sock_path, "%s/broker.sock", r->dir);
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(r->listen_fd >= 0);
    r->sock_addr.sun_family = AF_UNIX;
    CHECK(strlen(r->sock_path) < sizeof r->sock_addr.sun_path);
    memcpy(r->sock_addr.sun_path, r->sock_path, strlen(r->sock_path) + 1);
    CHECK(bind(r->listen_fd, (struct sockaddr *)&r->sock_addr, sizeof r->sock_addr) == 0);
    CHECK(listen(r->listen_fd, 16) == 0);
    set_nonblocking(r->listen_fd);
    r->conn.fd = -1;
    r->next_seq = 1;
    for (int i = 0; i < SUBS; i++) r->limit[i] = INT64_MAX;
    r->gens = grow(r->gens, &r->gens_cap, sizeof *r->gens, (size_t)r->kills);

    for (r->gen = 0; r->gen <= r->kills; r->gen++) {
        r->final_run = r->gen == r->kills;
        if (r->final_run)
            for (int i = 0; i < SUBS; i++) r->limit[i] = r->max_sent[i] + FINAL_EXTRA;
        generation(r);
    }
    r->gen--;
    close(r->listen_fd);
    unlink(r->sock_path);

    double secs = ((double)now_ms() - t0) / 1000.0;
    if (r->kind == RUN_SERVICE) {
        check_service(r);
        printf("%s: %d kills (%" PRIu64 " within %d ms of the fork), %" PRIu64
               " events raised OK (%" PRIu64 " of all raises in cache mode), each queued once, "
               "in order per name; %" PRIu64 " raises interrupted by a kill (%" PRIu64
               " of them queued, once); %" PRIu64 " resends recognised by the broker\n",
               r->label, r->kills, r->early_kills, EARLY_KILL_MAX_MS, r->raised_ok,
               r->raised_in_cache, r->interrupted, r->interrupted_queued, r->repeats);
    } else {
        uint64_t handled, dups, lost, window, events = 0;
        check_client(r, &handled, &dups, &lost, &window);
        for (int i = 0; i < SUBS; i++) events += (uint64_t)r->limit[i];
        printf("%s: %d kills (%" PRIu64 " within %d ms of the fork), %" PRIu64
               " events on %d subscriptions, %" PRIu64 " handlings, %" PRIu64
               " duplicates (handled again after a kill), %" PRIu64 " lost to a kill (%" PRIu64
               " kills struck between %s); %" PRIu64
               " incoming, %" PRIu64 " acked as duplicates by the controller, %" PRIu64
               " broker resends, %" PRIu64 " stale acks\n",
               r->label, r->kills, r->early_kills, EARLY_KILL_MAX_MS, events, SUBS, handled, dups,
               lost, window,
               r->order == SNP_ORDER_RECORD_AFTER_HANDLE ? "handling and recording"
                                                         : "incoming and handling",
               r->incoming, r->ack_dups, r->broker_resends, r->stale_acks);
    }
    printf("  frames: %" PRIu64 " received, %" PRIu64 " sent, %" PRIu64 " dropped in, %" PRIu64
           " dropped out; %" PRIu64 " connections (connects and reconnects), closed: %" PRIu64
           " at random, %" PRIu64
           " idle, %" PRIu64 " protocol error, %" PRIu64 " by the child; failure reports: %" PRIu64
           " interrupted writes, %" PRIu64 " other, %" PRIu64 " events lost; %.1f s\n",
           r->frames_in, r->frames_out, r->dropped_in, r->dropped_out, r->connections,
           r->random_closes, r->idle_closes, r->protocol_closes, r->peer_closes,
           r->failure_reports[SNP_FAILURE_INTERRUPTED_WRITE],
           r->failure_reports[1] + r->failure_reports[2] + r->failure_reports[3] +
               r->failure_reports[5] + r->failure_reports[6] + r->failure_reports[0] +
               r->failure_reports[7],
           r->failure_lost, secs);
    if (r->failure_lost) fail(r, "the store reported %" PRIu64 " events lost", r->failure_lost);
    remove_dir(r->dir);
}

static void run_free(run *r) {
    free(r->gens);
    free(r->queue);
    free(r->seqs);
    for (int i = 0; i < SUBS; i++) free(r->hs[i]);
    free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *seed_env = getenv("SNP_SEED");
    uint64_t seed;
    if (seed_env && *seed_env) {
        seed = strtoull(seed_env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)getpid() << 32);
    }
    int kills = env_int("SNP_KILLS", DEFAULT_KILLS);
    int only = env_int("SNP_RUN", 0); /* 1..5: that run only (to replay one) */
    printf("controller_kill: SNP_SEED=%" PRIu64 " SNP_KILLS=%d\n", seed, kills);

    static const struct {
        int kind, order, client_kind;
        const char *label;
    } runs[] = {
        {RUN_SERVICE, 0, 0, "service controller"},
        {RUN_CLIENT, SNP_ORDER_RECORD_AFTER_HANDLE, SNP_CLIENT_STATEFUL,
         "client, record after handle, stateful"},
        {RUN_CLIENT, SNP_ORDER_RECORD_AFTER_HANDLE, SNP_CLIENT_STATELESS,
         "client, record after handle, stateless"},
        {RUN_CLIENT, SNP_ORDER_RECORD_BEFORE_HANDLE, SNP_CLIENT_STATEFUL,
         "client, record before handle, stateful"},
        {RUN_CLIENT, SNP_ORDER_RECORD_BEFORE_HANDLE, SNP_CLIENT_STATELESS,
         "client, record before handle, stateless"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        if (only != 0 && (size_t)only != i + 1) continue;
        current = calloc(1, sizeof *current);
        CHECK(current != NULL);
        current->kind = runs[i].kind;
        current->order = runs[i].order;
        current->client_kind = runs[i].client_kind;
        current->label = runs[i].label;
        current->seed = seed;
        current->kills = kills;
        run_one(current);
        run_free(current);
        current = NULL;
    }
    CHECK_DONE("controller_kill");
    return 0;
}
