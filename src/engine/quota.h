/*
 * quota.h - counting requests and tokens against RPM, TPM and RPD.
 *
 * Per-minute counts live in one-second buckets.  A bucket for second S
 * counts until S + 61 s + GKP__WINDOW_MARGIN_MS: a little longer than a
 * rolling 60 s window, so that a request the server timestamps slightly
 * later than we did can never make the next one arrive early.
 * Per-day counts start at the last midnight in America/Los_Angeles.
 */
#ifndef GKP_ENGINE_QUOTA_H
#define GKP_ENGINE_QUOTA_H

#include "engine/store.h"

#define GKP__WINDOW_MARGIN_MS 250

/* Requests and tokens counted in the per-minute window at now_ms. */
void gkp__window_totals(const gkp__pm_rec *p, int64_t now_ms, int64_t *reqs, int64_t *tokens);

/* Requests counted today (since the last Pacific midnight) at now_ms.  After
 * a wall-clock step back across midnight, the later day's count still
 * applies: a count never flips back and forth. */
int64_t gkp__day_count(const gkp__pm_rec *p, int64_t now_ms);

/* The Pacific midnight the day count is counted from for a request at now_ms
 * (never earlier than the record's day), and when that count resets. */
int64_t gkp__count_day(const gkp__pm_rec *p, int64_t now_ms);
int64_t gkp__day_reset_ms(const gkp__pm_rec *p, int64_t now_ms);

/* Counts one request of `tokens` input tokens started at now_ms.  Returns
 * the day it was counted in (for gkp__uncount_request). */
int64_t gkp__count_request(gkp__pm_rec *p, int64_t now_ms, int64_t tokens);

/* Gives back a request counted at started_ms in day `day_ms` (a reservation
 * never sent). */
void gkp__uncount_request(gkp__pm_rec *p, int64_t started_ms, int64_t day_ms, int64_t tokens);

/* Whether a window bucket is stamped later than now_ms (the wall clock
 * stepped back), and moving such buckets, with their counts, to the present
 * second: their requests then count for a full window from now, so a step
 * back never undercounts and never holds a key for the length of the step. */
int gkp__window_from_future(const gkp__pm_rec *p, int64_t now_ms);
void gkp__window_restamp(gkp__pm_rec *p, int64_t now_ms);

/* Adds `delta` tokens to the bucket of a request started at started_ms, if
 * that bucket is still in the ring (the estimate turned out wrong). */
void gkp__correct_tokens(gkp__pm_rec *p, int64_t started_ms, int64_t delta);

/*
 * Whether a request of `est` tokens fits the limits now.  Returns 1 if it
 * fits; else 0 with *ready_ms set to the earliest time it will (INT64_MAX if
 * never) and *reason to a gkp_wait_reason.
 */
int gkp__quota_fits(const gkp__pm_rec *p, const gkp_limits *lim, int64_t est, int64_t now_ms,
                    int64_t *ready_ms, int *reason);

#endif
