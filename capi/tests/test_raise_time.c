/* Raise times, sequence numbers and the age limit through the C ABI
 * (docs/BEHAVIOUR.md section 3.6a): snp_stored_event.seq and .raised_at_ms,
 * snp_service_options.max_age_ms (and an older caller's struct without it),
 * SNP_FAILURE_EXPIRED, snp_service_stats.expired_events. */
#define _POSIX_C_SOURCE 200809L

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "helpers.h"

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static snp_service *open_with_age(uint64_t max_age_ms, failures *f) {
    snp_service_options o;
    snp_service_options_init(&o);
    CHECK(o.max_age_ms == 0); /* the default: no age limit */
    o.level = SNP_LEVEL_MEMORY;
    o.max_age_ms = max_age_ms;
    o.on_failure = record_failure;
    o.user_data = f;
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    return s;
}

static void test_times_and_sequence_numbers(void) {
    failures f;
    failures_init(&f);
    snp_service *s = open_with_age(0, &f);
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Reading", "20.5");
    uint64_t before = now_ms();
    CHECK_OK(snp_service_raise(s, &e, NULL));
    CHECK_OK(snp_service_raise(s, &e, NULL));
    uint64_t after = now_ms();

    snp_stored_event first, second;
    memset(&first, 0xEE, sizeof first);
    CHECK_OK(snp_service_peek(s, &first));
    CHECK(first.raised_at_ms >= before && first.raised_at_ms <= after);
    CHECK(first.seq > 0);
    CHECK_OK(snp_service_ack(s, &first.uid));
    CHECK_OK(snp_service_peek(s, &second));
    CHECK(second.seq > first.seq);
    CHECK(second.raised_at_ms >= first.raised_at_ms && second.raised_at_ms <= after);
    snp_service_stats st = service_stats(s);
    CHECK(st.expired_events == 0);
    CHECK(f.calls == 0);
    snp_service_close(s);
}

static void test_age_limit(void) {
    failures f;
    failures_init(&f);
    snp_service *s = open_with_age(40, &f);
    snp_event old = make_event(SNP_EVENT_QUEUEING, "Old", "1");
    snp_event fresh = make_event(SNP_EVENT_QUEUEING, "Fresh", "2");
    CHECK_OK(snp_service_raise(s, &old, NULL));
    CHECK_OK(snp_service_raise(s, &old, NULL));
    sleep_ms(120);
    CHECK_OK(snp_service_raise(s, &fresh, NULL));

    snp_stored_event got;
    CHECK_OK(snp_service_peek(s, &got));
    CHECK(strcmp(got.name, "Fresh") == 0);
    snp_service_stats st = service_stats(s);
    CHECK(st.expired_events == 2);
    CHECK(st.pending_events == 1);
    CHECK(st.failures == 0 && st.events_lost == 0);
    CHECK(f.calls == 1); /* one report for the call */
    CHECK(f.by_kind[SNP_FAILURE_EXPIRED] == 1);
    CHECK(f.lost == 0);
    CHECK(strstr(f.last_message, "'Old'") != NULL);
    CHECK(strstr(f.last_message, "0.040 s") != NULL);
    snp_service_close(s);
}

/* A caller built with a header whose options end before max_age_ms gets no
 * age limit. */
static void test_older_options_struct(void) {
    snp_service_options o;
    snp_service_options_init(&o);
    o.level = SNP_LEVEL_MEMORY;
    o.max_age_ms = 1; /* beyond the older struct: must not be read */
    o.struct_size = (uint32_t)offsetof(snp_service_options, max_age_ms);
    snp_service *s = NULL;
    CHECK_OK(snp_service_open(&o, &s));
    snp_event e = make_event(SNP_EVENT_QUEUEING, "Kept", "");
    CHECK_OK(snp_service_raise(s, &e, NULL));
    sleep_ms(20);
    snp_stored_event got;
    CHECK_OK(snp_service_peek(s, &got));
    CHECK(strcmp(got.name, "Kept") == 0);
    CHECK(service_stats(s).expired_events == 0);
    snp_service_close(s);
}

int main(void) {
    test_times_and_sequence_numbers();
    test_age_limit();
    test_older_options_struct();
    CHECK_DONE("raise_time");
    return 0;
}
