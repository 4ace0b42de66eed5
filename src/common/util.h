/*
 * util.h - small helpers every part uses: floor division, bounded string
 * copies, counted duplicates and growing arrays.
 */
#ifndef GKP_COMMON_UTIL_H
#define GKP_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

/* a / b rounded towards minus infinity (b != 0); C's `/` rounds towards 0. */
static inline int64_t gkp__floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Copies src (NULL counts as "") into dst of `size` bytes, truncated and
 * always NUL-terminated when size > 0. */
void gkp__strlcpy(char *dst, const char *src, size_t size);

/* A NUL-terminated copy of the n bytes at s (s may be NULL when n is 0), or
 * NULL when memory ran out.  The caller frees it. */
char *gkp__dup_n(const char *s, size_t n);

/*
 * Room for `need` elements of `size` bytes in the array p, which has room
 * for *cap: returns p itself when it is large enough, else p reallocated to
 * the next doubling of *cap (starting from `first`) that holds `need`, and
 * stores that capacity in *cap.  Returns NULL, with p and *cap untouched
 * (p still owned by the caller), when memory or size_t runs out.  Usage:
 *   item *n = gkp__grow(a->v, &a->cap, a->n + 1, sizeof *n, 16);
 *   if (n == NULL) return -ENOMEM;
 *   a->v = n;
 */
void *gkp__grow(void *p, size_t *cap, size_t need, size_t size, size_t first);

/*
 * The directory for a process's own files beside a pool state (the log of
 * runs, the spool): the state file's directory, or, when the state is a
 * server's URL (NAME://...), $XDG_STATE_HOME/gemini-pool (else
 * ~/.local/state/gemini-pool), created 0700 and checked like a state
 * directory (gkp__secure_dir).  Writes it into buf; returns 0, or -1 when
 * there is no such place, it is too long, or (err set) it is not the user's
 * alone.
 */
int gkp__local_state_dir(const char *state, char *buf, size_t len, gkp_error *err);

#endif
