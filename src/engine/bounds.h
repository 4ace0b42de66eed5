/*
 * bounds.h - the range of every number the engine takes from outside.
 *
 * Token counts, retry delays and quota values come from Google's answers (or
 * from whatever answers in its place).  Each is clamped to the range below
 * before it is stored, so that no answer can put a value into the state file
 * that its validation would refuse, nor overflow a sum or a time.
 */
#ifndef GKP_ENGINE_BOUNDS_H
#define GKP_ENGINE_BOUNDS_H

#include <stdint.h>

/* One request's token count (promptTokenCount, an estimate): a thousand
 * times the largest context window. */
#define GKP__TOKENS_MAX INT64_C(1000000000)

/* A retry delay: two days (a daily limit resets within one). */
#define GKP__DELAY_MAX_MS (INT64_C(48) * 3600 * 1000)

/* A limit learned from quotaValue (requests or tokens per minute or day). */
#define GKP__LIMIT_MAX INT64_C(1000000000)

/* v limited to [lo, hi]. */
static inline int64_t gkp__clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

#endif
