/* The service controller through the C ABI (snp_service_controller_*), as
 * docs/PROTOCOL.md section 2 describes it: the storage-uid handshake for
 * every case of what the broker remembers, the strict drain in storage
 * mode, cache mode with one event in flight per name, stale acks, resends
 * by the times given to tick, rejections, disconnects with the events in
 * flight sent again first, controllers over stores left by earlier ones
 * (memory, a level-2 journal, a level-2 custom backend that fails), bad
 * input, a closed store, a failure callback calling the controller, and
 * two threads on one controller. No clock is read: time is what tick says. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

/* A CHECK inside a helper, naming the caller's line when it fails. */
#define CHECK_AT(line, cond)                                                        \
    do {                                                                            \
        if (!(cond)) fprintf(stderr, "(in a helper called from line %d)\n", (line)); \
        CHECK(cond);                                                                \
    } while (0)

/* ----- stores ------------------------------------------------------------ */

static snp_service *open_memory(uint64_t capacity, snp_failure_fn cb, void *user_data) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    o.memory_capacity = capacity;
    o.on_failure = cb;
    o.user_data = user_data;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(s != NULL);
    return s;
}

static snp_uuid service_uid_of(uint8_t tag) {
    snp_uuid u;
    for (int i = 0; i < 16; i++) u.bytes[i] = (uint8_t)(0x11 * (i + 1) + tag);
    return u;
}

/* A level-2 journal in dir for the service uid made from tag. */
static snp_service *open_file(const char *dir, uint8_t tag) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.service_uid = service_uid_of(tag);
    o.file_capacity = 64 * 1024;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(s != NULL);
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    return s;
}

static snp_uuid storage_uid(const snp_service *s) {
    snp_uuid u;
    CHECK_OK(snp_service_storage_uid(s, &u));
    return u;
}

static int is_storage_uid(const snp_service *s, const snp_uuid *u) {
    snp_uuid ours = storage_uid(s);
    return uid_eq(&ours, u);
}

static int32_t mode_of(const snp_service *s) {
    int32_t m = -1;
    CHECK_OK(snp_service_mode(s, &m));
    return m;
}

/* ----- a level-2 custom backend that fails on command -------------------- */

#define LOG_MAX 32

typedef struct record {
    uint64_t seq;
    size_t len;
    uint8_t data[SNP_MAX_RECORD_LEN];
} record;

typedef struct mem_log {
    record recs[LOG_MAX];
    size_t count;
    uint64_t next_seq;
    uint8_t meta[SNP_MAX_METADATA_LEN];
    size_t meta_len;
    bool fail; /* every write fails with SNP_ERR_IO */
} mem_log;

static long find_record(const mem_log *log, uint64_t seq) {
    for (size_t i = 0; i < log->count; i++)
        if (log->recs[i].seq == seq) return (long)i;
    return -1;
}

static snp_status log_append(void *ctx, const uint8_t *payload, size_t len, uint64_t *out_seq) {
    mem_log *log = ctx;
    if (log->fail) return SNP_ERR_IO;
    if (log->count == LOG_MAX || len > SNP_MAX_RECORD_LEN) return SNP_ERR_STORAGE_FULL;
    record *r = &log->recs[log->count++];
    r->seq = log->next_seq++;
    r->len = len;
    memcpy(r->data, payload, len);
    *out_seq = r->seq;
    return SNP_OK;
}

static snp_status log_remove(void *ctx, uint64_t seq, int32_t reason) {
    mem_log *log = ctx;
    (void)reason;
    if (log->fail) return SNP_ERR_IO;
    long i = find_record(log, seq);
    if (i < 0) return SNP_ERR_STATE;
    memmove(&log->recs[i], &log->recs[i + 1], (log->count - (size_t)i - 1) * sizeof(record));
    log->count--;
    return SNP_OK;
}

static snp_status log_read(void *ctx, uint64_t seq, uint8_t *buf, size_t buf_len,
                           size_t *out_len) {
    mem_log *log = ctx;
    long i = find_record(log, seq);
    if (i < 0 || log->recs[i].len > buf_len) return SNP_ERR_IO;
    memcpy(buf, log->recs[i].data, log->recs[i].len);
    *out_len = log->recs[i].len;
    return SNP_OK;
}

static snp_status log_scan(void *ctx, snp_record_visit_fn visit, void *visit_ctx) {
    mem_log *log = ctx;
    for (size_t i = 0; i < log->count; i++) {
        snp_status st = visit(visit_ctx, log->recs[i].seq, log->recs[i].data, log->recs[i].len);
        if (st != SNP_OK) return st;
    }
    return SNP_OK;
}

static snp_status log_clear(void *ctx) {
    mem_log *log = ctx;
    if (log->fail) return SNP_ERR_IO;
    log->count = 0;
    return SNP_OK;
}

static snp_status log_get_metadata(void *ctx, uint8_t *buf, size_t buf_len, size_t *out_len) {
    mem_log *log = ctx;
    if (log->meta_len > buf_len) return SNP_ERR_IO;
    memcpy(buf, log->meta, log->meta_len);
    *out_len = log->meta_len;
    return SNP_OK;
}

static snp_status log_set_metadata(void *ctx, const uint8_t *meta, size_t len) {
    mem_log *log = ctx;
    if (log->fail || len > sizeof log->meta) return SNP_ERR_IO;
    memcpy(log->meta, meta, len);
    log->meta_len = len;
    return SNP_OK;
}

static snp_service *open_custom(mem_log *log, failures *f) {
    snp_record_log_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = log;
    vt.append = log_append;
    vt.remove = log_remove;
    vt.read = log_read;
    vt.scan = log_scan;
    vt.clear = log_clear;
    vt.get_metadata = log_get_metadata;
    vt.set_metadata = log_set_metadata;
    snp_service_options o;
    snp_service_options_init(&o);
    o.on_failure = record_failure;
    o.user_data = f;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open_custom(&vt, &o, &s));
    CHECK(s != NULL);
    return s;
}

/* ----- the controller ---------------------------------------------------- */

static snp_service_controller *new_controller(snp_service *s, uint64_t timeout_ms) {
    snp_service_controller *c = NULL;
    CHECK_OK(snp_service_controller_new(s, timeout_ms, &c));
    CHECK(c != NULL);
    return c;
}

static snp_service_controller_stats ctl_stats(const snp_service_controller *c) {
    snp_service_controller_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(snp_service_controller_get_stats(c, &st));
    CHECK(st.struct_size == sizeof st);
    return st;
}

static snp_uuid raise_on(snp_service_controller *c, int32_t kind, const char *name,
                         const char *args) {
    snp_event e = make_event(kind, name, args);
    snp_uuid u;
    memset(&u, 0, sizeof u);
    CHECK_OK(snp_service_controller_raise(c, &e, &u));
    return u;
}

static snp_uuid raise_direct(snp_service *s, int32_t kind, const char *name, const char *args) {
    snp_event e = make_event(kind, name, args);
    snp_uuid u;
    CHECK_OK(snp_service_raise(s, &e, &u));
    return u;
}

static void ack(snp_service_controller *c, const snp_uuid *u) {
    CHECK_OK(snp_service_controller_ack(c, u));
}

static void go_online(snp_service_controller *c, const snp_uuid *broker_uid) {
    CHECK_OK(snp_service_controller_connected(c));
    CHECK_OK(snp_service_controller_online(c, broker_uid));
}

/* The output taken last by the EXPECT_ helpers. */
static snp_service_output last;

static void take_at(int line, snp_service_controller *c, int32_t kind) {
    memset(&last, 0, sizeof last);
    last.struct_size = sizeof last;
    snp_status st = snp_service_controller_next_output(c, &last);
    if (st != SNP_OK) fprintf(stderr, "(in a helper called from line %d)\n", line);
    CHECK_STATUS(st, SNP_OK);
    if (last.kind != kind)
        fprintf(stderr, "line %d: output kind %d, expected %d\n", line, (int)last.kind,
                (int)kind);
    CHECK_AT(line, last.kind == kind);
}

/* The next output is SNP_OUTPUT_SEND_STORAGE_UID with uid. */
static void expect_uid_at(int line, snp_service_controller *c, const snp_uuid *uid) {
    take_at(line, c, SNP_OUTPUT_SEND_STORAGE_UID);
    CHECK_AT(line, uid_eq(&last.storage_uid, uid));
}

/* The next output is SNP_OUTPUT_SEND_EVENT of the event uid. */
static void expect_send_at(int line, snp_service_controller *c, const snp_uuid *uid) {
    take_at(line, c, SNP_OUTPUT_SEND_EVENT);
    CHECK_AT(line, uid_eq(&last.event.uid, uid));
}

static void expect_rejected_at(int line, snp_service_controller *c, const snp_uuid *uid) {
    take_at(line, c, SNP_OUTPUT_REJECTED);
    CHECK_AT(line, uid_eq(&last.event.uid, uid));
}

/* Nothing to do: SNP_EMPTY, and the output struct is left as it was. */
static void expect_empty_at(int line, snp_service_controller *c) {
    snp_service_output o;
    memset(&o, 0xA5, sizeof o);
    o.struct_size = sizeof o;
    snp_status st = snp_service_controller_next_output(c, &o);
    if (st != SNP_EMPTY)
        fprintf(stderr, "line %d: expected no output, got status %d kind %d\n", line, (int)st,
                (int)o.kind);
    CHECK_STATUS(st, SNP_EMPTY);
    CHECK_AT(line, o.struct_size == sizeof o);
    CHECK_AT(line, all_bytes((const char *)&o + sizeof o.struct_size,
                             sizeof o - sizeof o.struct_size, 0xA5));
}

#define EXPECT_UID(c, u) expect_uid_at(__LINE__, (c), (u))
#define EXPECT_SEND(c, u) expect_send_at(__LINE__, (c), (u))
#define EXPECT_REJECTED(c, u) expect_rejected_at(__LINE__, (c), (u))
#define EXPECT_EMPTY(c) expect_empty_at(__LINE__, (c))
/* The next output is the store's storage uid. */
#define EXPECT_STORE_UID(c, s)                                                      \
    do {                                                                        \
        snp_uuid su_ = storage_uid(s);                                          \
        expect_uid_at(__LINE__, (c), &su_);                                     \
    } while (0)

/* The event in `last` is (kind, name, args, client_id). */
static void check_last_event(int line, int32_t kind, const char *name, const char *args,
                             int64_t client_id) {
    const snp_stored_event *e = &last.event;
    CHECK_AT(line, e->kind == kind);
    CHECK_AT(line, e->name_len == strlen(name) && strcmp(e->name, name) == 0);
    size_t n = args ? strlen(args) : 0;
    CHECK_AT(line, e->args_len == n && memcmp(e->args, args ? args : "", n) == 0);
    CHECK_AT(line, e->client_id == client_id);
}
#define CHECK_LAST_EVENT(kind, name, args, client_id) \
    check_last_event(__LINE__, (kind), (name), (args), (client_id))

/* Takes every output, acknowledging each event sent as soon as it is
 * taken, until there is nothing left to do; writes the uids sent, in
 * order, to seq (at most max) and returns how many there were. A storage
 * uid is counted in *uids (may be NULL: then none is allowed); a
 * rejection fails the test. */
static int deliver_all_at(int line, snp_service_controller *c, snp_uuid *seq, int max,
                          int *uids) {
    int n = 0;
    for (int guard = 0; guard < 10000; guard++) {
        snp_service_output o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        snp_status st = snp_service_controller_next_output(c, &o);
        if (st == SNP_EMPTY) {
            CHECK_AT(line, ctl_stats(c).in_flight == 0);
            return n;
        }
        CHECK_AT(line, st == SNP_OK);
        if (o.kind == SNP_OUTPUT_SEND_STORAGE_UID) {
            CHECK_AT(line, uids != NULL);
            (*uids)++;
            continue;
        }
        CHECK_AT(line, o.kind == SNP_OUTPUT_SEND_EVENT);
        CHECK_AT(line, n < max);
        seq[n++] = o.event.uid;
        CHECK_OK(snp_service_controller_ack(c, &o.event.uid));
    }
    CHECK_AT(line, !"deliver_all: no end");
    return n;
}
#define DELIVER_ALL(c, seq, max, uids) deliver_all_at(__LINE__, (c), (seq), (max), (uids))

/* seq[0..n) is exactly want[0..m). */
static void check_seq_at(int line, const snp_uuid *seq, int n, const snp_uuid *want, int m) {
    if (n != m) fprintf(stderr, "line %d: %d events sent, expected %d\n", line, n, m);
    CHECK_AT(line, n == m);
    for (int i = 0; i < n && i < m; i++) {
        if (!uid_eq(&seq[i], &want[i]))
            fprintf(stderr, "line %d: event %d sent out of order\n", line, i);
        CHECK_AT(line, uid_eq(&seq[i], &want[i]));
    }
}
#define CHECK_SEQ(seq, n, ...)                                                   \
    do {                                                                         \
        const snp_uuid want_[] = {__VA_ARGS__};                                  \
        check_seq_at(__LINE__, (seq), (n), want_, (int)(sizeof want_ / sizeof want_[0])); \
    } while (0)

/* ----- 2.1 the handshake --------------------------------------------------- */

/* A journal holding two events from an earlier open (ancient: E1, E2),
 * reopened, with E3 raised through a controller while offline and E4 while
 * connected but not yet online: neither is sent. */
typedef struct ancient_setup {
    snp_service *s;
    snp_service_controller *c;
    snp_uuid ours;
    snp_uuid e[4];
} ancient_setup;

static ancient_setup with_ancient(const char *dir, uint8_t tag) {
    ancient_setup a;
    a.s = open_file(dir, tag);
    a.ours = storage_uid(a.s);
    a.e[0] = raise_direct(a.s, SNP_EVENT_QUEUEING, "Temperature", "20.5");
    a.e[1] = raise_direct(a.s, SNP_EVENT_REPLACING, "Door", "open");
    snp_service_close(a.s);
    a.s = open_file(dir, tag);
    CHECK(service_stats(a.s).pending_events == 2);
    CHECK(is_storage_uid(a.s, &a.ours));
    a.c = new_controller(a.s, 0);
    a.e[2] = raise_on(a.c, SNP_EVENT_QUEUEING, "Temperature", "21.0");
    EXPECT_EMPTY(a.c);
    CHECK_OK(snp_service_controller_connected(a.c));
    EXPECT_EMPTY(a.c);
    a.e[3] = raise_on(a.c, SNP_EVENT_QUEUEING, "Humidity", "40");
    EXPECT_EMPTY(a.c);
    snp_service_controller_stats st = ctl_stats(a.c);
    CHECK(st.online == 0 && st.in_flight == 0);
    CHECK(service_stats(a.s).pending_events == 4);
    return a;
}

static void end_setup(ancient_setup *a) {
    snp_service_controller_free(a->c);
    snp_service_close(a->s);
}

static void test_handshake_broker_remembers_none(const char *dir) {
    ancient_setup a = with_ancient(dir, 1);
    CHECK_OK(snp_service_controller_online(a.c, NULL));
    EXPECT_UID(a.c, &a.ours);
    EXPECT_SEND(a.c, &a.e[0]);
    CHECK_LAST_EVENT(SNP_EVENT_QUEUEING, "Temperature", "20.5", 0);
    EXPECT_EMPTY(a.c); /* one event in flight */
    CHECK(ctl_stats(a.c).online == 1 && ctl_stats(a.c).in_flight == 1);
    CHECK(service_stats(a.s).invalidated_events == 0);
    ack(a.c, &a.e[0]);
    EXPECT_SEND(a.c, &a.e[1]);
    CHECK_LAST_EVENT(SNP_EVENT_REPLACING, "Door", "open", 0);
    snp_uuid seq[8];
    ack(a.c, &a.e[1]);
    int n = DELIVER_ALL(a.c, seq, 8, NULL);
    CHECK_SEQ(seq, n, a.e[2], a.e[3]);
    CHECK(service_stats(a.s).pending_events == 0);
    CHECK(mode_of(a.s) == SNP_MODE_CACHE); /* the drain ended */
    end_setup(&a);
}

static void test_handshake_broker_remembers_ours(const char *dir) {
    ancient_setup a = with_ancient(dir, 2);
    CHECK_OK(snp_service_controller_online(a.c, &a.ours));
    EXPECT_SEND(a.c, &a.e[0]); /* no storage uid: the broker has it */
    EXPECT_EMPTY(a.c);
    CHECK(service_stats(a.s).invalidated_events == 0);
    snp_uuid seq[8];
    ack(a.c, &a.e[0]);
    int n = DELIVER_ALL(a.c, seq, 8, NULL);
    CHECK_SEQ(seq, n, a.e[1], a.e[2], a.e[3]);
    CHECK(service_stats(a.s).pending_events == 0);
    end_setup(&a);
}

static void test_handshake_broker_remembers_another(const char *dir) {
    ancient_setup a = with_ancient(dir, 3);
    snp_uuid other = a.ours;
    other.bytes[0] ^= 0xFF;
    CHECK_OK(snp_service_controller_online(a.c, &other));
    EXPECT_UID(a.c, &a.ours);
    EXPECT_SEND(a.c, &a.e[2]); /* E1 and E2 are ancient: discarded */
    CHECK_LAST_EVENT(SNP_EVENT_QUEUEING, "Temperature", "21.0", 0);
    EXPECT_EMPTY(a.c);
    snp_service_stats st = service_stats(a.s);
    CHECK(st.invalidated_events == 2 && st.pending_events == 2);
    snp_uuid seq[8];
    ack(a.c, &a.e[2]);
    int n = DELIVER_ALL(a.c, seq, 8, NULL);
    CHECK_SEQ(seq, n, a.e[3]);
    CHECK(service_stats(a.s).pending_events == 0);

    /* The next session with the same foreign uid invalidates nothing more
     * (every event is raised since the open). */
    CHECK_OK(snp_service_controller_disconnected(a.c));
    snp_uuid e5 = raise_on(a.c, SNP_EVENT_QUEUEING, "Temperature", "22.0");
    go_online(a.c, &other);
    EXPECT_UID(a.c, &a.ours);
    EXPECT_SEND(a.c, &e5);
    CHECK(service_stats(a.s).invalidated_events == 2);
    ack(a.c, &e5);
    EXPECT_EMPTY(a.c);
    end_setup(&a);
}

/* The broker remembers the uid the store had before a level-2 failure gave
 * it a new one: nothing is invalidated and the new uid is sent first. The
 * failure comes from a custom backend told to fail its writes. */
static mem_log fallback_log;

static void test_handshake_broker_remembers_previous(void) {
    mem_log *log = &fallback_log;
    memset(log, 0, sizeof *log);
    log->next_seq = 1;
    failures f;
    failures_init(&f);
    snp_service *s = open_custom(log, &f);
    snp_uuid u1 = storage_uid(s);
    snp_uuid e1 = raise_direct(s, SNP_EVENT_QUEUEING, "Temperature", "1");
    snp_uuid e2 = raise_direct(s, SNP_EVENT_QUEUEING, "Humidity", "2");
    snp_service_close(s);
    s = open_custom(log, &f); /* e1, e2 are ancient now */
    CHECK(service_stats(s).pending_events == 2 && service_stats(s).level == SNP_LEVEL_FILE);
    CHECK(is_storage_uid(s, &u1));
    snp_uuid none;
    memset(&none, 0x5A, sizeof none);
    snp_uuid prev = none;
    CHECK_STATUS(snp_service_previous_storage_uid(s, &prev), SNP_EMPTY);
    CHECK(uid_eq(&prev, &none));

    snp_service_controller *c = new_controller(s, 0);
    log->fail = true;
    snp_uuid e3 = raise_on(c, SNP_EVENT_QUEUEING, "Temperature", "3"); /* falls back */
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.pending_events == 3);
    snp_uuid u2 = storage_uid(s);
    CHECK(!uid_eq(&u2, &u1));
    CHECK_OK(snp_service_previous_storage_uid(s, &prev));
    CHECK(uid_eq(&prev, &u1));
    EXPECT_EMPTY(c);

    /* PROTOCOL 2.9: the events stored under u1 (which the broker
     * remembers) go first, under u1; then the new uid, then e3. */
    go_online(c, &u1);
    EXPECT_SEND(c, &e1);
    EXPECT_EMPTY(c);
    CHECK(service_stats(s).invalidated_events == 0);
    ack(c, &e1);
    EXPECT_SEND(c, &e2);
    EXPECT_EMPTY(c);
    ack(c, &e2);
    EXPECT_UID(c, &u2);
    EXPECT_SEND(c, &e3);
    EXPECT_EMPTY(c);
    ack(c, &e3);
    EXPECT_EMPTY(c);
    CHECK(service_stats(s).pending_events == 0);

    /* The next session: the broker now remembers u2, our current uid. */
    CHECK_OK(snp_service_controller_disconnected(c));
    snp_uuid e4 = raise_on(c, SNP_EVENT_QUEUEING, "Temperature", "4");
    go_online(c, &u2);
    EXPECT_SEND(c, &e4);
    ack(c, &e4);
    EXPECT_EMPTY(c);
    snp_service_controller_free(c);
    snp_service_close(s);
    CHECK(f.bad_message == 0);
}

/* 2.9: a level-2 failure while online, in cache mode, with A1 and B1 in
 * flight and A2 raised (the raise that fails). What is in flight is resent
 * under the old uid; the new uid is told only once nothing stored under
 * the old one is in flight, and nothing new is sent meanwhile; then the
 * drain starts again from the oldest pending event. */
static mem_log online_log;

static void test_fallback_while_online(void) {
    mem_log *log = &online_log;
    memset(log, 0, sizeof *log);
    log->next_seq = 1;
    failures f;
    failures_init(&f);
    snp_service *s = open_custom(log, &f);
    snp_uuid u1 = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    CHECK_OK(snp_service_controller_tick(c, 0));
    go_online(c, NULL);
    EXPECT_UID(c, &u1);
    EXPECT_EMPTY(c);
    CHECK(mode_of(s) == SNP_MODE_CACHE);
    snp_uuid a1 = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a1);
    snp_uuid b1 = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    EXPECT_SEND(c, &b1);
    log->fail = true;
    snp_uuid a2 = raise_on(c, SNP_EVENT_QUEUEING, "A", "2");
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    snp_uuid u2 = storage_uid(s);
    CHECK(!uid_eq(&u1, &u2));
    CHECK(service_stats(s).pending_events == 3);
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, 1000)); /* resends: no new uid first */
    EXPECT_SEND(c, &a1);
    EXPECT_SEND(c, &b1);
    EXPECT_EMPTY(c);
    ack(c, &a1);
    EXPECT_EMPTY(c); /* B1 is still in flight under u1: A2 waits */
    CHECK(ctl_stats(c).in_flight == 1 && ctl_stats(c).stale_acks == 0);
    ack(c, &b1);
    CHECK(ctl_stats(c).stale_acks == 0);
    EXPECT_UID(c, &u2);
    EXPECT_SEND(c, &a2);
    EXPECT_EMPTY(c);
    ack(c, &a2);
    EXPECT_EMPTY(c);
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events == 0 && st.level == SNP_LEVEL_MEMORY);
    CHECK(ctl_stats(c).stale_acks == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* ----- 2.2, 2.4, 2.5, 2.7 storage mode ------------------------------------- */

static void test_storage_mode(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    snp_service_controller_stats st = ctl_stats(c);
    CHECK(st.online == 0 && st.in_flight == 0 && st.stale_acks == 0 && st.rejected == 0);
    uint64_t ms = 777;
    CHECK_STATUS(snp_service_controller_next_deadline(c, &ms), SNP_EMPTY);
    CHECK(ms == 777);
    CHECK_OK(snp_service_controller_tick(c, 5000)); /* offline: only the time */
    EXPECT_EMPTY(c);

    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "Temperature", "1");
    snp_event pe = make_event(SNP_EVENT_PRIVATE, "Alarm", "fire");
    pe.client_id = -42;
    snp_uuid b;
    CHECK_OK(snp_service_controller_raise(c, &pe, &b));
    snp_uuid cc = raise_on(c, SNP_EVENT_REPLACING, "Door", "open");
    snp_uuid d = raise_on(c, SNP_EVENT_QUEUEING, "Temperature", "2");
    EXPECT_EMPTY(c);
    CHECK(service_stats(s).pending_events == 4);

    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    EXPECT_SEND(c, &a);
    CHECK_LAST_EVENT(SNP_EVENT_QUEUEING, "Temperature", "1", 0);
    EXPECT_EMPTY(c); /* strictly one in flight */
    st = ctl_stats(c);
    CHECK(st.online == 1 && st.in_flight == 1);
    CHECK(mode_of(s) == SNP_MODE_STORAGE);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 6000);

    /* Raised during the drain: queues behind the backlog. */
    snp_uuid e = raise_on(c, SNP_EVENT_QUEUEING, "Late", "x");
    EXPECT_EMPTY(c);

    /* Acks of events not in flight: ignored and counted. */
    ack(c, &b);
    EXPECT_EMPTY(c);
    snp_uuid random_uid;
    memset(&random_uid, 0x3C, sizeof random_uid);
    ack(c, &random_uid);
    EXPECT_EMPTY(c);
    st = ctl_stats(c);
    CHECK(st.stale_acks == 2 && st.in_flight == 1);
    CHECK(service_stats(s).pending_events == 5);

    /* Resend at the deadline, same uid, new deadline. */
    CHECK_OK(snp_service_controller_tick(c, 5999));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, 6000));
    EXPECT_SEND(c, &a);
    CHECK_LAST_EVENT(SNP_EVENT_QUEUEING, "Temperature", "1", 0);
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 7000);
    CHECK_OK(snp_service_controller_tick(c, 6500));
    EXPECT_EMPTY(c);

    /* The ack of the event in flight sends the next one. */
    ack(c, &a);
    EXPECT_SEND(c, &b);
    CHECK_LAST_EVENT(SNP_EVENT_PRIVATE, "Alarm", "fire", -42);
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 7500); /* the time of the last tick plus the timeout */
    ack(c, &a); /* repeated */
    EXPECT_EMPTY(c);
    CHECK(ctl_stats(c).stale_acks == 3);
    CHECK(service_stats(s).pending_events == 4);

    /* Rejection of the event in flight: reported, dropped, next one sent. */
    CHECK_OK(snp_service_controller_rejected(c, &b));
    EXPECT_REJECTED(c, &b);
    CHECK_LAST_EVENT(SNP_EVENT_PRIVATE, "Alarm", "fire", -42);
    EXPECT_SEND(c, &cc);
    CHECK_LAST_EVENT(SNP_EVENT_REPLACING, "Door", "open", 0);
    EXPECT_EMPTY(c);
    st = ctl_stats(c);
    CHECK(st.rejected == 1 && st.stale_acks == 3 && st.in_flight == 1);
    CHECK(service_stats(s).pending_events == 3);
    /* A rejection for a uid not in flight is ignored like a stale ack. */
    CHECK_OK(snp_service_controller_rejected(c, &b));
    CHECK_OK(snp_service_controller_rejected(c, &d));
    EXPECT_EMPTY(c);
    st = ctl_stats(c);
    CHECK(st.rejected == 1 && st.stale_acks == 5);
    CHECK(service_stats(s).pending_events == 3);

    ack(c, &cc);
    EXPECT_SEND(c, &d);
    CHECK_LAST_EVENT(SNP_EVENT_QUEUEING, "Temperature", "2", 0);
    ack(c, &d);
    EXPECT_SEND(c, &e);
    ack(c, &e);
    EXPECT_EMPTY(c);
    st = ctl_stats(c);
    CHECK(st.in_flight == 0 && st.online == 1 && st.stale_acks == 5 && st.rejected == 1);
    CHECK(service_stats(s).pending_events == 0);
    CHECK(mode_of(s) == SNP_MODE_CACHE); /* the backlog is empty */
    CHECK_STATUS(snp_service_controller_next_deadline(c, &ms), SNP_EMPTY);
    CHECK(ms == 7500);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* A timeout of 0 is the default, 30 s. */
static void test_default_timeout(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_service_controller *c = new_controller(s, 0);
    CHECK_OK(snp_service_controller_tick(c, 100));
    go_online(c, NULL);
    EXPECT_STORE_UID(c, s);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", NULL);
    EXPECT_SEND(c, &a);
    CHECK(last.event.args_len == 0);
    uint64_t ms = 0;
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 30100);
    CHECK_OK(snp_service_controller_tick(c, 30099));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, 30100));
    EXPECT_SEND(c, &a);
    /* Time does not go back: an older tick changes nothing. */
    CHECK_OK(snp_service_controller_tick(c, 50));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 60100);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* The clock's origin is the caller's: events sent before the first tick
 * get their deadlines moved by the first tick's time (the doc comment of
 * ServiceController::tick), so a clock far from 0 does not make them
 * overdue at once. */
static void test_first_tick_sets_origin(void) {
    const uint64_t t0 = UINT64_C(1000000000000); /* like CLOCK_MONOTONIC in ms */
    snp_service *s = open_memory(0, NULL, NULL);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_STORE_UID(c, s);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a);
    uint64_t ms = 0;
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 1000);
    CHECK_OK(snp_service_controller_tick(c, t0)); /* the first tick */
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == t0 + 1000);
    CHECK_OK(snp_service_controller_tick(c, t0 + 999));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, t0 + 1000));
    EXPECT_SEND(c, &a);
    EXPECT_EMPTY(c);
    snp_uuid b = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    EXPECT_SEND(c, &b);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == t0 + 2000); /* a's new deadline and b's are both t0 + 2000 */
    CHECK_OK(snp_service_controller_tick(c, t0 + 2000));
    EXPECT_SEND(c, &a); /* oldest first */
    EXPECT_SEND(c, &b);
    EXPECT_EMPTY(c);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* ----- 2.3 cache mode ------------------------------------------------------ */

static void test_cache_mode(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_service_controller *c = new_controller(s, 1000);
    CHECK_OK(snp_service_controller_tick(c, 1000));
    go_online(c, NULL);
    EXPECT_STORE_UID(c, s);
    EXPECT_EMPTY(c);
    CHECK(mode_of(s) == SNP_MODE_CACHE); /* nothing to drain */

    snp_uuid a1 = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a1); /* sent at once: A has nothing in flight */
    CHECK_OK(snp_service_controller_tick(c, 1200));
    snp_uuid b1 = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    EXPECT_SEND(c, &b1); /* B runs beside A */
    snp_uuid a2 = raise_on(c, SNP_EVENT_QUEUEING, "A", "2");
    EXPECT_EMPTY(c); /* waits for A1 */
    snp_uuid a3 = raise_on(c, SNP_EVENT_QUEUEING, "A", "3");
    EXPECT_EMPTY(c);
    /* Same name, another kind family: another pipeline. */
    snp_uuid ra = raise_on(c, SNP_EVENT_REPLACING, "A", "r");
    EXPECT_SEND(c, &ra);
    CHECK(ctl_stats(c).in_flight == 3);
    uint64_t ms = 0;
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 2000);

    /* Resends: overdue ones oldest first, same uids. */
    CHECK_OK(snp_service_controller_tick(c, 1999));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, 2100));
    EXPECT_SEND(c, &a1);
    EXPECT_EMPTY(c); /* B1 and RA are due at 2200 */
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 2200);
    CHECK_OK(snp_service_controller_tick(c, 2500));
    EXPECT_SEND(c, &b1);
    EXPECT_SEND(c, &ra);
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 3100);

    /* A name's ack sends that name's next event only. */
    ack(c, &b1);
    EXPECT_EMPTY(c);
    ack(c, &a1);
    EXPECT_SEND(c, &a2);
    EXPECT_EMPTY(c);
    ack(c, &a1); /* repeated */
    ack(c, &b1);
    EXPECT_EMPTY(c);
    CHECK(ctl_stats(c).stale_acks == 2);
    ack(c, &a2);
    EXPECT_SEND(c, &a3);
    ack(c, &a3);
    ack(c, &ra);
    EXPECT_EMPTY(c);
    CHECK(ctl_stats(c).in_flight == 0 && service_stats(s).pending_events == 0);

    /* Replacing: at most the one in flight and the newest pending; a
     * Replacing-null shares the pipeline and supersedes too. */
    uint64_t superseded = service_stats(s).superseded_events;
    snp_uuid r1 = raise_on(c, SNP_EVENT_REPLACING, "Door", "open");
    EXPECT_SEND(c, &r1);
    snp_uuid r2 = raise_on(c, SNP_EVENT_REPLACING, "Door", "closed");
    EXPECT_EMPTY(c);
    snp_uuid r3 = raise_on(c, SNP_EVENT_REPLACING, "Door", "open");
    EXPECT_EMPTY(c);
    CHECK(service_stats(s).superseded_events == superseded + 1); /* r2 */
    snp_uuid rn = raise_on(c, SNP_EVENT_REPLACING_NULL, "Door", NULL);
    EXPECT_EMPTY(c);
    CHECK(service_stats(s).superseded_events == superseded + 2); /* r3 */
    CHECK(service_stats(s).pending_events == 2);                 /* r1 in flight, rn */
    ack(c, &r1);
    EXPECT_SEND(c, &rn);
    CHECK_LAST_EVENT(SNP_EVENT_REPLACING_NULL, "Door", NULL, 0);
    EXPECT_EMPTY(c);
    ack(c, &r2); /* superseded, never sent: stale */
    ack(c, &r3);
    EXPECT_EMPTY(c);
    CHECK(ctl_stats(c).stale_acks == 4);
    ack(c, &rn);
    EXPECT_EMPTY(c);

    /* Rejection in cache mode: the name's next event follows. */
    snp_uuid q1 = raise_on(c, SNP_EVENT_QUEUEING, "Unknown", "1");
    EXPECT_SEND(c, &q1);
    snp_uuid q2 = raise_on(c, SNP_EVENT_QUEUEING, "Unknown", "2");
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_rejected(c, &q1));
    /* PROTOCOL 2.7: Rejected first, then the name's next event. */
    snp_service_output o1, o2;
    memset(&o1, 0, sizeof o1);
    o1.struct_size = sizeof o1;
    o2 = o1;
    CHECK_OK(snp_service_controller_next_output(c, &o1));
    CHECK_OK(snp_service_controller_next_output(c, &o2));
    CHECK(o1.kind == SNP_OUTPUT_REJECTED && uid_eq(&o1.event.uid, &q1));
    CHECK(o1.event.kind == SNP_EVENT_QUEUEING && strcmp(o1.event.name, "Unknown") == 0);
    CHECK(o1.event.args_len == 1 && o1.event.args[0] == '1');
    CHECK(o2.kind == SNP_OUTPUT_SEND_EVENT && uid_eq(&o2.event.uid, &q2));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_rejected(c, &q2));
    EXPECT_REJECTED(c, &q2);
    EXPECT_EMPTY(c);
    snp_service_controller_stats st = ctl_stats(c);
    CHECK(st.rejected == 2 && st.in_flight == 0 && st.stale_acks == 4);
    CHECK(service_stats(s).pending_events == 0);
    CHECK(mode_of(s) == SNP_MODE_CACHE);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* ----- 2.8 disconnect -------------------------------------------------------- */

static void test_disconnect_storage_mode(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    snp_uuid b = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    EXPECT_SEND(c, &a);
    EXPECT_EMPTY(c);

    CHECK_OK(snp_service_controller_disconnected(c));
    snp_service_controller_stats st = ctl_stats(c);
    CHECK(st.online == 0 && st.in_flight == 0);
    uint64_t ms = 1;
    CHECK_STATUS(snp_service_controller_next_deadline(c, &ms), SNP_EMPTY);
    EXPECT_EMPTY(c);
    snp_uuid cc = raise_on(c, SNP_EVENT_QUEUEING, "A", "2");
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, 100000)); /* nothing resent offline */
    EXPECT_EMPTY(c);
    ack(c, &a); /* arrives after the disconnect: stale */
    CHECK(ctl_stats(c).stale_acks == 1);
    CHECK(service_stats(s).pending_events == 3);
    CHECK(mode_of(s) == SNP_MODE_STORAGE);
    /* connected but not online: still nothing. */
    CHECK_OK(snp_service_controller_connected(c));
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_online(c, &ours));
    EXPECT_SEND(c, &a); /* the one in flight, again, same uid */
    EXPECT_EMPTY(c);
    snp_uuid seq[8];
    ack(c, &a);
    int n = DELIVER_ALL(c, seq, 8, NULL);
    CHECK_SEQ(seq, n, b, cc);
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* The example of PROTOCOL.md 2.8: A1, A2, B1 raised in cache mode; A1 and
 * B1 in flight, A2 waiting. After the reconnect the events in flight go
 * first, in the order they were sent, with their uids; then the rest in
 * raise order (A2, then what was raised offline). */
static void test_disconnect_cache_mode(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    CHECK(mode_of(s) == SNP_MODE_CACHE);
    snp_uuid a1 = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a1);
    snp_uuid a2 = raise_on(c, SNP_EVENT_QUEUEING, "A", "2");
    EXPECT_EMPTY(c);
    snp_uuid b1 = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    EXPECT_SEND(c, &b1);
    EXPECT_EMPTY(c);

    CHECK_OK(snp_service_controller_disconnected(c));
    CHECK(ctl_stats(c).in_flight == 0 && ctl_stats(c).online == 0);
    snp_uuid c1 = raise_on(c, SNP_EVENT_QUEUEING, "C", "1");
    snp_uuid a3 = raise_on(c, SNP_EVENT_QUEUEING, "A", "3");
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_tick(c, 50000));
    EXPECT_EMPTY(c);

    go_online(c, &ours);
    EXPECT_SEND(c, &a1); /* the events in flight first, one at a time */
    EXPECT_EMPTY(c);
    ack(c, &a1);
    EXPECT_SEND(c, &b1);
    EXPECT_EMPTY(c);
    ack(c, &b1);
    EXPECT_SEND(c, &a2); /* then the drain, in raise order */
    EXPECT_EMPTY(c);
    snp_uuid seq[16];
    ack(c, &a2);
    int n = DELIVER_ALL(c, seq, 16, NULL);
    CHECK_SEQ(seq, n, c1, a3);
    CHECK(service_stats(s).pending_events == 0);
    CHECK(ctl_stats(c).stale_acks == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* Sent in the other order (B1 before A1): they go again in that order. A
 * second disconnect before the first resend is acknowledged keeps them
 * first. */
static void test_disconnect_twice(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    snp_uuid b1 = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    EXPECT_SEND(c, &b1);
    snp_uuid a1 = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a1);
    snp_uuid b2 = raise_on(c, SNP_EVENT_QUEUEING, "B", "2");
    EXPECT_EMPTY(c);
    CHECK_OK(snp_service_controller_disconnected(c));
    snp_uuid d1 = raise_on(c, SNP_EVENT_QUEUEING, "D", "1");

    go_online(c, &ours);
    EXPECT_SEND(c, &b1); /* first: what was in flight */
    EXPECT_EMPTY(c);
    /* Down again before anything is acknowledged. */
    CHECK_OK(snp_service_controller_disconnected(c));
    EXPECT_EMPTY(c);
    go_online(c, &ours);
    snp_uuid seq[16];
    int n = DELIVER_ALL(c, seq, 16, NULL);
    CHECK_SEQ(seq, n, b1, a1, b2, d1);
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* A Replacing event in flight at the disconnect, superseded by a newer
 * raise while offline (BEHAVIOUR 3.4: after the disconnect nothing is in
 * flight): only the newer instance is sent. */
static void test_disconnect_superseded(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    snp_uuid r1 = raise_on(c, SNP_EVENT_REPLACING, "Door", "open");
    EXPECT_SEND(c, &r1);
    snp_uuid q1 = raise_on(c, SNP_EVENT_QUEUEING, "Q", "1");
    EXPECT_SEND(c, &q1);
    CHECK_OK(snp_service_controller_disconnected(c));
    uint64_t superseded = service_stats(s).superseded_events;
    snp_uuid r2 = raise_on(c, SNP_EVENT_REPLACING, "Door", "closed");
    CHECK(service_stats(s).superseded_events == superseded + 1);
    go_online(c, &ours);
    snp_uuid seq[8];
    int n = DELIVER_ALL(c, seq, 8, NULL);
    CHECK_SEQ(seq, n, q1, r2);
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* ----- stores left by an earlier controller ----------------------------- */

static void test_store_left_in_cache_mode(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a);
    snp_uuid b = raise_on(c, SNP_EVENT_REPLACING, "B", "1");
    EXPECT_SEND(c, &b);
    snp_uuid a2 = raise_on(c, SNP_EVENT_QUEUEING, "A", "2");
    EXPECT_EMPTY(c);
    snp_service_controller_free(c); /* nothing acknowledged */
    CHECK(mode_of(s) == SNP_MODE_CACHE);
    CHECK(service_stats(s).pending_events == 3); /* the store outlives it */

    c = new_controller(s, 1000);
    CHECK(ctl_stats(c).in_flight == 0);
    EXPECT_EMPTY(c);
    go_online(c, &ours);
    snp_uuid seq[8];
    int n = DELIVER_ALL(c, seq, 8, NULL);
    CHECK_SEQ(seq, n, a, b, a2);
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

static void test_file_store_reopened(const char *dir) {
    snp_service *s = open_file(dir, 9);
    snp_uuid ours = storage_uid(s);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_UID(c, &ours);
    CHECK(mode_of(s) == SNP_MODE_CACHE);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    EXPECT_SEND(c, &a);
    snp_uuid b = raise_on(c, SNP_EVENT_QUEUEING, "B", "1");
    EXPECT_SEND(c, &b);
    snp_uuid a2 = raise_on(c, SNP_EVENT_QUEUEING, "A", "2");
    snp_uuid r = raise_on(c, SNP_EVENT_REPLACING, "Door", "open");
    EXPECT_SEND(c, &r);
    ack(c, &b);
    EXPECT_EMPTY(c);
    snp_service_controller_free(c);
    snp_service_close(s); /* a, a2, r pending, the store in cache mode */

    s = open_file(dir, 9);
    CHECK(is_storage_uid(s, &ours));
    CHECK(service_stats(s).pending_events == 3);
    c = new_controller(s, 1000);
    go_online(c, &ours);
    snp_uuid seq[8];
    int n = DELIVER_ALL(c, seq, 8, NULL);
    CHECK_SEQ(seq, n, a, a2, r);
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_free(c);
    snp_service_close(s);

    s = open_file(dir, 9); /* the acks reached the file */
    CHECK(service_stats(s).pending_events == 0);
    snp_service_close(s);
}

/* ----- bad input ------------------------------------------------------------ */

/* Sets this thread's last error message to one without "NULL" in it, so a
 * following check sees the message of the call it tests. */
static void poison_message(snp_service_controller *c) {
    snp_service_controller_stats st;
    memset(&st, 0, sizeof st);
    CHECK_STATUS(snp_service_controller_get_stats(c, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK(snp_last_error_message(NULL, 0) > 0);
    CHECK(!last_error_contains("NULL"));
}

#define CHECK_NULL_REFUSED(c, expr)                          \
    do {                                                     \
        poison_message(c);                                   \
        CHECK_STATUS((expr), SNP_ERR_INVALID_ARGUMENT);      \
        CHECK(snp_last_error_message(NULL, 0) > 0);          \
        CHECK(last_error_contains("NULL"));                  \
    } while (0)

static void test_bad_input(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_service_controller *c = new_controller(s, 1000);
    snp_uuid u;
    memset(&u, 0x77, sizeof u);
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temperature", "1");
    snp_service_output o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    snp_service_controller_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    uint64_t ms = 12345;

    snp_service_controller *out = (snp_service_controller *)sentinel();
    CHECK_NULL_REFUSED(c, snp_service_controller_new(NULL, 0, &out));
    CHECK(out == (snp_service_controller *)sentinel());
    CHECK(last_error_contains("service"));
    CHECK_NULL_REFUSED(c, snp_service_controller_new(s, 0, NULL));
    CHECK(last_error_contains("out"));
    CHECK_NULL_REFUSED(c, snp_service_controller_new(NULL, 0, NULL));

    snp_uuid kept = u;
    CHECK_NULL_REFUSED(c, snp_service_controller_raise(NULL, &e, &kept));
    CHECK(uid_eq(&kept, &u));
    CHECK(last_error_contains("controller"));
    CHECK_NULL_REFUSED(c, snp_service_controller_raise(c, NULL, &kept));
    CHECK(uid_eq(&kept, &u));
    CHECK(last_error_contains("event"));
    CHECK_NULL_REFUSED(c, snp_service_controller_connected(NULL));
    CHECK_NULL_REFUSED(c, snp_service_controller_online(NULL, &u));
    CHECK_NULL_REFUSED(c, snp_service_controller_online(NULL, NULL));
    CHECK_NULL_REFUSED(c, snp_service_controller_ack(NULL, &u));
    CHECK_NULL_REFUSED(c, snp_service_controller_ack(c, NULL));
    CHECK(last_error_contains("uid"));
    CHECK_NULL_REFUSED(c, snp_service_controller_rejected(NULL, &u));
    CHECK_NULL_REFUSED(c, snp_service_controller_rejected(c, NULL));
    CHECK(last_error_contains("uid"));
    CHECK_NULL_REFUSED(c, snp_service_controller_disconnected(NULL));
    CHECK_NULL_REFUSED(c, snp_service_controller_tick(NULL, 5));
    CHECK_NULL_REFUSED(c, snp_service_controller_next_output(NULL, &o));
    CHECK_NULL_REFUSED(c, snp_service_controller_next_output(c, NULL));
    CHECK_NULL_REFUSED(c, snp_service_controller_next_deadline(NULL, &ms));
    CHECK(ms == 12345);
    CHECK_NULL_REFUSED(c, snp_service_controller_next_deadline(c, NULL));
    CHECK_NULL_REFUSED(c, snp_service_controller_get_stats(NULL, &st));
    CHECK_NULL_REFUSED(c, snp_service_controller_get_stats(c, NULL));
    snp_service_controller_free(NULL); /* fine */

    /* None of that changed the controller: offline, nothing stored. */
    snp_service_controller_stats now = ctl_stats(c);
    CHECK(now.online == 0 && now.in_flight == 0 && now.stale_acks == 0);
    CHECK(service_stats(s).pending_events == 0);

    /* The raise checks of snp_service_raise: nothing stored, uid untouched. */
    const char *bad_names[] = {"9lives", "two  spaces", "trailing ", "tab\tname", "-x"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        snp_event be = make_event(SNP_EVENT_QUEUEING, bad_names[i], NULL);
        kept = u;
        CHECK_STATUS(snp_service_controller_raise(c, &be, &kept), SNP_ERR_INVALID_ARGUMENT);
        CHECK(uid_eq(&kept, &u));
        CHECK(snp_last_error_message(NULL, 0) > 0);
    }
    snp_event be = make_event(SNP_EVENT_QUEUEING, "", NULL);
    CHECK_STATUS(snp_service_controller_raise(c, &be, NULL), SNP_ERR_INVALID_ARGUMENT);
    be = make_event(SNP_EVENT_QUEUEING, "Name", NULL);
    be.name_len = SNP_MAX_NAME_LEN + 1; /* checked before the name is read */
    CHECK_STATUS(snp_service_controller_raise(c, &be, NULL), SNP_ERR_INVALID_ARGUMENT);
    be = make_event(SNP_EVENT_QUEUEING, "Name", NULL);
    be.args_len = SNP_MAX_ARGS_LEN + 1;
    CHECK_STATUS(snp_service_controller_raise(c, &be, NULL), SNP_ERR_INVALID_ARGUMENT);
    be = make_event(SNP_EVENT_REPLACING_NULL, "Name", "x");
    CHECK_STATUS(snp_service_controller_raise(c, &be, NULL), SNP_ERR_INVALID_ARGUMENT);
    be = make_event(3, "Name", NULL);
    CHECK_STATUS(snp_service_controller_raise(c, &be, NULL), SNP_ERR_INVALID_ARGUMENT);
    char longest[SNP_MAX_NAME_LEN + 1];
    memset(longest, 'n', SNP_MAX_NAME_LEN);
    longest[0] = 'L';
    longest[SNP_MAX_NAME_LEN] = 0;
    snp_uuid lu = raise_on(c, SNP_EVENT_QUEUEING, longest, NULL); /* 256 bytes: fine */
    CHECK(service_stats(s).pending_events == 1);

    /* An output struct too small is refused, and the output stays queued. */
    go_online(c, NULL);
    snp_service_output small;
    memset(&small, 0xC3, sizeof small);
    small.struct_size = sizeof small - 1;
    CHECK_STATUS(snp_service_controller_next_output(c, &small), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("struct_size"));
    CHECK(small.struct_size == sizeof small - 1);
    CHECK(all_bytes((const char *)&small + sizeof small.struct_size,
                    sizeof small - sizeof small.struct_size, 0xC3));
    small.struct_size = 0;
    CHECK_STATUS(snp_service_controller_next_output(c, &small), SNP_ERR_INVALID_ARGUMENT);
    small.struct_size = 4;
    CHECK_STATUS(snp_service_controller_next_output(c, &small), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes((const char *)&small + sizeof small.struct_size,
                    sizeof small - sizeof small.struct_size, 0xC3));
    EXPECT_STORE_UID(c, s); /* not lost */
    small.struct_size = 1;
    CHECK_STATUS(snp_service_controller_next_output(c, &small), SNP_ERR_INVALID_ARGUMENT);
    EXPECT_SEND(c, &lu); /* not lost either */
    CHECK(last.event.name_len == SNP_MAX_NAME_LEN && strcmp(last.event.name, longest) == 0);
    EXPECT_EMPTY(c);
    /* A larger struct (a newer caller's) is fine. */
    ack(c, &lu);
    snp_uuid x = raise_on(c, SNP_EVENT_QUEUEING, "X", "1");
    struct {
        snp_service_output o;
        char tail[64];
    } bigger;
    memset(&bigger, 0xEE, sizeof bigger);
    bigger.o.struct_size = sizeof bigger;
    CHECK_OK(snp_service_controller_next_output(c, &bigger.o));
    CHECK(bigger.o.kind == SNP_OUTPUT_SEND_EVENT && uid_eq(&bigger.o.event.uid, &x));
    CHECK(all_bytes(bigger.tail, sizeof bigger.tail, 0xEE));

    /* Stats: struct_size 0 or 4 refused; a shorter struct gets its prefix. */
    memset(&st, 0xEE, sizeof st);
    st.struct_size = 0;
    CHECK_STATUS(snp_service_controller_get_stats(c, &st), SNP_ERR_INVALID_ARGUMENT);
    st.struct_size = 4;
    CHECK_STATUS(snp_service_controller_get_stats(c, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes((const char *)&st + 4, sizeof st - 4, 0xEE));
    st.struct_size = (uint32_t)offsetof(snp_service_controller_stats, stale_acks);
    CHECK_OK(snp_service_controller_get_stats(c, &st));
    CHECK(st.online == 1 && st.in_flight == 1);
    CHECK(all_bytes((const char *)&st + offsetof(snp_service_controller_stats, stale_acks),
                    sizeof st - offsetof(snp_service_controller_stats, stale_acks), 0xEE));

    /* next_deadline: written only when something is in flight. */
    ms = 4242;
    CHECK_OK(snp_service_controller_next_deadline(c, &ms));
    CHECK(ms == 1000);
    ack(c, &x);
    EXPECT_EMPTY(c);
    ms = 4242;
    CHECK_STATUS(snp_service_controller_next_deadline(c, &ms), SNP_EMPTY);
    CHECK(ms == 4242);

    snp_service_controller_free(c);
    /* The store stays usable after its controller is gone. */
    CHECK(service_stats(s).pending_events == 0);
    snp_event direct = make_event(SNP_EVENT_QUEUEING, "After", NULL);
    CHECK_OK(snp_service_raise(s, &direct, NULL));
    snp_service_close(s);
}

/* ----- a closed store -------------------------------------------------------- */

static void test_closed_store(void) {
    snp_service *s = open_memory(0, NULL, NULL);
    snp_service_controller *c = new_controller(s, 1000);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    go_online(c, NULL); /* outputs queued, not taken */
    snp_service_close(s); /* first: the controller keeps what it needs */

    snp_event e = make_event(SNP_EVENT_QUEUEING, "B", "1");
    snp_uuid u;
    memset(&u, 0x66, sizeof u);
    snp_uuid kept = u;
    CHECK_STATUS(snp_service_controller_raise(c, &e, &kept), SNP_ERR_CLOSED);
    CHECK(uid_eq(&kept, &u));
    CHECK(snp_last_error_message(NULL, 0) > 0);
    CHECK_STATUS(snp_service_controller_connected(c), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_service_controller_online(c, NULL), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_service_controller_online(c, &u), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_service_controller_ack(c, &a), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_service_controller_rejected(c, &a), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_service_controller_disconnected(c), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_service_controller_tick(c, 99999), SNP_ERR_CLOSED);
    snp_service_output o;
    memset(&o, 0x5C, sizeof o);
    o.struct_size = sizeof o;
    CHECK_STATUS(snp_service_controller_next_output(c, &o), SNP_ERR_CLOSED);
    CHECK(all_bytes((const char *)&o + sizeof o.struct_size, sizeof o - sizeof o.struct_size,
                    0x5C));
    uint64_t ms = 31;
    CHECK_STATUS(snp_service_controller_next_deadline(c, &ms), SNP_ERR_CLOSED);
    CHECK(ms == 31);
    snp_service_controller_stats st;
    memset(&st, 0x5C, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(snp_service_controller_get_stats(c, &st), SNP_ERR_CLOSED);
    CHECK(all_bytes((const char *)&st + 4, sizeof st - 4, 0x5C));
    /* NULL arguments are still refused as such. */
    CHECK_STATUS(snp_service_controller_ack(c, NULL), SNP_ERR_INVALID_ARGUMENT);
    snp_service_controller_free(c); /* frees the store too: ASan/valgrind */
}

/* A file store closed under its controller releases its journal: it can be
 * opened again at once, while the old controller still answers
 * SNP_ERR_CLOSED. */
static void test_closed_file_store(const char *dir) {
    snp_service *s = open_file(dir, 10);
    snp_service_controller *c = new_controller(s, 1000);
    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "A", "1");
    go_online(c, NULL);
    snp_service_close(s);
    CHECK_STATUS(snp_service_controller_ack(c, &a), SNP_ERR_CLOSED);
    s = open_file(dir, 10); /* the lock was released by the close */
    CHECK(service_stats(s).pending_events == 1);
    snp_service_close(s);
    CHECK_STATUS(snp_service_controller_tick(c, 1), SNP_ERR_CLOSED);
    snp_service_controller_free(c);
}

/* ----- a failure callback calling the controller ------------------------ */

typedef struct reentry {
    const struct reentry *self;
    snp_service_controller *controller;
    snp_service *store;
    int calls;
    int drops;
    int stats_refused; /* get_stats answered SNP_ERR_STATE */
    int raise_refused; /* raise answered SNP_ERR_STATE */
    int ack_refused;
    int other_status;  /* anything else */
    int store_ok;      /* the store itself answered */
    int message_ok;    /* the refusal has a message */
} reentry;

static void call_controller(void *user_data, int32_t kind, const char *message,
                            uint64_t events_lost) {
    reentry *r = user_data;
    (void)message;
    (void)events_lost;
    if (r == NULL || r->self != r) {
        fprintf(stderr, "on_failure: wrong user_data\n");
        exit(1);
    }
    r->calls++;
    if (kind == SNP_FAILURE_CAPACITY_DROP) r->drops++;
    if (r->controller == NULL) return;
    snp_service_controller_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    snp_status a = snp_service_controller_get_stats(r->controller, &st);
    if (a == SNP_ERR_STATE) r->stats_refused++;
    else r->other_status++;
    if (snp_last_error_message(NULL, 0) > 0) r->message_ok++;
    snp_event e = make_event(SNP_EVENT_QUEUEING, "FromCallback", NULL);
    snp_status b = snp_service_controller_raise(r->controller, &e, NULL);
    if (b == SNP_ERR_STATE) r->raise_refused++;
    else r->other_status++;
    snp_uuid u;
    memset(&u, 1, sizeof u);
    snp_status d = snp_service_controller_ack(r->controller, &u);
    if (d == SNP_ERR_STATE) r->ack_refused++;
    else r->other_status++;
    snp_service_stats ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    if (snp_service_get_stats(r->store, &ss) == SNP_OK) r->store_ok++;
}

static void test_failure_callback(void) {
    reentry r;
    memset(&r, 0, sizeof r);
    r.self = &r;
    snp_service *s = open_memory(4096, call_controller, &r); /* the minimum */
    r.store = s;
    snp_service_controller *c = new_controller(s, 1000);
    CHECK_OK(snp_service_controller_tick(c, 0)); /* the clock's origin */
    r.controller = c;

    snp_uuid a = raise_on(c, SNP_EVENT_QUEUEING, "Alarm", "x");
    go_online(c, NULL);
    EXPECT_STORE_UID(c, s);
    EXPECT_SEND(c, &a);
    CHECK(mode_of(s) == SNP_MODE_STORAGE);

    /* 272 bytes a record: the store fills up and drops the oldest, the
     * event in flight first. */
    char args[201];
    memset(args, 'f', 200);
    args[200] = 0;
    snp_uuid fill[20];
    for (int i = 0; i < 20; i++) fill[i] = raise_on(c, SNP_EVENT_QUEUEING, "Fill", args);
    EXPECT_EMPTY(c); /* a is still in flight for the controller */
    snp_service_stats ss = service_stats(s);
    uint64_t dropped = ss.dropped_events;
    CHECK(dropped >= 2 && dropped < 20);
    CHECK(r.calls >= 1 && r.drops == r.calls);
    CHECK(r.stats_refused == r.calls && r.raise_refused == r.calls);
    CHECK(r.ack_refused == r.calls && r.other_status == 0);
    CHECK(r.message_ok == r.calls && r.store_ok == r.calls);
    CHECK(service_stats(s).pending_events == 20 - (dropped - 1));

    /* Outside the callback the controller answers. */
    snp_service_controller_stats st = ctl_stats(c);
    CHECK(st.in_flight == 1 && st.stale_acks == 0);

    /* The dropped event in flight is still resent (BEHAVIOUR 7, item 10),
     * and its ack is stale; the flight ends and the oldest left goes. */
    CHECK_OK(snp_service_controller_tick(c, 1000));
    EXPECT_SEND(c, &a);
    ack(c, &a);
    st = ctl_stats(c);
    CHECK(st.stale_acks == 1);
    EXPECT_SEND(c, &fill[dropped - 1]);
    EXPECT_EMPTY(c);
    r.controller = NULL;
    snp_uuid seq[32];
    ack(c, &fill[dropped - 1]);
    int n = DELIVER_ALL(c, seq, 32, NULL);
    CHECK(n == (int)(20 - dropped));
    for (int i = 0; i < n; i++) CHECK(uid_eq(&seq[i], &fill[(int)dropped + i]));
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_free(c);
    snp_service_close(s);
}

/* ----- two threads ------------------------------------------------------- */

#define THREAD_RAISES 300

typedef struct shared {
    snp_service_controller *c;
    atomic_int raiser_done;
    snp_uuid raised[THREAD_RAISES];
    snp_status raise_error;
    /* the acker */
    snp_uuid sent[THREAD_RAISES * 4];
    int sent_count;
    snp_status acker_error;
    int acker_finished;
} shared;

static void *raiser(void *arg) {
    shared *sh = arg;
    static const char *const names[] = {"T0", "T1", "T2"};
    char args[16];
    for (int i = 0; i < THREAD_RAISES; i++) {
        int n = snprintf(args, sizeof args, "%d", i);
        snp_event e = {SNP_EVENT_QUEUEING, names[i % 3], 2, (const uint8_t *)args, (size_t)n, 0};
        snp_status st = snp_service_controller_raise(sh->c, &e, &sh->raised[i]);
        if (st != SNP_OK) {
            sh->raise_error = st;
            break;
        }
        if (i % 50 == 0) sched_yield();
    }
    atomic_store(&sh->raiser_done, 1);
    return NULL;
}

static void *acker(void *arg) {
    shared *sh = arg;
    for (long guard = 0; guard < 50L * 1000 * 1000; guard++) {
        snp_service_output o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        int done = atomic_load(&sh->raiser_done);
        snp_status st = snp_service_controller_next_output(sh->c, &o);
        if (st == SNP_OK) {
            if (o.kind != SNP_OUTPUT_SEND_EVENT) continue;
            if (sh->sent_count < THREAD_RAISES * 4) sh->sent[sh->sent_count++] = o.event.uid;
            st = snp_service_controller_ack(sh->c, &o.event.uid);
            if (st != SNP_OK) {
                sh->acker_error = st;
                return NULL;
            }
            continue;
        }
        if (st != SNP_EMPTY) {
            sh->acker_error = st;
            return NULL;
        }
        if (done) {
            snp_service_controller_stats cs;
            memset(&cs, 0, sizeof cs);
            cs.struct_size = sizeof cs;
            st = snp_service_controller_get_stats(sh->c, &cs);
            if (st != SNP_OK) {
                sh->acker_error = st;
                return NULL;
            }
            if (cs.in_flight == 0) {
                sh->acker_finished = 1;
                return NULL;
            }
        }
        sched_yield();
    }
    return NULL;
}

static shared thread_state;

static void test_two_threads(void) {
    snp_service *s = open_memory(1024 * 1024, NULL, NULL);
    snp_service_controller *c = new_controller(s, 1000);
    go_online(c, NULL);
    EXPECT_STORE_UID(c, s);
    shared *sh = &thread_state;
    memset(sh, 0, sizeof *sh);
    sh->c = c;
    atomic_init(&sh->raiser_done, 0);
    pthread_t t1, t2;
    CHECK(pthread_create(&t2, NULL, acker, sh) == 0);
    CHECK(pthread_create(&t1, NULL, raiser, sh) == 0);
    CHECK(pthread_join(t1, NULL) == 0);
    CHECK(pthread_join(t2, NULL) == 0);
    CHECK_OK(sh->raise_error);
    CHECK_OK(sh->acker_error);
    CHECK(sh->acker_finished == 1);
    CHECK(sh->sent_count == THREAD_RAISES); /* each once: no resend (no tick) */
    int missing = 0;
    for (int i = 0; i < THREAD_RAISES; i++) {
        int found = 0;
        for (int j = 0; j < sh->sent_count && !found; j++)
            found = uid_eq(&sh->raised[i], &sh->sent[j]);
        if (!found) missing++;
    }
    CHECK(missing == 0);
    /* Each name's events went in raise order. */
    int last_index[3] = {-1, -1, -1};
    int out_of_order = 0;
    for (int j = 0; j < sh->sent_count; j++)
        for (int i = 0; i < THREAD_RAISES; i++)
            if (uid_eq(&sh->raised[i], &sh->sent[j])) {
                if (i < last_index[i % 3]) out_of_order++;
                last_index[i % 3] = i;
                break;
            }
    CHECK(out_of_order == 0);
    CHECK(service_stats(s).pending_events == 0);
    snp_service_controller_stats st = ctl_stats(c);
    CHECK(st.in_flight == 0 && st.stale_acks == 0);
    EXPECT_EMPTY(c);
    snp_service_controller_free(c);
    snp_service_close(s);
}

int main(void) {
    char dir[] = "/tmp/snp_test_service_controller_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    test_handshake_broker_remembers_none(dir);
    test_handshake_broker_remembers_ours(dir);
    test_handshake_broker_remembers_another(dir);
    test_handshake_broker_remembers_previous();
    test_fallback_while_online();
    test_storage_mode();
    test_default_timeout();
    test_first_tick_sets_origin();
    test_cache_mode();
    test_disconnect_storage_mode();
    test_disconnect_cache_mode();
    test_disconnect_twice();
    test_disconnect_superseded();
    test_store_left_in_cache_mode();
    test_file_store_reopened(dir);
    test_bad_input();
    test_closed_store();
    test_closed_file_store(dir);
    test_failure_callback();
    test_two_threads();

    remove_dir(dir);
    CHECK_DONE("service_controller");
    return 0;
}
