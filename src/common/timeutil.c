/*
 * timeutil.c - clocks and time formatting.
 */
#include "common/timeutil.h"

#include <stdio.h>
#include <time.h>

int64_t gkp__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gkp__mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gkp__boot_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void split(int64_t ms, struct tm *tm) {
  time_t t = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
  gmtime_r(&t, tm);
}

char *gkp__rfc3339(int64_t ms, char *buf, size_t len) {
  struct tm tm;
  split(ms, &tm);
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

char *gkp__hms_utc(int64_t ms, char *buf, size_t len) {
  struct tm tm;
  split(ms, &tm);
  snprintf(buf, len, "%02d:%02d:%02d UTC", tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}
