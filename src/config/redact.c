/*
 * redact.c - keeping the configured keys out of text that came from outside.
 *
 * An upstream (or anything answering in its place) may echo a key in an
 * error message, whole or altered.  Every 8-character run of every
 * configured key is kept, as one 64-bit value, in a sorted table on
 * undumpable pages; a text is redacted by looking up each of its 8-byte
 * windows, so any run of 8 or more characters of a key is found whatever
 * surrounds it, in time proportional to the text's length times log(keys).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/secmem.h"
#include "config/internal.h"

#define RUN 8 /* the shortest run of a key that is redacted */

static const char MARK[] = "\xe2\x80\xa6"; /* "…", shorter than any run */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* See internal.h. */
int gkp__config_build_runs(gkp__config *cfg) {
  size_t n = 0;
  for (size_t i = 0; i < cfg->nkeys; i++) {
    size_t len = strlen(cfg->keys[i].secret);
    n += len >= RUN ? len - RUN + 1 : 0;
  }
  if (n == 0) {
    return 0;
  }
  uint64_t *runs = gkp__secmem_alloc(n * sizeof *runs);
  if (runs == NULL) {
    return -ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < cfg->nkeys; i++) {
    const char *s = cfg->keys[i].secret;
    size_t len = strlen(s);
    for (size_t j = 0; j + RUN <= len; j++) {
      memcpy(&runs[k++], s + j, RUN);
    }
  }
  qsort(runs, n, sizeof *runs, cmp_u64);
  cfg->runs = runs;
  cfg->nruns = n;
  return 0;
}

/* See config.h. */
size_t gkp__config_redact(const gkp__config *cfg, char *text) {
  size_t n = text != NULL ? strlen(text) : 0;
  if (cfg == NULL || cfg->nruns == 0 || n < RUN) {
    return 0;
  }
  /* covered_to: where the key runs found so far end; the output trails the
   * input, so it is built apart and copied back. */
  char *res = malloc(n + 1);
  size_t covered_to = 0, out = 0, found = 0;
  if (res == NULL) {
    memcpy(text, MARK, sizeof MARK); /* no room to look: keep nothing */
    return 1;
  }
  for (size_t in = 0; in < n; in++) {
    uint64_t w;
    if (in + RUN <= n) {
      memcpy(&w, text + in, RUN);
      if (bsearch(&w, cfg->runs, cfg->nruns, sizeof w, cmp_u64) != NULL) {
        if (covered_to <= in) {
          memcpy(res + out, MARK, sizeof MARK - 1); /* a new redacted stretch */
          out += sizeof MARK - 1;
          found++;
        }
        covered_to = in + RUN;
      }
    }
    if (in >= covered_to) {
      res[out++] = text[in];
    }
  }
  res[out] = '\0';
  memcpy(text, res, out + 1);
  explicit_bzero(res, n + 1);
  free(res);
  return found;
}
