/* A device gateway that publishes its readings exactly once over a real
 * MQTT broker: a level-2 service store (SPL-2) and snp_service_controller
 * over Paho C's MQTTAsync, speaking the wire mapping of docs/MQTT.md, so
 * the Python subscriber (softnet_persistence.mqtt.MqttClientBridge) or the
 * C one (subscriber.c) can receive it.
 *
 *   gateway --dir DIR [--host H] [--port P] [--prefix PREFIX]
 *           [--service-uid UID] [--client-id ID] [--start N] [--count N]
 *           [--every MS] [--resend-ms MS] NAME...
 *
 * It raises readings start, start+1, ... (`--count`, -1 for ever; default
 * 10), one every `--every` ms (default 100), reading n on NAME number
 * n mod (number of names), Queueing, its arguments the decimal n. It raises
 * whether the broker is up or not: the store keeps each reading until the
 * broker's PUBACK for it. With a finite count it exits (status 0) once
 * every reading was raised and acknowledged; it also exits when its stdin
 * closes.
 *
 * On stdout, one line each (what the tests read):
 *   READY            the store is open
 *   P n NAME         about to raise reading n
 *   O n NAME UID     the raise returned SNP_OK (the reading is stored)
 *   D                everything raised was acknowledged; exiting
 *
 * The MQTT side (docs/MQTT.md section 9, "a publisher"): MQTT 5, clean
 * start on, session expiry 0, QoS 1. On each CONNACK: connected(), then
 * online(P) with P the store's previous storage uid if it has one, else its
 * storage uid, and P announced (retained, QoS 1) on PREFIX/storage-uid.
 * Each SEND_EVENT output is a PUBLISH with the user properties snp-v,
 * snp-kind, snp-name, snp-uid, snp-storage-uid, snp-seq, [snp-client-id],
 * [snp-raised-at], in that order; its PUBACK (Paho's onSuccess5) acks the
 * event, a PUBACK with 0x87 or 0x90 rejects it, anything else leaves it to
 * the controller's resend timeout. Lost connection: disconnected(), and a
 * new connect after 100 ms.
 *
 * Threads: Paho calls back on threads of its own. The callbacks only queue
 * what happened (common.h); the main thread hands it to the controller and
 * is the only one that calls the controller or publishes.
 *
 * Build: make mqtt-examples (needs libpaho-mqtt-dev).
 */
#define _DEFAULT_SOURCE

#include "common.h"

enum { MAX_NAMES = 16, RECONNECT_MS = 100 };

/* Packet tokens of the PUBLISHes in flight on this connection -> event uid. */
typedef struct {
    int token;
    snp_uuid uid;
} in_flight;

typedef struct {
    note_queue notes;
    MQTTAsync client;
    snp_service *store;
    snp_service_controller *ctl;
    const char *prefix;
    enum { DOWN, CONNECTING, UP } link;
    uint64_t next_attempt;
    snp_uuid stamp; /* the storage uid events go out under */
    in_flight *flight;
    size_t n_flight, cap_flight;
    unsigned long published, acked, refused;
} gateway;

/* ----- Paho's callbacks: queue what happened --------------------------------- */

NOTE_CONNECTION_CALLBACKS(gateway)

/* QoS 1: called when the PUBACK arrived (reason code below 0x80). */
static void on_published(void *context, MQTTAsync_successData5 *response) {
    notes_push(&((gateway *)context)->notes, NOTE_PUBACK, response->token, (int)response->reasonCode);
}

/* A PUBACK with a failure reason code, or the publish could not complete. */
static void on_publish_failed(void *context, MQTTAsync_failureData5 *response) {
    notes_push(&((gateway *)context)->notes, NOTE_PUB_FAILED, response->token, (int)response->reasonCode);
}

/* A publisher subscribes to nothing; Paho requires the callback. */
static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *message) {
    (void)context;
    (void)topic_len;
    MQTTAsync_freeMessage(&message);
    MQTTAsync_free(topic);
    return 1;
}

/* ----- publishing ------------------------------------------------------------------- */

/* Adds a user property. Whether MQTTProperties_add copies the strings
 * differs between Paho releases; the copies it keeps are freed by
 * MQTTProperties_free, ours here if it made its own. */
static void add_user_property(MQTTProperties *props, const char *key, const char *value) {
    MQTTProperty p;
    memset(&p, 0, sizeof p);
    p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    size_t kl = strlen(key), vl = strlen(value);
    char *k = malloc(kl + 1), *v = malloc(vl + 1);
    if (!k || !v) abort();
    memcpy(k, key, kl + 1);
    memcpy(v, value, vl + 1);
    p.value.data.data = k;
    p.value.data.len = (int)kl;
    p.value.value.data = v;
    p.value.value.len = (int)vl;
    if (MQTTProperties_add(props, &p) != 0) abort();
    MQTTProperty *kept = &props->array[props->count - 1];
    if (kept->value.data.data != k) free(k);
    if (kept->value.value.data != v) free(v);
}

/* Publishes QoS 1; the token, or -1 if Paho refused (not connected). */
static int publish(gateway *g, const char *topic, const void *payload, size_t len, int retained,
                   MQTTProperties *props, bool track) {
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = (void *)(uintptr_t)payload;
    msg.payloadlen = (int)len;
    msg.qos = 1;
    msg.retained = retained;
    msg.properties = *props;
    MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
    if (track) {
        opts.onSuccess5 = on_published;
        opts.onFailure5 = on_publish_failed;
        opts.context = g;
    }
    int rc = MQTTAsync_sendMessage(g->client, topic, &msg, &opts);
    MQTTProperties_free(props);
    return rc == MQTTASYNC_SUCCESS ? opts.token : -1;
}

/* The storage uid, as text, retained, on PREFIX/storage-uid. */
static void announce(gateway *g, const snp_uuid *storage_uid) {
    char topic[1024], text[37];
    snprintf(topic, sizeof topic, "%s/storage-uid", g->prefix);
    uid_text(storage_uid, text);
    MQTTProperties props = MQTTProperties_initializer;
    add_user_property(&props, "snp-v", WIRE_VERSION);
    publish(g, topic, text, strlen(text), 1, &props, false);
}

static void send_event(gateway *g, const snp_stored_event *e) {
    char topic[1024], uid[37], stamp[37], number[32];
    event_topic(g->prefix, e->kind, e->name, e->client_id, topic, sizeof topic);
    MQTTProperties props = MQTTProperties_initializer;
    add_user_property(&props, "snp-v", WIRE_VERSION);
    add_user_property(&props, "snp-kind", kind_token(e->kind));
    add_user_property(&props, "snp-name", e->name);
    uid_text(&e->uid, uid);
    add_user_property(&props, "snp-uid", uid);
    uid_text(&g->stamp, stamp);
    add_user_property(&props, "snp-storage-uid", stamp);
    snprintf(number, sizeof number, "%" PRIu64, e->seq);
    add_user_property(&props, "snp-seq", number);
    if (e->kind == SNP_EVENT_PRIVATE) {
        snprintf(number, sizeof number, "%" PRId64, e->client_id);
        add_user_property(&props, "snp-client-id", number);
    }
    if (e->raised_at_ms != 0) {
        snprintf(number, sizeof number, "%" PRIu64, e->raised_at_ms);
        add_user_property(&props, "snp-raised-at", number);
    }
    int token = publish(g, topic, e->args, e->args_len, 0, &props, true);
    if (token < 0) return; /* not connected after all: the resend timeout sends it again */
    if (g->n_flight == g->cap_flight) {
        g->cap_flight = g->cap_flight ? 2 * g->cap_flight : 16;
        g->flight = realloc(g->flight, g->cap_flight * sizeof *g->flight);
        if (!g->flight) abort();
    }
    g->flight[g->n_flight++] = (in_flight){token, e->uid};
    g->published++;
}

/* Sends what the controller asks for (only while connected). */
static void flush_outputs(gateway *g) {
    if (g->link != UP) return;
    snp_service_output out;
    memset(&out, 0, sizeof out);
    out.struct_size = sizeof out;
    while (snp_service_controller_next_output(g->ctl, &out) == SNP_OK) {
        if (out.kind == SNP_OUTPUT_SEND_STORAGE_UID) {
            g->stamp = out.storage_uid;
            announce(g, &out.storage_uid);
        } else if (out.kind == SNP_OUTPUT_SEND_EVENT) {
            send_event(g, &out.event);
        } else if (out.kind == SNP_OUTPUT_REJECTED) {
            g->refused++;
            fprintf(stderr, "gateway: the broker refused %s\n", out.event.name);
        }
    }
}

/* The uid of a token in flight, removed from the table; false if unknown
 * (a token of an earlier connection, or the storage-uid announcement). */
static bool take_token(gateway *g, int token, snp_uuid *uid) {
    for (size_t i = 0; i < g->n_flight; i++) {
        if (g->flight[i].token == token) {
            *uid = g->flight[i].uid;
            g->flight[i] = g->flight[--g->n_flight];
            return true;
        }
    }
    return false;
}

/* ----- the connection ---------------------------------------------------------------- */

static void start_connect(gateway *g) {
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer5;
    opts.keepAliveInterval = 5;
    opts.cleanstart = 1; /* the delivery state is the store's */
    opts.connectTimeout = 5;
    opts.onSuccess5 = on_connected;
    opts.onFailure5 = on_connect_failed;
    opts.context = g;
    g->link = CONNECTING;
    if (MQTTAsync_connect(g->client, &opts) != MQTTASYNC_SUCCESS) {
        g->link = DOWN;
        g->next_attempt = now_ms() + RECONNECT_MS;
    }
}

static void went_down(gateway *g) {
    if (g->link == UP) check(snp_service_controller_disconnected(g->ctl), "disconnected");
    g->link = DOWN;
    g->n_flight = 0; /* no PUBACK of that connection will come */
    g->next_attempt = now_ms() + RECONNECT_MS;
}

static void handle_note(gateway *g, const note *n) {
    snp_uuid uid;
    switch (n->kind) {
    case NOTE_CONNECTED: {
        if (g->link == UP) break;
        g->link = UP;
        g->n_flight = 0;
        check(snp_service_controller_tick(g->ctl, now_ms()), "tick");
        check(snp_service_controller_connected(g->ctl), "connected");
        /* The subscribers keep the duplicate state, keyed by the storage
         * uid each event carries: nothing is invalidated. Events still
         * stored under the uid the store had before a fallback go out under
         * it first (docs/PROTOCOL.md section 2.9). */
        snp_uuid known;
        if (snp_service_previous_storage_uid(g->store, &known) != SNP_OK)
            check(snp_service_storage_uid(g->store, &known), "storage uid");
        g->stamp = known;
        check(snp_service_controller_online(g->ctl, &known), "online");
        announce(g, &known);
        break;
    }
    case NOTE_CONNECT_FAILED:
    case NOTE_LOST:
        went_down(g);
        break;
    case NOTE_PUBACK:
        if (take_token(g, n->token, &uid)) {
            if (n->reason < 0x80) {
                check(snp_service_controller_ack(g->ctl, &uid), "ack");
                g->acked++;
            } else if (n->reason == 0x87 || n->reason == 0x90) {
                check(snp_service_controller_rejected(g->ctl, &uid), "rejected");
            }
        }
        break;
    case NOTE_PUB_FAILED:
        if (take_token(g, n->token, &uid) && (n->reason == 0x87 || n->reason == 0x90))
            check(snp_service_controller_rejected(g->ctl, &uid), "rejected");
        break;
    default:
        break;
    }
}

/* ----- main ----------------------------------------------------------------------------- */

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --dir DIR [--host H] [--port P] [--prefix PREFIX] [--service-uid UID]\n"
            "          [--client-id ID] [--start N] [--count N|-1] [--every MS] [--resend-ms MS] NAME...\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    const char *dir = NULL, *host = "127.0.0.1", *prefix = "plant/gateway-1";
    const char *service_uid_text = "6a7e110c-524f-4d3b-9e2a-71580fc32d90";
    char client_id[64];
    snprintf(client_id, sizeof client_id, "gateway-%ld", (long)getpid());
    long port = 1883, every = 100, resend_ms = 30000;
    long long start = 0, count = 10;
    const char *names[MAX_NAMES];
    size_t n_names = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--dir") == 0 && has_value) dir = argv[++i];
        else if (strcmp(a, "--host") == 0 && has_value) host = argv[++i];
        else if (strcmp(a, "--port") == 0 && has_value) port = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--prefix") == 0 && has_value) prefix = argv[++i];
        else if (strcmp(a, "--service-uid") == 0 && has_value) service_uid_text = argv[++i];
        else if (strcmp(a, "--client-id") == 0 && has_value) snprintf(client_id, sizeof client_id, "%s", argv[++i]);
        else if (strcmp(a, "--start") == 0 && has_value) start = strtoll(argv[++i], NULL, 10);
        else if (strcmp(a, "--count") == 0 && has_value) count = strtoll(argv[++i], NULL, 10);
        else if (strcmp(a, "--every") == 0 && has_value) every = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--resend-ms") == 0 && has_value) resend_ms = strtol(argv[++i], NULL, 10);
        else if (a[0] == '-') usage(argv[0]);
        else if (n_names < MAX_NAMES) names[n_names++] = a;
        else usage(argv[0]);
    }
    snp_uuid service_uid;
    if (!dir || n_names == 0 || port <= 0 || port > 65535 || every < 0 || resend_ms <= 0 ||
        !parse_uid(service_uid_text, strlen(service_uid_text), &service_uid))
        usage(argv[0]);

    gateway g;
    memset(&g, 0, sizeof g);
    notes_init(&g.notes);
    g.prefix = prefix;

    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.service_uid = service_uid;
    o.file_capacity = 4u << 20;
    o.durability = SNP_DURABILITY_SYNC;
    check(snp_service_open(&o, &g.store), "open");
    check(snp_service_controller_new(g.store, (uint64_t)resend_ms, &g.ctl), "controller");
    check(snp_service_controller_tick(g.ctl, now_ms()), "tick");

    char uri[512];
    snprintf(uri, sizeof uri, "tcp://%s:%ld", host, port);
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
    if (MQTTAsync_createWithOptions(&g.client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &create) != MQTTASYNC_SUCCESS ||
        MQTTAsync_setCallbacks(g.client, &g, on_lost, on_message, NULL) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "gateway: cannot make the MQTT client for %s\n", uri);
        return 2;
    }
    say("READY");

    long long next = start, end = count < 0 ? -1 : start + count;
    uint64_t next_raise = now_ms();
    snp_service_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    int status = 0;
    for (;;) {
        uint64_t now = now_ms();
        if (g.link == DOWN && now >= g.next_attempt) start_connect(&g);
        if ((end < 0 || next < end) && now >= next_raise) {
            const char *name = names[(size_t)next % n_names];
            char args[32];
            int len = snprintf(args, sizeof args, "%lld", next);
            snp_event e = {SNP_EVENT_QUEUEING, name, strlen(name), (const uint8_t *)args, (size_t)len, 0};
            snp_uuid uid;
            char uid_str[37];
            say("P %lld %s", next, name);
            check(snp_service_controller_raise(g.ctl, &e, &uid), "raise");
            uid_text(&uid, uid_str);
            say("O %lld %s %s", next, name, uid_str);
            next++;
            next_raise = now + (uint64_t)every;
        }
        note *notes = NULL;
        size_t n = notes_take(&g.notes, &notes);
        for (size_t i = 0; i < n; i++) handle_note(&g, &notes[i]);
        free(notes);
        check(snp_service_controller_tick(g.ctl, now_ms()), "tick");
        flush_outputs(&g);
        if (end >= 0 && next >= end) {
            check(snp_service_get_stats(g.store, &stats), "stats");
            if (stats.pending_events == 0) {
                say("D");
                break;
            }
        }
        /* Sleep until the next raise, the controller's deadline, the next
         * connection attempt or a note, at most 100 ms. */
        uint64_t wake = now_ms() + 100;
        if ((end < 0 || next < end) && next_raise < wake) wake = next_raise;
        uint64_t deadline;
        if (snp_service_controller_next_deadline(g.ctl, &deadline) == SNP_OK && deadline < wake) wake = deadline;
        if (g.link == DOWN && g.next_attempt < wake) wake = g.next_attempt;
        uint64_t t = now_ms();
        if (!wait_for_notes(&g.notes, wake > t ? (int)(wake - t) : 0)) break; /* stdin closed */
    }
    if (g.link == UP) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
        d.timeout = 1000;
        MQTTAsync_disconnect(g.client, &d);
    }
    fprintf(stderr, "gateway: %lu published, %lu acknowledged, %lu refused\n", g.published, g.acked,
            g.refused);
    snp_service_controller_free(g.ctl);
    snp_service_close(g.store);
    MQTTAsync_destroy(&g.client);
    free(g.flight);
    return status;
}
