/*
 * pacific.c - midnight in America/Los_Angeles, computed without a tz database.
 *
 * The daily request budget (RPD) of the Gemini API resets at midnight Pacific
 * time.  The library is multi-threaded and tzdata may be absent, so instead of
 * TZ/localtime this file applies the US daylight saving rules in force since
 * 2007 arithmetically: PDT (UTC-7) from the second Sunday of March at 02:00
 * PST (10:00 UTC) to the first Sunday of November at 02:00 PDT (09:00 UTC),
 * PST (UTC-8) otherwise.  The same rules are applied to every year, also
 * before 2007 (those instants never matter to a quota).
 *
 * Both transitions happen at 02:00 local time, so every Pacific day has
 * exactly one midnight; day D's midnight is at 07:00 UTC when D is strictly
 * after the March transition day and on or before the November one, and at
 * 08:00 UTC otherwise.
 */
#include "gkp.h"

#include <stdint.h>

#include "common/util.h"

#define MS_PER_HOUR INT64_C(3600000)
#define MS_PER_DAY INT64_C(86400000)

/* Instants this close to the ends of int64_t are answered approximately (see
 * gkp_next_pacific_midnight) so that no arithmetic can overflow. */
#define SAFE_MAX (INT64_MAX - 3 * MS_PER_DAY)
#define SAFE_MIN (INT64_MIN + 3 * MS_PER_DAY)

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = gkp__floor_div(y, 400);
  int64_t yoe = y - era * 400;                                  /* [0, 399] */
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
  return era * 146097 + doe - 719468;
}

/* The year of the date `days` days after 1970-01-01. */
static int64_t year_of_days(int64_t days) {
  int64_t z = days + 719468;
  int64_t era = gkp__floor_div(z, 146097);
  int64_t doe = z - era * 146097;                                      /* [0, 146096] */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
  int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], March-based */
  return yoe + era * 400 + (mp >= 10);
}

/* The day number of the n-th (1-based) Sunday of month m in year y. */
static int64_t nth_sunday(int64_t y, int m, int n) {
  int64_t first = days_from_civil(y, m, 1);
  int64_t dow = ((first + 4) % 7 + 7) % 7; /* 0 = Sunday; 1970-01-01 was a Thursday */
  return first + (7 - dow) % 7 + 7 * (n - 1);
}

/* Whether midnight of Pacific day `day` (days since 1970-01-01) is in PDT. */
static int midnight_is_pdt(int64_t day) {
  int64_t y = year_of_days(day);
  return day > nth_sunday(y, 3, 2) && day <= nth_sunday(y, 11, 1);
}

/* The UTC instant of midnight at the start of Pacific day `day`. */
static int64_t midnight_of_day(int64_t day) {
  return day * MS_PER_DAY + (midnight_is_pdt(day) ? 7 : 8) * MS_PER_HOUR;
}

/* The Pacific day whose midnight is the last one at or before now_ms
 * (now_ms within [SAFE_MIN, SAFE_MAX]). */
static int64_t pacific_day(int64_t now_ms) {
  int64_t day = gkp__floor_div(now_ms - 8 * MS_PER_HOUR, MS_PER_DAY);
  while (midnight_of_day(day + 1) <= now_ms) {
    day++;
  }
  while (midnight_of_day(day) > now_ms) {
    day--;
  }
  return day;
}

/* The first Pacific midnight strictly after now_ms.  Within three days of the
 * int64_t range the answer saturates: INT64_MAX at the top, and at the bottom
 * the next midnight after SAFE_MIN (still strictly after now_ms). */
int64_t gkp_next_pacific_midnight(int64_t now_ms) {
  if (now_ms > SAFE_MAX) {
    return INT64_MAX;
  }
  if (now_ms < SAFE_MIN) {
    now_ms = SAFE_MIN;
  }
  return midnight_of_day(pacific_day(now_ms) + 1);
}

/* The last Pacific midnight at or before now_ms.  Within three days of the
 * int64_t range the answer saturates: INT64_MIN at the bottom, and at the top
 * the last midnight before SAFE_MAX (still at or before now_ms). */
int64_t gkp_last_pacific_midnight(int64_t now_ms) {
  if (now_ms < SAFE_MIN) {
    return INT64_MIN;
  }
  if (now_ms > SAFE_MAX) {
    now_ms = SAFE_MAX;
  }
  return midnight_of_day(pacific_day(now_ms));
}
