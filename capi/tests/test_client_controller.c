/* The client controller through the C ABI (snp_client_controller_*), as
 * docs/PROTOCOL.md section 3 and docs/BEHAVIOUR.md section 4 describe it:
 * the duplicate decision for both client kinds and both handler orders, a
 * handler that fails, a crash between handling and recording (a level-2
 * client file reopened), the stateless hello (snp_client_for_each over the
 * store), bad input, a closed store, and a failure callback of the store
 * calling the controller. */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define CHECK_AT(line, cond)                                                        \
    do {                                                                            \
        if (!(cond)) fprintf(stderr, "(in a helper called from line %d)\n", (line)); \
        CHECK(cond);                                                                \
    } while (0)

#define UNTOUCHED_DECISION ((int32_t)0x5A5A5A5A)

static const char *order_text(int32_t order) {
    return order == SNP_ORDER_RECORD_AFTER_HANDLE ? "record-after-handle"
                                                  : "record-before-handle";
}

/* ----- stores and controllers -------------------------------------------- */

static snp_client *open_memory(void) {
    snp_client_options o;
    snp_client_options_init(&o);
    snp_client *s = NULL;
    CHECK_OK(snp_client_open(&o, &s));
    CHECK(s != NULL);
    return s;
}

static snp_client *open_file(const char *dir, const char *key) {
    snp_client_options o;
    snp_client_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.server_address = "broker.example:7000";
    o.client_key = key;
    snp_client *s = NULL;
    CHECK_OK(snp_client_open(&o, &s));
    CHECK(s != NULL);
    CHECK(client_stats(s).level == SNP_LEVEL_FILE);
    return s;
}

static snp_client_controller *new_controller(snp_client *s, int32_t kind, int32_t order) {
    snp_client_controller *c = NULL;
    CHECK_OK(snp_client_controller_new(s, kind, order, &c));
    CHECK(c != NULL);
    return c;
}

static int32_t incoming_at(int line, snp_client_controller *c, const char *name, int64_t id) {
    int32_t d = UNTOUCHED_DECISION;
    snp_status st = snp_client_controller_incoming(c, name, strlen(name), id, &d);
    if (st != SNP_OK) fprintf(stderr, "(in a helper called from line %d)\n", line);
    CHECK_STATUS(st, SNP_OK);
    CHECK_AT(line, d == SNP_DECISION_HANDLE || d == SNP_DECISION_ACK_DUPLICATE);
    return d;
}
#define INCOMING(c, name, id) incoming_at(__LINE__, (c), (name), (id))

static void handled(snp_client_controller *c, const char *name, int64_t id) {
    CHECK_OK(snp_client_controller_handled(c, name, strlen(name), id));
}

static uint64_t duplicates(const snp_client_controller *c) {
    uint64_t n = UINT64_MAX;
    CHECK_OK(snp_client_controller_duplicates(c, &n));
    return n;
}

/* The id stored for name, or UNTOUCHED_ID if there is none. */
static int64_t stored(const snp_client *s, const char *name) {
    int64_t id = UNTOUCHED_ID;
    snp_status st = snp_client_get(s, name, strlen(name), &id);
    CHECK(st == SNP_OK || st == SNP_EMPTY);
    if (st == SNP_EMPTY) CHECK(id == UNTOUCHED_ID);
    return id;
}

/* ----- the hello: what snp_client_for_each lists ------------------------- */

typedef struct hello {
    int count;
    char names[16][SNP_NAME_BUF_LEN];
    int64_t ids[16];
} hello;

static void collect(void *user_data, const char *name, size_t name_len, int64_t id) {
    hello *h = user_data;
    if (h->count < 16 && name_len < SNP_NAME_BUF_LEN) {
        memcpy(h->names[h->count], name, name_len);
        h->names[h->count][name_len] = 0;
        h->ids[h->count] = id;
    }
    h->count++;
}

static hello hello_of(const snp_client *s) {
    hello h;
    memset(&h, 0, sizeof h);
    CHECK_OK(snp_client_for_each(s, collect, &h));
    return h;
}

/* The hello lists exactly these (name, id) pairs, in this order. */
static void check_hello_at(int line, const snp_client *s, int n, const char *const *names,
                           const int64_t *ids) {
    hello h = hello_of(s);
    if (h.count != n) fprintf(stderr, "line %d: hello lists %d ids, expected %d\n", line,
                              h.count, n);
    CHECK_AT(line, h.count == n);
    for (int i = 0; i < n && i < h.count && i < 16; i++) {
        CHECK_AT(line, strcmp(h.names[i], names[i]) == 0);
        CHECK_AT(line, h.ids[i] == ids[i]);
    }
}

/* ----- decisions ------------------------------------------------------------ */

/* One client kind and handler order over a memory store. */
static void test_decisions(int32_t kind, int32_t order) {
    const bool before = order == SNP_ORDER_RECORD_BEFORE_HANDLE;
    snp_client *s = open_memory();
    snp_client_controller *c = new_controller(s, kind, order);
    CHECK(duplicates(c) == 0);
    CHECK(hello_of(s).count == 0); /* CPL-1, new: the hello is empty */

    /* A new event: handle it; the id is recorded by incoming (before) or
     * by handled (after). */
    CHECK(INCOMING(c, "Temperature", 5) == SNP_DECISION_HANDLE);
    CHECK(stored(s, "Temperature") == (before ? 5 : UNTOUCHED_ID));
    handled(c, "Temperature", 5);
    CHECK(stored(s, "Temperature") == 5);
    CHECK(duplicates(c) == 0);

    /* The same id again (a resend): acknowledged, not handed over. */
    CHECK(INCOMING(c, "Temperature", 5) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(duplicates(c) == 1);
    CHECK(INCOMING(c, "Temperature", 5) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(duplicates(c) == 2);
    CHECK(stored(s, "Temperature") == 5);

    /* Another id of the same name, higher or lower, is a new event
     * (BEHAVIOUR 4.2, PROTOCOL 3.2: only an equal id is a duplicate). */
    CHECK(INCOMING(c, "Temperature", 6) == SNP_DECISION_HANDLE);
    handled(c, "Temperature", 6);
    CHECK(INCOMING(c, "Temperature", 4) == SNP_DECISION_HANDLE);
    CHECK(stored(s, "Temperature") == (before ? 4 : 6));
    handled(c, "Temperature", 4);
    CHECK(stored(s, "Temperature") == 4);
    CHECK(INCOMING(c, "Temperature", 4) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(INCOMING(c, "Temperature", 6) == SNP_DECISION_HANDLE);
    handled(c, "Temperature", 6);
    CHECK(duplicates(c) == 3);

    /* Names are independent. */
    CHECK(INCOMING(c, "Humidity", 6) == SNP_DECISION_HANDLE);
    handled(c, "Humidity", 6);
    CHECK(INCOMING(c, "Humidity", 6) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(duplicates(c) == 4);

    /* The whole i64 range. */
    const int64_t extremes[] = {INT64_MIN, -1, 0, INT64_MAX};
    for (size_t i = 0; i < sizeof extremes / sizeof extremes[0]; i++) {
        CHECK(INCOMING(c, "Counter", extremes[i]) == SNP_DECISION_HANDLE);
        handled(c, "Counter", extremes[i]);
        CHECK(stored(s, "Counter") == extremes[i]);
        CHECK(INCOMING(c, "Counter", extremes[i]) == SNP_DECISION_ACK_DUPLICATE);
    }
    CHECK(duplicates(c) == 8);

    /* The handler fails: handled is not called, no ack is sent, and the
     * broker resends. After-handle: handed over again; before-handle:
     * acknowledged as a duplicate (PROTOCOL 3.2). */
    CHECK(INCOMING(c, "Door", 7) == SNP_DECISION_HANDLE);
    if (before) {
        CHECK(INCOMING(c, "Door", 7) == SNP_DECISION_ACK_DUPLICATE);
        CHECK(duplicates(c) == 9);
        handled(c, "Door", 7); /* yields the ack; records nothing new */
    } else {
        CHECK(stored(s, "Door") == UNTOUCHED_ID);
        CHECK(INCOMING(c, "Door", 7) == SNP_DECISION_HANDLE);
        CHECK(duplicates(c) == 8);
        handled(c, "Door", 7);
        CHECK(INCOMING(c, "Door", 7) == SNP_DECISION_ACK_DUPLICATE);
        CHECK(duplicates(c) == 9);
    }
    CHECK(stored(s, "Door") == 7);

    /* A 256-byte name is fine. */
    char longest[SNP_MAX_NAME_LEN + 1];
    memset(longest, 'x', SNP_MAX_NAME_LEN);
    longest[0] = 'L';
    longest[SNP_MAX_NAME_LEN] = 0;
    CHECK(INCOMING(c, longest, 1) == SNP_DECISION_HANDLE);
    handled(c, longest, 1);
    CHECK(INCOMING(c, longest, 1) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(duplicates(c) == 10);

    /* The hello of a stateless client: the last id per subscription,
     * sorted by name (a stateful client's store holds the same; its hello
     * is "resume"). */
    const char *names[] = {"Counter", "Door", "Humidity", longest, "Temperature"};
    const int64_t ids[] = {INT64_MAX, 7, 6, 1, 6};
    check_hello_at(__LINE__, s, 5, names, ids);
    CHECK(client_stats(s).subscriptions == 5);

    /* A second controller over the same store sees the same ids; the
     * duplicate count is each controller's own. */
    snp_client_controller *c2 = new_controller(s, kind, order);
    CHECK(duplicates(c2) == 0);
    CHECK(INCOMING(c2, "Door", 7) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(duplicates(c2) == 1 && duplicates(c) == 10);
    snp_client_controller_free(c2);

    snp_client_controller_free(c);
    /* The store outlives its controllers. */
    CHECK(stored(s, "Door") == 7);
    snp_client_close(s);
}

/* ----- a crash between handling and recording ----------------------------- */

/* A level-2 client file. "Alarm" 10 was handled and recorded; "Alarm" 11
 * and "Door" 3 were handed to the application but `handled` never came
 * (the process stopped): after reopening the file, record-after-handle
 * hands them over again (at least once), record-before-handle does not (at
 * most once). */
static void test_crash_between(const char *dir, int32_t kind, int32_t order) {
    const bool before = order == SNP_ORDER_RECORD_BEFORE_HANDLE;
    char key[64];
    snprintf(key, sizeof key, "gateway-%d-%d", (int)kind, (int)order);
    snp_client *s = open_file(dir, key);
    snp_client_controller *c = new_controller(s, kind, order);
    CHECK(INCOMING(c, "Alarm", 10) == SNP_DECISION_HANDLE);
    handled(c, "Alarm", 10);
    CHECK(INCOMING(c, "Alarm", 11) == SNP_DECISION_HANDLE);
    CHECK(INCOMING(c, "Door", 3) == SNP_DECISION_HANDLE);
    /* the process stops here: no handled for Alarm 11 and Door 3 */
    snp_client_controller_free(c);
    snp_client_close(s);

    s = open_file(dir, key);
    c = new_controller(s, kind, order);
    if (before) {
        const char *names[] = {"Alarm", "Door"};
        const int64_t ids[] = {11, 3};
        check_hello_at(__LINE__, s, 2, names, ids);
        /* The broker resends what was never acknowledged. */
        CHECK(INCOMING(c, "Alarm", 11) == SNP_DECISION_ACK_DUPLICATE);
        CHECK(INCOMING(c, "Door", 3) == SNP_DECISION_ACK_DUPLICATE);
        CHECK(duplicates(c) == 2);
    } else {
        const char *names[] = {"Alarm"};
        const int64_t ids[] = {10};
        check_hello_at(__LINE__, s, 1, names, ids);
        CHECK(INCOMING(c, "Alarm", 11) == SNP_DECISION_HANDLE);
        handled(c, "Alarm", 11);
        CHECK(INCOMING(c, "Door", 3) == SNP_DECISION_HANDLE);
        handled(c, "Door", 3);
        CHECK(duplicates(c) == 0);
        /* A stateful client's broker may resend the last one it delivered
         * before the crash was acknowledged: now a duplicate. */
        CHECK(INCOMING(c, "Alarm", 11) == SNP_DECISION_ACK_DUPLICATE);
        CHECK(duplicates(c) == 1);
    }
    CHECK(stored(s, "Alarm") == 11 && stored(s, "Door") == 3);
    snp_client_controller_free(c);
    snp_client_close(s);

    /* Whatever was recorded since is in the file too. */
    s = open_file(dir, key);
    const char *names[] = {"Alarm", "Door"};
    const int64_t ids[] = {11, 3};
    check_hello_at(__LINE__, s, 2, names, ids);
    snp_client_close(s);
}

/* ----- bad input -------------------------------------------------------------- */

/* Names that break the rules of BEHAVIOUR section 2 (the last two: not
 * ASCII, not UTF-8). */
static const char *const rule_breakers[] = {"9lives",    "two  spaces", "trailing ",
                                            "tab\tname", "-dash",       "semi;colon",
                                            "caf\xc3\xa9", "\xff\xfe"};

/* Sets this thread's last error message to one without "NULL" in it. */
static void poison_message(snp_client *s) {
    snp_client_controller *out = NULL;
    CHECK_STATUS(snp_client_controller_new(s, 99, SNP_ORDER_RECORD_AFTER_HANDLE, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK(out == NULL);
    CHECK(snp_last_error_message(NULL, 0) > 0 && !last_error_contains("NULL"));
}

#define CHECK_NULL_REFUSED(s, expr)                         \
    do {                                                    \
        poison_message(s);                                  \
        CHECK_STATUS((expr), SNP_ERR_INVALID_ARGUMENT);     \
        CHECK(last_error_contains("NULL"));                 \
    } while (0)

/* A refused call that wrote a message of its own. */
#define CHECK_REFUSED(s, expr)                              \
    do {                                                    \
        poison_message(s);                                  \
        CHECK_STATUS((expr), SNP_ERR_INVALID_ARGUMENT);     \
        CHECK(snp_last_error_message(NULL, 0) > 0);         \
        CHECK(!last_error_contains("client_kind 99"));      \
    } while (0)

static void test_bad_input(int32_t order) {
    snp_client *s = open_memory();
    snp_client_controller *c = new_controller(s, SNP_CLIENT_STATEFUL, order);
    snp_client_controller *const untouched = (snp_client_controller *)sentinel();
    snp_client_controller *out = untouched;

    /* new */
    CHECK_NULL_REFUSED(s, snp_client_controller_new(NULL, SNP_CLIENT_STATEFUL, order, &out));
    CHECK(out == untouched);
    CHECK(last_error_contains("client"));
    CHECK_NULL_REFUSED(s, snp_client_controller_new(s, SNP_CLIENT_STATEFUL, order, NULL));
    CHECK(last_error_contains("out"));
    const int32_t bad_kinds[] = {2, -1, 99, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
        out = untouched;
        CHECK_STATUS(snp_client_controller_new(s, bad_kinds[i], order, &out),
                     SNP_ERR_INVALID_ARGUMENT);
        CHECK(out == untouched);
        CHECK(last_error_contains("client_kind"));
    }
    const int32_t bad_orders[] = {2, -1, 7, INT32_MAX};
    for (size_t i = 0; i < sizeof bad_orders / sizeof bad_orders[0]; i++) {
        out = untouched;
        CHECK_STATUS(snp_client_controller_new(s, SNP_CLIENT_STATELESS, bad_orders[i], &out),
                     SNP_ERR_INVALID_ARGUMENT);
        CHECK(out == untouched);
        CHECK(last_error_contains("handler_order"));
    }

    /* incoming: NULLs, lengths (checked before the name is read), name
     * rules; the decision is left as it was. */
    int32_t d = UNTOUCHED_DECISION;
    CHECK_NULL_REFUSED(s, snp_client_controller_incoming(NULL, "A", 1, 1, &d));
    CHECK(last_error_contains("controller"));
    CHECK_NULL_REFUSED(s, snp_client_controller_incoming(c, NULL, 1, 1, &d));
    CHECK_NULL_REFUSED(s, snp_client_controller_incoming(c, "A", 1, 1, NULL));
    CHECK(last_error_contains("out_decision"));
    CHECK(d == UNTOUCHED_DECISION);
    CHECK_REFUSED(s, snp_client_controller_incoming(c, "A", 0, 1, &d));
    CHECK_REFUSED(s, snp_client_controller_incoming(c, "A", SNP_MAX_NAME_LEN + 1, 1, &d));
    CHECK_REFUSED(s, snp_client_controller_incoming(c, "A", SIZE_MAX, 1, &d));
    for (size_t i = 0; i < sizeof rule_breakers / sizeof rule_breakers[0]; i++) {
        CHECK_REFUSED(s, snp_client_controller_incoming(c, rule_breakers[i],
                                                        strlen(rule_breakers[i]), 1, &d));
        CHECK(d == UNTOUCHED_DECISION);
    }
    CHECK(client_stats(s).subscriptions == 0); /* nothing recorded */

    /* handled: the same rules (BEHAVIOUR section 2: subscription names
     * follow the event-name rules), in either order. */
    CHECK_NULL_REFUSED(s, snp_client_controller_handled(NULL, "A", 1, 1));
    CHECK(last_error_contains("controller"));
    CHECK_NULL_REFUSED(s, snp_client_controller_handled(c, NULL, 1, 1));
    CHECK_REFUSED(s, snp_client_controller_handled(c, "A", 0, 1));
    CHECK_REFUSED(s, snp_client_controller_handled(c, "A", SNP_MAX_NAME_LEN + 1, 1));
    /* (the name rules for handled: test_handled_name_rules, last) */
    CHECK(client_stats(s).subscriptions == 0);

    /* duplicates */
    uint64_t n = 4242;
    CHECK_NULL_REFUSED(s, snp_client_controller_duplicates(NULL, &n));
    CHECK(n == 4242);
    CHECK_NULL_REFUSED(s, snp_client_controller_duplicates(c, NULL));
    CHECK(last_error_contains("out"));

    snp_client_controller_free(NULL); /* fine */

    /* None of it changed anything. */
    CHECK(duplicates(c) == 0);
    CHECK(INCOMING(c, "A", 1) == SNP_DECISION_HANDLE);
    snp_client_controller_free(c);
    snp_client_close(s);
}

/* ----- a closed store ----------------------------------------------------------- */

static void test_closed_store(const char *dir) {
    snp_client *s = open_memory();
    snp_client_controller *c = new_controller(s, SNP_CLIENT_STATELESS,
                                              SNP_ORDER_RECORD_AFTER_HANDLE);
    CHECK(INCOMING(c, "A", 1) == SNP_DECISION_HANDLE);
    handled(c, "A", 1);
    CHECK(INCOMING(c, "A", 1) == SNP_DECISION_ACK_DUPLICATE);
    snp_client_close(s); /* first: the controller keeps what it needs */

    int32_t d = UNTOUCHED_DECISION;
    CHECK_STATUS(snp_client_controller_incoming(c, "A", 1, 2, &d), SNP_ERR_CLOSED);
    CHECK(d == UNTOUCHED_DECISION);
    CHECK(snp_last_error_message(NULL, 0) > 0);
    CHECK_STATUS(snp_client_controller_handled(c, "A", 1, 2), SNP_ERR_CLOSED);
    uint64_t n = 4242;
    CHECK_STATUS(snp_client_controller_duplicates(c, &n), SNP_ERR_CLOSED);
    CHECK(n == 4242);
    /* Bad arguments are still refused as such. */
    CHECK_STATUS(snp_client_controller_incoming(c, "A", 1, 2, NULL), SNP_ERR_INVALID_ARGUMENT);
    snp_client_controller_free(c); /* frees the store too: ASan/valgrind */

    /* Record-before-handle too, and a file whose lock the close released. */
    s = open_file(dir, "closed");
    c = new_controller(s, SNP_CLIENT_STATEFUL, SNP_ORDER_RECORD_BEFORE_HANDLE);
    CHECK(INCOMING(c, "B", 5) == SNP_DECISION_HANDLE);
    snp_client_close(s);
    CHECK_STATUS(snp_client_controller_incoming(c, "B", 1, 6, &d), SNP_ERR_CLOSED);
    CHECK_STATUS(snp_client_controller_handled(c, "B", 1, 5), SNP_ERR_CLOSED);
    s = open_file(dir, "closed"); /* while the old controller lives */
    CHECK(stored(s, "B") == 5);
    snp_client_close(s);
    CHECK_STATUS(snp_client_controller_duplicates(c, &n), SNP_ERR_CLOSED);
    snp_client_controller_free(c);
}

/* ----- a failure callback calling the controller ----------------------------- */

/* An id store whose writes fail on command: the client store then continues
 * in memory and reports a fallback through its callback. */
typedef struct id_log {
    char names[8][SNP_NAME_BUF_LEN];
    int64_t ids[8];
    int count;
    bool fail;
} id_log;

static snp_status ids_load(void *ctx, snp_id_visit_fn visit, void *visit_ctx) {
    id_log *l = ctx;
    for (int i = 0; i < l->count; i++) visit(visit_ctx, l->names[i], strlen(l->names[i]), l->ids[i]);
    return SNP_OK;
}

static snp_status ids_put(void *ctx, const char *name, size_t name_len, int64_t id) {
    id_log *l = ctx;
    if (l->fail) return SNP_ERR_IO;
    if (name_len >= SNP_NAME_BUF_LEN) return SNP_ERR_IO;
    for (int i = 0; i < l->count; i++)
        if (strlen(l->names[i]) == name_len && memcmp(l->names[i], name, name_len) == 0) {
            l->ids[i] = id;
            return SNP_OK;
        }
    if (l->count == 8) return SNP_ERR_IO;
    memcpy(l->names[l->count], name, name_len);
    l->names[l->count][name_len] = 0;
    l->ids[l->count++] = id;
    return SNP_OK;
}

static snp_status ids_clear(void *ctx) {
    ((id_log *)ctx)->count = 0;
    return SNP_OK;
}

typedef struct reentry {
    const struct reentry *self;
    snp_client_controller *controller;
    snp_client *store;
    int calls;
    int fallbacks;
    int refused;      /* controller calls answered SNP_ERR_STATE */
    int other_status; /* anything else */
    int store_ok;     /* the store itself answered */
} reentry;

static void call_controller(void *user_data, int32_t kind, const char *message,
                            uint64_t lost) {
    reentry *r = user_data;
    (void)message;
    (void)lost;
    if (r == NULL || r->self != r) {
        fprintf(stderr, "on_failure: wrong user_data\n");
        exit(1);
    }
    r->calls++;
    if (kind == SNP_FAILURE_FALLBACK) r->fallbacks++;
    if (r->controller == NULL) return;
    uint64_t n = 0;
    snp_status a = snp_client_controller_duplicates(r->controller, &n);
    int32_t d = UNTOUCHED_DECISION;
    snp_status b = snp_client_controller_incoming(r->controller, "Other", 5, 1, &d);
    snp_status e = snp_client_controller_handled(r->controller, "Other", 5, 1);
    if (a == SNP_ERR_STATE) r->refused++;
    else r->other_status++;
    if (b == SNP_ERR_STATE && d == UNTOUCHED_DECISION) r->refused++;
    else r->other_status++;
    if (e == SNP_ERR_STATE) r->refused++;
    else r->other_status++;
    int64_t id = 0;
    snp_status g = snp_client_get(r->store, "Alarm", 5, &id);
    if (g == SNP_OK || g == SNP_EMPTY) r->store_ok++;
}

static id_log callback_log;

static void test_failure_callback(int32_t order) {
    id_log *l = &callback_log;
    memset(l, 0, sizeof *l);
    reentry r;
    memset(&r, 0, sizeof r);
    r.self = &r;
    snp_id_store_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = l;
    vt.load = ids_load;
    vt.put = ids_put;
    vt.clear = ids_clear;
    snp_client_options o;
    snp_client_options_init(&o);
    o.on_failure = call_controller;
    o.user_data = &r;
    snp_client *s = NULL;
    CHECK_OK(snp_client_open_custom(&vt, &o, &s));
    r.store = s;
    snp_client_controller *c = new_controller(s, SNP_CLIENT_STATEFUL, order);
    r.controller = c;
    CHECK(client_stats(s).level == SNP_LEVEL_FILE);
    CHECK(INCOMING(c, "Alarm", 1) == SNP_DECISION_HANDLE);
    handled(c, "Alarm", 1);
    CHECK(r.calls == 0 && l->count == 1);

    l->fail = true; /* the next put fails: fallback, reported */
    CHECK(INCOMING(c, "Alarm", 2) == SNP_DECISION_HANDLE);
    handled(c, "Alarm", 2);
    CHECK(r.calls == 1 && r.fallbacks == 1);
    CHECK(r.refused == 3 && r.other_status == 0 && r.store_ok == 1);
    CHECK(client_stats(s).level == SNP_LEVEL_MEMORY);
    CHECK(stored(s, "Alarm") == 2); /* kept in memory */
    CHECK(stored(s, "Other") == UNTOUCHED_ID);

    /* Outside the callback the controller answers, and goes on. */
    r.controller = NULL;
    CHECK(duplicates(c) == 0);
    CHECK(INCOMING(c, "Alarm", 2) == SNP_DECISION_ACK_DUPLICATE);
    CHECK(duplicates(c) == 1);
    snp_client_controller_free(c);
    snp_client_close(s);
}

/* handled with a name that breaks the name rules is refused, in either
 * order (BEHAVIOUR section 2: the event-name rules apply to subscription
 * names on the client side; incoming refuses them). Last, so that a
 * failure here says only this. */

static void test_handled_name_rules(int32_t order) {
    snp_client *s = open_memory();
    snp_client_controller *c = new_controller(s, SNP_CLIENT_STATEFUL, order);
    for (size_t i = 0; i < sizeof rule_breakers / sizeof rule_breakers[0]; i++) {
        const char *name = rule_breakers[i];
        int32_t d = UNTOUCHED_DECISION;
        CHECK_STATUS(snp_client_controller_incoming(c, name, strlen(name), 1, &d),
                     SNP_ERR_INVALID_ARGUMENT);
        snp_status st = snp_client_controller_handled(c, name, strlen(name), 1);
        if (st != SNP_ERR_INVALID_ARGUMENT)
            fprintf(stderr, "%s: snp_client_controller_handled(\"%s\") returned %d (%s), "
                    "expected SNP_ERR_INVALID_ARGUMENT\n",
                    order_text(order), name, (int)st, snp_status_str(st));
        CHECK_STATUS(st, SNP_ERR_INVALID_ARGUMENT);
    }
    CHECK(client_stats(s).subscriptions == 0);
    snp_client_controller_free(c);
    snp_client_close(s);
}

int main(void) {
    char dir[] = "/tmp/snp_test_client_controller_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    const int32_t kinds[] = {SNP_CLIENT_STATEFUL, SNP_CLIENT_STATELESS};
    const int32_t orders[] = {SNP_ORDER_RECORD_AFTER_HANDLE, SNP_ORDER_RECORD_BEFORE_HANDLE};
    for (int k = 0; k < 2; k++)
        for (int o = 0; o < 2; o++) {
            test_decisions(kinds[k], orders[o]);
            test_crash_between(dir, kinds[k], orders[o]);
        }
    for (int o = 0; o < 2; o++) {
        test_bad_input(orders[o]);
        test_failure_callback(orders[o]);
    }
    test_closed_store(dir);
    remove_dir(dir);
    for (int o = 0; o < 2; o++) test_handled_name_rules(orders[o]);

    CHECK_DONE("client_controller");
    return 0;
}
