/* The program `make size` measures: what linking libsoftnet_persistence.a
 * adds to a small C program. Built twice, with and without
 * -DSNP_SIZE_WITH_LIBRARY; the difference of the two stripped executables
 * is the library's contribution. With the library it opens a journal file
 * (level 2) and a client id file, so the journal, recovery and client code
 * are all reachable; without it, it does the same printing and file
 * handling with libc alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SNP_SIZE_WITH_LIBRARY
#include <softnet_persistence.h>

static int run(const char *dir) {
    snp_service_options options;
    snp_service_options_init(&options);
    options.directory = dir;
    options.service_uid.bytes[15] = 1;
    snp_service *service = NULL;
    if (snp_service_open(&options, &service) != SNP_OK) return 1;
    snp_event event = {SNP_EVENT_QUEUEING, "Temperature", 11, (const uint8_t *)"21.5", 4, 0};
    snp_uuid uid;
    if (snp_service_raise(service, &event, &uid) != SNP_OK) return 1;
    snp_stored_event out;
    while (snp_service_peek(service, &out) == SNP_OK) {
        printf("send %s (%zu bytes)\n", out.name, out.args_len);
        snp_service_ack(service, &out.uid);
    }
    snp_service_close(service);

    snp_client_options client_options;
    snp_client_options_init(&client_options);
    client_options.level = SNP_LEVEL_FILE;
    client_options.directory = dir;
    client_options.server_address = "broker";
    client_options.client_key = "demo";
    snp_client *client = NULL;
    if (snp_client_open(&client_options, &client) != SNP_OK) return 1;
    bool duplicate = false;
    snp_client_is_duplicate(client, "Temperature", 11, 1001, &duplicate);
    if (!duplicate) snp_client_put(client, "Temperature", 11, 1001);
    snp_client_close(client);
    char why[256];
    snp_last_error_message(why, sizeof why);
    printf("%s, %s\n", snp_version(), snp_status_str(SNP_OK));
    return 0;
}
#else
static int run(const char *dir) {
    FILE *f = fopen(dir, "r");
    if (f != NULL) fclose(f);
    printf("send %s (%zu bytes)\n", "Temperature", strlen("21.5"));
    return 0;
}
#endif

int main(int argc, char **argv) {
    return run(argc > 1 ? argv[1] : ".") == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
