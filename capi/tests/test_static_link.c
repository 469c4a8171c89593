/* A program linked against libsoftnet_persistence.a (no shared library at
 * run time) opens both stores, round-trips an event and an id. */
#include <string.h>

#include "check.h"

int main(void) {
    CHECK(snp_abi_version() == SNP_ABI_VERSION);

    snp_service_options options;
    snp_service_options_init(&options);
    options.level = SNP_LEVEL_MEMORY;
    snp_service *service = NULL;
    CHECK_OK(snp_service_open(&options, &service));
    const char *args = "21.5";
    snp_event event = {SNP_EVENT_QUEUEING, "Temperature", 11, (const uint8_t *)args, 4, 0};
    snp_uuid uid;
    CHECK_OK(snp_service_raise(service, &event, &uid));
    snp_stored_event out;
    CHECK_OK(snp_service_peek(service, &out));
    CHECK(strcmp(out.name, "Temperature") == 0);
    CHECK(memcmp(out.uid.bytes, uid.bytes, 16) == 0);
    CHECK_OK(snp_service_ack(service, &uid));
    CHECK_STATUS(snp_service_peek(service, &out), SNP_EMPTY);
    snp_service_close(service);

    snp_client_options client_options;
    snp_client_options_init(&client_options);
    snp_client *client = NULL;
    CHECK_OK(snp_client_open(&client_options, &client));
    CHECK_OK(snp_client_put(client, "Temperature", 11, -5));
    int64_t id = 0;
    CHECK_OK(snp_client_get(client, "Temperature", 11, &id));
    CHECK(id == -5);
    snp_client_close(client);
    CHECK_DONE("static_link");
    return 0;
}
