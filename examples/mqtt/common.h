/* What the MQTT examples (gateway.c, subscriber.c) share: the wire mapping
 * of docs/MQTT.md (topics, user properties, text forms), the report lines
 * they write on stdout, and a small queue that carries what Paho's threads
 * saw to the thread that owns the controller.
 */
#ifndef SNP_MQTT_EXAMPLE_COMMON_H
#define SNP_MQTT_EXAMPLE_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "softnet_persistence.h"

/* The value of the snp-v user property (docs/MQTT.md section 3). */
#define WIRE_VERSION "1"

static inline uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void sleep_us(unsigned us) {
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* One report line on stdout, a pipe to the test: a single write() shorter
 * than PIPE_BUF, so a kill never leaves half a line. */
static inline void say(const char *format, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(line, sizeof line - 1, format, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w;
    do { w = write(1, line, (size_t)n); } while (w < 0 && errno == EINTR);
}

/* A failed store call: the process ends at once (no PUBACK for what it
 * was deciding; a restart picks up from the store). */
static inline void check(snp_status st, const char *what) {
    if (st == SNP_OK || st == SNP_EMPTY) return;
    char message[1024];
    snp_last_error_message(message, sizeof message);
    fprintf(stderr, "%s: %s: %s\n", what, snp_status_str(st), message);
    abort();
}

/* ----- text forms ------------------------------------------------------------ */

/* Lowercase hyphenated, as Python's str(uuid.UUID). */
static inline void uid_text(const snp_uuid *u, char out[37]) {
    static const char hex[] = "0123456789abcdef";
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
        out[j++] = hex[u->bytes[i] >> 4];
        out[j++] = hex[u->bytes[i] & 15];
    }
    out[j] = '\0';
}

static inline int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The canonical 36-character form (hyphens at 8, 13, 18, 23), either case. */
static inline bool parse_uid(const char *text, size_t len, snp_uuid *u) {
    if (len != 36) return false;
    int j = 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') return false;
            continue;
        }
        int d = hex_digit(text[i]);
        if (d < 0) return false;
        if (j % 2 == 0) u->bytes[j / 2] = (uint8_t)(d << 4);
        else u->bytes[j / 2] |= (uint8_t)d;
        j++;
    }
    return true;
}

/* A decimal number without sign or leading zeros, below 2^63. */
static inline bool parse_u63(const char *text, size_t len, uint64_t *out) {
    if (len == 0 || len > 19 || (len > 1 && text[0] == '0')) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
        v = v * 10u + (uint64_t)(text[i] - '0');
    }
    if (v >> 63) return false;
    *out = v;
    return true;
}

/* An event name as one topic level: % / + # as %25 %2F %2B %23. */
static inline void encode_name(const char *name, char *out, size_t cap) {
    size_t j = 0;
    for (const char *p = name; *p && j + 4 < cap; p++) {
        const char *esc = *p == '%' ? "%25" : *p == '/' ? "%2F" : *p == '+' ? "%2B" : *p == '#' ? "%23" : NULL;
        if (esc) {
            memcpy(out + j, esc, 3);
            j += 3;
        } else {
            out[j++] = *p;
        }
    }
    out[j] = '\0';
}

static inline const char *kind_token(int32_t kind) {
    switch (kind) {
    case SNP_EVENT_QUEUEING: return "queueing";
    case SNP_EVENT_REPLACING: return "replacing";
    case SNP_EVENT_REPLACING_NULL: return "replacing-null";
    case SNP_EVENT_PRIVATE: return "private";
    default: return NULL;
    }
}

/* The topic level of a kind's family (Replacing-null shares Replacing's). */
static inline const char *kind_family(int32_t kind) {
    return kind == SNP_EVENT_REPLACING_NULL ? "replacing" : kind_token(kind);
}

/* PREFIX/queueing/NAME, PREFIX/replacing/NAME, PREFIX/private/ID/NAME. */
static inline void event_topic(const char *prefix, int32_t kind, const char *name, int64_t client_id,
                        char *out, size_t cap) {
    char level[3 * SNP_MAX_NAME_LEN + 1];
    encode_name(name, level, sizeof level);
    if (kind == SNP_EVENT_PRIVATE)
        snprintf(out, cap, "%s/private/%" PRId64 "/%s", prefix, client_id, level);
    else
        snprintf(out, cap, "%s/%s/%s", prefix, kind_family(kind), level);
}

/* ----- what Paho's threads saw, for the owning thread ------------------------------ */

enum note_kind {
    NOTE_CONNECTED,      /* CONNACK success */
    NOTE_CONNECT_FAILED, /* the connect did not succeed */
    NOTE_LOST,           /* the connection was lost */
    NOTE_PUBACK,         /* a publish completed: token, reason code */
    NOTE_PUB_FAILED,     /* a publish failed: token, reason code (0 if none) */
    NOTE_SUBACK,         /* the subscriptions were granted */
    NOTE_SUB_FAILED,     /* a subscription was refused */
};

typedef struct {
    enum note_kind kind;
    int token;
    int reason;
} note;

/* A queue of notes; Paho's threads push, the owner pops. A byte on `wake`
 * tells the owner's poll() that there is something. The owner never calls
 * Paho while it holds `lock` (Paho calls back with its own locks held). */
typedef struct {
    pthread_mutex_t lock;
    note *items;
    size_t len, cap;
    int wake[2];
} note_queue;

static inline void notes_init(note_queue *q) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    if (pipe(q->wake) != 0) {
        perror("pipe");
        exit(2);
    }
    fcntl(q->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(q->wake[1], F_SETFL, O_NONBLOCK);
}

static inline void notes_push(note_queue *q, enum note_kind kind, int token, int reason) {
    pthread_mutex_lock(&q->lock);
    if (q->len == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->items = realloc(q->items, q->cap * sizeof *q->items);
        if (!q->items) abort();
    }
    q->items[q->len++] = (note){kind, token, reason};
    pthread_mutex_unlock(&q->lock);
    char b = 1;
    ssize_t w = write(q->wake[1], &b, 1);
    (void)w; /* a full pipe already wakes the owner */
}

/* Moves every queued note to *out (caller frees); returns how many. */
static inline size_t notes_take(note_queue *q, note **out) {
    char drain[256];
    while (read(q->wake[0], drain, sizeof drain) == (ssize_t)sizeof drain) {}
    pthread_mutex_lock(&q->lock);
    size_t n = q->len;
    *out = q->items;
    q->items = NULL;
    q->len = q->cap = 0;
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* Waits until a note arrives, stdin closes (returns false: the test tells
 * the process to stop) or `timeout_ms` passes. */
static inline bool wait_for_notes(note_queue *q, int timeout_ms) {
    struct pollfd p[2] = {{.fd = q->wake[0], .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    int r = poll(p, 2, timeout_ms);
    if (r > 0 && (p[1].revents & (POLLIN | POLLHUP))) {
        char b[64];
        if (read(0, b, sizeof b) <= 0) return false;
    }
    return true;
}

/* Paho's connection callbacks, the same in both programs: each queues a
 * note for the owner. TYPE is the program's state, whose `notes` member is
 * the queue; the context given to Paho is a TYPE *. */
#define NOTE_CONNECTION_CALLBACKS(TYPE)                                          \
    static void on_connected(void *context, MQTTAsync_successData5 *response) {  \
        (void)response;                                                          \
        notes_push(&((TYPE *)context)->notes, NOTE_CONNECTED, 0, 0);             \
    }                                                                            \
    static void on_connect_failed(void *context, MQTTAsync_failureData5 *resp) { \
        (void)resp;                                                              \
        notes_push(&((TYPE *)context)->notes, NOTE_CONNECT_FAILED, 0, 0);        \
    }                                                                            \
    static void on_lost(void *context, char *cause) {                            \
        (void)cause;                                                             \
        notes_push(&((TYPE *)context)->notes, NOTE_LOST, 0, 0);                  \
    }

#endif
