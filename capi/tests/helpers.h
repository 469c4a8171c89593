/* Helpers shared by the C tests (with check.h: their CHECKs count in the
 * calling program). All static inline, so a program that does not use one
 * gets no unused-function warning. remove_dir uses POSIX calls: a program
 * including this defines _POSIX_C_SOURCE 200809L before any header. */
#ifndef SNP_TEST_HELPERS_H
#define SNP_TEST_HELPERS_H

#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#error "define _POSIX_C_SOURCE 200809L before any header"
#endif

#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* A value no successful call would write: outputs must keep it on failure. */
static inline void *sentinel(void) {
    static char object;
    return &object;
}
#define SENTINEL_SERVICE ((snp_service *)sentinel())
#define SENTINEL_CLIENT ((snp_client *)sentinel())
#define UNTOUCHED_ID ((int64_t)0x5A5A5A5A5A5A5A5A)

static inline int all_bytes(const void *p, size_t n, unsigned char value) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != value) return 0;
    return 1;
}

static inline int last_error_contains(const char *needle) {
    char message[2048];
    snp_last_error_message(message, sizeof message);
    return strstr(message, needle) != NULL;
}

static inline int uid_eq(const snp_uuid *a, const snp_uuid *b) {
    return memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

/* An event; a NULL name or args has length 0. */
static inline snp_event make_event(int32_t kind, const char *name, const char *args) {
    snp_event e;
    e.kind = kind;
    e.name = name;
    e.name_len = name ? strlen(name) : 0;
    e.args = (const uint8_t *)args;
    e.args_len = args ? strlen(args) : 0;
    e.client_id = 0;
    return e;
}

static inline snp_service_stats service_stats(const snp_service *s) {
    snp_service_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(snp_service_get_stats(s, &st));
    return st;
}

static inline snp_client_stats client_stats(const snp_client *c) {
    snp_client_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(snp_client_get_stats(c, &st));
    return st;
}

/* The stored id of name (it must have one). */
static inline int64_t get_id(const snp_client *c, const char *name) {
    int64_t id = UNTOUCHED_ID;
    CHECK_OK(snp_client_get(c, name, strlen(name), &id));
    return id;
}

/* ----- test directories ---------------------------------------------- */

/* Removes the files of a test directory (it holds no subdirectories), then
 * the directory. */
static inline void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    CHECK(rmdir(dir) == 0);
}

/* Writes `n` bytes of `fill` to path (a damaged file). */
static inline void write_junk(const char *path, size_t n, unsigned char fill) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    for (size_t i = 0; i < n; i++) fputc(fill, f);
    CHECK(fclose(f) == 0);
}

/* ----- the failure callback ------------------------------------------ */

/* What the failure callback saw. */
typedef struct failures {
    const struct failures *self; /* proves user_data came back unchanged */
    snp_service *service;        /* if set, the callback calls into the store */
    uint64_t dropped_seen;       /* ...and records what it saw */
    int calls;
    int by_kind[8];
    uint64_t lost_by_kind[8];
    uint64_t lost;
    int bad_message;
    char last_message[1024];
} failures;

/* An snp_failure_fn; user_data is a failures set up by failures_init. */
static inline void record_failure(void *user_data, int32_t kind, const char *message,
                                  uint64_t events_lost) {
    failures *f = user_data;
    if (f == NULL || f->self != f) {
        fprintf(stderr, "on_failure: wrong user_data %p\n", user_data);
        exit(1);
    }
    f->calls++;
    if (kind >= 0 && kind < 8) {
        f->by_kind[kind]++;
        f->lost_by_kind[kind] += events_lost;
    }
    f->lost += events_lost;
    if (message == NULL || message[0] == 0) f->bad_message++;
    if (f->service) {
        /* The store's lock is released: calling it from here is fine. */
        snp_service_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        if (snp_service_get_stats(f->service, &st) == SNP_OK) f->dropped_seen = st.dropped_events;
    }
    snprintf(f->last_message, sizeof f->last_message, "%s", message ? message : "");
}

static inline void failures_init(failures *f) {
    memset(f, 0, sizeof *f);
    f->self = f;
}

#endif
