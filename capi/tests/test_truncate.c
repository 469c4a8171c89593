/* Another process truncating a store's open file (docs/BEHAVIOUR.md
 * section 5.6): a forked child truncates the service journal or the client
 * file to 0 bytes or to half its length while the store is in use. Without
 * the library's SIGBUS handler the next access to a lost page of the map
 * kills this process with SIGBUS. With it, every call keeps returning
 * SNP_OK (SNP_EMPTY for a peek with nothing pending), the store falls back
 * to level 1 with one SNP_FAILURE_FALLBACK report naming the file, and
 * every raised event is acknowledged, reported lost, or still pending.
 * A SIGBUS that is not the library's (a map of the application's own)
 * still reaches the application's handler, installed before the first
 * store opened. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "helpers.h"

/* Store calls allowed before the store must have noticed the cut. */
#define MAX_STEPS 5000

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

/* Truncates path to 0 bytes or to half its length from a forked child
 * process, as another program ignoring the lock would. */
static void truncate_from_child(const char *path, int half) {
    struct stat st;
    CHECK(stat(path, &st) == 0);
    off_t to = half ? st.st_size / 2 : 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (truncate(path, to) != 0) _exit(1);
        /* Ends by replacing itself rather than by _exit: under valgrind,
         * the exit of a forked child runs a leak check of the parent's heap
         * it copied (the open store's tables show as "possibly lost"). */
        execl("/bin/true", "true", (char *)NULL);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(stat(path, &st) == 0 && st.st_size == to);
}

/* The one report so far is a fallback that names path. */
static void check_fallback(const failures *f, const char *path) {
    CHECK(f->calls == 1);
    CHECK(f->by_kind[SNP_FAILURE_FALLBACK] == 1);
    CHECK(f->bad_message == 0);
    CHECK(strstr(f->last_message, path) != NULL);
    CHECK(strstr(f->last_message, "truncated by another program") != NULL);
}

/* ----- service store ---------------------------------------------------- */

typedef struct ledger {
    snp_service *s;
    uint64_t raised, acked;
} ledger;

static void raise_one(ledger *l) {
    char args[301];
    memset(args, 'a' + (int)(l->raised % 26), 300);
    args[300] = 0;
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Meter", args);
    CHECK_OK(snp_service_raise(l->s, &e, NULL));
    l->raised++;
}

/* Peeks and acks the oldest pending event; 0 if there was none. */
static int deliver_one(ledger *l) {
    static snp_stored_event out;
    snp_status st = snp_service_peek(l->s, &out);
    if (st == SNP_EMPTY) {
        CHECK_OK(snp_service_set_storage_mode(l->s));
        return 0;
    }
    CHECK_OK(st);
    CHECK(out.args_len == 300 && out.args[0] >= 'a' && out.args[0] <= 'z');
    CHECK(all_bytes(out.args, out.args_len, out.args[0]));
    CHECK_OK(snp_service_ack(l->s, &out.uid));
    l->acked++;
    return 1;
}

static void service_scenario(int32_t durability, int half) {
    char dir[] = "/tmp/snp_test_truncate_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    for (int i = 0; i < 16; i++) o.service_uid.bytes[i] = (uint8_t)(0x31 * i + 7);
    o.file_capacity = 64 * 1024;
    o.memory_capacity = 1024 * 1024;
    o.durability = durability;
    failures f;
    failures_init(&f);
    o.on_failure = record_failure;
    o.user_data = &f;
    ledger l = {NULL, 0, 0};
    CHECK_OK(snp_service_open(&o, &l.s));
    char path[4096];
    find_file(dir, "softnet.service.persistence_", path, sizeof path);

    /* Records over most of the ring, so half the file holds some. */
    for (int i = 0; i < 150; i++) raise_one(&l);
    for (int i = 0; i < 10; i++) CHECK(deliver_one(&l));
    CHECK(service_stats(l.s).level == SNP_LEVEL_FILE);
    uint64_t pending_at_cut = service_stats(l.s).pending_events;

    truncate_from_child(path, half);
    int steps = 0;
    while (service_stats(l.s).level == SNP_LEVEL_FILE) {
        CHECK(steps < MAX_STEPS);
        raise_one(&l);
        deliver_one(&l);
        steps++;
    }
    check_fallback(&f, path);
    for (int i = 0; i < 20; i++) raise_one(&l);
    uint64_t drained = 0;
    while (deliver_one(&l)) drained++;
    snp_service_stats st = service_stats(l.s);
    CHECK(st.level == SNP_LEVEL_MEMORY);
    CHECK(st.dropped_events == 0 && st.events_lost == f.lost);
    CHECK(l.raised == l.acked + f.lost);
    if (half)
        CHECK(f.lost > 0 && f.lost < pending_at_cut);
    else
        CHECK(f.lost == pending_at_cut);
    printf("service durability %d, cut to %s: %llu pending at the cut, noticed after %d "
           "step(s), %llu lost; %llu raised, %llu acknowledged (%llu drained at the end)\n",
           (int)durability, half ? "half" : "0", (unsigned long long)pending_at_cut, steps,
           (unsigned long long)f.lost, (unsigned long long)l.raised,
           (unsigned long long)l.acked, (unsigned long long)drained);
    snp_service_close(l.s);
    remove_dir(dir);
}

/* ----- client store ----------------------------------------------------- */

#define NAMES 20

static void client_scenario(int32_t durability, int half) {
    char dir[] = "/tmp/snp_test_truncate_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snp_client_options o;
    snp_client_options_init(&o);
    o.level = SNP_LEVEL_FILE;
    o.directory = dir;
    o.server_address = "broker.local";
    o.client_key = "truncate";
    o.durability = durability;
    failures f;
    failures_init(&f);
    o.on_failure = record_failure;
    o.user_data = &f;
    snp_client *c = NULL;
    CHECK_OK(snp_client_open(&o, &c));
    char path[4096];
    find_file(dir, "softnet.client.persistence_", path, sizeof path);

    int64_t ids[NAMES] = {0};
    int64_t next = 1;
    char name[32];
#define PUT()                                                                   \
    do {                                                                        \
        int n_ = (int)(next % NAMES);                                           \
        snprintf(name, sizeof name, "Subscription/%d", n_);                     \
        CHECK_OK(snp_client_put(c, name, strlen(name), next));                  \
        ids[n_] = next++;                                                       \
    } while (0)
    for (int i = 0; i < NAMES; i++) PUT();
    CHECK(client_stats(c).level == SNP_LEVEL_FILE);

    truncate_from_child(path, half);
    int steps = 0;
    while (client_stats(c).level == SNP_LEVEL_FILE) {
        CHECK(steps < MAX_STEPS);
        PUT();
        steps++;
    }
    check_fallback(&f, path);
    CHECK(f.lost == 0);
    for (int i = 0; i < NAMES; i++) PUT();
#undef PUT
    CHECK(client_stats(c).level == SNP_LEVEL_MEMORY);
    for (int n = 0; n < NAMES; n++) {
        snprintf(name, sizeof name, "Subscription/%d", n);
        CHECK(get_id(c, name) == ids[n]);
    }
    printf("client durability %d, cut to %s: noticed after %d put(s), %lld puts, 0 ids lost\n",
           (int)durability, half ? "half" : "0", steps, (long long)(next - 1));
    snp_client_close(c);
    remove_dir(dir);
}

/* ----- a SIGBUS of the application's own -------------------------------- */

#define APP_HANDLER_EXIT 42

/* The application's SIGBUS handler: ends the process with a code of its
 * own, so the parent can tell it ran. */
static void app_on_sigbus(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)info;
    (void)context;
    _exit(APP_HANDLER_EXIT);
}

static void install_app_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = app_on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGBUS, &sa, NULL) == 0);
}

/* In a child (after the library's handler was installed by the stores
 * above): a map of the application's own, truncated and then read, faults;
 * the library passes the fault on to the application's handler. */
static void test_foreign_fault_is_chained(void) {
    char dir[] = "/tmp/snp_test_truncate_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s/own", dir);
    write_junk(path, 8192, 0x11);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        if (fd < 0) _exit(1);
        volatile unsigned char *p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED || p[4096] != 0x11 || ftruncate(fd, 0) != 0) _exit(2);
        unsigned char lost = p[4096]; /* SIGBUS: the application's handler exits */
        (void)lost;
        _exit(3);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == APP_HANDLER_EXIT);
    remove_dir(dir);
}

int main(void) {
    /* Before the first store opens: the library's handler chains to it. */
    install_app_handler();
    const int32_t durabilities[] = {SNP_DURABILITY_NONE, SNP_DURABILITY_SYNC};
    for (size_t d = 0; d < 2; d++) {
        for (int half = 0; half <= 1; half++) {
            service_scenario(durabilities[d], half);
            client_scenario(durabilities[d], half);
        }
    }
    test_foreign_fault_is_chained();
    CHECK_DONE("truncate");
    return 0;
}
