/* The client store through the C ABI: every snp_client_* function, every
 * error path, level 1 and level 2 (a file in a mkdtemp directory). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "helpers.h"

/* ----- helpers ------------------------------------------------------- */

static snp_client *open_memory(void) {
    snp_client_options o;
    snp_client_options_init(&o);
    snp_client *c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    CHECK(c != NULL);
    return c;
}

static void put_id(snp_client *c, const char *name, int64_t id) {
    CHECK_OK(snp_client_put(c, name, strlen(name), id));
}

static bool is_dup(const snp_client *c, const char *name, int64_t id) {
    bool dup = false;
    CHECK_OK(snp_client_is_duplicate(c, name, strlen(name), id, &dup));
    return dup;
}

static int file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* What snp_client_for_each visited. */
typedef struct visits {
    snp_client *client; /* to call back into the store from the visitor */
    int count;
    char names[16][257];
    int64_t ids[16];
    int lookups_ok;
} visits;

static void visit(void *user_data, const char *name, size_t name_len, int64_t id) {
    visits *v = user_data;
    if (v->count < 16 && name_len <= 256) {
        memcpy(v->names[v->count], name, name_len); /* not NUL-terminated */
        v->names[v->count][name_len] = 0;
        v->ids[v->count] = id;
    }
    v->count++;
    if (v->client) {
        /* The visitor may call the store. */
        int64_t stored = UNTOUCHED_ID;
        if (snp_client_get(v->client, name, name_len, &stored) == SNP_OK && stored == id)
            v->lookups_ok++;
    }
}

/* ----- options and open ------------------------------------------------ */

static void test_options_init(void) {
    snp_client_options_init(NULL); /* ignored */
    snp_client_options o;
    memset(&o, 0xA5, sizeof o);
    snp_client_options_init(&o);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.level == SNP_LEVEL_MEMORY);
    CHECK(o.directory == NULL && o.server_address == NULL && o.client_key == NULL);
    CHECK(o.durability == SNP_DURABILITY_SYNC);
    CHECK(o.batch_max_ops == 64 && o.batch_max_delay_ms == 100);
    CHECK(o.on_failure == NULL && o.user_data == NULL);
}

static void expect_open_fails(const snp_client_options *o, snp_status expected) {
    snp_client *c = SENTINEL_CLIENT;
    CHECK_STATUS(snp_client_open(o, &c), expected);
    CHECK(c == SENTINEL_CLIENT);
    CHECK(snp_last_error_message(NULL, 0) > 0);
}

static snp_client_options file_options(const char *dir, const char *server, const char *key) {
    snp_client_options o;
    snp_client_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.server_address = server;
    o.client_key = key;
    return o;
}

static void test_open_errors(const char *dir) {
    snp_client_options o;
    snp_client *c = SENTINEL_CLIENT;
    CHECK_STATUS(snp_client_open(NULL, &c), SNP_ERR_INVALID_ARGUMENT);
    CHECK(c == SENTINEL_CLIENT);
    snp_client_options_init(&o);
    CHECK_STATUS(snp_client_open(&o, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("out_client"));

    snp_client_options_init(&o);
    o.struct_size = 0;
    expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("struct_size"));

    /* The oldest layout ends before open_policy: a struct_size below it
     * would cut fields (half a function pointer), so it is refused, with a
     * message saying how to set it. */
    const size_t too_small[] = {4, offsetof(snp_client_options, durability),
                                offsetof(snp_client_options, on_failure) + 4,
                                offsetof(snp_client_options, user_data),
                                offsetof(snp_client_options, open_policy) - 1};
    for (size_t i = 0; i < sizeof too_small / sizeof too_small[0]; i++) {
        snp_client_options_init(&o);
        o.struct_size = (uint32_t)too_small[i];
        expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("sizeof(snp_client_options)"));
        CHECK(last_error_contains("snp_client_options_init"));
    }

    /* A newer caller's larger struct: the fields of this header are read,
     * the later ones (garbage here) are not. */
    struct {
        snp_client_options known;
        unsigned char later_fields[32];
    } newer;
    memset(&newer, 0xEE, sizeof newer);
    snp_client_options_init(&newer.known);
    newer.known.struct_size = sizeof newer;
    c = NULL;
    CHECK_OK(snp_client_open(&newer.known, &c));
    CHECK(client_stats(c).level == SNP_LEVEL_MEMORY);
    snp_client_close(c);
    c = SENTINEL_CLIENT;

    const int32_t bad_levels[] = {0, 3, -1};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        o = file_options(dir, "broker", "key");
        o.level = bad_levels[i];
        expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    }
    const int32_t bad_durability[] = {3, -1};
    for (size_t i = 0; i < sizeof bad_durability / sizeof bad_durability[0]; i++) {
        snp_client_options_init(&o);
        o.durability = bad_durability[i];
        expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
        o = file_options(dir, "broker", "key");
        o.durability = bad_durability[i];
        expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    }

    /* Level 2 needs all three strings. */
    o = file_options(NULL, "broker", "key");
    expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("directory"));
    o = file_options(dir, NULL, "key");
    expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("server_address"));
    o = file_options(dir, "broker", NULL);
    expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("client_key"));

    /* Characters that cannot be part of the file name. */
    const char *bad_servers[] = {"",     "a/b",  "a b", "a*b",  "a?b",     "a\"b",
                                 "a<b",  "a>b",  "a|b", "a\\b", "a\tb",    "caf\xc3\xa9",
                                 "\xff"};
    for (size_t i = 0; i < sizeof bad_servers / sizeof bad_servers[0]; i++) {
        o = file_options(dir, bad_servers[i], "key");
        expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    }
    const char *bad_keys[] = {"", "k:1", "k/1", "k 1", "k*", "..\\k", "k\n"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        o = file_options(dir, "broker", bad_keys[i]);
        expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    }
    static char long_key[202];
    memset(long_key, 'k', 201);
    long_key[201] = 0;
    o = file_options(dir, "broker", long_key);
    expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    /* Each part fits, but the file name (with room for the suffixes of
     * temporary and set-aside copies) would not. */
    static char server150[151], key100[101];
    memset(server150, 's', 150);
    memset(key100, 'k', 100);
    o = file_options(dir, server150, key100);
    expect_open_fails(&o, SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("file name"));

    /* None of the refused opens left a file behind. */
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) entries++;
    closedir(d);
    CHECK(entries == 0);

    /* A missing directory: level 1 by default (also for a caller built
     * with the header before open_policy), SNP_ERR_IO when strict. */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/not-there", dir);
    struct {
        snp_client_options known;
        unsigned char after[16];
    } older;
    memset(&older, 0xEE, sizeof older);
    snp_client_options_init(&older.known);
    older.known.struct_size = (uint32_t)offsetof(snp_client_options, open_policy);
    memset(&older.known.open_policy, 0xEE, sizeof older.known.open_policy);
    older.known.level = SNP_LEVEL_FILE;
    older.known.directory = missing;
    older.known.server_address = "broker";
    older.known.client_key = "strict";
    c = NULL;
    CHECK_OK(snp_client_open(&older.known, &c));
    snp_client_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    CHECK_OK(snp_client_get_stats(c, &st));
    CHECK(st.level == SNP_LEVEL_MEMORY);
    snp_client_close(c);

    snp_client_options_init(&o);
    CHECK(o.open_policy == SNP_OPEN_FALLBACK);
    o.level = SNP_LEVEL_FILE;
    o.directory = missing;
    o.server_address = "broker";
    o.client_key = "strict";
    o.open_policy = SNP_OPEN_STRICT;
    expect_open_fails(&o, SNP_ERR_IO);
    CHECK(last_error_contains("not-there"));

    snp_client_close(NULL); /* fine */
}

/* ----- get, put, is_duplicate ------------------------------------------ */

static void test_get_put(void) {
    snp_client *c = open_memory();
    int64_t id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(c, "Temp", 4, &id), SNP_EMPTY);
    CHECK(id == UNTOUCHED_ID); /* nothing written */

    const int64_t values[] = {INT64_MIN, INT64_MAX, 0, -1, 1, INT64_C(2147483648),
                              INT64_C(4294967301), INT64_MIN + 1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        put_id(c, "Temp", values[i]);
        CHECK(get_id(c, "Temp") == values[i]);
        CHECK(is_dup(c, "Temp", values[i]));
        CHECK(!is_dup(c, "Temp", values[i] ^ 1));
    }
    put_id(c, "Door", 7);
    CHECK(get_id(c, "Door") == 7 && get_id(c, "Temp") == INT64_MIN + 1);
    CHECK(!is_dup(c, "Unknown", 0));
    CHECK(!is_dup(c, "Unknown", 7));

    /* Names: case-sensitive, exact length (not NUL-terminated). */
    CHECK_STATUS(snp_client_get(c, "door", 4, &id), SNP_EMPTY);
    CHECK_OK(snp_client_put(c, "DoorXYZ", 4, 8)); /* "Door" */
    CHECK(get_id(c, "Door") == 8);
    static char name256[257];
    memset(name256, 'n', 256);
    CHECK_OK(snp_client_put(c, name256, 256, 256));
    CHECK_OK(snp_client_get(c, name256, 256, &id));
    CHECK(id == 256);
    CHECK_OK(snp_client_put(c, "Zz09_ .$*+()#@%&=':^[]-/!", 25, 1));

    /* NULL and bad arguments: outputs untouched. */
    id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(NULL, "Temp", 4, &id), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("client"));
    CHECK_STATUS(snp_client_get(c, NULL, 4, &id), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_get(c, "Temp", 4, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_get(c, "\xff\xfe", 2, &id), SNP_ERR_INVALID_ARGUMENT);
    CHECK(id == UNTOUCHED_ID);

    CHECK_STATUS(snp_client_put(NULL, "Temp", 4, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_put(c, NULL, 4, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_put(c, "Temp", 0, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_put(c, name256, 257, 1), SNP_ERR_INVALID_ARGUMENT); /* 257 'n' */
    CHECK(last_error_contains("256"));
    const char *bad_names[] = {"1abc", "_abc", " abc", "abc ", "a  b", "a\tb", "a~b",
                               "a,b",  "a{b",  "a?b",  "Temp\xc3\xa9", "\xff"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        CHECK_STATUS(snp_client_put(c, bad_names[i], strlen(bad_names[i]), 1),
                     SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_put(c, "a\0b", 3, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_put(c, "Temp", SIZE_MAX, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_get(c, "Temp", SIZE_MAX, &id), SNP_ERR_INVALID_ARGUMENT);
    CHECK(get_id(c, "Temp") == INT64_MIN + 1); /* unchanged by the refusals */
    CHECK(client_stats(c).subscriptions == 4);

    bool dup = true;
    CHECK_STATUS(snp_client_is_duplicate(NULL, "Temp", 4, 1, &dup), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_is_duplicate(c, NULL, 4, 1, &dup), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_is_duplicate(c, "Temp", 4, 1, NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_is_duplicate(c, "\xff", 1, 1, &dup), SNP_ERR_INVALID_ARGUMENT);
    CHECK(dup == true); /* untouched */
    snp_client_close(c);
}

/* ----- lengths are checked before names are read ------------------------ */

/* Huge lengths with a small heap buffer: refused with a message naming the
 * field and the limit, before a single byte past the buffer is read (ASan
 * and valgrind would see it); outputs untouched. */
static void test_huge_lengths(void) {
    snp_client *c = open_memory();
    char *name = malloc(4);
    CHECK(name != NULL);
    memcpy(name, "Temp", 4);
    CHECK_OK(snp_client_put(c, name, 4, 42));
    const size_t huge[] = {SNP_MAX_NAME_LEN + 1, 4096, (size_t)UINT32_MAX,
                           (size_t)1 << (sizeof(size_t) > 4 ? 32 : 31), SIZE_MAX / 2,
                           SIZE_MAX / 2 + 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        int64_t id = UNTOUCHED_ID;
        CHECK_STATUS(snp_client_get(c, name, huge[i], &id), SNP_ERR_INVALID_ARGUMENT);
        CHECK(id == UNTOUCHED_ID);
        CHECK(last_error_contains("name_len") && last_error_contains("SNP_MAX_NAME_LEN (256)"));
        CHECK_STATUS(snp_client_put(c, name, huge[i], 1), SNP_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("name_len") && last_error_contains("SNP_MAX_NAME_LEN (256)"));
        bool dup = true;
        CHECK_STATUS(snp_client_is_duplicate(c, name, huge[i], 42, &dup),
                     SNP_ERR_INVALID_ARGUMENT);
        CHECK(dup == true);
        CHECK(last_error_contains("name_len") && last_error_contains("SNP_MAX_NAME_LEN (256)"));
    }
    int64_t id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(c, name, 0, &id), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("name_len is 0"));
    CHECK_STATUS(snp_client_put(c, name, 0, 1), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("name_len is 0"));
    bool dup = true;
    CHECK_STATUS(snp_client_is_duplicate(c, name, 0, 42, &dup), SNP_ERR_INVALID_ARGUMENT);
    CHECK(id == UNTOUCHED_ID && dup == true);
    CHECK(get_id(c, "Temp") == 42 && client_stats(c).subscriptions == 1);
    free(name);
    snp_client_close(c);
}

/* Inputs and outputs in the same memory: the name is copied before the
 * output is written. */
static void test_overlap(void) {
    snp_client *c = open_memory();
    union {
        char name[8];
        int64_t id;
        bool dup;
    } *both = malloc(sizeof *both);
    CHECK(both != NULL);
    memcpy(both->name, "Abcdefg", 8);
    CHECK_OK(snp_client_put(c, both->name, 7, 77));
    CHECK_OK(snp_client_get(c, both->name, 7, &both->id));
    CHECK(both->id == 77);
    memcpy(both->name, "Abcdefg", 8);
    CHECK_OK(snp_client_is_duplicate(c, both->name, 7, 77, &both->dup));
    CHECK(both->dup == true);
    free(both);
    snp_client_close(c);
}

/* ----- for_each, reset, flush ------------------------------------------ */

static void test_for_each_reset_flush(void) {
    snp_client *c = open_memory();
    visits v;
    memset(&v, 0, sizeof v);
    CHECK_OK(snp_client_for_each(c, visit, &v));
    CHECK(v.count == 0);

    put_id(c, "Zeta", 26);
    put_id(c, "alpha", -1);
    put_id(c, "Beta", INT64_MAX);
    put_id(c, "Alpha", INT64_MIN);
    put_id(c, "beta2", 0);
    put_id(c, "Beta", 2); /* overwrites */

    memset(&v, 0, sizeof v);
    v.client = c;
    CHECK_OK(snp_client_for_each(c, visit, &v));
    CHECK(v.count == 5 && v.lookups_ok == 5);
    /* Name order (bytes): upper case before lower case. */
    const char *order[] = {"Alpha", "Beta", "Zeta", "alpha", "beta2"};
    const int64_t ids[] = {INT64_MIN, 2, 26, -1, 0};
    for (int i = 0; i < 5; i++) {
        CHECK(strcmp(v.names[i], order[i]) == 0);
        CHECK(v.ids[i] == ids[i]);
    }

    memset(&v, 0, sizeof v);
    CHECK_STATUS(snp_client_for_each(NULL, visit, &v), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_for_each(c, NULL, &v), SNP_ERR_INVALID_ARGUMENT);
    CHECK(last_error_contains("visit"));
    CHECK(v.count == 0);
    CHECK_OK(snp_client_for_each(c, visit, &v)); /* a valid call visits all five */
    CHECK(v.count == 5);

    CHECK_STATUS(snp_client_flush(NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK_OK(snp_client_flush(c));

    CHECK_STATUS(snp_client_reset(NULL), SNP_ERR_INVALID_ARGUMENT);
    CHECK(client_stats(c).subscriptions == 5);
    CHECK_OK(snp_client_reset(c));
    CHECK(client_stats(c).subscriptions == 0);
    int64_t id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(c, "Zeta", 4, &id), SNP_EMPTY);
    CHECK(id == UNTOUCHED_ID);
    memset(&v, 0, sizeof v);
    CHECK_OK(snp_client_for_each(c, visit, &v));
    CHECK(v.count == 0);
    put_id(c, "Zeta", 1); /* usable after a reset */
    CHECK(get_id(c, "Zeta") == 1);
    snp_client_close(c);
}

/* ----- stats ----------------------------------------------------------- */

static void test_stats(void) {
    snp_client *c = open_memory();
    put_id(c, "A", 1);
    put_id(c, "B", 2);
    snp_client_stats st;
    memset(&st, 0xEE, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(snp_client_get_stats(NULL, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(snp_client_get_stats(c, NULL), SNP_ERR_INVALID_ARGUMENT);
    st.struct_size = 0;
    CHECK_STATUS(snp_client_get_stats(c, &st), SNP_ERR_INVALID_ARGUMENT);
    st.struct_size = 4;
    CHECK_STATUS(snp_client_get_stats(c, &st), SNP_ERR_INVALID_ARGUMENT);
    CHECK(all_bytes((const unsigned char *)&st + 4, sizeof st - 4, 0xEE));

    st.struct_size = sizeof st;
    CHECK_OK(snp_client_get_stats(c, &st));
    CHECK(st.struct_size == sizeof st);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.subscriptions == 2 && st.failures == 0);

    const size_t prefix = offsetof(snp_client_stats, level) + sizeof(int32_t);
    memset(&st, 0xEE, sizeof st);
    st.struct_size = (uint32_t)prefix;
    CHECK_OK(snp_client_get_stats(c, &st));
    CHECK(st.struct_size == prefix && st.level == SNP_LEVEL_MEMORY);
    CHECK(all_bytes((const unsigned char *)&st + prefix, sizeof st - prefix, 0xEE));

    const size_t prefix2 = offsetof(snp_client_stats, failures);
    memset(&st, 0xEE, sizeof st);
    st.struct_size = (uint32_t)prefix2;
    CHECK_OK(snp_client_get_stats(c, &st));
    CHECK(st.subscriptions == 2);
    CHECK(all_bytes((const unsigned char *)&st + prefix2, sizeof st - prefix2, 0xEE));

    struct {
        snp_client_stats known;
        unsigned char later_fields[24];
    } big;
    memset(&big, 0xEE, sizeof big);
    big.known.struct_size = sizeof big;
    CHECK_OK(snp_client_get_stats(c, &big.known));
    CHECK(big.known.struct_size == sizeof big && big.known.subscriptions == 2);
    CHECK(all_bytes(big.later_fields, sizeof big.later_fields, 0xEE));
    snp_client_close(c);
}

/* ----- level 2: a file --------------------------------------------------- */

static void test_level2(const char *dir) {
    failures f;
    failures_init(&f);
    snp_client_options o = file_options(dir, "fd00::1", "gateway-7");
    o.on_failure = record_failure;
    o.user_data = &f;
    snp_client *c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    CHECK(client_stats(c).level == SNP_LEVEL_FILE);
    /* ':' in an IPv6 server address is written %3A in the file name. */
    CHECK(file_exists(dir, "softnet.client.persistence_fd00%3A%3A1_gateway-7.scp"));

    /* A second open of the same file is refused, naming it. */
    snp_client *second = SENTINEL_CLIENT;
    CHECK_STATUS(snp_client_open(&o, &second), SNP_ERR_LOCKED);
    CHECK(second == SENTINEL_CLIENT);
    CHECK(last_error_contains("softnet.client.persistence_fd00%3A%3A1_gateway-7.scp"));

    /* A bracketed address with a port; another key is another file. */
    snp_client_options o2 = file_options(dir, "[fe80::1]:7000", "gateway-8");
    o2.durability = SNP_DURABILITY_BATCH;
    o2.batch_max_ops = 3;
    o2.batch_max_delay_ms = 10;
    snp_client *c2 = NULL;
    CHECK_OK(snp_client_open(&o2, &c2));
    CHECK(file_exists(dir, "softnet.client.persistence_%5Bfe80%3A%3A1%5D%3A7000_gateway-8.scp"));
    for (int i = 0; i < 10; i++) put_id(c2, "Counter", i);
    snp_client_close(c2);

    put_id(c, "Temperature", INT64_MIN);
    put_id(c, "Door", INT64_MAX);
    put_id(c, "Big", INT64_C(2147483648)); /* the Java format broke ids >= 2^31 */
    put_id(c, "Bigger", INT64_C(81985529216486895));
    put_id(c, "Minus", -1);
    put_id(c, "Minus", -2);
    CHECK_OK(snp_client_flush(c));
    snp_client_close(c);

    c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    CHECK(client_stats(c).level == SNP_LEVEL_FILE && client_stats(c).subscriptions == 5);
    CHECK(get_id(c, "Temperature") == INT64_MIN);
    CHECK(get_id(c, "Door") == INT64_MAX);
    CHECK(get_id(c, "Big") == INT64_C(2147483648));
    CHECK(get_id(c, "Bigger") == INT64_C(81985529216486895));
    CHECK(get_id(c, "Minus") == -2);
    CHECK(is_dup(c, "Door", INT64_MAX) && !is_dup(c, "Door", INT64_MAX - 1));
    visits v;
    memset(&v, 0, sizeof v);
    CHECK_OK(snp_client_for_each(c, visit, &v));
    CHECK(v.count == 5);
    CHECK(strcmp(v.names[0], "Big") == 0 && strcmp(v.names[4], "Temperature") == 0);

    /* reset reaches the file. */
    CHECK_OK(snp_client_reset(c));
    put_id(c, "After", 42);
    snp_client_close(c);
    c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    CHECK(client_stats(c).subscriptions == 1 && get_id(c, "After") == 42);
    int64_t id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(c, "Door", 4, &id), SNP_EMPTY);
    snp_client_close(c);

    c2 = NULL;
    CHECK_OK(snp_client_open(&o2, &c2));
    CHECK(get_id(c2, "Counter") == 9);
    snp_client_close(c2);
    CHECK(f.calls == 0);

    /* A long file name that still fits (27 + 100 + 1 + 80 + 4 = 212 bytes). */
    static char server100[101], key80[81];
    memset(server100, 's', 100);
    memset(key80, 'k', 80);
    snp_client_options lo = file_options(dir, server100, key80);
    c = NULL;
    CHECK_OK(snp_client_open(&lo, &c));
    CHECK(client_stats(c).level == SNP_LEVEL_FILE);
    put_id(c, "Temp", 1);
    snp_client_close(c);

    /* A damaged file: set aside, reported, nothing invented; level 2 goes on. */
    char path[4096];
    snprintf(path, sizeof path, "%s/softnet.client.persistence_broker_damaged.scp", dir);
    write_junk(path, 8192, 0xAB);
    snp_client_options jo = file_options(dir, "broker", "damaged");
    jo.on_failure = record_failure;
    jo.user_data = &f;
    c = NULL;
    CHECK_OK(snp_client_open(&jo, &c));
    snp_client_stats js = client_stats(c);
    CHECK(js.level == SNP_LEVEL_FILE && js.subscriptions == 0 && js.failures >= 1);
    CHECK(f.by_kind[SNP_FAILURE_CORRUPTION] >= 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 0);
    put_id(c, "Temp", 11);
    snp_client_close(c);
    f.calls = 0;
    c = NULL;
    CHECK_OK(snp_client_open(&jo, &c));
    CHECK(get_id(c, "Temp") == 11 && f.calls == 0);
    snp_client_close(c);
    failures_init(&f);

    /* A file that cannot be created: the store runs in memory, reported. */
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/no/such/directory", dir);
    snp_client_options mo = file_options(missing, "broker", "key");
    mo.durability = SNP_DURABILITY_NONE;
    mo.on_failure = record_failure;
    mo.user_data = &f;
    c = NULL;
    CHECK_OK(snp_client_open(&mo, &c));
    snp_client_stats st = client_stats(c);
    CHECK(st.level == SNP_LEVEL_MEMORY && st.failures == 1);
    CHECK(f.calls == 1 && f.by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(strstr(f.last_message, "softnet.client.persistence_broker_key.scp") != NULL);
    put_id(c, "Temp", 3);
    CHECK(get_id(c, "Temp") == 3);
    snp_client_close(c);
}

int main(void) {
    char dir[] = "/tmp/snp_test_client_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);

    test_options_init();
    test_open_errors(dir);
    test_get_put();
    test_huge_lengths();
    test_overlap();
    test_for_each_reset_flush();
    test_stats();
    test_level2(dir);

    remove_dir(dir);
    CHECK_DONE("client");
    return 0;
}
