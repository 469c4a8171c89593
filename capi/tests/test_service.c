/* The service store through the C ABI: every snp_service_* function, every
 * error path, level 1 and level 2 (a journal in a mkdtemp directory), the
 * stats struct, the failure callback, the error message and status texts. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "helpers.h"

/* ----- helpers ------------------------------------------------------- */

static snp_service *open_memory(uint64_t capacity, int32_t overflow, snp_failure_fn cb,
                                void *user_data) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    o.memory_capacity = capacity;
    o.overflow = overflow;
    o.on_failure = cb;
    o.user_data = user_data;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(s != NULL);
    return s;
}

static void uuid_text(const snp_uuid *u, char out[37]) {
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
        out[j++] = hex[u->bytes[i] >> 4];
        out[j++] = hex[u->bytes[i] & 15];
    }
    out[j] = 0;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    CHECK(in != NULL && out != NULL);
    int c;
    while ((c = fgetc(in)) != EOF) fputc(c, out);
    fclose(in);
    CHECK(fclose(out) == 0);
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

/* ----- versions, status texts, options defaults ------------------------ */

static void test_versions(void) {
    CHECK(snp_abi_version() == SNP_ABI_VERSION);
    CHECK(SNP_ABI_VERSION >= 1);
    const char *v = snp_version();
    CHECK(v != NULL);
    /* SNP_ABI_VERSION.minor.patch: the version the library is installed
     * under (libsoftnet_persistence.so.N.x.y, pkg-config, CMake). */
    char major[16];
    snprintf(major, sizeof major, "%d.", SNP_ABI_VERSION);
    CHECK(strncmp(v, major, strlen(major)) == 0);
    const char *minor = v + strlen(major);
    CHECK(minor[0] >= '0' && minor[0] <= '9');
    CHECK(strchr(minor, '.') != NULL && strchr(strchr(minor, '.') + 1, '.') == NULL);
    CHECK(snp_version() == v); /* static storage */
}

static void test_status_str(void) {
    const snp_status codes[] = {SNP_OK,
                                SNP_EMPTY,
                                SNP_ERR_INVALID_ARGUMENT,
                                SNP_ERR_IO,
                                SNP_ERR_FORMAT,
                                SNP_ERR_STORAGE_FULL,
                                SNP_ERR_LOCKED,
                                SNP_ERR_STATE,
                                SNP_ERR_CLOSED,
                                SNP_ERR_PANIC,
                                SNP_ERR_CALLBACK};
    const size_t n = sizeof codes / sizeof codes[0];
    CHECK(SNP_OK == 0 && SNP_EMPTY == 1);
    const char *unknown = snp_status_str(-1000);
    CHECK(unknown != NULL && unknown[0] != 0);
    for (size_t i = 0; i < n; i++) {
        const char *text = snp_status_str(codes[i]);
        CHECK(text != NULL && text[0] != 0);
        CHECK(strcmp(text, unknown) != 0);
        CHECK(snp_status_str(codes[i]) == text); /* static storage */
        if (i >= 2) CHECK(codes[i] < 0);
        for (size_t j = 0; j < i; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(text, snp_status_str(codes[j])) != 0);
        }
    }
    CHECK(strstr(snp_status_str(SNP_ERR_LOCKED), "lock") != NULL);
    CHECK(strstr(snp_status_str(SNP_ERR_STORAGE_FULL), "full") != NULL);
    const snp_status odd[] = {2, -10, 100, -100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *text = snp_status_str(odd[i]);
        CHECK(text != NULL && strcmp(text, unknown) == 0);
    }
}

static void test_options_init(void) {
    snp_service_options_init(NULL); /* ignored */
    snp_service_options o;
    memset(&o, 0xA5, sizeof o);
    snp_service_options_init(&o);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.level == SNP_LEVEL_FILE);
    CHECK(o.directory == NULL);
    snp_uuid zero;
    memset(&zero, 0, sizeof zero);
    CHECK(uid_eq(&o.service_uid, &zero));
    CHECK(o.file_capacity == 0 && o.memory_capacity == 0);
    CHECK(o.durability == SNP_DURABILITY_SYNC);
    CHECK(o.batch_max_ops == 64 && o.batch_max_delay_ms == 100);
    CHECK(o.overflow == SNP_OVERFLOW_DROP_OLDEST);
    CHECK(o.on_failure == NULL && o.user_data == NULL);
}

/* ----- open ------------------------------------------------------------ */

static void expect_open_fails(const snp_service_options *o, const char *why) {
    snp_service *s = SENTINEL_SERVICE;
    snp_status st = snp_service_open(o, &s);
    if (st != SNP_ERR_INVALID_ARGUMENT) {
        fprintf(stderr, "open with %s: ", why);
        CHECK_STATUS(st, SNP_ERR_INVALID_ARGUMENT);
    }
    check_count++;
    CHECK(s == SENTINEL_SERVICE); /* output untouched */
    CHECK(snp_last_error_message(NULL, 0) > 0);
}

static void test_open_errors(const char *dir) {
    snp_service_options o;
    snp_service *s = SENTINEL_SERVICE;

    CHECK_STATUS(snp_service_open(NULL, &s), SNP_ERR_INVALID_ARGUMENT);
    CHECK(s == SENTINEL_SERVICE);
    CHECK(last_error_contains("options"));

    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    CHECK_STATUS(snp_service_open(&o, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("out_service"));

    snp_service_options_init(&o);
    o.struct_size = 0;
    o.level = SNP_LEVEL_MEMORY;
    expect_open_fails(&o, "struct_size 0");
    CHECK(last_error_contains("struct_size"));
    o.struct_size = 3;
    expect_open_fails(&o, "struct_size 3");

    snp_service_options_init(&o); /* level 2 by default, no directory */
    expect_open_fails(&o, "level 2 without a directory");
    CHECK(last_error_contains("directory"));

    const int32_t bad_levels[] = {0, 3, -1, 1000};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        snp_service_options_init(&o);
        o.directory = dir;
        o.level = bad_levels[i];
        expect_open_fails(&o, "a bad level");
    }
    const int32_t bad_durability[] = {3, -1, 99};
    for (size_t i = 0; i < sizeof bad_durability / sizeof bad_durability[0]; i++) {
        snp_service_options_init(&o);
        o.level = SNP_LEVEL_MEMORY;
        o.durability = bad_durability[i];
        expect_open_fails(&o, "a bad durability");
        o.level = SNP_LEVEL_FILE;
        o.directory = dir;
        expect_open_fails(&o, "a bad durability at level 2");
    }
    const int32_t bad_overflow[] = {2, -1, 7};
    for (size_t i = 0; i < sizeof bad_overflow / sizeof bad_overflow[0]; i++) {
        snp_service_options_init(&o);
        o.level = SNP_LEVEL_MEMORY;
        o.overflow = bad_overflow[i];
        expect_open_fails(&o, "a bad overflow policy");
    }
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    o.memory_capacity = (UINT64_C(1) << 32) + 1;
    expect_open_fails(&o, "a huge memory capacity");
    snp_service_options_init(&o);
    o.directory = dir;
    o.file_capacity = UINT64_MAX;
    expect_open_fails(&o, "a huge file capacity");

    /* The oldest layout ends before open_policy: a struct_size below it
     * would cut fields (half a function pointer), so it is refused, with a
     * message saying how to set it. */
    const size_t too_small[] = {offsetof(snp_service_options, file_capacity),
                                offsetof(snp_service_options, on_failure) + 4,
                                offsetof(snp_service_options, user_data),
                                offsetof(snp_service_options, open_policy) - 1};
    for (size_t i = 0; i < sizeof too_small / sizeof too_small[0]; i++) {
        snp_service_options_init(&o);
        o.level = SNP_LEVEL_MEMORY;
        o.on_failure = NULL;
        o.struct_size = (uint32_t)too_small[i];
        expect_open_fails(&o, "a struct_size below sizeof");
        CHECK(last_error_contains("struct_size"));
        CHECK(last_error_contains("sizeof(snp_service_options)"));
        CHECK(last_error_contains("snp_service_options_init"));
    }

    /* A newer caller's larger struct: the fields of this header are read,
     * the later ones (garbage here) are not. */
    struct {
        snp_service_options known;
        unsigned char later_fields[32];
    } newer;
    memset(&newer, 0xEE, sizeof newer);
    snp_service_options_init(&newer.known);
    newer.known.struct_size = sizeof newer;
    newer.known.level = SNP_LEVEL_MEMORY;
    newer.known.memory_capacity = 8 * 1024;
    s = NULL;
    CHECK_OK(snp_service_open(&newer.known, &s));
    CHECK(service_stats(s).capacity_bytes == 8 * 1024);
    snp_service_close(s);

    /* A caller built with the header before open_policy: its struct ends
     * there, and what follows it in memory (0xEE here) is not read: the
     * store opens with the default policy, falling back to level 1 when
     * the directory is missing. */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/not-there", dir);
    struct {
        snp_service_options known;
        unsigned char after[16];
    } older;
    memset(&older, 0xEE, sizeof older);
    snp_service_options_init(&older.known);
    older.known.struct_size = (uint32_t)offsetof(snp_service_options, open_policy);
    memset(&older.known.open_policy, 0xEE, sizeof older.known.open_policy);
    older.known.directory = missing;
    older.known.service_uid.bytes[0] = 0x42;
    s = NULL;
    CHECK_OK(snp_service_open(&older.known, &s));
    CHECK(service_stats(s).level == SNP_LEVEL_MEMORY);
    snp_service_close(s);

    /* Strict: the same open fails, naming the directory and the fix. */
    snp_service_options_init(&o);
    CHECK(o.open_policy == SNP_OPEN_FALLBACK);
    o.directory = missing;
    o.service_uid.bytes[0] = 0x42;
    o.open_policy = SNP_OPEN_STRICT;
    s = SENTINEL_SERVICE;
    CHECK_STATUS(snp_service_open(&o, &s), SNP_ERR_IO);
    CHECK(s == SENTINEL_SERVICE);
    CHECK(last_error_contains("not-there"));
    CHECK(last_error_contains("create it"));
    o.open_policy = 7;
    expect_open_fails(&o, "a bad open policy");
    CHECK(last_error_contains("open_policy"));

    snp_service_close(NULL); /* fine */
}

/* ----- raise ----------------------------------------------------------- */

static void test_raise_errors(void) {
    snp_service *s = open_memory(64 * 1024, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_uuid uid, untouched;
    memset(&untouched, 0xAB, sizeof untouched);
    static char name257[258], name256[257];
    memset(name257, 'n', 257);
    name257[257] = 0;
    memset(name256, 'n', 256);
    name256[256] = 0;
    static uint8_t args2049[2049];
    for (size_t i = 0; i < sizeof args2049; i++) args2049[i] = (uint8_t)i;

    snp_event ok = make_event(SNP_EVENT_QUEUEING, "Temperature", "21.5");
#define EXPECT_RAISE_INVALID(service, event)                                    \
    do {                                                                        \
        uid = untouched;                                                        \
        CHECK_STATUS(snp_service_raise((service), (event), &uid), SNP_ERR_INVALID_ARGUMENT); \
        CHECK(uid_eq(&uid, &untouched));                                        \
    } while (0)

    EXPECT_RAISE_INVALID(NULL, &ok);
    CHECK(last_error_contains("service"));
    EXPECT_RAISE_INVALID(s, NULL);
    CHECK(last_error_contains("event"));

    snp_event e = ok;
    e.name = NULL; /* with a length */
    EXPECT_RAISE_INVALID(s, &e);
    e.name_len = 0; /* empty name */
    EXPECT_RAISE_INVALID(s, &e);
    e = ok;
    e.name_len = 0;
    EXPECT_RAISE_INVALID(s, &e);
    e = ok;
    e.args = NULL; /* with a length */
    EXPECT_RAISE_INVALID(s, &e);

    e = make_event(SNP_EVENT_QUEUEING, name257, "x");
    EXPECT_RAISE_INVALID(s, &e);
    CHECK(last_error_contains("256"));
    e.name_len = 256;
    CHECK_OK(snp_service_raise(s, &e, &uid)); /* the first 256 bytes are fine */
    e = make_event(SNP_EVENT_QUEUEING, name256, "x");
    CHECK_OK(snp_service_raise(s, &e, NULL)); /* out_uid may be NULL */

    const char *bad_names[] = {"1abc",  "_abc", " abc", "abc ", "a  b", "a\tb", "a~b",
                               "a\"b",  "a,b",  "a;b",  "a{b",  "a\\b", "a?b", "a<b",
                               "Temp\xc3\xa9", "\xff"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        e = make_event(SNP_EVENT_QUEUEING, bad_names[i], "x");
        EXPECT_RAISE_INVALID(s, &e);
    }
    e = make_event(SNP_EVENT_QUEUEING, "a\0b", "x");
    e.name_len = 3; /* an embedded NUL */
    EXPECT_RAISE_INVALID(s, &e);
    /* Every allowed character once (single spaces, none trailing). */
    e = make_event(SNP_EVENT_QUEUEING, "Zz09_ .$*+()#@%&=':^[]-/!", "x");
    CHECK_OK(snp_service_raise(s, &e, &uid));

    e = ok;
    e.name_len = SIZE_MAX; /* refused before anything is read */
    EXPECT_RAISE_INVALID(s, &e);
    e = ok;
    e.args_len = SIZE_MAX;
    EXPECT_RAISE_INVALID(s, &e);
    e = ok;
    e.args = args2049;
    e.args_len = 2049;
    EXPECT_RAISE_INVALID(s, &e);
    CHECK(last_error_contains("2049"));
    e.args_len = 2048;
    CHECK_OK(snp_service_raise(s, &e, &uid));
    e.args_len = 0; /* non-NULL args of length 0 */
    CHECK_OK(snp_service_raise(s, &e, &uid));
    e.args = NULL;
    CHECK_OK(snp_service_raise(s, &e, &uid));

    const int32_t bad_kinds[] = {0, 3, 6, -1, 258, 1025, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
        e = ok;
        e.kind = bad_kinds[i];
        EXPECT_RAISE_INVALID(s, &e);
        CHECK(last_error_contains("kind"));
    }
    e = make_event(SNP_EVENT_REPLACING_NULL, "Door", "open"); /* carries no arguments */
    EXPECT_RAISE_INVALID(s, &e);

    /* raise_with_uid */
    snp_uuid mine;
    for (int i = 0; i < 16; i++) mine.bytes[i] = (uint8_t)(0xC0 + i);
    CHECK_STATUS(snp_service_raise_with_uid(NULL, &ok, &mine), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_raise_with_uid(s, NULL, &mine), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_raise_with_uid(s, &ok, NULL), SNP_ERR_INVALID_ARGUMENT);
    e = make_event(SNP_EVENT_QUEUEING, "a  b", "x");
    CHECK_STATUS(snp_service_raise_with_uid(s, &e, &mine), SNP_ERR_INVALID_ARGUMENT);
    e = ok;
    e.args = args2049;
    e.args_len = 2049;
    CHECK_STATUS(snp_service_raise_with_uid(s, &e, &mine), SNP_ERR_INVALID_ARGUMENT);

    /* None of the refused raises stored anything. */
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events == 6);
    CHECK(st.rejected_events == 0);

    CHECK_OK(snp_service_reset(s));
    CHECK_OK(snp_service_raise_with_uid(s, &ok, &mine));
    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &mine));
    CHECK_OK(snp_service_ack(s, &mine));
    snp_service_close(s);
#undef EXPECT_RAISE_INVALID
}

/* ----- lengths are checked before buffers are read ---------------------- */

/* Huge lengths with small heap buffers: refused with a message naming the
 * field and the limit, before a single byte past the buffers is read (ASan
 * and valgrind would see it). */
static void test_huge_lengths(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    char *name = malloc(4);
    uint8_t *args = malloc(4);
    CHECK(name != NULL && args != NULL);
    memcpy(name, "Temp", 4);
    memcpy(args, "21.5", 4);
    const size_t huge[] = {SNP_MAX_ARGS_LEN + 1, 1u << 20, (size_t)UINT32_MAX,
                           (size_t)1 << (sizeof(size_t) > 4 ? 32 : 31), SIZE_MAX / 2,
                           SIZE_MAX / 2 + 1, SIZE_MAX};
    snp_uuid uid, untouched;
    memset(&untouched, 0xAB, sizeof untouched);
    snp_stored_event out, before;
    memset(&before, 0x5A, sizeof before);

    snp_event e;
    e.kind = SNP_EVENT_QUEUEING;
    e.name = name;
    e.name_len = 4;
    e.args = args;
    e.args_len = 4;
    e.client_id = 0;
    CHECK_OK(snp_service_raise(s, &e, NULL)); /* the buffers are fine */

    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        snp_event bad = e;
        bad.args_len = huge[i];
        uid = untouched;
        CHECK_STATUS(snp_service_raise(s, &bad, &uid), SNP_ERR_INVALID_ARGUMENT);
        CHECK(uid_eq(&uid, &untouched));
        CHECK(last_error_contains("event->args_len"));
        CHECK(last_error_contains("SNP_MAX_ARGS_LEN (2048)"));
        CHECK_STATUS(snp_service_raise_with_uid(s, &bad, &untouched), SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("event->args_len"));

        bad = e;
        bad.name_len = huge[i];
        CHECK_STATUS(snp_service_raise(s, &bad, &uid), SNP_ERR_INVALID_ARGUMENT);
        CHECK(uid_eq(&uid, &untouched));
        CHECK(last_error_contains("event->name_len"));
        CHECK(last_error_contains("SNP_MAX_NAME_LEN (256)"));
        CHECK_STATUS(snp_service_raise_with_uid(s, &bad, &untouched), SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("event->name_len"));

        bad.args_len = huge[i]; /* both: the name is reported first */
        CHECK_STATUS(snp_service_raise(s, &bad, NULL), SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("event->name_len"));
    }
    /* Just over the limits. */
    e.name_len = SNP_MAX_NAME_LEN + 1;
    CHECK_STATUS(snp_service_raise(s, &e, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("257") && last_error_contains("SNP_MAX_NAME_LEN"));
    e.name_len = 0;
    CHECK_STATUS(snp_service_raise(s, &e, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("event->name_len is 0"));
    e.name_len = 4;

    /* The cache-mode functions taking a name, in both modes. */
    for (int mode = 0; mode < 2; mode++) {
        for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
            out = before;
            CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, name, huge[i], &out),
                         SNP_ERR_INVALID_ARGUMENT);
            CHECK(last_error_contains("name_len") && last_error_contains("SNP_MAX_NAME_LEN"));
            CHECK_STATUS(
                snp_service_ack_name(s, SNP_EVENT_QUEUEING, name, huge[i], &untouched, &out),
                SNP_ERR_INVALID_ARGUMENT);
            CHECK(last_error_contains("name_len") && last_error_contains("SNP_MAX_NAME_LEN"));
            CHECK(all_bytes(&out, sizeof out, 0x5A));
        }
        CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, name, 0, &out),
                     SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("name_len is 0"));
        CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, name, 0, &untouched, &out),
                     SNP_ERR_INVALID_ARGUMENT);
        CHECK(all_bytes(&out, sizeof out, 0x5A));
        if (mode == 0) {
            CHECK_OK(snp_service_peek(s, &out)); /* storage mode: deliver the one event */
            CHECK_OK(snp_service_ack(s, &out.uid));
            CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY); /* -> cache mode */
        }
    }
    /* Nothing refused was stored. */
    CHECK(service_stats(s).pending_events == 0);
    free(name);
    free(args);
    snp_service_close(s);
}

/* ----- inputs that overlap outputs -------------------------------------- */

/* The natural cache-mode loop acknowledges a stored event with its own name
 * and uid and receives the next one into the same struct:
 *   snp_service_ack_name(s, ev.kind, ev.name, ev.name_len, &ev.uid, &ev)
 * The library copies its inputs before writing the output. */
static void test_ack_name_in_place(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_stored_event *ev = malloc(sizeof *ev); /* on the heap, for ASan */
    CHECK(ev != NULL);
    CHECK_STATUS(snp_service_peek(s, ev), SNP_EMPTY); /* -> cache mode */

    static char long_name[SNP_MAX_NAME_LEN + 1];
    memset(long_name, 'L', SNP_MAX_NAME_LEN);
    const char *names[] = {"Temperature", long_name};
    for (size_t n = 0; n < 2; n++) {
        snp_uuid raised[4];
        const char *values[] = {"1", "22", "333", "4444"};
        for (int i = 0; i < 4; i++) {
            snp_event e = make_event(SNP_EVENT_QUEUEING, names[n], values[i]);
            CHECK_OK(snp_service_raise(s, &e, &raised[i]));
        }
        /* A Replacing name alongside, untouched by the loop. */
        snp_event door = make_event(SNP_EVENT_REPLACING, "Door", "open");
        CHECK_OK(snp_service_raise(s, &door, NULL));

        memset(ev, 0x5A, sizeof *ev);
        CHECK_OK(snp_service_peek_name(s, SNP_EVENT_QUEUEING, names[n], strlen(names[n]), ev));
        /* peek_name with the event's own name into the event: the same one. */
        CHECK_OK(snp_service_peek_name(s, ev->kind, ev->name, ev->name_len, ev));
        CHECK(uid_eq(&ev->uid, &raised[0]));
        for (int i = 0; i < 4; i++) {
            CHECK(uid_eq(&ev->uid, &raised[i]));
            CHECK(ev->kind == SNP_EVENT_QUEUEING);
            CHECK(ev->name_len == strlen(names[n]) && strcmp(ev->name, names[n]) == 0);
            CHECK(ev->args_len == strlen(values[i]) &&
                  memcmp(ev->args, values[i], ev->args_len) == 0);
            snp_status st = snp_service_ack_name(s, ev->kind, ev->name, ev->name_len, &ev->uid, ev);
            CHECK_STATUS(st, i < 3 ? SNP_OK : SNP_EMPTY);
        }
        /* SNP_EMPTY wrote nothing: the struct still holds the last event. */
        CHECK(uid_eq(&ev->uid, &raised[3]));
        /* A stale in-place ack (the same call again) is a state error and
         * writes nothing either. */
        CHECK_STATUS(snp_service_ack_name(s, ev->kind, ev->name, ev->name_len, &ev->uid, ev),
                     SNP_ERR_STATE);
        CHECK(uid_eq(&ev->uid, &raised[3]));

        CHECK_OK(snp_service_peek_name(s, SNP_EVENT_REPLACING, "Door", 4, ev));
        CHECK_STATUS(snp_service_ack_name(s, ev->kind, ev->name, ev->name_len, &ev->uid, ev),
                     SNP_EMPTY);
        CHECK(service_stats(s).pending_events == 0);
    }

    /* raise with out_uid pointing into the event's own argument buffer. */
    uint8_t *buf = malloc(sizeof(snp_uuid) + 8);
    CHECK(buf != NULL);
    memset(buf, 'a', sizeof(snp_uuid) + 8);
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Overlap", NULL);
    e.args = buf;
    e.args_len = sizeof(snp_uuid) + 8;
    snp_uuid *in_args = (snp_uuid *)(void *)buf;
    CHECK_OK(snp_service_raise(s, &e, in_args));
    CHECK_OK(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Overlap", 7, ev));
    CHECK(all_bytes(ev->args, ev->args_len, 'a')); /* stored before the uid was written */
    CHECK(memcmp(buf, ev->uid.bytes, sizeof(snp_uuid)) == 0);
    CHECK_STATUS(snp_service_ack_name(s, ev->kind, ev->name, ev->name_len, &ev->uid, ev),
                 SNP_EMPTY);
    free(buf);
    free(ev);
    snp_service_close(s);
}

/* ----- storage mode ---------------------------------------------------- */

static void test_storage_mode(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    int32_t mode = -5;
    CHECK_OK(snp_service_mode(s, &mode));
    CHECK(mode == SNP_MODE_STORAGE);
    CHECK_STATUS(snp_service_mode(NULL, &mode), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_mode(s, NULL), SNP_ERR_INVALID_ARGUMENT);

    snp_uuid u1, u2, u3, u4;
    snp_event e1 = make_event(SNP_EVENT_QUEUEING, "Temperature", "21.5");
    snp_event e2 = make_event(SNP_EVENT_QUEUEING, "Temperature", "21.9");
    snp_event e3 = make_event(SNP_EVENT_PRIVATE, "Alarm", "smoke");
    e3.client_id = INT64_MIN;
    snp_event e4 = make_event(SNP_EVENT_REPLACING, "Door", "open");
    e4.client_id = 77; /* ignored for other kinds */
    CHECK_OK(snp_service_raise(s, &e1, &u1));
    CHECK_OK(snp_service_raise(s, &e2, &u2));
    CHECK_OK(snp_service_raise(s, &e3, &u3));
    CHECK_OK(snp_service_raise(s, &e4, &u4));
    CHECK(!uid_eq(&u1, &u2) && !uid_eq(&u2, &u3) && !uid_eq(&u3, &u4));
    CHECK((u1.bytes[6] >> 4) == 4);        /* a UUID v4 */
    CHECK((u1.bytes[8] & 0xC0) == 0x80);   /* RFC 4122 variant */
    CHECK(service_stats(s).pending_events == 4);

    snp_stored_event out, before;
    memset(&before, 0x5A, sizeof before);
    out = before;
    CHECK_STATUS(snp_service_peek(NULL, &out), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_peek(s, NULL), SNP_ERR_INVALID_ARGUMENT);

    CHECK_OK(snp_service_peek(s, &out));
    CHECK(out.kind == SNP_EVENT_QUEUEING);
    CHECK(out.name_len == 11 && strcmp(out.name, "Temperature") == 0);
    CHECK(out.args_len == 4 && memcmp(out.args, "21.5", 4) == 0);
    CHECK(out.client_id == 0);
    CHECK(uid_eq(&out.uid, &u1));
    CHECK_OK(snp_service_peek(s, &out)); /* the same one until acked */
    CHECK(uid_eq(&out.uid, &u1));

    CHECK_STATUS(snp_service_ack(NULL, &u1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack(s, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack(s, &u2), SNP_ERR_STATE); /* not the one in flight */
    CHECK(last_error_contains("refused"));
    snp_uuid random_uid;
    memset(&random_uid, 0x11, sizeof random_uid);
    CHECK_STATUS(snp_service_ack(s, &random_uid), SNP_ERR_STATE);
    CHECK(service_stats(s).pending_events == 4);
    CHECK_OK(snp_service_ack(s, &u1));
    CHECK_STATUS(snp_service_ack(s, &u1), SNP_ERR_STATE); /* stale: a repeated ack */
    CHECK(service_stats(s).pending_events == 3);

    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u2) && memcmp(out.args, "21.9", 4) == 0);
    CHECK_OK(snp_service_ack(s, &u2));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(out.kind == SNP_EVENT_PRIVATE && strcmp(out.name, "Alarm") == 0);
    CHECK(out.client_id == INT64_MIN);
    CHECK(uid_eq(&out.uid, &u3));
    CHECK_OK(snp_service_ack(s, &u3));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(out.kind == SNP_EVENT_REPLACING && out.client_id == 0);
    CHECK(uid_eq(&out.uid, &u4));
    CHECK_STATUS(snp_service_ack(s, &u3), SNP_ERR_STATE); /* late ack of an earlier event */
    CHECK_OK(snp_service_ack(s, &u4));

    /* Drained: SNP_EMPTY writes nothing and switches to cache mode. */
    out = before;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_OK(snp_service_mode(s, &mode));
    CHECK(mode == SNP_MODE_CACHE);
    CHECK(service_stats(s).mode == SNP_MODE_CACHE);

    /* Storage-mode operations in cache mode are state errors. */
    out = before;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_ERR_STATE);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK(last_error_contains("cache mode"));
    CHECK_STATUS(snp_service_ack(s, &u4), SNP_ERR_STATE);

    CHECK_STATUS(snp_service_set_storage_mode(NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_OK(snp_service_set_storage_mode(s));
    CHECK_OK(snp_service_mode(s, &mode));
    CHECK(mode == SNP_MODE_STORAGE);
    CHECK_STATUS(snp_service_ack(s, &u4), SNP_ERR_STATE); /* nothing pending */
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    snp_service_close(s);
}

/* Replacing events collapse in storage mode, except the one in flight. */
static void test_storage_mode_replacing(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_uuid u1, u2, u3, u4;
    snp_event open_e = make_event(SNP_EVENT_REPLACING, "Door", "open");
    snp_event closed_e = make_event(SNP_EVENT_REPLACING, "Door", "closed");
    snp_event ajar_e = make_event(SNP_EVENT_REPLACING, "Door", "ajar");
    snp_event cleared_e = make_event(SNP_EVENT_REPLACING_NULL, "Door", NULL);
    CHECK_OK(snp_service_raise(s, &open_e, &u1));
    CHECK_OK(snp_service_raise(s, &closed_e, &u2));
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events == 1 && st.superseded_events == 1);

    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u2) && out.args_len == 6);
    CHECK_OK(snp_service_raise(s, &ajar_e, &u3)); /* u2 is in flight: kept */
    CHECK(service_stats(s).pending_events == 2);
    CHECK_OK(snp_service_raise(s, &cleared_e, &u4)); /* supersedes u3, not u2 */
    st = service_stats(s);
    CHECK(st.pending_events == 2 && st.superseded_events == 2 && st.dropped_events == 0);
    CHECK_OK(snp_service_ack(s, &u2));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u4));
    CHECK(out.kind == SNP_EVENT_REPLACING_NULL && out.args_len == 0);
    CHECK_OK(snp_service_ack(s, &u4));
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    snp_service_close(s);
}

/* ----- cache mode ------------------------------------------------------ */

static void test_cache_mode(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_stored_event out, before;
    memset(&before, 0x5A, sizeof before);
    snp_uuid q1, q2, r1, r2, r3, rn, untouched_uid;

    /* Storage mode first: the cache-mode operations are state errors. */
    out = before;
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &out), SNP_ERR_STATE);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK(last_error_contains("storage mode"));
    memset(&untouched_uid, 0, sizeof untouched_uid);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &untouched_uid, &out),
                 SNP_ERR_STATE);
    CHECK(all_bytes(&out, sizeof out, 0x5A));

    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY); /* -> cache mode */

    snp_event t1 = make_event(SNP_EVENT_QUEUEING, "Temp", "1");
    snp_event t2 = make_event(SNP_EVENT_QUEUEING, "Temp", "2");
    snp_event l1 = make_event(SNP_EVENT_REPLACING, "Lamp", "on");
    snp_event l2 = make_event(SNP_EVENT_REPLACING, "Lamp", "dim");
    snp_event l3 = make_event(SNP_EVENT_REPLACING, "Lamp", "off");
    snp_event ln = make_event(SNP_EVENT_REPLACING_NULL, "Lamp", NULL);
    CHECK_OK(snp_service_raise(s, &t1, &q1));
    CHECK_OK(snp_service_raise(s, &t2, &q2));
    CHECK_OK(snp_service_raise(s, &l1, &r1));

    /* Argument errors. */
    CHECK_STATUS(snp_service_peek_name(NULL, SNP_EVENT_QUEUEING, "Temp", 4, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, NULL, 4, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 4, NULL),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, 3, "Temp", 4, &out), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, -1, "Temp", 4, &out), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 0, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "9Temp", 5, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    static char name257[257];
    memset(name257, 'n', sizeof name257);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, name257, 257, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", SIZE_MAX, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_ack_name(NULL, SNP_EVENT_QUEUEING, "Temp", 4, &q1, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, NULL, 4, &q1, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, NULL, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q1, NULL),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack_name(s, 0, "Temp", 4, &q1, &out), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp ", 5, &q1, &out),
                 SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK(service_stats(s).pending_events == 3);

    /* A Queueing pipeline. */
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Nothing", 7, &out), SNP_EMPTY);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_PRIVATE, "Temp", 4, &out), SNP_EMPTY);
    CHECK_OK(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &out));
    CHECK(uid_eq(&out.uid, &q1) && out.args[0] == '1');
    CHECK_OK(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &out));
    CHECK(uid_eq(&out.uid, &q1));
    out = before;
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q2, &out),
                 SNP_ERR_STATE); /* q2 is not in flight */
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Lamp", 4, &q1, &out),
                 SNP_ERR_STATE); /* nothing of that kind and name */
    CHECK_OK(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q1, &out));
    CHECK(uid_eq(&out.uid, &q2) && out.args[0] == '2'); /* the next one, now in flight */
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q1, &out),
                 SNP_ERR_STATE); /* stale */
    out = before;
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q2, &out), SNP_EMPTY);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q2, &out),
                 SNP_ERR_STATE); /* nothing pending */

    /* A Replacing pipeline: at most the one in flight and the newest. */
    CHECK_OK(snp_service_peek_name(s, SNP_EVENT_REPLACING, "Lamp", 4, &out));
    CHECK(uid_eq(&out.uid, &r1));
    CHECK_OK(snp_service_raise(s, &l2, &r2));
    CHECK_OK(snp_service_raise(s, &l3, &r3)); /* replaces r2, keeps r1 */
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events == 2 && st.superseded_events == 1);
    CHECK_OK(snp_service_ack_name(s, SNP_EVENT_REPLACING, "Lamp", 4, &r1, &out));
    CHECK(uid_eq(&out.uid, &r3) && out.args_len == 3 && memcmp(out.args, "off", 3) == 0);
    /* Replacing-null shares the Replacing pipeline of its name. */
    CHECK_OK(snp_service_raise(s, &ln, &rn));
    CHECK_OK(snp_service_ack_name(s, SNP_EVENT_REPLACING_NULL, "Lamp", 4, &r3, &out));
    CHECK(uid_eq(&out.uid, &rn) && out.kind == SNP_EVENT_REPLACING_NULL && out.args_len == 0);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_REPLACING, "Lamp", 4, &rn, &out), SNP_EMPTY);
    CHECK(service_stats(s).pending_events == 0);

    /* Back to storage mode: in-flight events are resent first. */
    CHECK_OK(snp_service_raise(s, &t1, &q1));
    CHECK_OK(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &out));
    CHECK_OK(snp_service_set_storage_mode(s));
    out = before;
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &out), SNP_ERR_STATE);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Temp", 4, &q1, &out),
                 SNP_ERR_STATE);
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &q1));
    CHECK_OK(snp_service_ack(s, &q1));
    snp_service_close(s);
}

/* ----- storage uid, reset, flush, invalidate (level 1) ----------------- */

static void test_uid_reset_flush(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_uuid uid, untouched, zero;
    memset(&untouched, 0xAB, sizeof untouched);
    memset(&zero, 0, sizeof zero);
    uid = untouched;
    CHECK_STATUS(snp_service_storage_uid(NULL, &uid), SNP_ERR_INVALID_ARGUMENT);
    CHECK(uid_eq(&uid, &untouched));
    CHECK_STATUS(snp_service_storage_uid(s, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_OK(snp_service_storage_uid(s, &uid));
    CHECK(!uid_eq(&uid, &zero) && !uid_eq(&uid, &untouched));
    snp_service_stats st = service_stats(s);
    CHECK(uid_eq(&st.storage_uid, &uid));

    snp_service *other = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_uuid other_uid;
    CHECK_OK(snp_service_storage_uid(other, &other_uid));
    CHECK(!uid_eq(&uid, &other_uid)); /* a new one per memory store */
    snp_service_close(other);

    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temp", "1");
    for (int i = 0; i < 3; i++) CHECK_OK(snp_service_raise(s, &e, NULL));

    uint64_t count = 12345;
    CHECK_STATUS(snp_service_invalidate_ancient(NULL, &count), SNP_ERR_INVALID_ARGUMENT);
    CHECK(count == 12345);
    CHECK_OK(snp_service_invalidate_ancient(s, &count));
    CHECK(count == 0); /* a memory store has no ancient data */
    CHECK_OK(snp_service_invalidate_ancient(s, NULL));
    CHECK(service_stats(s).pending_events == 3);

    CHECK_STATUS(snp_service_flush(NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_OK(snp_service_flush(s));

    CHECK_STATUS(snp_service_reset(NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(service_stats(s).pending_events == 3);
    CHECK_OK(snp_service_reset(s));
    st = service_stats(s);
    CHECK(st.pending_events == 0 && st.used_bytes == 0);
    snp_uuid after;
    CHECK_OK(snp_service_storage_uid(s, &after));
    CHECK(uid_eq(&after, &uid)); /* reset keeps the uid */
    snp_stored_event out;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    CHECK_OK(snp_service_reset(s)); /* in cache mode too */
    snp_service_close(s);
}

/* ----- stats ----------------------------------------------------------- */

static void test_stats(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temp", "21.5");
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_raise(s, &e, NULL));

    snp_service_stats st;
    memset(&st, 0xEE, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(snp_service_get_stats(NULL, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes((const unsigned char *)&st + 4, sizeof st - 4, 0xEE));
    CHECK_STATUS(snp_service_get_stats(s, NULL), SNP_ERR_INVALID_ARGUMENT);
    st.struct_size = 0;
    CHECK_STATUS(snp_service_get_stats(s, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes((const unsigned char *)&st + 4, sizeof st - 4, 0xEE));
    st.struct_size = 4; /* only the size field: nothing to write */
    CHECK_STATUS(snp_service_get_stats(s, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes((const unsigned char *)&st + 4, sizeof st - 4, 0xEE));

    st.struct_size = sizeof st;
    CHECK_OK(snp_service_get_stats(s, &st));
    CHECK(st.struct_size == sizeof st);
    CHECK(st.level == SNP_LEVEL_MEMORY);
    CHECK(st.mode == SNP_MODE_STORAGE);
    CHECK(st.pending_events == 2);
    /* A record: 32 bytes of header, 32 of fixed event fields, name, args,
     * rounded up to 8. */
    CHECK(st.used_bytes == 2 * ((32 + 40 + 4 + 4 + 7) / 8 * 8));
    CHECK(st.capacity_bytes == 16 * 1024);
    CHECK(st.dropped_events == 0 && st.rejected_events == 0 && st.superseded_events == 0);
    CHECK(st.invalidated_events == 0 && st.failures == 0 && st.events_lost == 0);
    snp_uuid uid;
    CHECK_OK(snp_service_storage_uid(s, &uid));
    CHECK(uid_eq(&st.storage_uid, &uid));

    /* An older caller's smaller struct: only that prefix is written. */
    const size_t prefix = offsetof(snp_service_stats, mode) + sizeof(int32_t);
    memset(&st, 0xEE, sizeof st);
    st.struct_size = (uint32_t)prefix;
    CHECK_OK(snp_service_get_stats(s, &st));
    CHECK(st.struct_size == prefix);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.mode == SNP_MODE_STORAGE);
    CHECK(all_bytes((const unsigned char *)&st + prefix, sizeof st - prefix, 0xEE));

    const size_t prefix2 = offsetof(snp_service_stats, used_bytes);
    memset(&st, 0xEE, sizeof st);
    st.struct_size = (uint32_t)prefix2;
    CHECK_OK(snp_service_get_stats(s, &st));
    CHECK(st.pending_events == 2);
    CHECK(all_bytes((const unsigned char *)&st + prefix2, sizeof st - prefix2, 0xEE));

    /* A newer caller's larger struct: the fields we know, nothing beyond. */
    struct {
        snp_service_stats known;
        unsigned char later_fields[40];
    } big;
    memset(&big, 0xEE, sizeof big);
    big.known.struct_size = sizeof big;
    CHECK_OK(snp_service_get_stats(s, &big.known));
    CHECK(big.known.struct_size == sizeof big);
    CHECK(big.known.pending_events == 2 && big.known.capacity_bytes == 16 * 1024);
    CHECK(all_bytes(big.later_fields, sizeof big.later_fields, 0xEE));
    snp_service_close(s);
}

/* ----- capacity: drop-oldest with the callback, reject-new ------------- */

static void test_capacity(void) {
    failures f;
    failures_init(&f);
    /* 100 bytes is raised to the 4 KiB minimum. */
    snp_service *s = open_memory(100, SNP_OVERFLOW_DROP_OLDEST, record_failure, &f);
    f.service = s;
    CHECK(service_stats(s).capacity_bytes == 4096);
    static uint8_t args[1000];
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Blob", NULL);
    e.args = args;
    e.args_len = sizeof args; /* 1072 bytes a record: three fit in 4096 */
    snp_uuid uids[6];
    for (int i = 0; i < 6; i++) {
        memset(args, 'a' + i, sizeof args);
        CHECK_OK(snp_service_raise(s, &e, &uids[i]));
        CHECK(f.calls == (i < 3 ? 0 : i - 2));
    }
    CHECK(f.by_kind[SNP_FAILURE_CAPACITY_DROP] == 3);
    CHECK(f.lost_by_kind[SNP_FAILURE_CAPACITY_DROP] == 3);
    CHECK(f.dropped_seen == 3); /* the callback's own call into the store */
    CHECK(f.bad_message == 0);
    CHECK(strstr(f.last_message, "Blob") != NULL);
    snp_service_stats st = service_stats(s);
    CHECK(st.pending_events == 3 && st.dropped_events == 3);
    CHECK(st.failures == 0 && st.events_lost == 0); /* drops are counted apart */
    CHECK(st.used_bytes <= st.capacity_bytes);
    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &uids[3]) && out.args[0] == 'd'); /* the oldest went */
    /* A bigger event drops as many as it needs. */
    static uint8_t big[2048];
    e.args = big;
    e.args_len = sizeof big;
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK(f.by_kind[SNP_FAILURE_CAPACITY_DROP] == 4);
    CHECK(f.lost_by_kind[SNP_FAILURE_CAPACITY_DROP] == 5); /* 3216 + 2120 > 4096: two go */
    CHECK(service_stats(s).dropped_events == 5);
    CHECK_STATUS(snp_service_ack(s, &uids[3]), SNP_ERR_STATE); /* in flight, but dropped */
    snp_service_close(s);

    /* Reject-new: the new event is refused, the stored ones stay. */
    failures_init(&f);
    s = open_memory(4096, SNP_OVERFLOW_REJECT_NEW, record_failure, &f);
    e.args = args;
    e.args_len = sizeof args;
    for (int i = 0; i < 3; i++) CHECK_OK(snp_service_raise(s, &e, &uids[i]));
    snp_uuid untouched, uid;
    memset(&untouched, 0xAB, sizeof untouched);
    uid = untouched;
    CHECK_STATUS(snp_service_raise(s, &e, &uid), SNP_ERR_STORAGE_FULL);
    CHECK(uid_eq(&uid, &untouched));
    CHECK(last_error_contains("4096"));
    CHECK_STATUS(snp_service_raise_with_uid(s, &e, &untouched), SNP_ERR_STORAGE_FULL);
    st = service_stats(s);
    CHECK(st.pending_events == 3 && st.rejected_events == 2 && st.dropped_events == 0);
    CHECK(f.by_kind[SNP_FAILURE_CAPACITY_DROP] == 0);
    snp_event small = make_event(SNP_EVENT_QUEUEING, "Small", "1");
    CHECK_OK(snp_service_raise(s, &small, NULL)); /* a small one still fits */
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &uids[0]));
    CHECK_OK(snp_service_ack(s, &uids[0]));
    CHECK_OK(snp_service_raise(s, &e, &uid)); /* room again */
    snp_service_close(s);
}

/* ----- pending events, for diagnostics ---------------------------------- */

typedef struct {
    snp_service *store;
    int count;
    snp_stored_event seen[8];
    uint64_t pending_seen_inside;
} pending_visit;

static void collect_pending(void *user_data, const snp_stored_event *event) {
    pending_visit *v = user_data;
    if (v->count < 8) {
        v->seen[v->count] = *event;
    }
    v->count++;
    /* The store may be called from the visit. */
    v->pending_seen_inside = service_stats(v->store).pending_events;
}

static void test_for_each_pending(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    pending_visit v;
    memset(&v, 0, sizeof v);
    v.store = s;
    CHECK_OK(snp_service_for_each_pending(s, collect_pending, &v));
    CHECK(v.count == 0);

    snp_uuid uids[4];
    snp_event a1 = make_event(SNP_EVENT_QUEUEING, "Alarm", "1");
    snp_event b = make_event(SNP_EVENT_REPLACING, "Level", "high");
    snp_event a2 = make_event(SNP_EVENT_QUEUEING, "Alarm", "2");
    snp_event c = make_event(SNP_EVENT_PRIVATE, "Note", "for 7");
    c.client_id = 7;
    CHECK_OK(snp_service_raise(s, &a1, &uids[0]));
    CHECK_OK(snp_service_raise(s, &b, &uids[1]));
    CHECK_OK(snp_service_raise(s, &a2, &uids[2]));
    CHECK_OK(snp_service_raise(s, &c, &uids[3]));
    snp_stored_event first;
    CHECK_OK(snp_service_peek(s, &first)); /* in flight: still listed */

    CHECK_OK(snp_service_for_each_pending(s, collect_pending, &v));
    CHECK(v.count == 4);
    CHECK(v.pending_seen_inside == 4);
    const char *names[4] = {"Alarm", "Level", "Alarm", "Note"};
    const char *args[4] = {"1", "high", "2", "for 7"};
    const int32_t kinds[4] = {SNP_EVENT_QUEUEING, SNP_EVENT_REPLACING, SNP_EVENT_QUEUEING,
                              SNP_EVENT_PRIVATE};
    for (int i = 0; i < 4; i++) {
        const snp_stored_event *e = &v.seen[i];
        CHECK(uid_eq(&e->uid, &uids[i]));
        CHECK(e->kind == kinds[i]);
        CHECK(e->name_len == strlen(names[i]) && strcmp(e->name, names[i]) == 0);
        CHECK(e->args_len == strlen(args[i]) && memcmp(e->args, args[i], e->args_len) == 0);
    }
    CHECK(v.seen[3].client_id == 7);

    /* Nothing changed: the same event is still the one to deliver. */
    snp_stored_event again;
    CHECK_OK(snp_service_peek(s, &again));
    CHECK(uid_eq(&again.uid, &first.uid) && uid_eq(&first.uid, &uids[0]));
    CHECK(service_stats(s).pending_events == 4);

    CHECK_STATUS(snp_service_for_each_pending(s, NULL, &v), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_service_for_each_pending(NULL, collect_pending, &v), SNP_ERR_INVALID_ARGUMENT);
    snp_service_close(s);
}

/* ----- last error message ---------------------------------------------- */

static void test_last_error_message(void) {
    snp_service *s = open_memory(0, SNP_OVERFLOW_DROP_OLDEST, NULL, NULL);
    static uint8_t args[2049];
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Temperature", NULL);
    e.args = args;
    e.args_len = sizeof args;
    CHECK_STATUS(snp_service_raise(s, &e, NULL), SNP_ERR_INVALID_ARGUMENT);

    const size_t full = snp_last_error_message(NULL, 0);
    CHECK(full > 20);
    CHECK(snp_last_error_message(NULL, 100) == full);
    char whole[4096];
    memset(whole, 0x7F, sizeof whole);
    CHECK(snp_last_error_message(whole, sizeof whole) == full);
    CHECK(strlen(whole) == full);
    CHECK(strstr(whole, "2049") != NULL && strstr(whole, "2048") != NULL);
    CHECK(strstr(whole, "Temperature") != NULL);
    CHECK((unsigned char)whole[full + 1] == 0x7F); /* nothing past the NUL */
    /* The message does not repeat the status's text ("invalid argument"):
     * the README prints both. */
    CHECK(strstr(whole, snp_status_str(SNP_ERR_INVALID_ARGUMENT)) == NULL);

    char small[16];
    memset(small, 0x7F, sizeof small);
    CHECK(snp_last_error_message(small, 8) == full); /* the full length */
    CHECK(strlen(small) == 7 && memcmp(small, whole, 7) == 0);
    CHECK(all_bytes(small + 8, sizeof small - 8, 0x7F));

    char one[2] = {'x', 'y'};
    CHECK(snp_last_error_message(one, 1) == full);
    CHECK(one[0] == 0 && one[1] == 'y');
    one[0] = 'x';
    CHECK(snp_last_error_message(one, 0) == full); /* nothing written */
    CHECK(one[0] == 'x');

    char exact[4096];
    memset(exact, 0x7F, sizeof exact);
    CHECK(snp_last_error_message(exact, full + 1) == full); /* just fits */
    CHECK(strcmp(exact, whole) == 0);
    memset(exact, 0x7F, sizeof exact);
    CHECK(snp_last_error_message(exact, full) == full); /* one byte short */
    CHECK(strlen(exact) == full - 1 && memcmp(exact, whole, full - 1) == 0);

    /* Kept across successful calls, replaced by the next failure. */
    snp_event ok = make_event(SNP_EVENT_QUEUEING, "Temperature", "1");
    CHECK_OK(snp_service_raise(s, &ok, NULL));
    CHECK_OK(snp_service_flush(s));
    CHECK(snp_last_error_message(exact, sizeof exact) == full);
    CHECK(strcmp(exact, whole) == 0);
    CHECK_STATUS(snp_service_raise(NULL, &ok, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(snp_last_error_message(exact, sizeof exact) != full || strcmp(exact, whole) != 0);
    CHECK(strstr(exact, "service") != NULL);
    snp_service_close(s);
}

/* ----- level 2: a journal file ----------------------------------------- */

static snp_service_options file_options(const char *dir, const snp_uuid *service_uid) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.service_uid = *service_uid;
    return o;
}

static void test_level2(const char *dir) {
    snp_uuid service_uid;
    for (int i = 0; i < 16; i++) service_uid.bytes[i] = (uint8_t)(0x10 * (i % 16) + i);
    snp_service_options o = file_options(dir, &service_uid);
    failures f;
    failures_init(&f);
    o.on_failure = record_failure;
    o.user_data = &f;

    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    snp_service_stats st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.capacity_bytes == 1024 * 1024);
    CHECK(st.pending_events == 0);
    snp_uuid storage_uid;
    CHECK_OK(snp_service_storage_uid(s, &storage_uid));

    char text[37], path[4096];
    uuid_text(&service_uid, text);
    snprintf(path, sizeof path, "%s/softnet.service.persistence_%s.ssp", dir, text);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && S_ISREG(sb.st_mode));

    /* A second open of the same journal is refused, naming the file. */
    snp_service *second = SENTINEL_SERVICE;
    CHECK_STATUS(snp_service_open(&o, &second), SNP_ERR_LOCKED);
    CHECK(second == SENTINEL_SERVICE);
    CHECK(last_error_contains("softnet.service.persistence_"));
    CHECK(last_error_contains(text));
    /* Another service uid in the same directory is another journal. */
    snp_uuid other_uid = service_uid;
    other_uid.bytes[15] ^= 0xFF;
    snp_service_options other = file_options(dir, &other_uid);
    other.durability = SNP_DURABILITY_BATCH;
    other.batch_max_ops = 2;
    other.batch_max_delay_ms = 5;
    snp_service *s2 = NULL;
    CHECK_OK(snp_service_open(&other, &s2));

    static uint8_t binary[2048];
    for (size_t i = 0; i < sizeof binary; i++) binary[i] = (uint8_t)(i * 7);
    snp_event e1 = make_event(SNP_EVENT_QUEUEING, "Temperature", "21.5");
    snp_event e2 = make_event(SNP_EVENT_PRIVATE, "Alarm", NULL);
    e2.args = binary;
    e2.args_len = sizeof binary;
    e2.client_id = INT64_MAX;
    snp_event e3 = make_event(SNP_EVENT_REPLACING, "Door", "open");
    snp_event e4 = make_event(SNP_EVENT_REPLACING, "Door", "closed");
    snp_uuid u1, u2;
    CHECK_OK(snp_service_raise(s, &e1, &u1));
    CHECK_OK(snp_service_raise(s, &e2, &u2));
    CHECK_OK(snp_service_raise(s, &e3, NULL));
    CHECK_OK(snp_service_raise(s, &e4, NULL)); /* supersedes e3 */
    CHECK(service_stats(s).pending_events == 3);
    CHECK_OK(snp_service_raise(s2, &e1, NULL));
    CHECK_OK(snp_service_flush(s2));
    snp_service_close(s2);
    snp_service_close(s);

    /* Reopen: the events are there, in order, with their uids. */
    s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.pending_events == 3);
    CHECK(uid_eq(&st.storage_uid, &storage_uid)); /* the file keeps its uid */
    snp_stored_event out;
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u1) && strcmp(out.name, "Temperature") == 0);
    CHECK_OK(snp_service_ack(s, &u1));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u2) && out.kind == SNP_EVENT_PRIVATE);
    CHECK(out.client_id == INT64_MAX);
    CHECK(out.args_len == sizeof binary && memcmp(out.args, binary, sizeof binary) == 0);
    snp_service_close(s); /* u2 in flight, not acked: still pending */

    /* Ancient data: what was in the file at open, not what was raised since. */
    s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(service_stats(s).pending_events == 2);
    CHECK_OK(snp_service_peek(s, &out)); /* the one in flight is sent again */
    CHECK(uid_eq(&out.uid, &u2));
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u2));
    snp_uuid u5;
    snp_event e5 = make_event(SNP_EVENT_QUEUEING, "Temperature", "22.0");
    CHECK_OK(snp_service_raise(s, &e5, &u5));
    uint64_t count = 0;
    CHECK_OK(snp_service_invalidate_ancient(s, &count));
    CHECK(count == 2);
    st = service_stats(s);
    CHECK(st.pending_events == 1 && st.invalidated_events == 2);
    CHECK_OK(snp_service_invalidate_ancient(s, &count));
    CHECK(count == 0);
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u5));
    snp_service_close(s);

    /* The other journal reopens with its event too. */
    s2 = NULL;
    CHECK_OK(snp_service_open(&other, &s2));
    CHECK(service_stats(s2).pending_events == 1);
    CHECK_OK(snp_service_reset(s2));
    snp_service_close(s2);
    s2 = NULL;
    CHECK_OK(snp_service_open(&other, &s2));
    CHECK(service_stats(s2).pending_events == 0); /* reset reached the file */
    snp_service_close(s2);

    CHECK(f.calls == 0); /* nothing went wrong */

    /* Level 2 capacity: raised to the 8 KiB minimum; reject-new. */
    snp_uuid full_uid = service_uid;
    full_uid.bytes[0] ^= 0xFF;
    snp_service_options fo = file_options(dir, &full_uid);
    fo.file_capacity = 100;
    fo.overflow = SNP_OVERFLOW_REJECT_NEW;
    fo.durability = SNP_DURABILITY_NONE;
    s = NULL;
    CHECK_OK(snp_service_open(&fo, &s));
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.capacity_bytes == 8192);
    snp_event big = make_event(SNP_EVENT_QUEUEING, "Big", NULL);
    big.args = binary;
    big.args_len = sizeof binary; /* 2120 bytes a record: three fit in 8192 */
    for (int i = 0; i < 3; i++) CHECK_OK(snp_service_raise(s, &big, NULL));
    snp_uuid untouched, uid;
    memset(&untouched, 0xAB, sizeof untouched);
    uid = untouched;
    CHECK_STATUS(snp_service_raise(s, &big, &uid), SNP_ERR_STORAGE_FULL);
    CHECK(uid_eq(&uid, &untouched));
    st = service_stats(s);
    CHECK(st.pending_events == 3 && st.rejected_events == 1);
    snp_service_close(s);
    s = NULL;
    CHECK_OK(snp_service_open(&fo, &s));
    CHECK(service_stats(s).pending_events == 3);
    snp_service_close(s);

    /* A damaged journal: set aside (kept as evidence), reported, never an
     * invented event; the store continues at level 2 on a new journal. */
    snp_uuid junk_uid = service_uid;
    junk_uid.bytes[1] ^= 0xFF;
    uuid_text(&junk_uid, text);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "softnet.service.persistence_%s", text);
    snprintf(path, sizeof path, "%s/%s.ssp", dir, prefix);
    write_junk(path, 16384, 0xAB);
    snp_service_options jo = file_options(dir, &junk_uid);
    failures_init(&f);
    jo.on_failure = record_failure;
    jo.user_data = &f;
    s = NULL;
    CHECK_OK(snp_service_open(&jo, &s));
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.pending_events == 0);
    CHECK(f.by_kind[SNP_FAILURE_CORRUPTION] >= 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 0);
    CHECK(st.failures == (uint64_t)f.calls);
    CHECK(count_files(dir, prefix) >= 2); /* the new journal and the one set aside */
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
    CHECK_OK(snp_service_set_storage_mode(s));
    CHECK_OK(snp_service_raise(s, &e1, &u1));
    snp_service_close(s);
    failures_init(&f);
    s = NULL;
    CHECK_OK(snp_service_open(&jo, &s));
    CHECK(service_stats(s).pending_events == 1 && f.calls == 0);
    CHECK_OK(snp_service_peek(s, &out));
    CHECK(uid_eq(&out.uid, &u1));
    snp_service_close(s);

    /* Another service's journal under this service's name: foreign, set
     * aside; its events are not this service's to send. */
    snp_uuid foreign_uid = service_uid;
    foreign_uid.bytes[2] ^= 0xFF;
    uuid_text(&full_uid, text);
    char from[4096];
    snprintf(from, sizeof from, "%s/softnet.service.persistence_%s.ssp", dir, text);
    uuid_text(&foreign_uid, text);
    snprintf(path, sizeof path, "%s/softnet.service.persistence_%s.ssp", dir, text);
    copy_file(from, path); /* holds 3 pending events of full_uid */
    snp_service_options fgo = file_options(dir, &foreign_uid);
    failures_init(&f);
    fgo.on_failure = record_failure;
    fgo.user_data = &f;
    s = NULL;
    CHECK_OK(snp_service_open(&fgo, &s));
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_FILE && st.pending_events == 0);
    CHECK(f.by_kind[SNP_FAILURE_CORRUPTION] >= 1);
    snp_service_close(s);

    /* A journal that cannot be created: the store starts at level 1 and
     * says so through the callback. */
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/no/such/directory", dir);
    snp_service_options mo = file_options(missing, &service_uid);
    failures_init(&f);
    mo.on_failure = record_failure;
    mo.user_data = &f;
    s = NULL;
    CHECK_OK(snp_service_open(&mo, &s));
    st = service_stats(s);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1);
    CHECK(st.capacity_bytes == 16 * 1024);
    CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(strstr(f.last_message, "no/such/directory") != NULL);
    CHECK_OK(snp_service_raise(s, &e1, NULL)); /* and it works */
    snp_service_close(s);
}

int main(void) {
    char dir[] = "/tmp/snp_test_service_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    test_versions();
    test_status_str();
    test_options_init();
    test_open_errors(dir);
    test_raise_errors();
    test_huge_lengths();
    test_ack_name_in_place();
    test_storage_mode();
    test_storage_mode_replacing();
    test_cache_mode();
    test_uid_reset_flush();
    test_stats();
    test_capacity();
    test_for_each_pending();
    test_last_error_message();
    test_level2(dir);

    remove_dir(dir);
    CHECK_DONE("service");
    return 0;
}
