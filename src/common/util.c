/*
 * util.c - small helpers every part uses (util.h).
 */
#include "common/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void gkp__strlcpy(char *dst, const char *src, size_t size) {
  size_t n;
  if (size == 0) {
    return;
  }
  n = src != NULL ? strnlen(src, size - 1) : 0;
  if (n > 0) {
    memcpy(dst, src, n);
  }
  dst[n] = '\0';
}

char *gkp__dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d != NULL) {
    if (n > 0) {
      memcpy(d, s, n);
    }
    d[n] = '\0';
  }
  return d;
}

void *gkp__grow(void *p, size_t *cap, size_t need, size_t size, size_t first) {
  size_t c = *cap != 0 ? *cap : (first != 0 ? first : 1);
  if (need <= *cap && p != NULL) {
    return p;
  }
  while (c < need) {
    if (c > SIZE_MAX / 2) {
      return NULL;
    }
    c *= 2;
  }
  if (size != 0 && c > SIZE_MAX / size) {
    return NULL;
  }
  void *q = realloc(p, c * size);
  if (q != NULL) {
    *cap = c;
  }
  return q;
}
