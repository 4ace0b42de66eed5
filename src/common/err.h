/*
 * err.h - filling a gkp_error.
 */
#ifndef GKP_COMMON_ERR_H
#define GKP_COMMON_ERR_H

#include "gkp.h"

/* Sets err->code = code and formats err->msg (if err is non-NULL).
 * Returns code, so callers can write `return gkp__err(err, -EINVAL, ...)`. */
int gkp__err(gkp_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears err (code 0, empty message) if non-NULL. */
void gkp__err_clear(gkp_error *err);

#endif
