/* Custom level-2 backends written in C: a record log for the service store
 * (snp_record_log_vtable) and an id store for the client store
 * (snp_id_store_vtable), both in fixed arrays. The stores keep their rules
 * on top; a backend that fails on command makes the store continue at
 * level 1, report SNP_FAILURE_FALLBACK and keep every pending event. */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

/* ----- the record log ---------------------------------------------------- */

#define LOG_MAX 64

typedef struct record {
    uint64_t seq;
    size_t len;
    uint8_t data[SNP_MAX_RECORD_LEN];
} record;

typedef struct mem_log {
    record recs[LOG_MAX]; /* live records, increasing seq */
    size_t count;
    uint64_t next_seq;
    uint8_t meta[64];
    size_t meta_len;
    /* fault injection */
    bool fail_append, fail_remove, fail_scan, fail_read, lie_read_len;
    /* scan: after record number oversize_after (1-based; 0: never), hand
     * one more record of oversize_len bytes from a small buffer, and ignore
     * every status the visitor returns; null_payload: hand NULL instead */
    size_t oversize_after, oversize_len;
    bool null_payload;
    snp_status visit_status[LOG_MAX + 1];
    size_t visits;
    /* what the store called */
    int appends, removes, reads, scans, commits, flushes, clears, destroys;
    int removed_for[5]; /* by SNP_REMOVED_* reason */
} mem_log;

static long find_record(const mem_log *log, uint64_t seq) {
    for (size_t i = 0; i < log->count; i++)
        if (log->recs[i].seq == seq) return (long)i;
    return -1;
}

static snp_status log_append(void *ctx, const uint8_t *payload, size_t len, uint64_t *out_seq) {
    mem_log *log = ctx;
    log->appends++;
    if (log->fail_append) return SNP_ERR_IO;
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
    log->removes++;
    if (log->fail_remove) return SNP_ERR_IO;
    long i = find_record(log, seq);
    if (i < 0) return SNP_ERR_STATE;
    if (reason >= 1 && reason <= 4) log->removed_for[reason]++;
    memmove(&log->recs[i], &log->recs[i + 1], (log->count - (size_t)i - 1) * sizeof(record));
    log->count--;
    return SNP_OK;
}

static snp_status log_read(void *ctx, uint64_t seq, uint8_t *buf, size_t buf_len,
                           size_t *out_len) {
    mem_log *log = ctx;
    log->reads++;
    long i = find_record(log, seq);
    if (log->fail_read || i < 0 || log->recs[i].len > buf_len) return SNP_ERR_IO;
    memcpy(buf, log->recs[i].data, log->recs[i].len);
    *out_len = log->lie_read_len ? buf_len + 1 : log->recs[i].len;
    return SNP_OK;
}

/* A careless scan: hands an oversized record and carries on whatever the
 * visitor says, then reports success. */
static snp_status log_scan_careless(mem_log *log, snp_record_visit_fn visit, void *visit_ctx) {
    uint8_t *small = malloc(8); /* on the heap: ASan sees any read past it */
    if (small == NULL) return SNP_ERR_IO;
    memset(small, 0, 8);
    log->visits = 0;
    for (size_t i = 0; i < log->count; i++) {
        log->visit_status[log->visits++] =
            visit(visit_ctx, log->recs[i].seq, log->recs[i].data, log->recs[i].len);
        if (i + 1 == log->oversize_after)
            log->visit_status[log->visits++] =
                visit(visit_ctx, log->recs[i].seq + 1000, log->null_payload ? NULL : small,
                      log->oversize_len);
    }
    free(small);
    return SNP_OK;
}

static snp_status log_scan(void *ctx, snp_record_visit_fn visit, void *visit_ctx) {
    mem_log *log = ctx;
    log->scans++;
    if (log->fail_scan) return SNP_ERR_IO;
    if (log->oversize_after > 0) return log_scan_careless(log, visit, visit_ctx);
    for (size_t i = 0; i < log->count; i++) {
        snp_status st = visit(visit_ctx, log->recs[i].seq, log->recs[i].data, log->recs[i].len);
        if (st != SNP_OK) return st;
    }
    return SNP_OK;
}

static snp_status log_commit(void *ctx) {
    ((mem_log *)ctx)->commits++;
    return SNP_OK;
}

static snp_status log_flush(void *ctx) {
    ((mem_log *)ctx)->flushes++;
    return SNP_OK;
}

static snp_status log_clear(void *ctx) {
    mem_log *log = ctx;
    log->clears++;
    log->count = 0; /* sequence numbers keep growing */
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
    if (len > sizeof log->meta) return SNP_ERR_IO;
    memcpy(log->meta, meta, len);
    log->meta_len = len;
    return SNP_OK;
}

static void log_destroy(void *ctx) {
    ((mem_log *)ctx)->destroys++;
}

static void log_init(mem_log *log) {
    memset(log, 0, sizeof *log);
    log->next_seq = 1;
}

static snp_record_log_vtable log_vtable(mem_log *log) {
    snp_record_log_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = log;
    vt.append = log_append;
    vt.remove = log_remove;
    vt.read = log_read;
    vt.scan = log_scan;
    vt.commit = log_commit;
    vt.flush = log_flush;
    vt.clear = log_clear;
    vt.get_metadata = log_get_metadata;
    vt.set_metadata = log_set_metadata;
    vt.destroy = log_destroy;
    return vt;
}

/* ----- helpers ------------------------------------------------------- */

static snp_service *open_on(mem_log *log, failures *f, uint64_t capacity) {
    snp_record_log_vtable vt = log_vtable(log);
    snp_service_options o;
    snp_service_options_init(&o);
    o.file_capacity = capacity;
    o.on_failure = f ? record_failure : NULL;
    o.user_data = f;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open_custom(&vt, &o, &s));
    CHECK(s != NULL);
    return s;
}

/* Peeks and acks the next event in storage mode; checks its args. */
static void deliver(snp_service *s, const char *args) {
    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(out.args_len == strlen(args) && memcmp(out.args, args, out.args_len) == 0);
    CHECK_OK(snp_service_ack(s, &out.uid));
}

/* ----- service: open errors ---------------------------------------------- */

static mem_log shared_log; /* the "device": survives the store handles */
static mem_log scratch_log;

static void test_service_open_errors(void) {
    log_init(&scratch_log);
    snp_record_log_vtable vt = log_vtable(&scratch_log);
    snp_service_options o;
    snp_service_options_init(&o);
    snp_service *s = SENTINEL_SERVICE;

    CHECK_STATUS(snp_service_open_custom(NULL, &o, &s), SNP_ERR_INVALID_ARGUMENT);
    CHECK(s == SENTINEL_SERVICE);
    CHECK_STATUS(snp_service_open_custom(&vt, NULL, &s), SNP_ERR_INVALID_ARGUMENT);
    CHECK(s == SENTINEL_SERVICE);
    snp_record_log_vtable bad = vt;
    bad.struct_size = 0;
    CHECK_STATUS(snp_service_open_custom(&bad, &o, &s), SNP_ERR_INVALID_ARGUMENT);
    snp_service_options bad_options = o;
    bad_options.struct_size = 0;
    CHECK_STATUS(snp_service_open_custom(&vt, &bad_options, &s), SNP_ERR_INVALID_ARGUMENT);

    /* ABI version 1 has no older layout: a struct_size that cuts a field
     * (here half of destroy, or all of it) is refused, never half-read. */
    const size_t too_small[] = {4, offsetof(snp_record_log_vtable, destroy),
                                offsetof(snp_record_log_vtable, destroy) + sizeof vt.destroy / 2,
                                sizeof(snp_record_log_vtable) - 1};
    for (size_t i = 0; i < sizeof too_small / sizeof too_small[0]; i++) {
        bad = vt;
        bad.struct_size = (uint32_t)too_small[i];
        CHECK_STATUS(snp_service_open_custom(&bad, &o, &s), SNP_ERR_INVALID_ARGUMENT);
        CHECK(s == SENTINEL_SERVICE);
        CHECK(last_error_contains("backend->struct_size"));
        CHECK(last_error_contains("sizeof(snp_record_log_vtable)"));
    }
    bad_options = o;
    bad_options.struct_size = (uint32_t)offsetof(snp_service_options, on_failure) + 4;
    CHECK_STATUS(snp_service_open_custom(&vt, &bad_options, &s), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("snp_service_options_init"));
    CHECK(s == SENTINEL_SERVICE && scratch_log.destroys == 0);

    /* Each required function. */
    for (int which = 0; which < 7; which++) {
        bad = vt;
        switch (which) {
        case 0: bad.append = NULL; break;
        case 1: bad.remove = NULL; break;
        case 2: bad.read = NULL; break;
        case 3: bad.scan = NULL; break;
        case 4: bad.clear = NULL; break;
        case 5: bad.get_metadata = NULL; break;
        default: bad.set_metadata = NULL; break;
        }
        CHECK_STATUS(snp_service_open_custom(&bad, &o, &s), SNP_ERR_INVALID_ARGUMENT);
        CHECK(s == SENTINEL_SERVICE);
    }
    CHECK(scratch_log.destroys == 0);

    /* A newer caller's larger vtable: the functions of this header are
     * used, the later fields (garbage here) are not read. */
    struct {
        snp_record_log_vtable known;
        unsigned char later_fields[24];
    } newer;
    memset(&newer, 0xEE, sizeof newer);
    newer.known = vt;
    newer.known.struct_size = sizeof newer;
    s = NULL;
    CHECK_OK(snp_service_open_custom(&newer.known, &o, &s));
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    snp_service_close(s);
    CHECK(scratch_log.destroys == 1);
    log_init(&scratch_log);
    s = SENTINEL_SERVICE;

    /* More refusals: test_refused_open_keeps_backend. */
    CHECK(scratch_log.appends == 0 && scratch_log.scans == 0);

    /* level, directory and service_uid are ignored (durability: see the
     * end of main). */
    log_init(&scratch_log);
    vt = log_vtable(&scratch_log);
    snp_service_options ignored = o;
    ignored.level = 77;
    ignored.directory = NULL;
    memset(&ignored.service_uid, 0xFF, sizeof ignored.service_uid);
    s = NULL;
    CHECK_OK(snp_service_open_custom(&vt, &ignored, &s));
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    snp_service_close(s);
    CHECK(scratch_log.destroys == 1);

    /* The optional functions may be NULL. */
    log_init(&scratch_log);
    vt = log_vtable(&scratch_log);
    vt.commit = NULL;
    vt.flush = NULL;
    vt.destroy = NULL;
    s = NULL;
    CHECK_OK(snp_service_open_custom(&vt, &o, &s));
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temp", "1");
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_flush(s));
    deliver(s, "1");
    snp_service_close(s);
    CHECK(scratch_log.destroys == 0 && scratch_log.commits == 0 && scratch_log.flushes == 0);
    CHECK(scratch_log.appends == 1 && scratch_log.count == 0);
}

/* ----- service: raise, peek, ack, reopen --------------------------------- */

static void test_service_roundtrip(void) {
    log_init(&shared_log);
    failures f;
    failures_init(&f);
    snp_service *s = open_on(&shared_log, &f, 0);
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.capacity_bytes == 1024 * 1024);
    CHECK(shared_log.scans == 1 && shared_log.meta_len == 17); /* version + storage uid */
    snp_uuid storage_uid;
    CHECK_OK(snp_service_storage_uid(s, &storage_uid));

    snp_event t1 = make_event(SNP_EVENT_QUEUEING, "Temperature", "21.5");
    snp_event t2 = make_event(SNP_EVENT_QUEUEING, "Temperature", "21.9");
    snp_event d1 = make_event(SNP_EVENT_REPLACING, "Door", "open");
    snp_event d2 = make_event(SNP_EVENT_REPLACING, "Door", "closed");
    snp_event p1 = make_event(SNP_EVENT_PRIVATE, "Alarm", "smoke");
    p1.client_id = -42;
    snp_uuid u1;
    CHECK_OK(snp_service_raise(s, &t1, &u1));
    CHECK_OK(snp_service_raise(s, &d1, NULL));
    CHECK_OK(snp_service_raise(s, &t2, NULL));
    CHECK_OK(snp_service_raise(s, &d2, NULL)); /* supersedes d1 */
    CHECK_OK(snp_service_raise(s, &p1, NULL));
    CHECK(shared_log.appends == 5 && shared_log.count == 4);
    CHECK(shared_log.removed_for[SNP_REMOVED_SUPERSEDED] == 1);
    CHECK(shared_log.commits >= 5);
    CHECK(service_stats(s).pending_events == 4);

    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u1));
    CHECK_OK(snp_service_ack(s, &u1));
    CHECK(shared_log.removed_for[SNP_REMOVED_ACKNOWLEDGED] == 1 && shared_log.count == 3);
    CHECK_OK(snp_service_flush(s));
    CHECK(shared_log.flushes >= 1);
    snp_service_close(s);
    CHECK(shared_log.destroys == 1); /* exactly once, on close */
    CHECK(f.calls == 0);

    /* Reopen on the same backend state: the events are there. */
    s = open_on(&shared_log, &f, 0);
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.pending_events == 3);
    CHECK(uid_eq(&st.storage_uid, &storage_uid));
    deliver(s, "21.9");
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(strcmp(out.name, "Door") == 0 && memcmp(out.args, "closed", 6) == 0);
    CHECK_OK(snp_service_ack(s, &out.uid));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(out.kind == SNP_EVENT_PRIVATE && out.client_id == -42);
    CHECK_OK(snp_service_ack(s, &out.uid));
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);

    /* Cache mode through the backend. */
    CHECK_OK(snp_service_raise(s, &t1, &u1));
    CHECK_OK(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temperature", 11, &out));
    CHECK(uid_eq(&out.uid, &u1));
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temperature", 11, &u1, &out),
                 SNP_EMPTY);
    CHECK(shared_log.count == 0);

    /* Ancient data and reset. */
    CHECK_OK(snp_service_raise(s, &t1, NULL));
    CHECK_OK(snp_service_raise(s, &t2, NULL));
    snp_service_close(s);
    CHECK(shared_log.destroys == 2);
    s = open_on(&shared_log, &f, 0);
    CHECK_OK(snp_service_raise(s, &d1, NULL));
    uint64_t count = 0;
    CHECK_OK(snp_service_invalidate_ancient(s, &count));
    CHECK(count == 2 && shared_log.removed_for[SNP_REMOVED_INVALIDATED] == 2);
    CHECK(service_stats(s).pending_events == 1 && shared_log.count == 1);
    CHECK_OK(snp_service_reset(s));
    CHECK(shared_log.clears == 1 && shared_log.count == 0);
    uint64_t seq_before = shared_log.next_seq;
    CHECK_OK(snp_service_raise(s, &t1, NULL));
    CHECK(shared_log.recs[0].seq == seq_before); /* numbers keep growing */
    snp_uuid after_reset;
    CHECK_OK(snp_service_storage_uid(s, &after_reset));
    CHECK(uid_eq(&after_reset, &storage_uid));

    /* Capacity applies to the backend: drops are removals "dropped". */
    static uint8_t big[2048];
    snp_event b = make_event(SNP_EVENT_QUEUEING, "Big", NULL);
    b.args = big;
    b.args_len = sizeof big;
    snp_service_close(s);
    CHECK(shared_log.destroys == 3);
    s = open_on(&shared_log, &f, 8192);
    CHECK(service_stats(s).capacity_bytes == 8192);
    for (int i = 0; i < 5; i++) CHECK_OK(snp_service_raise(s, &b, NULL));
    st = service_stats(s);
    CHECK(st.pending_events == 3 && st.dropped_events == 3 && st.level == SNP_LEVEL_FILE);
    CHECK(shared_log.removed_for[SNP_REMOVED_DROPPED] == 3);
    CHECK(f.by_kind[SNP_FAILURE_CAPACITY_DROP] == 2 && f.by_kind[SNP_FAILURE_FALLBACK] == 0);
    snp_service_close(s);
    CHECK(shared_log.destroys == 4);
}

/* ----- service: a backend that fails ------------------------------------- */

static void test_service_failing_append(void) {
    mem_log *log = &scratch_log;
    log_init(log);
    failures f;
    failures_init(&f);
    snp_service *s = open_on(log, &f, 0);
    snp_uuid level2_uid;
    CHECK_OK(snp_service_storage_uid(s, &level2_uid));
    snp_uuid previous;
    memset(&previous, 0xab, sizeof previous);
    CHECK_STATUS(snp_service_previous_storage_uid(s, &previous), SNP_EMPTY);
    CHECK(previous.bytes[0] == 0xab); /* nothing written */
    CHECK_STATUS(snp_service_previous_storage_uid(NULL, &previous), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_previous_storage_uid(s, NULL), SNP_ERR_INVALID_ARGUMENT);
    snp_event e1 = make_event(SNP_EVENT_QUEUEING, "Temp", "one");
    snp_event e2 = make_event(SNP_EVENT_QUEUEING, "Temp", "two");
    snp_event e3 = make_event(SNP_EVENT_QUEUEING, "Temp", "three");
    snp_event e4 = make_event(SNP_EVENT_QUEUEING, "Temp", "four");
    CHECK_OK(snp_service_raise(s, &e1, NULL));
    CHECK_OK(snp_service_raise(s, &e2, NULL));

    log->fail_append = true; /* the device fails */
    CHECK_OK(snp_service_raise(s, &e3, NULL)); /* reported, not returned */
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY);
    CHECK(st.failures == 1 && st.events_lost == 0);
    CHECK(st.pending_events == 3);
    CHECK(st.capacity_bytes == 16 * 1024); /* the memory capacity */
    CHECK(!uid_eq(&st.storage_uid, &level2_uid)); /* a new storage uid */
    CHECK_OK(snp_service_previous_storage_uid(s, &previous)); /* and the one before */
    CHECK(uid_eq(&previous, &level2_uid));
    CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1 && f.lost == 0);
    CHECK(strstr(f.last_message, "append") != NULL);
    CHECK(log->destroys == 1); /* the store no longer needs the backend */

    int appends = log->appends;
    CHECK_OK(snp_service_raise(s, &e4, NULL)); /* level 1 from now on */
    CHECK(log->appends == appends);
    deliver(s, "one");
    deliver(s, "two");
    deliver(s, "three");
    deliver(s, "four");
    snp_stored_event out;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    snp_service_close(s);
    CHECK(log->destroys == 1); /* not again on close */
    CHECK(f.calls == 1);
}

static void test_service_failing_remove(void) {
    mem_log *log = &scratch_log;
    log_init(log);
    failures f;
    failures_init(&f);
    snp_service *s = open_on(log, &f, 0);
    snp_event e1 = make_event(SNP_EVENT_QUEUEING, "Temp", "one");
    snp_event e2 = make_event(SNP_EVENT_QUEUEING, "Temp", "two");
    snp_event e3 = make_event(SNP_EVENT_PRIVATE, "Note", "three");
    e3.client_id = 9;
    CHECK_OK(snp_service_raise(s, &e1, NULL));
    CHECK_OK(snp_service_raise(s, &e2, NULL));
    CHECK_OK(snp_service_raise(s, &e3, NULL));
    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));

    log->fail_remove = true;
    CHECK_OK(snp_service_ack(s, &out.uid)); /* the ack still counts, at level 1 */
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1 && st.events_lost == 0);
    CHECK(st.pending_events == 2);
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1 && f.calls == 1);
    CHECK(strstr(f.last_message, "remove") != NULL);
    CHECK(log->destroys == 1);
    CHECK_STATUS(snp_service_ack(s, &out.uid), SNP_ERR_STATE); /* stale */
    deliver(s, "two");
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(out.kind == SNP_EVENT_PRIVATE && out.client_id == 9);
    CHECK_OK(snp_service_ack(s, &out.uid));
    snp_service_close(s);
    CHECK(log->destroys == 1);
}

/* A backend failing at open (scan), one returning a record that is not an
 * event, one breaking the sequence rule. */
static void test_service_bad_backends(void) {
    mem_log *log = &scratch_log;
    failures f;

    log_init(log);
    failures_init(&f);
    log->fail_scan = true;
    snp_service *s = open_on(log, &f, 0);
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1);
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(log->destroys == 1);
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temp", "x");
    CHECK_OK(snp_service_raise(s, &e, NULL));
    deliver(s, "x");
    snp_service_close(s);
    CHECK(log->destroys == 1);

    /* A stored record too short to be an event: discarded and reported,
     * never delivered; the store stays at level 2. */
    log_init(log);
    failures_init(&f);
    log->recs[0].seq = 5;
    log->recs[0].len = 5;
    memcpy(log->recs[0].data, "junk!", 5);
    log->count = 1;
    log->next_seq = 6;
    s = open_on(log, &f, 0);
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.pending_events == 0);
    CHECK(f.by_kind[SNP_FAILURE_CORRUPTION] >= 1);
    CHECK(log->count == 0);
    snp_stored_event out;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    snp_service_close(s);

    /* scan listing records out of order: level 1, reported. */
    log_init(log);
    failures_init(&f);
    s = open_on(log, &f, 0);
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_raise(s, &e, NULL));
    snp_service_close(s);
    record swap = log->recs[0];
    log->recs[0] = log->recs[1];
    log->recs[1] = swap;
    log->destroys = 0;
    s = open_on(log, &f, 0);
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.pending_events == 0 && st.failures == 1);
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(strstr(f.last_message, "order") != NULL);
    CHECK(log->destroys == 1);
    snp_service_close(s);

    /* read claiming more bytes than the buffer: an error, not an overflow;
     * the unreadable events are reported lost, never invented. */
    log_init(log);
    failures_init(&f);
    s = open_on(log, &f, 0);
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_raise(s, &e, NULL));
    log->lie_read_len = true;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.pending_events == 0);
    CHECK(st.failures == 1 && st.events_lost == 2);
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1 && f.lost == 2);
    snp_service_close(s);
    CHECK(log->destroys == 1);

    /* append returning a number not above an earlier one: level 1. */
    log_init(log);
    failures_init(&f);
    s = open_on(log, &f, 0);
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_raise(s, &e, NULL));
    log->next_seq = 1;
    CHECK_OK(snp_service_raise(s, &e, NULL));
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.pending_events == 3);
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    for (int i = 0; i < 3; i++) deliver(s, "x");
    snp_service_close(s);
    CHECK(log->destroys == 1);
}

/* ----- the id store ------------------------------------------------------ */

#define IDS_MAX 32

typedef struct mem_ids {
    struct {
        char name[SNP_MAX_NAME_LEN];
        size_t len;
        int64_t id;
    } e[IDS_MAX];
    size_t count;
    bool fail_put, fail_load;
    /* load: after pair number bad_after (1-based; 0: never), hand one pair
     * (id 666) the store cannot read, as bad_name says */
    size_t bad_after;
    enum { BAD_NOT_UTF8 = 1, BAD_NULL, BAD_HUGE_LEN, BAD_TOO_LONG } bad_name;
    int loads, puts, clears, flushes, destroys;
} mem_ids;

static void ids_visit_bad(mem_ids *s, snp_id_visit_fn visit, void *visit_ctx) {
    static const char not_utf8[] = {'T', 'e', 'm', 'p', (char)0xC3, (char)0x28};
    switch (s->bad_name) {
    case BAD_NOT_UTF8: visit(visit_ctx, not_utf8, sizeof not_utf8, 666); break;
    case BAD_NULL: visit(visit_ctx, NULL, 4, 666); break;
    case BAD_HUGE_LEN: {
        char *small = malloc(4); /* on the heap: ASan sees any read past it */
        if (small == NULL) return;
        memcpy(small, "Huge", 4);
        visit(visit_ctx, small, (size_t)1 << (sizeof(size_t) > 4 ? 32 : 31), 666);
        visit(visit_ctx, small, SIZE_MAX, 667);
        free(small);
        break;
    }
    case BAD_TOO_LONG: {
        char *long_name = malloc(SNP_MAX_NAME_LEN + 1);
        if (long_name == NULL) return;
        memset(long_name, 'n', SNP_MAX_NAME_LEN + 1);
        visit(visit_ctx, long_name, SNP_MAX_NAME_LEN + 1, 666);
        free(long_name);
        break;
    }
    }
}

static snp_status ids_load(void *ctx, snp_id_visit_fn visit, void *visit_ctx) {
    mem_ids *s = ctx;
    s->loads++;
    if (s->fail_load) return SNP_ERR_IO;
    for (size_t i = 0; i < s->count; i++) {
        visit(visit_ctx, s->e[i].name, s->e[i].len, s->e[i].id);
        if (i + 1 == s->bad_after) ids_visit_bad(s, visit, visit_ctx);
    }
    return SNP_OK; /* the visitor cannot say anything: its problems are the store's */
}

static snp_status ids_put(void *ctx, const char *name, size_t name_len, int64_t id) {
    mem_ids *s = ctx;
    s->puts++;
    if (s->fail_put || name_len > SNP_MAX_NAME_LEN) return SNP_ERR_IO;
    size_t i = 0;
    while (i < s->count && !(s->e[i].len == name_len && memcmp(s->e[i].name, name, name_len) == 0))
        i++;
    if (i == IDS_MAX) return SNP_ERR_STORAGE_FULL;
    if (i == s->count) s->count++;
    memcpy(s->e[i].name, name, name_len);
    s->e[i].len = name_len;
    s->e[i].id = id;
    return SNP_OK;
}

static snp_status ids_clear(void *ctx) {
    mem_ids *s = ctx;
    s->clears++;
    s->count = 0;
    return SNP_OK;
}

static snp_status ids_flush(void *ctx) {
    ((mem_ids *)ctx)->flushes++;
    return SNP_OK;
}

static void ids_destroy(void *ctx) {
    ((mem_ids *)ctx)->destroys++;
}

static snp_id_store_vtable ids_vtable(mem_ids *s) {
    snp_id_store_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = s;
    vt.load = ids_load;
    vt.put = ids_put;
    vt.clear = ids_clear;
    vt.flush = ids_flush;
    vt.destroy = ids_destroy;
    return vt;
}

static snp_client *open_ids(mem_ids *ids, failures *f) {
    snp_id_store_vtable vt = ids_vtable(ids);
    snp_client_options o;
    snp_client_options_init(&o);
    o.on_failure = f ? record_failure : NULL;
    o.user_data = f;
    snp_client *c = NULL;
    CHECK_OK(snp_client_open_custom(&vt, &o, &c));
    CHECK(c != NULL);
    return c;
}

static mem_ids shared_ids;

static void test_client_open_errors(void) {
    mem_ids ids;
    memset(&ids, 0, sizeof ids);
    snp_id_store_vtable vt = ids_vtable(&ids);
    snp_client_options o;
    snp_client_options_init(&o);
    snp_client *c = SENTINEL_CLIENT;
    CHECK_STATUS(snp_client_open_custom(NULL, &o, &c), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_open_custom(&vt, NULL, &c), SNP_ERR_INVALID_ARGUMENT);
    snp_id_store_vtable bad = vt;
    bad.struct_size = 0;
    CHECK_STATUS(snp_client_open_custom(&bad, &o, &c), SNP_ERR_INVALID_ARGUMENT);
    /* A struct_size that cuts a field (half of destroy, or all of it). */
    const size_t too_small[] = {4, offsetof(snp_id_store_vtable, destroy),
                                offsetof(snp_id_store_vtable, destroy) + sizeof vt.destroy / 2,
                                sizeof(snp_id_store_vtable) - 1};
    for (size_t i = 0; i < sizeof too_small / sizeof too_small[0]; i++) {
        bad = vt;
        bad.struct_size = (uint32_t)too_small[i];
        CHECK_STATUS(snp_client_open_custom(&bad, &o, &c), SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("backend->struct_size"));
        CHECK(last_error_contains("sizeof(snp_id_store_vtable)"));
    }
    snp_client_options bad_options = o;
    bad_options.struct_size = (uint32_t)offsetof(snp_client_options, user_data);
    CHECK_STATUS(snp_client_open_custom(&vt, &bad_options, &c), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("snp_client_options_init"));
    bad = vt;
    bad.load = NULL;
    CHECK_STATUS(snp_client_open_custom(&bad, &o, &c), SNP_ERR_INVALID_ARGUMENT);
    bad = vt;
    bad.put = NULL;
    CHECK_STATUS(snp_client_open_custom(&bad, &o, &c), SNP_ERR_INVALID_ARGUMENT);
    bad = vt;
    bad.clear = NULL;
    CHECK_STATUS(snp_client_open_custom(&bad, &o, &c), SNP_ERR_INVALID_ARGUMENT);
    CHECK(c == SENTINEL_CLIENT);
    CHECK(ids.destroys == 0);
    CHECK(ids.loads == 0);
    /* More refusals: test_refused_open_keeps_backend. */

    /* A newer caller's larger vtable: the later fields are not read. */
    struct {
        snp_id_store_vtable known;
        unsigned char later_fields[24];
    } newer;
    memset(&newer, 0xEE, sizeof newer);
    newer.known = vt;
    newer.known.struct_size = sizeof newer;
    c = NULL;
    CHECK_OK(snp_client_open_custom(&newer.known, &o, &c));
    CHECK(client_stats(c).level == SNP_LEVEL_FILE && ids.loads == 1);
    snp_client_close(c);
    CHECK(ids.destroys == 1);
    memset(&ids, 0, sizeof ids);
    vt = ids_vtable(&ids);

    /* flush and destroy may be NULL. */
    vt.flush = NULL;
    vt.destroy = NULL;
    c = NULL;
    CHECK_OK(snp_client_open_custom(&vt, &o, &c));
    CHECK_OK(snp_client_put(c, "Temp", 4, 1));
    CHECK_OK(snp_client_flush(c));
    snp_client_close(c);
    CHECK(ids.destroys == 0 && ids.flushes == 0 && ids.count == 1);
}

static void test_client_roundtrip(void) {
    memset(&shared_ids, 0, sizeof shared_ids);
    failures f;
    failures_init(&f);
    snp_client *c = open_ids(&shared_ids, &f);
    CHECK(shared_ids.loads == 1);
    CHECK(client_stats(c).level == SNP_LEVEL_FILE);
    CHECK_OK(snp_client_put(c, "Temperature", 11, INT64_MIN));
    CHECK_OK(snp_client_put(c, "Door", 4, INT64_MAX));
    CHECK_OK(snp_client_put(c, "Door", 4, 5));
    CHECK(shared_ids.puts == 3 && shared_ids.count == 2);
    CHECK_STATUS(snp_client_put(c, "9bad", 4, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK(shared_ids.puts == 3); /* refused before the backend */
    CHECK_OK(snp_client_flush(c));
    CHECK(shared_ids.flushes == 1);
    snp_client_close(c);
    CHECK(shared_ids.destroys == 1);

    CHECK(f.calls == 0);

    /* Reopen on the same state; a name breaking the rules in the backend
     * is not loaded, and that is reported (nothing is dropped silently). */
    memcpy(shared_ids.e[2].name, "1bad", 4);
    shared_ids.e[2].len = 4;
    shared_ids.e[2].id = 3;
    shared_ids.count = 3;
    c = open_ids(&shared_ids, &f);
    CHECK(client_stats(c).subscriptions == 2);
    CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_CORRUPTION] == 1 && f.lost == 1);
    CHECK(strstr(f.last_message, "1bad") != NULL);
    CHECK(client_stats(c).level == SNP_LEVEL_FILE && client_stats(c).failures == 1);
    CHECK(get_id(c, "Temperature") == INT64_MIN && get_id(c, "Door") == 5);
    bool dup = false;
    CHECK_OK(snp_client_is_duplicate(c, "Door", 4, 5, &dup));
    CHECK(dup);
    CHECK_OK(snp_client_reset(c));
    CHECK(shared_ids.clears == 1 && shared_ids.count == 0);
    CHECK(client_stats(c).subscriptions == 0);
    snp_client_close(c);
    CHECK(shared_ids.destroys == 2);
    CHECK(f.calls == 1);
}

static void test_client_failing(void) {
    mem_ids ids;
    memset(&ids, 0, sizeof ids);
    failures f;
    failures_init(&f);
    snp_client *c = open_ids(&ids, &f);
    CHECK_OK(snp_client_put(c, "A", 1, 1));
    ids.fail_put = true;
    CHECK_OK(snp_client_put(c, "B", 1, 2)); /* reported, not returned */
    snp_client_stats st = client_stats(c);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1 && st.subscriptions == 2);
    CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(ids.destroys == 1);
    CHECK(get_id(c, "A") == 1 && get_id(c, "B") == 2); /* every id kept */
    int puts = ids.puts;
    CHECK_OK(snp_client_put(c, "C", 1, 3));
    CHECK(ids.puts == puts);
    snp_client_close(c);
    CHECK(ids.destroys == 1);

    /* Failing at open: level 1 from the start. */
    memset(&ids, 0, sizeof ids);
    failures_init(&f);
    ids.fail_load = true;
    c = open_ids(&ids, &f);
    st = client_stats(c);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1);
    CHECK(f.by_kind[SNP_FAILURE_FALLBACK] == 1 && ids.destroys == 1);
    CHECK_OK(snp_client_put(c, "A", 1, 1));
    CHECK(get_id(c, "A") == 1);
    snp_client_close(c);
    CHECK(ids.destroys == 1);
}

/* ----- pairs and records the store cannot read --------------------------- */

/* A load handing a pair whose name cannot be read (not UTF-8, NULL, a huge
 * length with a small buffer, longer than SNP_MAX_NAME_LEN) fails the load:
 * reported through on_failure (the store continues in memory with every id
 * it could read), never dropped silently, never read past the buffer. */
static void test_client_unreadable_names(void) {
    const char *expect[] = {"", "UTF-8", "NULL", "SNP_MAX_NAME_LEN", "SNP_MAX_NAME_LEN"};
    for (int bad = BAD_NOT_UTF8; bad <= BAD_TOO_LONG; bad++) {
        mem_ids ids;
        memset(&ids, 0, sizeof ids);
        memcpy(ids.e[0].name, "Alpha", 5);
        ids.e[0].len = 5;
        ids.e[0].id = 1;
        memcpy(ids.e[1].name, "Beta", 4);
        ids.e[1].len = 4;
        ids.e[1].id = 2;
        ids.count = 2;
        ids.bad_after = 1; /* between the two good pairs */
        ids.bad_name = bad;
        failures f;
        failures_init(&f);
        snp_client *c = open_ids(&ids, &f);
        snp_client_stats st = client_stats(c);
        CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1);
        CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1);
        CHECK(strstr(f.last_message, "666") != NULL);
        CHECK(strstr(f.last_message, expect[bad]) != NULL);
        if (bad == BAD_HUGE_LEN) CHECK(strstr(f.last_message, "1 more") != NULL);
        CHECK(ids.destroys == 1); /* let go of, as for any failing backend */
        /* Both good pairs were read, before and after the bad one. */
        CHECK(st.subscriptions == 2);
        CHECK(get_id(c, "Alpha") == 1 && get_id(c, "Beta") == 2);
        CHECK_OK(snp_client_put(c, "Gamma", 5, 3)); /* usable, in memory */
        CHECK(get_id(c, "Gamma") == 3 && ids.puts == 0);
        snp_client_close(c);
        CHECK(ids.destroys == 1);
    }
}

/* A scan handing a record longer than SNP_MAX_RECORD_LEN (from a small
 * buffer) and ignoring the visitor's status afterwards, then returning
 * SNP_OK: the record is refused before it is read, nothing more is visited,
 * and the scan fails (level 1, reported) instead of losing records without
 * a word. */
static void test_service_careless_scan(void) {
    const size_t oversize[] = {SNP_MAX_RECORD_LEN + 1,
                               (size_t)1 << (sizeof(size_t) > 4 ? 32 : 31), SIZE_MAX};
    for (size_t k = 0; k < sizeof oversize / sizeof oversize[0]; k++) {
        mem_log *log = &scratch_log;
        log_init(log);
        failures f;
        failures_init(&f);
        snp_service *s = open_on(log, &f, 0);
        snp_event e = make_event(SNP_EVENT_QUEUEING, "Temp", "x");
        for (int i = 0; i < 3; i++) CHECK_OK(snp_service_raise(s, &e, NULL));
        snp_service_close(s);
        CHECK(f.calls == 0 && log->count == 3);

        log->destroys = 0;
        log->oversize_after = 1;
        log->oversize_len = oversize[k];
        s = open_on(log, &f, 0);
        CHECK(log->visits == 4);
        CHECK(log->visit_status[0] == SNP_OK);
        CHECK(log->visit_status[1] == SNP_ERR_INVALID_ARGUMENT); /* the oversized one */
        CHECK(log->visit_status[2] != SNP_OK && log->visit_status[3] != SNP_OK);
        snp_service_stats st = service_stats(s);
        CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1 && st.pending_events == 0);
        CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1);
        CHECK(strstr(f.last_message, "SNP_MAX_RECORD_LEN") != NULL);
        CHECK(strstr(f.last_message, "lost") != NULL);
        CHECK(log->destroys == 1);
        CHECK_OK(snp_service_raise(s, &e, NULL)); /* usable at level 1 */
        deliver(s, "x");
        snp_service_close(s);
        CHECK(log->destroys == 1);
    }

    /* A NULL payload with a length: refused the same way. */
    log_init(&scratch_log);
    failures f;
    failures_init(&f);
    snp_service *s = open_on(&scratch_log, &f, 0);
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temp", "x");
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_raise(s, &e, NULL));
    snp_service_close(s);
    scratch_log.oversize_after = 1;
    scratch_log.oversize_len = 16;
    scratch_log.null_payload = true;
    scratch_log.destroys = 0;
    s = open_on(&scratch_log, &f, 0);
    CHECK(scratch_log.visits == 3 && scratch_log.visit_status[1] == SNP_ERR_INVALID_ARGUMENT);
    CHECK(service_stats(s).level == SNP_LEVEL_MEMORY);
    CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(strstr(f.last_message, "NULL") != NULL);
    CHECK(scratch_log.destroys == 1);
    snp_service_close(s);
}

/* ----- a refused open keeps the backend with the caller ----------------- */

/* "When this call fails, destroy is not called and ctx is still yours":
 * whichever argument was wrong, so the caller frees ctx on its error path. */
static void test_refused_open_keeps_backend(void) {
    snp_service *s = SENTINEL_SERVICE;
    snp_service_options o;
    snp_service_options_init(&o);

    log_init(&scratch_log);
    snp_record_log_vtable vt = log_vtable(&scratch_log);
    CHECK_STATUS(snp_service_open_custom(&vt, &o, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(scratch_log.destroys == 0);

    log_init(&scratch_log);
    snp_service_options bad = o;
    bad.overflow = 5;
    CHECK_STATUS(snp_service_open_custom(&vt, &bad, &s), SNP_ERR_INVALID_ARGUMENT);
    CHECK(s == SENTINEL_SERVICE);
    CHECK(scratch_log.destroys == 0);

    log_init(&scratch_log);
    bad = o;
    bad.memory_capacity = UINT64_MAX;
    CHECK_STATUS(snp_service_open_custom(&vt, &bad, &s), SNP_ERR_INVALID_ARGUMENT);
    CHECK(scratch_log.destroys == 0);

    mem_ids ids;
    memset(&ids, 0, sizeof ids);
    snp_id_store_vtable ivt = ids_vtable(&ids);
    snp_client_options co;
    snp_client_options_init(&co);
    CHECK_STATUS(snp_client_open_custom(&ivt, &co, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(ids.destroys == 0);
    memset(&ids, 0, sizeof ids);
    snp_client_options cbad = co;
    cbad.durability = 9;
    snp_client *c = SENTINEL_CLIENT;
    CHECK_STATUS(snp_client_open_custom(&ivt, &cbad, &c), SNP_ERR_INVALID_ARGUMENT);
    CHECK(c == SENTINEL_CLIENT);
    CHECK(ids.destroys == 0);
}

/* ----- known library bugs -------------------------------------------------
 * These checks fail with the library as it is. They run last and report
 * every failure before exiting, so the rest of this program is checked
 * first. */

static int bug_failures;

#define EXPECT(cond, what)                                                        \
    do {                                                                          \
        check_count++;                                                            \
        if (!(cond)) {                                                            \
            bug_failures++;                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n    %s\n", __FILE__, __LINE__, \
                    #cond, what);                                                 \
        }                                                                         \
    } while (0)

/* The header: "options->level, directory, service_uid and durability are
 * ignored" by snp_service_open_custom. A durability value outside the enum
 * is refused with SNP_ERR_INVALID_ARGUMENT. */
static void test_open_custom_ignores_durability(void) {
    log_init(&scratch_log);
    snp_record_log_vtable vt = log_vtable(&scratch_log);
    snp_service_options o;
    snp_service_options_init(&o);
    o.durability = 77;
    snp_service *s = NULL;
    snp_status st = snp_service_open_custom(&vt, &o, &s);
    EXPECT(st == SNP_OK, "snp_service_open_custom refused durability = 77, documented as "
                         "ignored");
    snp_service_close(s);
}

int main(void) {
    test_service_open_errors();
    test_service_roundtrip();
    test_service_failing_append();
    test_service_failing_remove();
    test_service_bad_backends();
    test_client_open_errors();
    test_client_roundtrip();
    test_client_failing();
    test_client_unreadable_names();
    test_service_careless_scan();

    test_refused_open_keeps_backend();
    test_open_custom_ignores_durability(); /* known bug: fails */
    if (bug_failures) {
        fprintf(stderr, "custom_backend: %d known-bug check(s) failed\n", bug_failures);
        return 1;
    }
    CHECK_DONE("custom_backend");
    return 0;
}
