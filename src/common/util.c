/*
 * util.c - small helpers every part uses (util.h).
 */
#include "common/util.h"

#include "common/securedir.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int gkp__local_state_dir(const char *state, char *buf, size_t len, gkp_error *err) {
  const char *scheme = strstr(state, "://"), *slash;
  const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
  int n;
  if (scheme == NULL || strchr(state, '/') < scheme) {
    slash = strrchr(state, '/');
    n = slash == NULL    ? snprintf(buf, len, ".")
        : slash == state ? snprintf(buf, len, "/")
                         : snprintf(buf, len, "%.*s", (int)(slash - state), state);
    return n > 0 && (size_t)n < len ? 0 : -1;
  }
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(buf, len, "%s/gemini-pool", xdg);
  } else if (home != NULL && home[0] == '/') {
    n = snprintf(buf, len, "%s/.local/state/gemini-pool", home);
  } else {
    return -1;
  }
  if (n <= 0 || (size_t)n >= len) {
    return -1;
  }
  return gkp__secure_dir(buf, 1, "the local state directory", err) == 0 ? 0 : -1;
}
