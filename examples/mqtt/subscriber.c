/* A subscriber that hands each event to its application once: a level-2
 * client store (CPL-2) and snp_client_controller over Paho C's MQTTAsync,
 * receiving what the Python gateway (softnet_persistence.mqtt.
 * MqttServiceBridge) or the C one (gateway.c) publishes, and deciding
 * exactly as the Python MqttClientBridge does (docs/MQTT.md section 4: the
 * same store keys, so either can take over the other's client store).
 *
 *   subscriber --dir DIR --client-id ID [--host H] [--port P]
 *              [--prefix PREFIX] [--order after|before]
 *              [--session-expiry S] [--handler-us MAX] [--pause-ms N]
 *              [--seed N] NAME...
 *
 * It subscribes (QoS 1) to PREFIX/queueing/NAME for each NAME, on a
 * persistent session (clean start off, session expiry S seconds, default 7
 * days) under the fixed client id ID, and runs until its stdin closes. The
 * "application" is a handler that works 0..MAX microseconds (default 0),
 * writes its effect (the H line), and works 0..MAX microseconds more.
 *
 * On stdout, one line each (what the tests read):
 *   READY               the store is open
 *   SUBSCRIBED          the broker granted the subscriptions (each connection)
 *   H NAME ARGS SEQ     the handler's effect: an event handed over
 *   X N                 N copies recognised and dropped so far (this run)
 *   M TEXT              a malformed event, acknowledged and dropped
 *   R TOPIC             (with --pause-ms N) a message arrived; the callback
 *                       waits N ms before deciding it
 *
 * When the PUBACK goes out. Paho C sends the PUBACK of a QoS 1 message
 * itself; the application cannot send it. MQTTAsync (not MQTTClient) calls
 * the message-arrived callback inline, on its receive thread, while it
 * processes the PUBLISH, and sends the PUBACK only when the callback has
 * returned, as long as its queue of undelivered messages is empty and the
 * client is connected (MQTTProtocol_handlePublishes and
 * Protocol_processPublication in Paho C 1.3). A callback that returns 0
 * makes Paho queue the message and PUBACK it at once, delivering it later.
 * So this subscriber does the whole decision (and the handling) inside the
 * callback and always returns 1; a failing store call ends the process
 * (abort) before the PUBACK. Every event is then decided durably before
 * its PUBACK, as section 9 of docs/MQTT.md asks. MQTTClient, in contrast,
 * queues every message for its own thread and sends the PUBACK before the
 * application sees it: a subscriber killed in between loses the event.
 *
 * Build: make mqtt-examples (needs libpaho-mqtt-dev).
 */
#define _DEFAULT_SOURCE

#include "common.h"

enum { MAX_NAMES = 16, RECONNECT_MS = 100 };

static const char UID_HI[] = " @storage-uid.hi";
static const char UID_LO[] = " @storage-uid.lo";

typedef struct {
    const char *name; /* the event name, also the store key */
    char topic[1024];
} subscription;

typedef struct {
    note_queue notes;
    MQTTAsync client;
    snp_client *store;
    snp_client_controller *ctl;
    subscription subs[MAX_NAMES];
    size_t n_subs;
    enum { DOWN, CONNECTING, UP } link;
    uint64_t next_attempt;
    unsigned handler_us;
    unsigned pause_ms;
    unsigned seed;
    uint64_t stale, reported_duplicates, handled, malformed;
    uint32_t session_expiry;
    /* Held while a message is decided; the main thread takes it to end the
     * process between two decisions. */
    pthread_mutex_t deciding;
} subscriber;

/* ----- the decision (docs/MQTT.md section 4), on Paho's receive thread ------------------ */

/* The value of a user property (the first with that key), or NULL. */
static const MQTTLenString *user_property(const MQTTProperties *props, const char *key) {
    size_t kl = strlen(key);
    for (int i = 0; i < props->count; i++) {
        const MQTTProperty *p = &props->array[i];
        if (p->identifier == MQTTPROPERTY_CODE_USER_PROPERTY && (size_t)p->value.data.len == kl &&
            memcmp(p->value.data.data, key, kl) == 0)
            return &p->value.value;
    }
    return NULL;
}

static bool text_is(const MQTTLenString *s, const char *text) {
    return s && (size_t)s->len == strlen(text) && memcmp(s->data, text, (size_t)s->len) == 0;
}

/* A uuid's half as a signed big-endian i64, as the Python bridge stores it. */
static int64_t signed_half(const uint8_t *bytes) {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | bytes[i];
    return u >> 63 ? -(int64_t)(~u) - 1 : (int64_t)u;
}

static bool get_id(subscriber *s, const char *key, int64_t *out) {
    snp_status st = snp_client_get(s->store, key, strlen(key), out);
    check(st, "get");
    return st == SNP_OK;
}

static void put_id(subscriber *s, const char *key, int64_t id) {
    check(snp_client_put(s->store, key, strlen(key), id), "put");
}

/* Makes the key's id space that of `storage_uid`: on a change the last id
 * is cleared first, then the uid recorded (a kill in between leaves a
 * cleared id: nothing of the new uid was handled yet). */
static void id_space(subscriber *s, const char *key, const snp_uuid *storage_uid) {
    char hi_key[SNP_MAX_NAME_LEN + 1], lo_key[SNP_MAX_NAME_LEN + 1];
    snprintf(hi_key, sizeof hi_key, "%s%s", key, UID_HI);
    snprintf(lo_key, sizeof lo_key, "%s%s", key, UID_LO);
    int64_t hi = signed_half(storage_uid->bytes), lo = signed_half(storage_uid->bytes + 8), v;
    if (get_id(s, hi_key, &v) && v == hi && get_id(s, lo_key, &v) && v == lo) return;
    put_id(s, key, INT64_MIN);
    put_id(s, hi_key, hi);
    put_id(s, lo_key, lo);
}

static void report_duplicates(subscriber *s) {
    uint64_t dup = 0;
    check(snp_client_controller_duplicates(s->ctl, &dup), "duplicates");
    dup += s->stale;
    if (dup != s->reported_duplicates) {
        s->reported_duplicates = dup;
        say("X %" PRIu64, dup);
    }
}

/* The application's handler: works, has its effect, works on. */
static void handle(subscriber *s, const char *name, const MQTTAsync_message *m, uint64_t seq) {
    if (s->handler_us) sleep_us((unsigned)rand_r(&s->seed) % s->handler_us);
    say("H %s %.*s %" PRIu64, name, m->payloadlen, (const char *)m->payload, seq);
    if (s->handler_us) sleep_us((unsigned)rand_r(&s->seed) % s->handler_us);
}

/* Decides one message; every return acknowledges it (Paho's PUBACK
 * follows), so everything durable is done before returning. */
static void decide(subscriber *s, const char *topic, const MQTTAsync_message *m) {
    const subscription *sub = NULL;
    for (size_t i = 0; i < s->n_subs; i++)
        if (strcmp(s->subs[i].topic, topic) == 0) sub = &s->subs[i];
    if (!sub) {
        s->malformed++;
        say("M a message on an unknown topic %s", topic);
        return;
    }
    const MQTTProperties *p = &m->properties;
    const MQTTLenString *kind = user_property(p, "snp-kind"), *name = user_property(p, "snp-name"),
                        *uid = user_property(p, "snp-uid"), *stamp = user_property(p, "snp-storage-uid"),
                        *seq_text = user_property(p, "snp-seq");
    snp_uuid event_uid, storage_uid;
    uint64_t seq;
    if (!text_is(user_property(p, "snp-v"), WIRE_VERSION) || !text_is(kind, "queueing") ||
        !text_is(name, sub->name) || !uid || !parse_uid(uid->data, (size_t)uid->len, &event_uid) ||
        !stamp || !parse_uid(stamp->data, (size_t)stamp->len, &storage_uid) || !seq_text ||
        !parse_u63(seq_text->data, (size_t)seq_text->len, &seq)) {
        s->malformed++;
        say("M a malformed event on %s", topic);
        return;
    }
    const char *key = sub->name;
    id_space(s, key, &storage_uid);
    int64_t last;
    if (get_id(s, key, &last) && last != INT64_MIN && (int64_t)seq < last) {
        /* Older than the last event decided in this id space: a repeat. */
        s->stale++;
        report_duplicates(s);
        return;
    }
    int32_t decision;
    check(snp_client_controller_incoming(s->ctl, key, strlen(key), (int64_t)seq, &decision), "incoming");
    if (decision == SNP_DECISION_HANDLE) {
        handle(s, sub->name, m, seq);
        check(snp_client_controller_handled(s->ctl, key, strlen(key), (int64_t)seq), "handled");
        s->handled++;
    } else {
        report_duplicates(s);
    }
}

/* MQTTAsync's message-arrived callback: decide, then return 1, after which
 * Paho sends the PUBACK (see the comment at the top). */
static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *message) {
    subscriber *s = context;
    char name[1024];
    size_t len = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    snprintf(name, sizeof name, "%.*s", (int)len, topic);
    if (s->pause_ms) {
        /* For the test of when the PUBACK goes out: a window inside the
         * callback, before anything is decided, announced by the R line. */
        say("R %s", name);
        sleep_us(s->pause_ms * 1000u);
    }
    pthread_mutex_lock(&s->deciding);
    decide(s, name, message);
    pthread_mutex_unlock(&s->deciding);
    MQTTAsync_freeMessage(&message);
    MQTTAsync_free(topic);
    return 1;
}

/* ----- the connection (the main thread) ------------------------------------------------ */

NOTE_CONNECTION_CALLBACKS(subscriber)

static void on_subscribed(void *context, MQTTAsync_successData5 *response) {
    subscriber *s = context;
    bool ok = response->reasonCode < 0x80;
    /* Paho fills the list of reason codes only for more than one topic. */
    if (s->n_subs > 1)
        for (int i = 0; i < response->alt.sub.reasonCodeCount; i++)
            if (response->alt.sub.reasonCodes[i] >= 0x80) ok = false;
    notes_push(&s->notes, ok ? NOTE_SUBACK : NOTE_SUB_FAILED, 0, 0);
}

static void on_subscribe_failed(void *context, MQTTAsync_failureData5 *response) {
    notes_push(&((subscriber *)context)->notes, NOTE_SUB_FAILED, 0, (int)response->reasonCode);
}

static void start_connect(subscriber *s) {
    MQTTProperties props = MQTTProperties_initializer;
    MQTTProperty expiry;
    memset(&expiry, 0, sizeof expiry);
    expiry.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
    expiry.value.integer4 = s->session_expiry;
    if (MQTTProperties_add(&props, &expiry) != 0) abort();
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
    opts.keepAliveInterval = 5;
    opts.cleanstart = 0; /* the broker keeps the session: queued and unacknowledged events */
    opts.connectTimeout = 5;
    opts.connectProperties = &props;
    opts.onSuccess5 = on_connected;
    opts.onFailure5 = on_connect_failed;
    opts.context = s;
    s->link = CONNECTING;
    if (MQTTAsync_connect(s->client, &opts) != MQTTASYNC_SUCCESS) {
        s->link = DOWN;
        s->next_attempt = now_ms() + RECONNECT_MS;
    }
    MQTTProperties_free(&props);
}

static void subscribe(subscriber *s) {
    char *topics[MAX_NAMES];
    int qos[MAX_NAMES];
    for (size_t i = 0; i < s->n_subs; i++) {
        topics[i] = s->subs[i].topic;
        qos[i] = 1;
    }
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    opts.onSuccess5 = on_subscribed;
    opts.onFailure5 = on_subscribe_failed;
    opts.context = s;
    MQTTAsync_subscribeMany(s->client, (int)s->n_subs, topics, qos, &opts);
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --dir DIR --client-id ID [--host H] [--port P] [--prefix PREFIX]\n"
            "          [--order after|before] [--session-expiry S] [--handler-us MAX] [--pause-ms N] [--seed N] NAME...\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    const char *dir = NULL, *host = "127.0.0.1", *prefix = "plant/gateway-1", *client_id = NULL;
    const char *order = "after";
    long port = 1883;
    subscriber s;
    memset(&s, 0, sizeof s);
    s.session_expiry = 7u * 24u * 3600u;
    s.seed = (unsigned)getpid();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--dir") == 0 && has_value) dir = argv[++i];
        else if (strcmp(a, "--host") == 0 && has_value) host = argv[++i];
        else if (strcmp(a, "--port") == 0 && has_value) port = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--prefix") == 0 && has_value) prefix = argv[++i];
        else if (strcmp(a, "--client-id") == 0 && has_value) client_id = argv[++i];
        else if (strcmp(a, "--order") == 0 && has_value) order = argv[++i];
        else if (strcmp(a, "--session-expiry") == 0 && has_value)
            s.session_expiry = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--handler-us") == 0 && has_value)
            s.handler_us = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--pause-ms") == 0 && has_value)
            s.pause_ms = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--seed") == 0 && has_value) s.seed = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (a[0] == '-') usage(argv[0]);
        else if (s.n_subs < MAX_NAMES) s.subs[s.n_subs++].name = a;
        else usage(argv[0]);
    }
    bool before = strcmp(order, "before") == 0;
    if (!dir || !client_id || !*client_id || s.n_subs == 0 || port <= 0 || port > 65535 ||
        s.session_expiry == 0 || (!before && strcmp(order, "after") != 0))
        usage(argv[0]);
    for (size_t i = 0; i < s.n_subs; i++) {
        size_t len = strlen(s.subs[i].name);
        if (len == 0 || len > 240) usage(argv[0]);
        event_topic(prefix, SNP_EVENT_QUEUEING, s.subs[i].name, 0, s.subs[i].topic, sizeof s.subs[i].topic);
    }
    notes_init(&s.notes);
    pthread_mutex_init(&s.deciding, NULL);

    snp_client_options o;
    snp_client_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.server_address = host;
    o.client_key = client_id;
    o.durability = SNP_DURABILITY_SYNC;
    check(snp_client_open(&o, &s.store), "open");
    check(snp_client_controller_new(s.store, SNP_CLIENT_STATEFUL,
                                    before ? SNP_ORDER_RECORD_BEFORE_HANDLE : SNP_ORDER_RECORD_AFTER_HANDLE,
                                    &s.ctl),
          "controller");

    char uri[512];
    snprintf(uri, sizeof uri, "tcp://%s:%ld", host, port);
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
    if (MQTTAsync_createWithOptions(&s.client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &create) != MQTTASYNC_SUCCESS ||
        MQTTAsync_setCallbacks(s.client, &s, on_lost, on_message, NULL) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "subscriber: cannot make the MQTT client for %s\n", uri);
        return 2;
    }
    say("READY");
    for (;;) {
        if (s.link == DOWN && now_ms() >= s.next_attempt) start_connect(&s);
        note *notes = NULL;
        size_t n = notes_take(&s.notes, &notes);
        for (size_t i = 0; i < n; i++) {
            switch (notes[i].kind) {
            case NOTE_CONNECTED:
                s.link = UP;
                subscribe(&s); /* harmless when the session has them already */
                break;
            case NOTE_CONNECT_FAILED:
            case NOTE_LOST:
                s.link = DOWN;
                s.next_attempt = now_ms() + RECONNECT_MS;
                break;
            case NOTE_SUBACK:
                say("SUBSCRIBED");
                break;
            case NOTE_SUB_FAILED:
                fprintf(stderr, "subscriber: the broker refused a subscription (0x%x)\n",
                        (unsigned)notes[i].reason);
                break;
            default:
                break;
            }
        }
        free(notes);
        if (!wait_for_notes(&s.notes, 100)) break; /* stdin closed */
    }
    /* Told to stop: between two decisions (a message Paho is delivering now
     * waits for the lock and is never acknowledged; the broker sends it
     * again on the next connection). Every put is on the device already
     * (sync durability). */
    pthread_mutex_lock(&s.deciding);
    check(snp_client_flush(s.store), "flush");
    fprintf(stderr, "subscriber: %" PRIu64 " handled, %" PRIu64 " dropped, %" PRIu64 " malformed\n",
            s.handled, s.reported_duplicates, s.malformed);
    _exit(0);
}
