/*
 * client_counts.h - what the HTTP front's callers (the `clients` of
 * keys.json) used, kept with the shared state so that every front on one
 * state counts against the same limits and a restart forgets nothing.
 *
 * The arithmetic is pure: one caller's counts, a request admitted or
 * refused against its rpm (the last 60 s, in one-second buckets) and its
 * rpd (since midnight Pacific), an error counted.  Both backends keep a
 * caller's counts as the one-line text of gkp__client_encode (the file
 * backend in a record of the file beside the state file, Redis in a string),
 * and read them back through gkp__client_decode, which trusts nothing.
 */
#ifndef GKP_ENGINE_CLIENT_COUNTS_H
#define GKP_ENGINE_CLIENT_COUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

#define GKP__CLIENT_SECONDS 60
/* Room for an encoded record: 60 buckets of two 20-digit numbers, and more. */
#define GKP__CLIENT_TEXT_MAX 2800

typedef struct gkp__client_counts {
  int64_t day_ms; /* the midnight Pacific `today` counts from */
  int64_t today;
  int64_t sec[GKP__CLIENT_SECONDS]; /* the second each bucket counts */
  int64_t n[GKP__CLIENT_SECONDS];
  int64_t requests, rejected, errors;
} gkp__client_counts;

enum { GKP__CLIENT_ADMIT = 0, GKP__CLIENT_ERROR = 1 };

/* ADMIT: counts a request unless the caller is over rpm or rpd (0: no
 * limit); returns 0, or the seconds until it may send again (the refusal
 * counted).  ERROR: counts an error, returns 0. */
int64_t gkp__client_count(gkp__client_counts *c, int kind, int64_t now_ms, int64_t rpm,
                          int64_t rpd);

/* The counts as of now. */
void gkp__client_read(const gkp__client_counts *c, int64_t now_ms, gkp_client_usage *out);

/* One line of text (no newline), at most GKP__CLIENT_TEXT_MAX - 1 bytes. */
void gkp__client_encode(const gkp__client_counts *c, char *buf, size_t len);

/* Parses what gkp__client_encode wrote; 0, or -EINVAL (and zero counts)
 * for anything else: a damaged record counts from zero. */
int gkp__client_decode(const char *s, size_t len, gkp__client_counts *out);

/* Whether `id` may name a caller's record (printable, no space). */
int gkp__client_id_ok(const char *id);

#endif
