/* Failure callbacks and custom backends that call their own store (the
 * "never crash the host" rules):
 * - a callback that raises an event into its full store for every
 *   SNP_FAILURE_CAPACITY_DROP report (each raise drops one more event):
 *   the callback is never entered recursively; the report its first raise
 *   causes comes after it returns, the one its second raise causes is held
 *   back, and one SNP_FAILURE_CALLBACK_LOOP report per outer raise says so.
 *   Every event raised is pending or counted dropped. At level 1 and at
 *   level 2 (the file reopens with the same events);
 * - callbacks that peek and ack, or reset, from inside a report;
 * - a custom backend that calls its own store gets SNP_ERR_STATE instead
 *   of a deadlock (the readers answer, with the values as of the last call
 *   that finished), and the outer call completes; the same backend may
 *   call another store. */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "helpers.h"

#define OUTER_RAISES 1000

static const snp_uuid SERVICE_UID = {{0x1c, 0xa1, 0x1b, 0xac, 0x10, 0xb1, 0x42, 0x6f, 0x92, 0x47,
                                      0xbb, 0x68, 0x0e, 0x5f, 0xe0, 0xc8}};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ----- a callback that calls its store ------------------------------------ */

enum on_drop { DO_NOTHING, RAISE_ONE, ACK_OLDEST, RESET };

/* Every raise of these tests stores one event of the same size, so making
 * room for one drops exactly one. */
#define ARGS_LEN 12

typedef struct loop_cb {
    const struct loop_cb *self;
    snp_service *s;
    enum on_drop on_drop;
    /* the callback's nesting */
    int depth, max_depth;
    /* reports */
    uint64_t calls, by_kind[8], lost_by_kind[8];
    int bad_message;
    uint64_t loop_lost; /* events_lost of the CALLBACK_LOOP reports */
    char loop_message[1024];
    /* the callback's calls */
    uint64_t raised, acked, reset_pending;
    uint64_t call_failures;
    snp_status first_failure;
    /* every uid raised, in store order (the test's and the callback's) */
    snp_uuid *order;
    size_t order_len, order_cap;
} loop_cb;

static void loop_cb_init(loop_cb *c, snp_service *s, size_t order_cap) {
    memset(c, 0, sizeof *c);
    c->self = c;
    c->s = s;
    c->order_cap = order_cap;
    c->order = malloc(order_cap * sizeof(snp_uuid));
    CHECK(c->order != NULL);
}

static snp_uuid *next_slot(loop_cb *c) {
    CHECK(c->order_len < c->order_cap);
    return &c->order[c->order_len++];
}

static snp_event sized_event(char *args, const char *tag, uint64_t i) {
    snprintf(args, ARGS_LEN + 1, "%s%010llu", tag, (unsigned long long)(i % 10000000000ULL));
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Loop", NULL);
    e.args = (const uint8_t *)args;
    e.args_len = ARGS_LEN;
    return e;
}

static void failed_in_callback(loop_cb *c, snp_status st) {
    if (c->call_failures++ == 0) c->first_failure = st;
}

static void on_failure(void *user_data, int32_t kind, const char *message, uint64_t lost) {
    loop_cb *c = user_data;
    if (c == NULL || c->self != c) {
        fprintf(stderr, "on_failure: wrong user_data %p\n", user_data);
        exit(1);
    }
    if (++c->depth > c->max_depth) c->max_depth = c->depth;
    c->calls++;
    if (kind >= 0 && kind < 8) {
        c->by_kind[kind]++;
        c->lost_by_kind[kind] += lost;
    }
    if (message == NULL || message[0] == 0) c->bad_message++;
    if (kind == SNP_FAILURE_CALLBACK_LOOP) {
        c->loop_lost += lost;
        snprintf(c->loop_message, sizeof c->loop_message, "%s", message ? message : "");
    }
    if (kind == SNP_FAILURE_CAPACITY_DROP) {
        char args[ARGS_LEN + 1];
        snp_stored_event out;
        snp_status st;
        switch (c->on_drop) {
        case DO_NOTHING: break;
        case RAISE_ONE: {
            snp_event e = sized_event(args, "cb", c->raised);
            st = snp_service_raise(c->s, &e, next_slot(c));
            if (st == SNP_OK) c->raised++;
            else failed_in_callback(c, st);
            break;
        }
        case ACK_OLDEST:
            st = snp_service_peek(c->s, &out);
            if (st == SNP_OK) st = snp_service_ack(c->s, &out.uid);
            if (st == SNP_OK) c->acked++;
            else failed_in_callback(c, st);
            break;
        case RESET: {
            snp_service_stats stats;
            memset(&stats, 0, sizeof stats);
            stats.struct_size = sizeof stats;
            st = snp_service_get_stats(c->s, &stats);
            if (st == SNP_OK) st = snp_service_reset(c->s);
            if (st == SNP_OK) c->reset_pending += stats.pending_events;
            else failed_in_callback(c, st);
            break;
        }
        }
    }
    c->depth--;
}

static snp_service *open_store(int level, loop_cb *c, const char *dir) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = level;
    o.memory_capacity = 4096;
    o.file_capacity = 8192;
    o.directory = dir;
    o.service_uid = SERVICE_UID;
    o.durability = SNP_DURABILITY_NONE;
    o.on_failure = on_failure;
    o.user_data = c;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(service_stats(s).level == level);
    c->s = s;
    return s;
}

/* Raises until the store drops for the first time (callback doing
 * nothing): full to the brim. Returns how many were raised. */
static uint64_t fill(loop_cb *c) {
    char args[ARGS_LEN + 1];
    uint64_t n = 0;
    c->on_drop = DO_NOTHING;
    while (service_stats(c->s).dropped_events == 0) {
        snp_event e = sized_event(args, "ap", n++);
        CHECK_OK(snp_service_raise(c->s, &e, next_slot(c)));
        CHECK(n < 1000);
    }
    CHECK(c->by_kind[SNP_FAILURE_CAPACITY_DROP] == 1);
    CHECK(service_stats(c->s).pending_events == n - 1);
    return n;
}

/* Drains the store; checks what is pending is the newest `pending` uids
 * of c->order, oldest first. */
static void check_pending_are_newest(loop_cb *c, uint64_t pending) {
    CHECK(service_stats(c->s).pending_events == pending);
    CHECK(c->order_len >= pending);
    CHECK_OK(snp_service_set_storage_mode(c->s));
    const snp_uuid *expected = &c->order[c->order_len - pending];
    for (uint64_t i = 0; i < pending; i++) {
        snp_stored_event out;
        CHECK_OK(snp_service_peek(c->s, &out));
        CHECK(uid_eq(&out.uid, &expected[i]));
        CHECK_OK(snp_service_ack(c->s, &out.uid));
    }
    snp_stored_event out;
    CHECK_STATUS(snp_service_peek(c->s, &out), SNP_EMPTY);
}

/* The natural pattern: raise an event for every capacity drop, into the
 * same full store. */
static void test_raise_per_drop(int level, const char *dir) {
    loop_cb c;
    loop_cb_init(&c, NULL, 1000 + 3 * OUTER_RAISES);
    snp_service *s = open_store(level, &c, dir);
    const uint64_t filled = fill(&c);
    const uint64_t brim = filled - 1; /* events the store holds */
    const uint64_t dropped_at_fill = service_stats(s).dropped_events;
    CHECK(dropped_at_fill == 1);

    c.on_drop = RAISE_ONE;
    char args[ARGS_LEN + 1];
    uint64_t wrong_loop_counts = 0;
    for (uint64_t i = 0; i < OUTER_RAISES; i++) {
        const uint64_t drops = c.by_kind[SNP_FAILURE_CAPACITY_DROP];
        const uint64_t loops = c.by_kind[SNP_FAILURE_CALLBACK_LOOP];
        const uint64_t raised = c.raised;
        snp_event e = sized_event(args, "up", i);
        CHECK_OK(snp_service_raise(s, &e, next_slot(&c)));
        /* The outer raise's drop is passed on, the callback raises; that
         * raise's drop is passed on after the callback returned, the
         * callback raises again; that raise's drop is held back. */
        CHECK(c.by_kind[SNP_FAILURE_CAPACITY_DROP] - drops == 2);
        CHECK(c.raised - raised == 2);
        if (c.by_kind[SNP_FAILURE_CALLBACK_LOOP] - loops != 1) wrong_loop_counts++;
        CHECK(c.depth == 0);
    }
    CHECK(wrong_loop_counts == 0);
    CHECK(c.max_depth == 1); /* never entered recursively */
    CHECK(c.call_failures == 0);
    CHECK(c.bad_message == 0);
    CHECK(c.by_kind[SNP_FAILURE_CALLBACK_LOOP] == OUTER_RAISES);
    CHECK(c.loop_lost == 0);
    CHECK(strstr(c.loop_message, "1 failure report") != NULL);
    CHECK(c.calls == 1 + 3 * OUTER_RAISES); /* 2 drops + 1 loop report each */

    snp_service_stats st = service_stats(s);
    const uint64_t raised_total = filled + OUTER_RAISES + c.raised;
    CHECK(c.raised == 2 * OUTER_RAISES);
    CHECK(raised_total == c.order_len);
    CHECK(st.pending_events == brim);
    /* Every raise on the full store dropped one: 1 at the fill, 3 per outer
     * raise (its own and the callback's two), held-back ones included. */
    CHECK(st.dropped_events == dropped_at_fill + 3 * OUTER_RAISES);
    CHECK(st.pending_events + st.dropped_events == raised_total); /* nothing acked */
    /* Reports passed on counted what they lost; the held-back ones are in
     * the stats only. */
    CHECK(c.lost_by_kind[SNP_FAILURE_CAPACITY_DROP] == 1 + 2 * OUTER_RAISES);
    CHECK(st.used_bytes <= st.capacity_bytes);
    printf("callbacks: level %d: %llu raises (%llu by the callback), %llu pending, %llu "
           "dropped, %llu loop reports, nesting depth %d, stats.failures %llu\n",
           level, (unsigned long long)raised_total, (unsigned long long)c.raised,
           (unsigned long long)st.pending_events, (unsigned long long)st.dropped_events,
           (unsigned long long)c.by_kind[SNP_FAILURE_CALLBACK_LOOP], c.max_depth,
           (unsigned long long)st.failures);

    if (level == SNP_LEVEL_FILE) {
        /* The journal holds exactly the pending events. */
        snp_service_close(s);
        c.on_drop = DO_NOTHING;
        s = open_store(level, &c, dir);
    }
    c.on_drop = DO_NOTHING;
    check_pending_are_newest(&c, brim);
    snp_service_close(s);
    free(c.order);
}

/* A callback that acknowledges the oldest pending event (the one in
 * flight) for every drop: the event the application had in flight was the
 * one dropped, and its late ack is refused. */
static void test_ack_per_drop(void) {
    loop_cb c;
    loop_cb_init(&c, NULL, 1000 + OUTER_RAISES);
    snp_service *s = open_store(SNP_LEVEL_MEMORY, &c, NULL);
    const uint64_t filled = fill(&c);
    const uint64_t brim = filled - 1;

    c.on_drop = ACK_OLDEST;
    char args[ARGS_LEN + 1];
    for (uint64_t i = 0; i < OUTER_RAISES; i++) {
        snp_stored_event in_flight;
        CHECK_OK(snp_service_peek(s, &in_flight));
        const uint64_t acked = c.acked;
        snp_event e = sized_event(args, "ak", i);
        snp_uuid *slot = next_slot(&c);
        /* Room was freed by the previous callback's ack: every other raise
         * drops (the one in flight) and its callback acks the next. */
        CHECK_OK(snp_service_raise(s, &e, slot));
        if (c.acked > acked) {
            CHECK_STATUS(snp_service_ack(s, &in_flight.uid), SNP_ERR_STATE); /* dropped */
        } else {
            CHECK_OK(snp_service_peek(s, &in_flight)); /* still the same one */
        }
        CHECK(c.depth == 0);
    }
    CHECK(c.call_failures == 0);
    CHECK(c.max_depth == 1);
    CHECK(c.by_kind[SNP_FAILURE_CALLBACK_LOOP] == 0); /* an ack causes no report */
    CHECK(c.acked >= OUTER_RAISES / 2);
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events + st.dropped_events + c.acked == filled + OUTER_RAISES);
    CHECK(st.dropped_events == c.by_kind[SNP_FAILURE_CAPACITY_DROP]);
    CHECK(st.pending_events <= brim);
    c.on_drop = DO_NOTHING;
    check_pending_are_newest(&c, st.pending_events);
    snp_service_close(s);
    free(c.order);
}

/* A callback that resets the store for every drop. */
static void test_reset_per_drop(void) {
    loop_cb c;
    loop_cb_init(&c, NULL, 1000 + OUTER_RAISES);
    snp_service *s = open_store(SNP_LEVEL_MEMORY, &c, NULL);
    const uint64_t filled = fill(&c);
    c.on_drop = RESET;
    char args[ARGS_LEN + 1];
    uint64_t resets = 0;
    for (uint64_t i = 0; i < OUTER_RAISES; i++) {
        const uint64_t before = c.by_kind[SNP_FAILURE_CAPACITY_DROP];
        snp_event e = sized_event(args, "rs", i);
        CHECK_OK(snp_service_raise(s, &e, next_slot(&c)));
        if (c.by_kind[SNP_FAILURE_CAPACITY_DROP] > before) {
            resets++;
            CHECK(service_stats(s).pending_events == 0);
        }
    }
    CHECK(c.call_failures == 0);
    CHECK(c.max_depth == 1);
    CHECK(resets >= OUTER_RAISES / filled);
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events + st.dropped_events + c.reset_pending == filled + OUTER_RAISES);
    snp_service_close(s);
    free(c.order);
}

/* ----- a custom backend that calls its own store --------------------------- */

#define LOG_MAX 64

typedef struct record {
    uint64_t seq;
    size_t len;
    uint8_t data[SNP_MAX_RECORD_LEN];
} record;

typedef struct calling_log {
    record recs[LOG_MAX];
    size_t count;
    uint64_t next_seq;
    uint8_t meta[SNP_MAX_METADATA_LEN];
    size_t meta_len;
    snp_service *own;   /* the store this backend belongs to (set after open) */
    snp_service *other; /* another store */
    bool readers;       /* call the readers too (the next call only) */
    /* what the backend's calls into the stores returned */
    int calls;
    snp_status raise_own, ack_own, peek_own, stats_own, mode_own, uid_own, raise_other;
    int message_names_backend;
} calling_log;

static void forget_statuses(calling_log *log) {
    log->raise_own = log->ack_own = log->peek_own = log->stats_own = log->mode_own =
        log->uid_own = log->raise_other = 12345;
    log->message_names_backend = 0;
}

static void call_own_store(calling_log *log) {
    if (log->own == NULL) return; /* still opening */
    log->calls++;
    snp_event e = make_event(SNP_EVENT_QUEUEING, "FromBackend", "1");
    log->raise_own = snp_service_raise(log->own, &e, NULL);
    log->message_names_backend = last_error_contains("custom backend");
    snp_stored_event out;
    log->peek_own = snp_service_peek(log->own, &out);
    snp_uuid uid;
    memset(&uid, 0, sizeof uid);
    log->ack_own = snp_service_ack(log->own, &uid);
    if (log->readers) {
        /* Readers never wait for the store's lock: they answer from the
         * backend too. Once is enough. */
        log->readers = false;
        snp_service_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        log->stats_own = snp_service_get_stats(log->own, &st);
        int32_t mode = 0;
        log->mode_own = snp_service_mode(log->own, &mode);
        log->uid_own = snp_service_storage_uid(log->own, &uid);
    }
    if (log->other) log->raise_other = snp_service_raise(log->other, &e, NULL);
}

static snp_status cl_append(void *ctx, const uint8_t *payload, size_t len, uint64_t *out_seq) {
    calling_log *log = ctx;
    call_own_store(log);
    if (log->count == LOG_MAX || len > SNP_MAX_RECORD_LEN) return SNP_ERR_STORAGE_FULL;
    record *r = &log->recs[log->count++];
    r->seq = log->next_seq++;
    r->len = len;
    memcpy(r->data, payload, len);
    *out_seq = r->seq;
    return SNP_OK;
}

static snp_status cl_remove(void *ctx, uint64_t seq, int32_t reason) {
    (void)reason;
    calling_log *log = ctx;
    call_own_store(log);
    for (size_t i = 0; i < log->count; i++) {
        if (log->recs[i].seq == seq) {
            memmove(&log->recs[i], &log->recs[i + 1], (log->count - i - 1) * sizeof(record));
            log->count--;
            return SNP_OK;
        }
    }
    return SNP_ERR_STATE;
}

static snp_status cl_read(void *ctx, uint64_t seq, uint8_t *buf, size_t buf_len,
                          size_t *out_len) {
    calling_log *log = ctx;
    call_own_store(log);
    for (size_t i = 0; i < log->count; i++) {
        if (log->recs[i].seq == seq && log->recs[i].len <= buf_len) {
            memcpy(buf, log->recs[i].data, log->recs[i].len);
            *out_len = log->recs[i].len;
            return SNP_OK;
        }
    }
    return SNP_ERR_IO;
}

static snp_status cl_scan(void *ctx, snp_record_visit_fn visit, void *visit_ctx) {
    calling_log *log = ctx;
    for (size_t i = 0; i < log->count; i++) {
        snp_status st = visit(visit_ctx, log->recs[i].seq, log->recs[i].data, log->recs[i].len);
        if (st != SNP_OK) return st;
    }
    return SNP_OK;
}

static snp_status cl_clear(void *ctx) {
    ((calling_log *)ctx)->count = 0;
    return SNP_OK;
}

static snp_status cl_get_metadata(void *ctx, uint8_t *buf, size_t buf_len, size_t *out_len) {
    calling_log *log = ctx;
    if (log->meta_len > buf_len) return SNP_ERR_IO;
    memcpy(buf, log->meta, log->meta_len);
    *out_len = log->meta_len;
    return SNP_OK;
}

static snp_status cl_set_metadata(void *ctx, const uint8_t *meta, size_t len) {
    calling_log *log = ctx;
    if (len > sizeof log->meta) return SNP_ERR_IO;
    memcpy(log->meta, meta, len);
    log->meta_len = len;
    return SNP_OK;
}

static void check_refused(calling_log *log, bool readers) {
    CHECK(log->raise_own == SNP_ERR_STATE);
    CHECK(log->message_names_backend);
    CHECK(log->peek_own == SNP_ERR_STATE);
    CHECK(log->ack_own == SNP_ERR_STATE);
    if (readers) {
        CHECK(log->stats_own == SNP_OK);
        CHECK(log->mode_own == SNP_OK);
        CHECK(log->uid_own == SNP_OK);
    }
    CHECK(log->raise_other == SNP_OK);
}

static void test_backend_calls_its_store(void) {
    static calling_log log;
    memset(&log, 0, sizeof log);
    log.next_seq = 1;
    snp_record_log_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = &log;
    vt.append = cl_append;
    vt.remove = cl_remove;
    vt.read = cl_read;
    vt.scan = cl_scan;
    vt.clear = cl_clear;
    vt.get_metadata = cl_get_metadata;
    vt.set_metadata = cl_set_metadata;
    failures f;
    failures_init(&f);
    snp_service_options o;
    snp_service_options_init(&o);
    o.on_failure = record_failure;
    o.user_data = &f;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open_custom(&vt, &o, &s));
    snp_service_options mo;
    snp_service_options_init(&mo);
    mo.level = SNP_LEVEL_MEMORY;
    snp_service *other = NULL;
    CHECK_OK(snp_service_open(&mo, &other));
    log.own = s;
    log.other = other;
    log.readers = true;

    /* append: the raise completes, the backend's own calls are refused. */
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Outer", "1");
    snp_uuid uid;
    CHECK_OK(snp_service_raise(s, &e, &uid));
    CHECK(log.calls == 1);
    check_refused(&log, true);
    /* read (peek) and remove (ack): the same. */
    forget_statuses(&log);
    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &uid) && strcmp(out.name, "Outer") == 0);
    CHECK(log.calls >= 2);
    check_refused(&log, false);
    const int calls = log.calls;
    forget_statuses(&log);
    CHECK_OK(snp_service_ack(s, &uid));
    CHECK(log.calls > calls);
    check_refused(&log, false);

    /* Nothing of the backend's own raises got in, the store is at level 2,
     * no report, and it works on. */
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE);
    CHECK(st.pending_events == 0 && st.failures == 0);
    CHECK(f.calls == 0);
    CHECK(log.count == 0);
    CHECK(service_stats(other).pending_events == (uint64_t)log.calls);
    log.own = NULL;
    CHECK_OK(snp_service_raise(s, &e, &uid));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &uid));
    snp_service_close(s);
    snp_service_close(other);
}

/* A client id store whose put calls its own store. */
typedef struct calling_ids {
    snp_client *own;
    int puts;
    snp_status get_own, put_own, stats_own;
    int64_t last_id;
} calling_ids;

static snp_status ci_load(void *ctx, snp_id_visit_fn visit, void *visit_ctx) {
    (void)ctx;
    (void)visit;
    (void)visit_ctx;
    return SNP_OK;
}

static snp_status ci_put(void *ctx, const char *name, size_t name_len, int64_t id) {
    (void)name;
    (void)name_len;
    calling_ids *ids = ctx;
    ids->puts++;
    ids->last_id = id;
    if (ids->own) {
        int64_t got = 0;
        ids->get_own = snp_client_get(ids->own, "a", 1, &got);
        ids->put_own = snp_client_put(ids->own, "b", 1, 2);
        snp_client_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        ids->stats_own = snp_client_get_stats(ids->own, &st);
    }
    return SNP_OK;
}

static snp_status ci_clear(void *ctx) {
    (void)ctx;
    return SNP_OK;
}

static void test_id_store_calls_its_store(void) {
    calling_ids ids;
    memset(&ids, 0, sizeof ids);
    snp_id_store_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = &ids;
    vt.load = ci_load;
    vt.put = ci_put;
    vt.clear = ci_clear;
    snp_client_options o;
    snp_client_options_init(&o);
    snp_client *c = NULL;
    CHECK_OK(snp_client_open_custom(&vt, &o, &c));
    ids.own = c;
    CHECK_OK(snp_client_put(c, "a", 1, 7));
    CHECK(ids.puts == 1 && ids.last_id == 7);
    CHECK(ids.get_own == SNP_ERR_STATE);
    CHECK(ids.put_own == SNP_ERR_STATE);
    CHECK(ids.stats_own == SNP_OK);
    ids.own = NULL;
    CHECK(get_id(c, "a") == 7);
    int64_t id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(c, "b", 1, &id), SNP_EMPTY); /* the backend's put did not get in */
    CHECK(client_stats(c).level == SNP_LEVEL_FILE);
    snp_client_close(c);
}

int main(void) {
    char dir[] = "/tmp/snp_test_callbacks_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    double t0 = now();
    test_raise_per_drop(SNP_LEVEL_MEMORY, NULL);
    test_raise_per_drop(SNP_LEVEL_FILE, dir);
    double t1 = now();
    test_ack_per_drop();
    test_reset_per_drop();
    double t2 = now();
    test_backend_calls_its_store();
    test_id_store_calls_its_store();
    double t3 = now();
    printf("callbacks: raise per drop %.2fs, ack/reset per drop %.2fs, backends %.2fs\n",
           t1 - t0, t2 - t1, t3 - t2);
    remove_dir(dir);
    CHECK_DONE("callbacks");
    return 0;
}
