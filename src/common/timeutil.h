/*
 * timeutil.h - clocks and time formatting.
 */
#ifndef GKP_COMMON_TIMEUTIL_H
#define GKP_COMMON_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall-clock time in ms since the epoch. */
int64_t gkp__now_ms(void);

/* Monotonic time in ms (for measuring durations). */
int64_t gkp__mono_ms(void);

/* Time since boot in ms (CLOCK_BOOTTIME): shared by every process of one
 * boot, untouched by wall-clock steps, running through suspend. */
int64_t gkp__boot_ms(void);

/* Formats ms since the epoch as RFC 3339 UTC ("2026-11-24T09:00:00Z") into
 * buf (at least 32 bytes).  Returns buf. */
char *gkp__rfc3339(int64_t ms, char *buf, size_t len);

/* Formats the time of day "09:00:00 UTC" into buf (at least 16 bytes). */
char *gkp__hms_utc(int64_t ms, char *buf, size_t len);

#endif
