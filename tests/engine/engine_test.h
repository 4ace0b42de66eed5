/*
 * engine_test.h - helpers shared by the engine's test programs.
 */
#ifndef GKP_TESTS_ENGINE_TEST_H
#define GKP_TESTS_ENGINE_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gkp.h"

/* The injected clock: tests set t_now. */
static int64_t t_now;
__attribute__((unused)) static int64_t test_clock(void *ud) {
  (void)ud;
  return t_now;
}

/* A fresh temporary directory for a test's state files. */
static inline char *test_tmpdir(void) {
  char *d = strdup("/tmp/gkp-test-XXXXXX");
  if (d == NULL || mkdtemp(d) == NULL) {
    abort();
  }
  return d;
}

static inline void test_rmrf(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not remove %s\n", dir);
  }
}

/* Reads a whole file; the caller frees.  NULL on error. */
static inline char *test_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL) {
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf != NULL) {
    buf[n] = '\0';
    if (len != NULL) {
      *len = (size_t)n;
    }
  }
  return buf;
}

/* Whether `needle` occurs anywhere in the len bytes at hay. */
static inline int test_contains(const char *hay, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= len && i <= len - n; i++) {
    if (memcmp(hay + i, needle, n) == 0) {
      return 1;
    }
  }
  return 0;
}

#endif
