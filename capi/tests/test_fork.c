/* fork() and the stores (the "never crash the host" rules):
 * - a forked child's calls on its parent's handle return SNP_ERR_STATE,
 *   write nothing to the parent's file (not even when the child frees the
 *   handle), and the parent's journal keeps exactly what the parent raised;
 * - the readers (stats, mode, storage uid) too: they are calls on the
 *   parent's handle like any other;
 * - a child, even one that never touches the store, does not keep the
 *   parent's lock: the parent closes and reopens the same file while the
 *   child lives (the child has no descriptor on the file and no map of
 *   it); a program started with posix_spawn does not inherit them either
 *   (close-on-exec);
 * - forked children draw uids nobody else draws (8 children x 10,000);
 * - a child forked while another thread is inside a store call (holding
 *   the store's lock) is refused at once rather than deadlocked;
 * - the same for the client store.
 * Children report through their exit status (a CHECK that fails in a
 * child exits 1 with its message on stderr) and through files. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"

extern char **environ;

#define CHILDREN 8
#define UIDS_PER_CHILD 10000
#define FILE_UIDS_PER_CHILD 100

static const snp_uuid SERVICE_UID = {{0x67, 0xe5, 0x50, 0x44, 0x10, 0xb1, 0x42, 0x6f, 0x92, 0x47,
                                      0xbb, 0x68, 0x0e, 0x5f, 0xe0, 0xc8}};

/* ----- helpers ------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static snp_service_options file_options(const char *dir) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.service_uid = SERVICE_UID;
    o.durability = SNP_DURABILITY_SYNC;
    return o;
}

static snp_service *open_file_store(const char *dir) {
    snp_service_options o = file_options(dir);
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(s != NULL);
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    return s;
}

static snp_service *open_memory_store(uint64_t capacity) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    o.memory_capacity = capacity;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(s != NULL);
    return s;
}

static snp_client_options client_options(const char *dir) {
    snp_client_options o;
    snp_client_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.server_address = "broker.example:7000";
    o.client_key = "fork-test";
    return o;
}

/* The path of the one file in dir whose name starts with prefix. */
static void find_file(const char *dir, const char *prefix, char *out, size_t out_len) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int found = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, out_len, "%s/%s", dir, e->d_name);
            found++;
        }
    }
    closedir(d);
    CHECK(found == 1);
}

/* A file's bytes (malloc'd; *len set). */
static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* True when path holds exactly these bytes. */
static int same_bytes(const char *path, const unsigned char *bytes, size_t len) {
    size_t n = 0;
    unsigned char *now_bytes = read_all(path, &n);
    int same = n == len && memcmp(now_bytes, bytes, len) == 0;
    free(now_bytes);
    return same;
}

/* fork() with stdio flushed (so the child does not print the parent's
 * buffered output again). */
static pid_t fork_flushed(void) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    return pid;
}

/* Waits for pid; checks it exited with status 0. */
static void reap(pid_t pid) {
    int status = 0;
    pid_t got;
    do {
        got = waitpid(pid, &status, 0);
    } while (got < 0 && errno == EINTR);
    CHECK(got == pid);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fprintf(stderr, "child %d: exited %d, signal %d\n", (int)pid,
                WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* True while pid has not exited. */
static int alive(pid_t pid) {
    int status = 0;
    return waitpid(pid, &status, WNOHANG) == 0;
}

static void write_byte(int fd, char c) { CHECK(write(fd, &c, 1) == 1); }

static char read_byte(int fd) {
    char c = 0;
    ssize_t n;
    do {
        n = read(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    CHECK(n == 1);
    return c;
}

/* Blocks until the other end of fd is closed. */
static void wait_eof(int fd) {
    char c;
    ssize_t n;
    while ((n = read(fd, &c, 1)) != 0) CHECK(n > 0 || errno == EINTR);
}

/* How many of pid's descriptors refer to path (through /proc). */
static int fds_on(pid_t pid, const char *path) {
    char dir[64], link[4096], target[4096];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len < 0) continue;
        target[len] = 0;
        if (strcmp(target, path) == 0) n++;
    }
    closedir(d);
    return n;
}

/* How many of pid's memory mappings are of path (through /proc). */
static int maps_of(pid_t pid, const char *path) {
    char maps[64], line[8192];
    snprintf(maps, sizeof maps, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(maps, "r");
    CHECK(f != NULL);
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, path) != NULL) n++;
    fclose(f);
    return n;
}

/* True when this thread's last error says the handle is the parent's. */
static int says_parent_handle(void) {
    return last_error_contains("parent") && last_error_contains("child") &&
           last_error_contains("forked");
}

static snp_event numbered(const char *name, char *args, size_t args_size, int i) {
    int n = snprintf(args, args_size, "%d", i);
    snp_event e = make_event(SNP_EVENT_QUEUEING, name, NULL);
    e.args = (const uint8_t *)args;
    e.args_len = (size_t)n;
    return e;
}

/* Drains s in storage mode; checks the events are name/0..count-1 (args),
 * in order, with these uids (if uids is not NULL). */
static void drain_in_order(snp_service *s, const char *name, int count, const snp_uuid *uids) {
    CHECK(service_stats(s).pending_events == (uint64_t)count);
    for (int i = 0; i < count; i++) {
        snp_stored_event out;
        char args[16];
        int n = snprintf(args, sizeof args, "%d", i);
        CHECK_OK(snp_service_peek(s, &out));
        CHECK(strcmp(out.name, name) == 0);
        CHECK(out.args_len == (size_t)n && memcmp(out.args, args, (size_t)n) == 0);
        if (uids) CHECK(uid_eq(&out.uid, &uids[i]));
        CHECK_OK(snp_service_ack(s, &out.uid));
    }
    snp_stored_event out;
    CHECK_STATUS(snp_service_peek(s, &out), SNP_EMPTY);
}

/* ----- (a) the parent's service handle in a child ---------------------- */

#define CHILD_RAISES 40

/* Every call a child makes on its parent's handle is refused. */
static void child_uses_parent_service(snp_service *s, const char *dir) {
    char args[16];
    for (int i = 0; i < CHILD_RAISES; i++) {
        snp_event e = numbered("Fork", args, sizeof args, 1000 + i);
        snp_uuid uid;
        memset(&uid, 0xAB, sizeof uid);
        CHECK_STATUS(snp_service_raise(s, &e, &uid), SNP_ERR_STATE);
        CHECK(says_parent_handle());
        CHECK(all_bytes(&uid, sizeof uid, 0xAB)); /* outputs untouched */
    }
    snp_event e = numbered("Fork", args, sizeof args, 0);
    snp_stored_event out;
    memset(&out, 0x5A, sizeof out);
    CHECK_STATUS(snp_service_raise_with_uid(s, &e, &SERVICE_UID), SNP_ERR_STATE);
    CHECK_STATUS(snp_service_peek(s, &out), SNP_ERR_STATE);
    CHECK(all_bytes(&out, sizeof out, 0x5A));
    CHECK_STATUS(snp_service_ack(s, &SERVICE_UID), SNP_ERR_STATE);
    CHECK_STATUS(snp_service_peek_name(s, SNP_EVENT_QUEUEING, "Fork", 4, &out), SNP_ERR_STATE);
    CHECK_STATUS(snp_service_ack_name(s, SNP_EVENT_QUEUEING, "Fork", 4, &SERVICE_UID, &out),
                 SNP_ERR_STATE);
    CHECK_STATUS(snp_service_set_storage_mode(s), SNP_ERR_STATE);
    uint64_t count = 77;
    CHECK_STATUS(snp_service_invalidate_ancient(s, &count), SNP_ERR_STATE);
    CHECK(count == 77);
    CHECK_STATUS(snp_service_reset(s), SNP_ERR_STATE);
    CHECK_STATUS(snp_service_flush(s), SNP_ERR_STATE);
    CHECK(says_parent_handle());

    /* The child cannot take the parent's file for itself while the parent
     * has it open... */
    snp_service_options o = file_options(dir);
    snp_service *mine = SENTINEL_SERVICE;
    CHECK_STATUS(snp_service_open(&o, &mine), SNP_ERR_LOCKED);
    CHECK(mine == SENTINEL_SERVICE);
    /* ...but the library works in the child: a store of its own. */
    mine = open_memory_store(0);
    CHECK_OK(snp_service_raise(mine, &e, NULL));
    CHECK(service_stats(mine).pending_events == 1);
    snp_service_close(mine);

    /* Freeing the parent's handle is allowed (and writes nothing). */
    snp_service_close(s);
}

static void test_parent_service_in_child(const char *dir) {
    snp_service *s = open_file_store(dir);
    snp_uuid uids[5 + CHILD_RAISES];
    char args[16];
    for (int i = 0; i < 5; i++) {
        snp_event e = numbered("Fork", args, sizeof args, i);
        CHECK_OK(snp_service_raise(s, &e, &uids[i]));
    }
    char path[4096];
    find_file(dir, "softnet.service.persistence_", path, sizeof path);
    size_t before_len = 0;
    unsigned char *before = read_all(path, &before_len);

    int done[2], go[2];
    CHECK(pipe(done) == 0 && pipe(go) == 0);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        close(done[0]);
        close(go[1]);
        child_uses_parent_service(s, dir);
        write_byte(done[1], 'd');
        wait_eof(go[0]); /* stays alive while the parent goes on */
        _exit(0);
    }
    close(done[1]);
    close(go[0]);
    CHECK(read_byte(done[0]) == 'd');
    CHECK(alive(pid));
    /* 40 refused raises and a freed handle later, the file is as it was. */
    CHECK(same_bytes(path, before, before_len));
    free(before);
    /* The parent's handle works on, while the child lives. */
    CHECK(fds_on(pid, path) == 0);
    for (int i = 5; i < 5 + CHILD_RAISES; i++) {
        snp_event e = numbered("Fork", args, sizeof args, i);
        CHECK_OK(snp_service_raise(s, &e, &uids[i]));
    }
    CHECK(service_stats(s).pending_events == 5 + CHILD_RAISES);
    CHECK(alive(pid));
    close(go[1]);
    reap(pid);
    close(done[0]);

    snp_service_close(s);
    s = open_file_store(dir);
    drain_in_order(s, "Fork", 5 + CHILD_RAISES, uids); /* exactly 45, in order */
    snp_service_close(s);
}

/* ----- (b) a child that never touches the store keeps no lock ----------- */

static void test_child_keeps_no_lock(const char *dir) {
    snp_service *s = open_file_store(dir);
    char args[16];
    for (int i = 0; i < 3; i++) {
        snp_event e = numbered("Lock", args, sizeof args, i);
        CHECK_OK(snp_service_raise(s, &e, NULL));
    }
    char path[4096];
    find_file(dir, "softnet.service.persistence_", path, sizeof path);

    int ready[2], go[2];
    CHECK(pipe(ready) == 0 && pipe(go) == 0);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        write_byte(ready[1], 'r');
        wait_eof(go[0]); /* never touches the store */
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    CHECK(read_byte(ready[0]) == 'r');
    CHECK(alive(pid));
    CHECK(fds_on(getpid(), path) >= 1); /* the parent's own descriptor... */
    CHECK(fds_on(pid, path) == 0);      /* ...the child has none on the file */
    /* A map of the file holds its open file description, and so the lock,
     * as a descriptor does: the child must not have one either. */
    CHECK(maps_of(getpid(), path) == 1);
    CHECK(maps_of(pid, path) == 0);

    /* Close and reopen the same journal while the child lives. */
    snp_service_close(s);
    snp_service_options o = file_options(dir);
    s = NULL;
    CHECK_OK(snp_service_open(&o, &s)); /* not SNP_ERR_LOCKED */
    CHECK(alive(pid));
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    snp_event e = numbered("Lock", args, sizeof args, 3);
    CHECK_OK(snp_service_raise(s, &e, NULL));
    /* And a second handle is still refused: the lock is real, and now the
     * reopened handle's. */
    snp_service *second = SENTINEL_SERVICE;
    CHECK_STATUS(snp_service_open(&o, &second), SNP_ERR_LOCKED);
    CHECK(second == SENTINEL_SERVICE);
    CHECK(alive(pid));
    close(go[1]);
    reap(pid);
    close(ready[0]);
    drain_in_order(s, "Lock", 4, NULL);
    snp_service_close(s);
}

/* A program started with posix_spawn (no fork handlers run) inherits no
 * journal descriptor either: they are close-on-exec. */
static void test_spawned_program_keeps_no_lock(const char *dir) {
    snp_service *s = open_file_store(dir);
    char path[4096];
    find_file(dir, "softnet.service.persistence_", path, sizeof path);
    pid_t pid = 0;
    char *argv[] = {"sleep", "30", NULL};
    fflush(stdout);
    fflush(stderr);
    int rc = posix_spawn(&pid, "/bin/sleep", NULL, NULL, argv, environ);
    if (rc != 0) {
        printf("fork: /bin/sleep not spawned (%s), close-on-exec not checked\n", strerror(rc));
        snp_service_close(s);
        return;
    }
    /* Wait until the program runs (its exe is no longer this test). */
    char exe_link[64], exe[4096];
    snprintf(exe_link, sizeof exe_link, "/proc/%d/exe", (int)pid);
    for (int i = 0; i < 2000; i++) {
        ssize_t n = readlink(exe_link, exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = 0;
            if (strstr(exe, "sleep") != NULL) break;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    CHECK(strstr(exe, "sleep") != NULL);
    CHECK(fds_on(pid, path) == 0);
    snp_service_close(s);
    s = NULL;
    snp_service_options o = file_options(dir);
    CHECK_OK(snp_service_open(&o, &s)); /* not SNP_ERR_LOCKED */
    CHECK(alive(pid));
    snp_service_close(s);
    CHECK(kill(pid, SIGKILL) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
}

/* ----- (c) uids drawn in forked children -------------------------------- */

static int uid_cmp(const void *a, const void *b) { return memcmp(a, b, sizeof(snp_uuid)); }

static int is_v4(const snp_uuid *u) {
    return (u->bytes[6] >> 4) == 4 && (u->bytes[8] & 0xC0) == 0x80;
}

static void uid_file(const char *dir, int child, char *out, size_t out_len) {
    snprintf(out, out_len, "%s/uids_%d.bin", dir, child);
}

static void sub_dir(const char *dir, int child, char *out, size_t out_len) {
    snprintf(out, out_len, "%s/child_%d", dir, child);
}

/* A child: a level-1 store of its own raising UIDS_PER_CHILD events and a
 * file store of its own (its own subdirectory) raising
 * FILE_UIDS_PER_CHILD; writes both storage uids and every event uid. */
static void child_draws_uids(const char *dir, int child) {
    snp_uuid *uids = malloc(sizeof(snp_uuid) * (UIDS_PER_CHILD + FILE_UIDS_PER_CHILD + 2));
    CHECK(uids != NULL);
    size_t n = 0;
    snp_service *s = open_memory_store(0);
    CHECK_OK(snp_service_storage_uid(s, &uids[n++]));
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Uid", "x");
    for (int i = 0; i < UIDS_PER_CHILD; i++) CHECK_OK(snp_service_raise(s, &e, &uids[n++]));
    snp_service_close(s);

    char sub[4096];
    sub_dir(dir, child, sub, sizeof sub);
    CHECK(mkdir(sub, 0700) == 0);
    snp_service_options o = file_options(sub);
    o.durability = SNP_DURABILITY_NONE;
    s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    CHECK(service_stats(s).level == SNP_LEVEL_FILE);
    CHECK_OK(snp_service_storage_uid(s, &uids[n++]));
    for (int i = 0; i < FILE_UIDS_PER_CHILD; i++) CHECK_OK(snp_service_raise(s, &e, &uids[n++]));
    snp_service_close(s);

    char path[4096];
    uid_file(dir, child, path, sizeof path);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(uids, sizeof(snp_uuid), n, f) == n);
    CHECK(fclose(f) == 0);
    free(uids);
}

static void test_uids_in_children(const char *dir) {
    const size_t per_child = UIDS_PER_CHILD + FILE_UIDS_PER_CHILD + 2;
    const size_t parent_after = UIDS_PER_CHILD;
    const size_t total = 2 + parent_after + CHILDREN * per_child;
    snp_uuid *all = malloc(sizeof(snp_uuid) * total);
    CHECK(all != NULL);
    size_t n = 0;

    /* The parent draws first: its generator has state the children copy. */
    snp_service *s = open_memory_store(0);
    CHECK_OK(snp_service_storage_uid(s, &all[n++]));
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Uid", "x");
    CHECK_OK(snp_service_raise(s, &e, &all[n++]));

    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork_flushed();
        if (pids[c] == 0) {
            snp_service_close(s); /* the parent's: freed, nothing written */
            child_draws_uids(dir, c);
            _exit(0);
        }
    }
    /* The parent goes on drawing while the children draw. */
    for (size_t i = 0; i < parent_after; i++) CHECK_OK(snp_service_raise(s, &e, &all[n++]));
    snp_service_close(s);
    for (int c = 0; c < CHILDREN; c++) reap(pids[c]);

    for (int c = 0; c < CHILDREN; c++) {
        char path[4096];
        uid_file(dir, c, path, sizeof path);
        size_t len = 0;
        unsigned char *bytes = read_all(path, &len);
        CHECK(len == per_child * sizeof(snp_uuid));
        memcpy(&all[n], bytes, len);
        n += per_child;
        free(bytes);
        CHECK(unlink(path) == 0);
        char sub[4096];
        sub_dir(dir, c, sub, sizeof sub);
        remove_dir(sub);
    }
    CHECK(n == total);

    size_t not_v4 = 0;
    for (size_t i = 0; i < n; i++) not_v4 += !is_v4(&all[i]);
    CHECK(not_v4 == 0);
    qsort(all, n, sizeof(snp_uuid), uid_cmp);
    size_t repeats = 0;
    for (size_t i = 1; i < n; i++) repeats += uid_eq(&all[i - 1], &all[i]);
    printf("fork: %zu uids from the parent and %d forked children, %zu repeats\n", n, CHILDREN,
           repeats);
    CHECK(repeats == 0);
    free(all);
}

/* ----- (d) a child forked while a thread holds the store's lock --------- */

/* A backend whose append blocks until released: a thread raising into it
 * holds the store's lock for as long as the test wants. */
typedef struct gate_log {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int blocking, inside, released;
    uint64_t next_seq;
    int appends;
} gate_log;

static snp_status gate_append(void *ctx, const uint8_t *payload, size_t len, uint64_t *out_seq) {
    (void)payload;
    (void)len;
    gate_log *g = ctx;
    pthread_mutex_lock(&g->mutex);
    g->appends++;
    if (g->blocking) {
        g->inside = 1;
        pthread_cond_broadcast(&g->cond);
        while (!g->released) pthread_cond_wait(&g->cond, &g->mutex);
    }
    *out_seq = g->next_seq++;
    pthread_mutex_unlock(&g->mutex);
    return SNP_OK;
}

static snp_status gate_remove(void *ctx, uint64_t seq, int32_t reason) {
    (void)ctx;
    (void)seq;
    (void)reason;
    return SNP_OK;
}

static snp_status gate_read(void *ctx, uint64_t seq, uint8_t *buf, size_t buf_len,
                            size_t *out_len) {
    (void)ctx;
    (void)seq;
    (void)buf;
    (void)buf_len;
    (void)out_len;
    return SNP_ERR_IO;
}

static snp_status gate_scan(void *ctx, snp_record_visit_fn visit, void *visit_ctx) {
    (void)ctx;
    (void)visit;
    (void)visit_ctx;
    return SNP_OK;
}

static snp_status gate_clear(void *ctx) {
    (void)ctx;
    return SNP_OK;
}

static snp_status gate_get_metadata(void *ctx, uint8_t *buf, size_t buf_len, size_t *out_len) {
    (void)ctx;
    (void)buf;
    (void)buf_len;
    *out_len = 0;
    return SNP_OK;
}

static snp_status gate_set_metadata(void *ctx, const uint8_t *meta, size_t len) {
    (void)ctx;
    (void)meta;
    (void)len;
    return SNP_OK;
}

typedef struct raising {
    snp_service *s;
    snp_status status;
} raising;

static void *raise_in_thread(void *arg) {
    raising *r = arg;
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Gate", "1");
    r->status = snp_service_raise(r->s, &e, NULL);
    return NULL;
}

/* The readers (stats, mode, uids) on the parent's handle in a child: they
 * are calls on the parent's handle like any other. */
static void child_reads_parent_service(const snp_service *s) {
    snp_service_stats st;
    memset(&st, 0x5A, sizeof st);
    st.struct_size = sizeof st;
    CHECK_STATUS(snp_service_get_stats(s, &st), SNP_ERR_STATE);
    CHECK(says_parent_handle());
    int32_t mode = 77;
    CHECK_STATUS(snp_service_mode(s, &mode), SNP_ERR_STATE);
    CHECK(mode == 77);
    snp_uuid uid;
    memset(&uid, 0xAB, sizeof uid);
    CHECK_STATUS(snp_service_storage_uid(s, &uid), SNP_ERR_STATE);
    CHECK_STATUS(snp_service_previous_storage_uid(s, &uid), SNP_ERR_STATE);
    CHECK(all_bytes(&uid, sizeof uid, 0xAB));
}

/* A child forked while another thread of the parent is inside a store call
 * (in the custom backend's append, under the store's lock). The child's
 * copy of that lock is held by a thread the child does not have: a call
 * that waited for it would never return. readers: the child also calls the
 * readers (get_stats, mode...). */
static void test_fork_during_a_call(int readers) {
    gate_log g;
    memset(&g, 0, sizeof g);
    CHECK(pthread_mutex_init(&g.mutex, NULL) == 0);
    CHECK(pthread_cond_init(&g.cond, NULL) == 0);
    g.next_seq = 1;
    snp_record_log_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.struct_size = sizeof vt;
    vt.ctx = &g;
    vt.append = gate_append;
    vt.remove = gate_remove;
    vt.read = gate_read;
    vt.scan = gate_scan;
    vt.clear = gate_clear;
    vt.get_metadata = gate_get_metadata;
    vt.set_metadata = gate_set_metadata;
    snp_service_options o;
    snp_service_options_init(&o);
    snp_service *s = NULL;
    CHECK_OK(snp_service_open_custom(&vt, &o, &s));

    pthread_mutex_lock(&g.mutex);
    g.blocking = 1;
    pthread_mutex_unlock(&g.mutex);
    raising r = {s, 12345};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, raise_in_thread, &r) == 0);
    pthread_mutex_lock(&g.mutex);
    while (!g.inside) pthread_cond_wait(&g.cond, &g.mutex);
    pthread_mutex_unlock(&g.mutex);

    pid_t pid = fork_flushed();
    if (pid == 0) {
        alarm(20); /* a deadlock kills the child: the parent sees SIGALRM */
        snp_event e = make_event(SNP_EVENT_QUEUEING, "Gate", "2");
        CHECK_STATUS(snp_service_raise(s, &e, NULL), SNP_ERR_STATE);
        CHECK(says_parent_handle());
        snp_stored_event out;
        CHECK_STATUS(snp_service_peek(s, &out), SNP_ERR_STATE);
        CHECK_STATUS(snp_service_flush(s), SNP_ERR_STATE);
        if (readers) child_reads_parent_service(s);
        snp_service_close(s); /* frees the handle without taking the lock */
        /* Ends by replacing itself rather than by _exit: under valgrind the
         * exit of a forked child runs a leak check, and what the raising
         * thread (which the child does not have) allocated shows as lost. */
        execl("/bin/true", "true", (char *)NULL);
        _exit(0);
    }
    reap(pid);

    pthread_mutex_lock(&g.mutex);
    g.released = 1;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.mutex);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(r.status == SNP_OK);
    CHECK(g.appends == 1); /* the child's raise never reached the backend */
    CHECK(service_stats(s).pending_events == 1);
    snp_service_close(s);
    pthread_cond_destroy(&g.cond);
    pthread_mutex_destroy(&g.mutex);
}

/* The readers on the parent's handle in a child (no call in progress). */
static void test_readers_in_child(const char *dir) {
    snp_service *s = open_file_store(dir);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        alarm(20);
        child_reads_parent_service(s);
        snp_service_close(s);
        _exit(0);
    }
    reap(pid);
    snp_service_close(s);
}

/* ----- (e) the client store ---------------------------------------------- */

static void count_visit(void *user_data, const char *name, size_t name_len, int64_t id) {
    (void)name;
    (void)name_len;
    (void)id;
    ++*(int *)user_data;
}

static void child_uses_parent_client(snp_client *c, const char *dir) {
    for (int i = 0; i < CHILD_RAISES; i++) {
        CHECK_STATUS(snp_client_put(c, "b", 1, 100 + i), SNP_ERR_STATE);
        CHECK(says_parent_handle());
    }
    int64_t id = UNTOUCHED_ID;
    CHECK_STATUS(snp_client_get(c, "a", 1, &id), SNP_ERR_STATE);
    CHECK(id == UNTOUCHED_ID);
    bool dup = true;
    CHECK_STATUS(snp_client_is_duplicate(c, "a", 1, 1, &dup), SNP_ERR_STATE);
    CHECK(dup == true);
    int visited = 0;
    CHECK_STATUS(snp_client_for_each(c, count_visit, &visited), SNP_ERR_STATE);
    CHECK(visited == 0);
    CHECK_STATUS(snp_client_reset(c), SNP_ERR_STATE);
    CHECK_STATUS(snp_client_flush(c), SNP_ERR_STATE);
    CHECK(says_parent_handle());
    snp_client_options o = client_options(dir);
    snp_client *mine = SENTINEL_CLIENT;
    CHECK_STATUS(snp_client_open(&o, &mine), SNP_ERR_LOCKED);
    CHECK(mine == SENTINEL_CLIENT);
    snp_client_close(c); /* allowed, writes nothing */
}

static void test_parent_client_in_child(const char *dir) {
    snp_client_options o = client_options(dir);
    snp_client *c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    CHECK(client_stats(c).level == SNP_LEVEL_FILE);
    CHECK_OK(snp_client_put(c, "a", 1, 1));
    char path[4096];
    find_file(dir, "softnet.client.", path, sizeof path);
    size_t before_len = 0;
    unsigned char *before = read_all(path, &before_len);

    int done[2], go[2];
    CHECK(pipe(done) == 0 && pipe(go) == 0);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        close(done[0]);
        close(go[1]);
        child_uses_parent_client(c, dir);
        write_byte(done[1], 'd');
        wait_eof(go[0]);
        _exit(0);
    }
    close(done[1]);
    close(go[0]);
    CHECK(read_byte(done[0]) == 'd');
    CHECK(same_bytes(path, before, before_len));
    free(before);
    CHECK(fds_on(pid, path) == 0);
    CHECK_OK(snp_client_put(c, "b", 1, 2));

    /* Close and reopen while the child lives. */
    snp_client_close(c);
    c = NULL;
    CHECK_OK(snp_client_open(&o, &c)); /* not SNP_ERR_LOCKED */
    CHECK(alive(pid));
    CHECK(get_id(c, "a") == 1 && get_id(c, "b") == 2);
    CHECK(client_stats(c).subscriptions == 2);
    close(go[1]);
    reap(pid);
    close(done[0]);
    snp_client_close(c);
}

/* A child that never touches the client store keeps no lock on its file. */
static void test_child_keeps_no_client_lock(const char *dir) {
    snp_client_options o = client_options(dir);
    snp_client *c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    CHECK_OK(snp_client_put(c, "z", 1, 26));
    char path[4096];
    find_file(dir, "softnet.client.", path, sizeof path);

    int ready[2], go[2];
    CHECK(pipe(ready) == 0 && pipe(go) == 0);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        write_byte(ready[1], 'r');
        wait_eof(go[0]); /* never touches the store */
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    CHECK(read_byte(ready[0]) == 'r');
    CHECK(fds_on(pid, path) == 0);
    CHECK(maps_of(pid, path) == 0);
    snp_client_close(c);
    c = NULL;
    CHECK_OK(snp_client_open(&o, &c)); /* not SNP_ERR_LOCKED */
    CHECK(alive(pid));
    CHECK(get_id(c, "z") == 26);
    close(go[1]);
    reap(pid);
    close(ready[0]);
    snp_client_close(c);
}

int main(void) {
    char dir[] = "/tmp/snp_test_fork_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    double t0 = now();
    test_parent_service_in_child(dir);
    test_parent_client_in_child(dir);
    double t1 = now();
    test_spawned_program_keeps_no_lock(dir);
    test_fork_during_a_call(0);
    double t2 = now();
    test_uids_in_children(dir);
    double t3 = now();
    test_child_keeps_no_lock(dir);
    test_child_keeps_no_client_lock(dir);
    test_readers_in_child(dir);
    test_fork_during_a_call(1);
    double t4 = now();
    printf("fork: parent handles %.2fs, spawn and call in progress %.2fs, uids %.2fs, "
           "locks and readers %.2fs\n",
           t1 - t0, t2 - t1, t3 - t2, t4 - t3);
    remove_dir(dir);
    CHECK_DONE("fork");
    return 0;
}
