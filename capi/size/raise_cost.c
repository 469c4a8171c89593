/* What `make size` prints beside each library's size: the cost of a raise
 * through the C ABI, so that a smaller build's price in speed is measured
 * rather than guessed. Opens a fresh 256 MiB journal in the directory given
 * (level 2, SNP_DURABILITY_NONE: the page cache, so the figure is the
 * library's code, not the device), raises 1,000,000 events (16-byte name,
 * 64-byte arguments: 152 MB of records) and prints the best of three such
 * passes, each into a journal of its own, in ns per raise.
 * Then 2,000 raises with SNP_DURABILITY_SYNC in a second journal: the p50
 * of those, which the device dominates. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <softnet_persistence.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static snp_service *open_store(const char *dir, unsigned char id, int32_t durability) {
    snp_service_options options;
    snp_service_options_init(&options);
    options.directory = dir;
    options.service_uid.bytes[15] = id;
    options.file_capacity = 256u << 20;
    options.durability = durability;
    snp_service *service = NULL;
    if (snp_service_open(&options, &service) != SNP_OK) {
        char why[512];
        snp_last_error_message(why, sizeof why);
        fprintf(stderr, "raise_cost: open failed: %s\n", why);
        exit(EXIT_FAILURE);
    }
    return service;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    uint8_t args[64];
    memset(args, 7, sizeof args);
    snp_event event = {SNP_EVENT_QUEUEING, "sensor.temp.high", 16, args, sizeof args, 0};
    snp_uuid uid;

    double best = 0;
    for (int pass = 0; pass < 3; pass++) {
        snp_service *cache = open_store(dir, (unsigned char)(1 + pass), SNP_DURABILITY_NONE);
        double start = now_ns();
        for (int i = 0; i < 1000000; i++) {
            if (snp_service_raise(cache, &event, &uid) != SNP_OK) {
                fprintf(stderr, "raise_cost: raise failed\n");
                return EXIT_FAILURE;
            }
        }
        double each = (now_ns() - start) / 1e6;
        if (pass == 0 || each < best) best = each;
        snp_service_close(cache);
    }

    enum { SYNCED = 2000 };
    static double took[SYNCED];
    snp_service *sync = open_store(dir, 9, SNP_DURABILITY_SYNC);
    for (int i = 0; i < SYNCED; i++) {
        double start = now_ns();
        if (snp_service_raise(sync, &event, &uid) != SNP_OK) {
            fprintf(stderr, "raise_cost: raise failed\n");
            return EXIT_FAILURE;
        }
        took[i] = now_ns() - start;
    }
    snp_service_close(sync);
    qsort(took, SYNCED, sizeof took[0], by_value);
    printf("%.0f %.1f\n", best, took[SYNCED / 2] / 1e3);
    return EXIT_SUCCESS;
}
