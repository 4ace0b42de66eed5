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

/* Requests counted today (since the last Pacific midnight) at now_ms. */
int64_t gkp__day_count(const gkp__pm_rec *p, int64_t now_ms);

/* Counts one request of `tokens` input tokens started at now_ms. */
void gkp__count_request(gkp__pm_rec *p, int64_t now_ms, int64_t tokens);

/* Gives back a request counted at started_ms (a reservation never sent). */
void gkp__uncount_request(gkp__pm_rec *p, int64_t started_ms, int64_t tokens);

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
