/* Handles used from several threads: two threads raising into one service
 * store (level 2, then level 1 with a concurrent drain), two threads putting
 * into one client store, and the per-thread last error message. Worker
 * threads record what they saw; only the main thread runs CHECKs. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define PER_THREAD 5000
#define THREADS 2

/* ----- raisers ----------------------------------------------------------- */

typedef struct raiser {
    snp_service *service;
    int index;
    pthread_barrier_t *start;
    snp_uuid uids[PER_THREAD];
    /* results, checked by the main thread */
    int raised;
    snp_status first_error;
    size_t message_len_at_start;
    int own_message_seen;
} raiser;

static void *raise_events(void *arg) {
    raiser *r = arg;
    char name[8], args[16];
    snprintf(name, sizeof name, "T%d", r->index);
    r->message_len_at_start = snp_last_error_message(NULL, 0);
    pthread_barrier_wait(r->start);
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf(args, sizeof args, "%d", i);
        snp_event e = {SNP_EVENT_QUEUEING, name, strlen(name), (const uint8_t *)args,
                       (size_t)n, 0};
        snp_status st = snp_service_raise(r->service, &e, &r->uids[i]);
        if (st != SNP_OK) {
            r->first_error = st;
            break;
        }
        r->raised++;
    }
    /* Each thread's last error message is its own. */
    char bad[32];
    snprintf(bad, sizeof bad, "%dbad thread name", r->index);
    snp_event e = {SNP_EVENT_QUEUEING, bad, strlen(bad), NULL, 0, 0};
    if (snp_service_raise(r->service, &e, NULL) == SNP_ERR_INVALID_ARGUMENT) {
        pthread_barrier_wait(r->start); /* both threads have failed now */
        char message[512];
        snp_last_error_message(message, sizeof message);
        r->own_message_seen = strstr(message, bad) != NULL;
    } else {
        pthread_barrier_wait(r->start);
    }
    return NULL;
}

/* Parses "T<thread>" and the decimal args of a stored event. */
static int parse_event(const snp_stored_event *e, int *thread, int *seq) {
    if (e->name_len != 2 || e->name[0] != 'T' || e->args_len == 0 || e->args_len > 8) return 0;
    *thread = e->name[1] - '0';
    if (*thread < 0 || *thread >= THREADS) return 0;
    char digits[9];
    memcpy(digits, e->args, e->args_len);
    digits[e->args_len] = 0;
    *seq = atoi(digits);
    return 1;
}

static void run_raisers(snp_service *s, raiser *r) {
    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0);
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        memset(&r[t], 0, sizeof r[t]);
        r[t].service = s;
        r[t].index = t;
        r[t].start = &start;
        CHECK(pthread_create(&threads[t], NULL, raise_events, &r[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(threads[t], NULL) == 0);
    pthread_barrier_destroy(&start);
    for (int t = 0; t < THREADS; t++) {
        CHECK_STATUS(r[t].first_error, SNP_OK);
        CHECK(r[t].raised == PER_THREAD);
        CHECK(r[t].message_len_at_start == 0); /* a new thread has no message */
        CHECK(r[t].own_message_seen);
    }
}

/* Drains in storage mode: every event exactly once, each thread's in order,
 * with the uid its raise returned. */
static void drain_and_check(snp_service *s, raiser *r) {
    int next[THREADS] = {0};
    int delivered = 0, bad = 0;
    snp_stored_event out;
    snp_status st;
    while ((st = snp_service_peek(s, &out)) == SNP_OK) {
        int t = -1, seq = -1;
        if (!parse_event(&out, &t, &seq) || seq != next[t] || !uid_eq(&out.uid, &r[t].uids[seq]))
            bad++;
        else
            next[t]++;
        CHECK_OK(snp_service_ack(s, &out.uid));
        delivered++;
    }
    CHECK_STATUS(st, SNP_EMPTY);
    CHECK(bad == 0);
    CHECK(delivered == THREADS * PER_THREAD);
    for (int t = 0; t < THREADS; t++) CHECK(next[t] == PER_THREAD);
}

static raiser raisers[THREADS];

static void test_concurrent_raises_level2(const char *dir) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.directory = dir;
    for (int i = 0; i < 16; i++) o.service_uid.bytes[i] = (uint8_t)(i + 1);
    o.durability = SNP_DURABILITY_NONE;
    o.file_capacity = 4 * 1024 * 1024; /* 10,000 records of 72 bytes fit */
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));

    run_raisers(s, raisers);
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE);
    CHECK(st.pending_events == THREADS * PER_THREAD);
    CHECK(st.dropped_events == 0 && st.failures == 0);
    snp_service_close(s);

    /* Through a restart. */
    s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(service_stats(s).pending_events == THREADS * PER_THREAD);
    drain_and_check(s, raisers);
    snp_service_close(s);
}

/* ----- raising while another thread drains ------------------------------ */

typedef struct drainer {
    snp_service *service;
    int next[THREADS];
    /* the uids delivered, compared with what raise returned after the
     * joins (a raiser writes its out_uid after the event is visible) */
    snp_uuid got[THREADS][PER_THREAD];
    int delivered, bad, empties;
    char first_bad[128];
    snp_status first_error;
} drainer;

static void *drain_events(void *arg) {
    drainer *d = arg;
    snp_stored_event out;
    while (d->delivered < THREADS * PER_THREAD && d->first_error == SNP_OK) {
        snp_status st = snp_service_peek(d->service, &out);
        if (st == SNP_EMPTY) {
            /* Drained for now: the store is in cache mode; a controller
             * would go on per name. Go back to the global FIFO. */
            d->empties++;
            st = snp_service_set_storage_mode(d->service);
            if (st != SNP_OK) d->first_error = st;
            sched_yield();
            continue;
        }
        if (st != SNP_OK) {
            d->first_error = st;
            break;
        }
        int t = -1, seq = -1;
        if (!parse_event(&out, &t, &seq) || seq != d->next[t]) {
            if (d->bad++ == 0)
                snprintf(d->first_bad, sizeof d->first_bad, "'%.40s' args %.*s, expected #%d",
                         out.name, (int)(out.args_len > 16 ? 16 : out.args_len), (const char *)out.args,
                         t >= 0 && t < THREADS ? d->next[t] : -1);
        } else {
            d->got[t][seq] = out.uid;
            d->next[t]++;
        }
        st = snp_service_ack(d->service, &out.uid);
        if (st != SNP_OK) d->first_error = st;
        d->delivered++;
    }
    return NULL;
}

static void test_raise_while_draining(void) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    o.memory_capacity = 4 * 1024 * 1024;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));

    static drainer d;
    memset(&d, 0, sizeof d);
    d.service = s;
    pthread_t drain_thread;
    CHECK(pthread_create(&drain_thread, NULL, drain_events, &d) == 0);
    run_raisers(s, raisers);
    CHECK(pthread_join(drain_thread, NULL) == 0);
    CHECK_STATUS(d.first_error, SNP_OK);
    if (d.bad) fprintf(stderr, "first out-of-order delivery: %s\n", d.first_bad);
    CHECK(d.bad == 0);
    CHECK(d.delivered == THREADS * PER_THREAD);
    int uids_ok = 0;
    for (int t = 0; t < THREADS; t++) {
        CHECK(d.next[t] == PER_THREAD);
        for (int i = 0; i < PER_THREAD; i++) uids_ok += uid_eq(&d.got[t][i], &raisers[t].uids[i]);
    }
    CHECK(uids_ok == THREADS * PER_THREAD);
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events == 0 && st.dropped_events == 0);
    snp_service_close(s);
}

/* ----- concurrent client puts -------------------------------------------- */

#define PUTS 1000

typedef struct putter {
    snp_client *client;
    int index;
    int ok;
    snp_status first_error;
} putter;

static void *put_ids(void *arg) {
    putter *p = arg;
    char name[32];
    for (int i = 0; i < PUTS; i++) {
        int n = snprintf(name, sizeof name, "T%d_%d", p->index, i);
        int64_t id = (int64_t)p->index * INT64_C(1000000000000) + i;
        snp_status st = snp_client_put(p->client, name, (size_t)n, id);
        if (st == SNP_OK) st = snp_client_put(p->client, "Shared", 6, id);
        int64_t back = 0;
        if (st == SNP_OK) st = snp_client_get(p->client, name, (size_t)n, &back);
        bool dup = false;
        if (st == SNP_OK) st = snp_client_is_duplicate(p->client, name, (size_t)n, id, &dup);
        if (st != SNP_OK) {
            p->first_error = st;
            break;
        }
        if (back == id && dup) p->ok++;
    }
    return NULL;
}

static void count_visit(void *user_data, const char *name, size_t name_len, int64_t id) {
    (void)name;
    (void)name_len;
    (void)id;
    ++*(int *)user_data;
}

static void test_concurrent_puts(snp_client *c) {
    putter p[THREADS];
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        memset(&p[t], 0, sizeof p[t]);
        p[t].client = c;
        p[t].index = t;
        CHECK(pthread_create(&threads[t], NULL, put_ids, &p[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(threads[t], NULL) == 0);
    for (int t = 0; t < THREADS; t++) {
        CHECK_STATUS(p[t].first_error, SNP_OK);
        CHECK(p[t].ok == PUTS);
    }
    CHECK(client_stats(c).subscriptions == THREADS * PUTS + 1);
    int visited = 0;
    CHECK_OK(snp_client_for_each(c, count_visit, &visited));
    CHECK(visited == THREADS * PUTS + 1);
    int64_t shared = 0;
    CHECK_OK(snp_client_get(c, "Shared", 6, &shared));
    CHECK(shared == PUTS - 1 || shared == INT64_C(1000000000000) + PUTS - 1);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PUTS; i += 97) {
            char name[32];
            int n = snprintf(name, sizeof name, "T%d_%d", t, i);
            int64_t id = 0;
            CHECK_OK(snp_client_get(c, name, (size_t)n, &id));
            CHECK(id == (int64_t)t * INT64_C(1000000000000) + i);
        }
}

static void test_client_threads(const char *dir) {
    snp_client_options o;
    snp_client_options_init(&o);
    snp_client *c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    test_concurrent_puts(c);
    snp_client_close(c);

    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.server_address = "broker.example:5000";
    o.client_key = "threads";
    o.durability = SNP_DURABILITY_NONE;
    c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    test_concurrent_puts(c);
    snp_client_close(c);
    c = NULL;
    CHECK_OK(snp_client_open(&o, &c)); /* every put reached the file */
    int visited = 0;
    CHECK_OK(snp_client_for_each(c, count_visit, &visited));
    CHECK(visited == THREADS * PUTS + 1);
    snp_client_close(c);
}

int main(void) {
    char dir[] = "/tmp/snp_test_threads_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    test_concurrent_raises_level2(dir);
    test_raise_while_draining();
    test_client_threads(dir);

    remove_dir(dir);
    CHECK_DONE("threads");
    return 0;
}
