/*
 * quota.h - the arithmetic every state backend shares: per-minute windows,
 * per-day counts, eligibility and the rule each error kind applies.
 *
 * Everything here is a pure function over plain values (the structs below,
 * which the mapped file embeds as they are and another backend would decode
 * into), with the time passed in: no locks, no I/O, no clock.
 *
 * Per-minute counts live in one-second buckets.  A bucket for second S
 * counts until S + 61 s + GKP__WINDOW_MARGIN_MS: a little longer than a
 * rolling 60 s window, so that a request the server timestamps slightly
 * later than we did can never make the next one arrive early.  Running sums
 * over the live buckets make a check O(1) in the common case.
 * Per-day counts start at the last midnight in America/Los_Angeles.
 */
#ifndef GKP_ENGINE_QUOTA_H
#define GKP_ENGINE_QUOTA_H

#include <stdint.h>

#include "gkp.h"

#define GKP__WINDOW_MARGIN_MS 250
#define GKP__WIN_SLOTS 64   /* one-second buckets; a window spans at most 62 */
#define GKP__ERROR_KINDS 16 /* room for error counters, >= GKP_KIND_COUNT */

typedef struct gkp__bucket {
  int64_t tokens;
  uint32_t reqs;
  uint32_t sec; /* the second (Unix time) this bucket counts */
} gkp__bucket;

/* Requests and tokens of the last minute. */
typedef struct gkp__window {
  int64_t sum_reqs, sum_tokens; /* over the buckets with sec > floor_sec */
  int64_t floor_sec;
  int64_t top_sec; /* the latest second counted (later than now: the clock went back) */
  gkp__bucket b[GKP__WIN_SLOTS];
} gkp__window;

/* The state of one (project, model) pair. */
typedef struct gkp__pm_counts {
  /* The backend journals some runs of adjacent fields together
   * (file_backend.c save_counted, save_used): keep them adjacent. */
  int64_t cooldown_until_ms;
  int32_t cooldown_kind;
  uint32_t proven;        /* a 2xx answer proved access to the model */
  uint32_t streak_429;    /* consecutive unknown_429s */
  uint32_t streak_server; /* consecutive server errors */
  int64_t day_start_ms;   /* the Pacific midnight day_count counts from */
  int64_t day_count;
  int64_t learned[3];    /* rpm, tpm, rpd learned from quotaValue; -1: none */
  int64_t learned_at[3]; /* when each was learned: it applies until the next
                            Pacific midnight after that */
  int64_t spare;         /* zero; room for a later field without a new format */
  uint64_t requests_total;
  uint64_t tokens_in_total;
  uint64_t tokens_out_total;
  uint64_t errors[GKP__ERROR_KINDS];
  char last_error[GKP_REASON_MAX];
  gkp__window win;
} gkp__pm_counts;

/* The state of one key, leases apart. */
typedef struct gkp__key_counts {
  uint32_t disabled;
  int32_t cooldown_kind;
  int64_t last_used_ms;
  uint64_t requests_total;
  int64_t cooldown_until_ms; /* key-wide cooldown (billing) */
  char disabled_reason[GKP_REASON_MAX];
} gkp__key_counts;

/* One instant, with what every key's check needs computed once. */
typedef struct gkp__instant {
  int64_t now;
  int64_t day_start;     /* the last Pacific midnight at or before now */
  int64_t next_midnight; /* the next one after now */
  int64_t dead_sec;      /* buckets of this second or older count no more */
} gkp__instant;

void gkp__instant_at(gkp__instant *t, int64_t now_ms);

/* A pm record that has never been used. */
void gkp__pm_counts_init(gkp__pm_counts *p);

/* When learned limit i (0 rpm, 1 tpm, 2 rpd) stops applying: the next
 * midnight Pacific after it was learned; 0 if there is none. */
int64_t gkp__learned_until(const gkp__pm_counts *p, int i);

/* The limits that apply at `now`: learned ones replace configured ones
 * until they heal (gkp__learned_until). */
void gkp__effective(const gkp__pm_counts *p, const gkp_limits *cfg, int64_t now, gkp_limits *out);

/* The ring bucket the second of `ms` maps to (whatever second it holds). */
gkp__bucket *gkp__bucket_of(gkp__window *w, int64_t ms);

/* Requests and tokens counted in the per-minute window. */
void gkp__window_totals(const gkp__window *w, const gkp__instant *t, int64_t *reqs,
                        int64_t *tokens);

/* Requests counted today (since the last Pacific midnight).  After a
 * wall-clock step back across midnight, the later day's count still
 * applies: a count never flips back and forth. */
int64_t gkp__day_count(const gkp__pm_counts *p, const gkp__instant *t);

/* When the day count resets (the midnight after the later of today and the
 * day the record counts). */
int64_t gkp__day_reset_ms(const gkp__pm_counts *p, const gkp__instant *t);

/* Whether the window holds a second later than now (the wall clock stepped
 * back), and moving such buckets, with their counts, to the present second:
 * their requests then count for a full window from now, so a step back never
 * undercounts and never holds a key for the length of the step. */
int gkp__window_from_future(const gkp__window *w, const gkp__instant *t);
void gkp__window_restamp(gkp__window *w, const gkp__instant *t);

/* Counts one request of `tokens` input tokens started at t->now.  Returns
 * the day it was counted in (for gkp__uncount_request). */
int64_t gkp__count_request(gkp__pm_counts *p, const gkp__instant *t, int64_t tokens);

/* Gives back a request counted at started_ms in day `day_ms` (a reservation
 * never sent). */
void gkp__uncount_request(gkp__pm_counts *p, int64_t started_ms, int64_t day_ms, int64_t tokens);

/* Adds `delta` tokens to the bucket of a request started at started_ms, if
 * that bucket is still in the ring (the estimate turned out wrong). */
void gkp__correct_tokens(gkp__pm_counts *p, int64_t started_ms, int64_t delta);

/*
 * Whether a request of `est` tokens fits the limits now.  Returns 1 if it
 * fits; else 0 with *ready_ms set to the earliest time it will (INT64_MAX if
 * never) and *reason to a gkp_wait_reason.
 */
int gkp__quota_fits(const gkp__pm_counts *p, const gkp_limits *lim, int64_t est,
                    const gkp__instant *t, int64_t *ready_ms, int *reason);

/*
 * Whether a key may take a request of `est` tokens for a pm pair, leases
 * apart: disabled, key-wide and pair cooldowns, quota.  Returns 1, or 0 with
 * *ready (INT64_MAX: never) and *reason.
 */
int gkp__key_fits(const gkp__key_counts *k, const gkp__pm_counts *p, const gkp_limits *cfg,
                  int64_t est, const gkp__instant *t, int64_t *ready, int *reason);

/* Forgets cooldowns, streaks, the last error and learned limits (a reset). */
void gkp__pm_reset(gkp__pm_counts *p);

/*
 * Applies the rule of an error verdict to a key and its pm pair at t->now;
 * `jitter` is a random number used to spread server-error backoffs.
 * Returns when the resulting cooldown ends (0: none).
 */
int64_t gkp__apply_rule(gkp__key_counts *k, gkp__pm_counts *p, const gkp_verdict *v,
                        const gkp__instant *t, uint64_t jitter);

/* Records a 2xx answer: proves access, ends streaks, corrects tokens (the
 * counts come from the answer: bounded before they are stored). */
void gkp__apply_usage(gkp__pm_counts *p, int64_t started_ms, int64_t est_tokens,
                      const gkp_usage *usage);

#endif
