#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

int gkp__err(gkp_error *err, int code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void gkp__err_clear(gkp_error *err) {
  if (err != NULL) {
    err->code = 0;
    err->msg[0] = '\0';
  }
}
