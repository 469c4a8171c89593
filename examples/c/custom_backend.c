/* A custom level-2 backend in C: the service store keeps its records in
 * storage you provide (a flash driver, EEPROM, a database...) and applies
 * every rule itself: order, acks, Replacing collapse, capacity, the storage
 * uid. The backend only stores numbered byte records.
 *
 * Here the "device" is a fixed array that outlives the store handles, so
 * closing and reopening the store shows the events surviving, as they would
 * on real non-volatile storage.
 *
 *   cc -std=c11 -Icapi/include examples/c/custom_backend.c -Ltarget/release \
 *      -Wl,-rpath,$PWD/target/release -lsoftnet_persistence -o custom_backend
 */
#include <stdio.h>
#include <string.h>

#include "softnet_persistence.h"

/* ----- the backend ------------------------------------------------------------ */

#define MAX_RECORDS 64

struct record {
    uint64_t seq;
    size_t len;
    uint8_t bytes[SNP_MAX_RECORD_LEN];
};

struct device {
    struct record rec[MAX_RECORDS]; /* live records, oldest first */
    size_t count;
    uint64_t last_seq; /* sequence numbers only grow, even after a clear */
    uint8_t meta[64];  /* the store's metadata blob (its storage uid) */
    size_t meta_len;
};

static struct record *find(struct device *d, uint64_t seq) {
    for (size_t i = 0; i < d->count; i++)
        if (d->rec[i].seq == seq) return &d->rec[i];
    return NULL;
}

static snp_status dev_append(void *ctx, const uint8_t *payload, size_t len, uint64_t *out_seq) {
    struct device *d = ctx;
    if (d->count == MAX_RECORDS) return SNP_ERR_STORAGE_FULL; /* the store falls back */
    struct record *r = &d->rec[d->count++];
    r->seq = *out_seq = ++d->last_seq;
    r->len = len;
    memcpy(r->bytes, payload, len);
    return SNP_OK;
}

static snp_status dev_remove(void *ctx, uint64_t seq, int32_t reason) {
    struct device *d = ctx;
    struct record *r = find(d, seq);
    (void)reason; /* acknowledged, superseded, dropped or invalidated */
    if (!r) return SNP_ERR_STATE;
    size_t behind = (size_t)(&d->rec[d->count - 1] - r); /* records after r */
    memmove(r, r + 1, behind * sizeof *r);
    d->count--;
    return SNP_OK;
}

static snp_status dev_read(void *ctx, uint64_t seq, uint8_t *buf, size_t buf_len, size_t *len) {
    struct record *r = find(ctx, seq);
    if (!r || r->len > buf_len) return SNP_ERR_IO;
    memcpy(buf, r->bytes, r->len);
    *len = r->len;
    return SNP_OK;
}

static snp_status dev_scan(void *ctx, snp_record_visit_fn visit, void *visit_ctx) {
    struct device *d = ctx;
    for (size_t i = 0; i < d->count; i++) {
        snp_status st = visit(visit_ctx, d->rec[i].seq, d->rec[i].bytes, d->rec[i].len);
        if (st != SNP_OK) return st;
    }
    return SNP_OK;
}

static snp_status dev_clear(void *ctx) {
    ((struct device *)ctx)->count = 0;
    return SNP_OK;
}

static snp_status dev_get_meta(void *ctx, uint8_t *buf, size_t buf_len, size_t *len) {
    struct device *d = ctx;
    if (d->meta_len > buf_len) return SNP_ERR_IO;
    memcpy(buf, d->meta, d->meta_len);
    *len = d->meta_len;
    return SNP_OK;
}

static snp_status dev_set_meta(void *ctx, const uint8_t *meta, size_t len) {
    struct device *d = ctx;
    if (len > sizeof d->meta) return SNP_ERR_IO;
    memcpy(d->meta, meta, len);
    d->meta_len = len;
    return SNP_OK;
}

/* commit, flush and destroy stay NULL: nothing to sync, nothing to free. */
static snp_record_log_vtable device_backend(struct device *d) {
    snp_record_log_vtable vt = {.struct_size = sizeof(snp_record_log_vtable), .ctx = d,
                                .append = dev_append, .remove = dev_remove, .read = dev_read,
                                .scan = dev_scan, .clear = dev_clear,
                                .get_metadata = dev_get_meta, .set_metadata = dev_set_meta};
    return vt;
}

/* ----- using it -------------------------------------------------------------- */

static struct device flash; /* zeroed: empty, as a new device */

static void on_failure(void *user_data, int32_t kind, const char *message, uint64_t lost) {
    (void)user_data;
    fprintf(stderr, "[report %d] %s (%llu lost)\n", (int)kind, message, (unsigned long long)lost);
}

static int fail(const char *what, snp_status st) {
    char message[512];
    snp_last_error_message(message, sizeof message);
    fprintf(stderr, "%s failed: %s: %s\n", what, snp_status_str(st), message);
    return 1;
}

static snp_service *open_store(void) {
    snp_record_log_vtable vt = device_backend(&flash);
    snp_service_options options;
    snp_service_options_init(&options);
    options.on_failure = on_failure;
    snp_service *store = NULL;
    snp_status st = snp_service_open_custom(&vt, &options, &store);
    if (st != SNP_OK) fail("snp_service_open_custom", st);
    return store;
}

int main(void) {
    snp_service *store = open_store();
    if (!store) return 1;
    const char *readings[] = {"21.5", "21.9", "22.4"};
    for (int i = 0; i < 3; i++) {
        snp_event e = {SNP_EVENT_QUEUEING, "Temperature", 11, (const uint8_t *)readings[i],
                       strlen(readings[i]), 0};
        snp_status st = snp_service_raise(store, &e, NULL);
        if (st != SNP_OK) return fail("snp_service_raise", st);
    }
    printf("raised 3 events; the device holds %zu records\n", flash.count);
    snp_service_close(store);

    printf("restart: a new store opens on the same device\n");
    store = open_store();
    if (!store) return 1;
    snp_stored_event event;
    snp_status st;
    while ((st = snp_service_peek(store, &event)) == SNP_OK) {
        printf("  delivered %s = %.*s\n", event.name, (int)event.args_len, (const char *)event.args);
        st = snp_service_ack(store, &event.uid);
        if (st != SNP_OK) return fail("snp_service_ack", st);
    }
    if (st != SNP_EMPTY) return fail("snp_service_peek", st);
    printf("drained; the device holds %zu records\n", flash.count);
    snp_service_close(store);
    return 0;
}
