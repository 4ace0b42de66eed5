/*
 * test_pacific.c - gkp_next_pacific_midnight / gkp_last_pacific_midnight
 * against hand-checked instants and, when tzdata is installed, against the
 * system's America/Los_Angeles rules for every day from 2007 to 2040.
 */
/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "gkp.h"

#define HOUR INT64_C(3600000)
#define DAY (24 * HOUR)
#define ZONEINFO "/usr/share/zoneinfo/America/Los_Angeles"

/* Fails with both values printed when two int64_t differ. */
#define assert_i64(actual, expected)                                                               \
  do {                                                                                             \
    int64_t a_ = (actual), e_ = (expected);                                                        \
    if (a_ != e_) {                                                                                \
      fail_msg("%s = %" PRId64 ", expected %" PRId64 " (%s)", #actual, a_, e_, #expected);         \
    }                                                                                              \
  } while (0)

/* ms since the epoch of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  return (int64_t)timegm(&tm) * 1000;
}

/* The invariants every instant must satisfy. */
static void check_invariants(int64_t now) {
  int64_t last = gkp_last_pacific_midnight(now);
  int64_t next = gkp_next_pacific_midnight(now);
  if (!(last <= now && now < next)) {
    fail_msg("now %" PRId64 ": last %" PRId64 " next %" PRId64, now, last, next);
  }
  int64_t len = next - last;
  if (len != 23 * HOUR && len != 24 * HOUR && len != 25 * HOUR) {
    fail_msg("now %" PRId64 ": a day of %" PRId64 " ms", now, len);
  }
  assert_i64(gkp_last_pacific_midnight(last), last);
  assert_i64(gkp_last_pacific_midnight(next), next);
  assert_i64(gkp_next_pacific_midnight(last), next);
  assert_i64(gkp_next_pacific_midnight(next - 1), next);
  /* A midnight is 07:00 or 08:00 UTC. */
  int64_t tod = ((last % DAY) + DAY) % DAY;
  if (tod != 7 * HOUR && tod != 8 * HOUR) {
    fail_msg("midnight %" PRId64 " at %" PRId64 " ms after 00:00 UTC", last, tod);
  }
}

static void test_spring_forward_2026(void **state) {
  (void)state;
  int64_t m8 = utc(2026, 3, 8, 8, 0); /* 2026-03-08 00:00 PST */
  int64_t m9 = utc(2026, 3, 9, 7, 0); /* 2026-03-09 00:00 PDT */
  assert_i64(gkp_last_pacific_midnight(utc(2026, 3, 8, 12, 0)), m8);
  assert_i64(gkp_next_pacific_midnight(utc(2026, 3, 8, 12, 0)), m9);
  assert_i64(m9 - m8, 23 * HOUR);
  /* Around the jump (02:00 PST = 10:00 UTC). */
  assert_i64(gkp_last_pacific_midnight(utc(2026, 3, 8, 9, 59)), m8);
  assert_i64(gkp_last_pacific_midnight(utc(2026, 3, 8, 10, 0)), m8);
  assert_i64(gkp_next_pacific_midnight(utc(2026, 3, 8, 10, 0)), m9);
  /* The day before is 24 h and in PST, the day after in PDT. */
  assert_i64(gkp_last_pacific_midnight(m8 - 1), utc(2026, 3, 7, 8, 0));
  assert_i64(gkp_next_pacific_midnight(m9), utc(2026, 3, 10, 7, 0));
}

static void test_fall_back_2026(void **state) {
  (void)state;
  int64_t m1 = utc(2026, 11, 1, 7, 0); /* 2026-11-01 00:00 PDT */
  int64_t m2 = utc(2026, 11, 2, 8, 0); /* 2026-11-02 00:00 PST */
  assert_i64(gkp_last_pacific_midnight(utc(2026, 11, 1, 12, 0)), m1);
  assert_i64(gkp_next_pacific_midnight(utc(2026, 11, 1, 12, 0)), m2);
  assert_i64(m2 - m1, 25 * HOUR);
  /* Around the repeat (02:00 PDT = 09:00 UTC); 01:30 happens twice. */
  assert_i64(gkp_last_pacific_midnight(utc(2026, 11, 1, 8, 30)), m1);
  assert_i64(gkp_last_pacific_midnight(utc(2026, 11, 1, 9, 30)), m1);
  assert_i64(gkp_next_pacific_midnight(utc(2026, 11, 1, 9, 30)), m2);
  assert_i64(gkp_last_pacific_midnight(m1 - 1), utc(2026, 10, 31, 7, 0));
  assert_i64(gkp_next_pacific_midnight(m2), utc(2026, 11, 3, 8, 0));
}

static void test_exactly_at_midnight(void **state) {
  (void)state;
  int64_t m = utc(2026, 7, 4, 7, 0);
  assert_i64(gkp_last_pacific_midnight(m), m);
  assert_i64(gkp_next_pacific_midnight(m), m + DAY);
  assert_i64(gkp_last_pacific_midnight(m - 1), m - DAY);
  assert_i64(gkp_next_pacific_midnight(m - 1), m);
  assert_i64(gkp_last_pacific_midnight(m + 1), m);
  m = utc(2026, 1, 15, 8, 0);
  assert_i64(gkp_last_pacific_midnight(m), m);
  assert_i64(gkp_next_pacific_midnight(m), m + DAY);
  assert_i64(gkp_last_pacific_midnight(m - 1), m - DAY);
  assert_i64(gkp_next_pacific_midnight(m - 1), m);
  /* New Year: 2027-01-01 00:00 PST. */
  m = utc(2027, 1, 1, 8, 0);
  assert_i64(gkp_last_pacific_midnight(m + 5 * HOUR), m);
  assert_i64(gkp_next_pacific_midnight(m - 5 * HOUR), m);
}

static void test_epoch_and_negative(void **state) {
  (void)state;
  /* 1970-01-01 00:00 UTC is 1969-12-31 16:00 PST. */
  assert_i64(gkp_last_pacific_midnight(0), -16 * HOUR);
  assert_i64(gkp_next_pacific_midnight(0), 8 * HOUR);
  assert_i64(gkp_last_pacific_midnight(-1), -16 * HOUR);
  assert_i64(gkp_next_pacific_midnight(-1), 8 * HOUR);
  assert_i64(gkp_last_pacific_midnight(8 * HOUR), 8 * HOUR);
  assert_i64(gkp_last_pacific_midnight(8 * HOUR - 1), -16 * HOUR);
  assert_i64(gkp_last_pacific_midnight(-16 * HOUR), -16 * HOUR);
  assert_i64(gkp_last_pacific_midnight(-16 * HOUR - 1), -40 * HOUR);
  /* 1960 summer, with today's rules applied: midnight at 07:00 UTC. */
  assert_i64(gkp_last_pacific_midnight(utc(1960, 7, 1, 12, 0)), utc(1960, 7, 1, 7, 0));
  for (int64_t t = -DAY * 366 * 30; t < DAY * 366; t += 7 * HOUR + 13) {
    check_invariants(t);
  }
}

static void test_extremes(void **state) {
  (void)state;
  assert_i64(gkp_next_pacific_midnight(INT64_MAX), INT64_MAX);
  assert_i64(gkp_last_pacific_midnight(INT64_MIN), INT64_MIN);
  assert_true(gkp_next_pacific_midnight(INT64_MIN) > INT64_MIN);
  assert_true(gkp_last_pacific_midnight(INT64_MAX) <= INT64_MAX);
  assert_true(gkp_last_pacific_midnight(INT64_MAX) > INT64_MAX - 5 * DAY);
  int64_t far[] = {INT64_MAX / 2, INT64_MIN / 2, INT64_C(253402300799000) /* 9999-12-31 */,
                   -INT64_C(62135596800000) /* year 1 */};
  for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
    check_invariants(far[i]);
  }
}

/* Every hour from 2000 to 2050: the invariants. */
static void test_invariants_hourly(void **state) {
  (void)state;
  for (int64_t t = utc(2000, 1, 1, 0, 0); t < utc(2050, 1, 1, 0, 0); t += HOUR + 61001) {
    check_invariants(t);
  }
}

/* Every day from 2007-01-01 to 2040-12-31 against the tz database. */
static void test_against_tzdata(void **state) {
  (void)state;
  if (access(ZONEINFO, R_OK) != 0) {
    print_message("%s is missing: skipping the comparison with the tz database\n", ZONEINFO);
    skip();
  }
  setenv("TZ", "America/Los_Angeles", 1);
  tzset();
  int days = 0;
  int64_t prev = -1;
  for (int y = 2007; y <= 2040; y++) {
    for (int mo = 1; mo <= 12; mo++) {
      for (int d = 1; d <= 31; d++) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_isdst = -1};
        time_t t = mktime(&tm);
        if (tm.tm_mon != mo - 1) {
          continue; /* 31 April and the like */
        }
        struct tm tom = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d + 1, .tm_isdst = -1};
        int64_t m = (int64_t)t * 1000;
        int64_t m_next = (int64_t)mktime(&tom) * 1000;
        struct tm check;
        localtime_r(&t, &check);
        assert_int_equal(check.tm_hour, 0);
        assert_int_equal(check.tm_mday, d);
        assert_i64(gkp_last_pacific_midnight(m), m);
        if (prev >= 0) {
          assert_i64(gkp_last_pacific_midnight(m - 1), prev);
        }
        assert_i64(gkp_next_pacific_midnight(m - 1), m);
        assert_i64(gkp_next_pacific_midnight(m), m_next);
        /* Every hour of the day, and its last ms, belongs to it. */
        for (int64_t now = m; now < m_next; now += HOUR) {
          time_t s = (time_t)(now / 1000);
          localtime_r(&s, &check);
          assert_int_equal(check.tm_mday, d);
          assert_i64(gkp_last_pacific_midnight(now), m);
          assert_i64(gkp_next_pacific_midnight(now), m_next);
        }
        assert_i64(gkp_last_pacific_midnight(m_next - 1), m);
        assert_i64(gkp_next_pacific_midnight(m_next - 1), m_next);
        prev = m;
        days++;
      }
    }
  }
  assert_int_equal(days, 12419); /* 34 years, 9 of them leap */
  unsetenv("TZ");
  tzset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spring_forward_2026),
      cmocka_unit_test(test_fall_back_2026),
      cmocka_unit_test(test_exactly_at_midnight),
      cmocka_unit_test(test_epoch_and_negative),
      cmocka_unit_test(test_extremes),
      cmocka_unit_test(test_invariants_hourly),
      cmocka_unit_test(test_against_tzdata),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
