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

/* ---- the state backend under test ----------------------------------------
 * GKP_TEST_STATE=redis://... (set by the Redis variants of the suites) runs
 * a test against that server instead of a state file. */

#include "engine/redis_conn.h"

/* The Redis URL under test, or NULL for the state file. */
static inline const char *test_redis_url(void) {
  const char *u = getenv("GKP_TEST_STATE");
  return u != NULL && u[0] != '\0' ? u : NULL;
}

/* Runs one command on the server under test; returns the reply or aborts. */
static inline redisReply *test_redis_cmd(int argc, const char **argv) {
  gkp__rurl u;
  gkp__rconn c;
  gkp_error err;
  redisReply *r;
  if (gkp__rurl_parse(test_redis_url(), NULL, &u, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    abort();
  }
  gkp__rconn_init(&c, &u);
  r = gkp__rconn_cmd(&c, NULL, argc, argv, NULL, &err);
  gkp__rconn_free(&c);
  if (r == NULL) {
    fprintf(stderr, "redis: %s\n", err.msg);
    abort();
  }
  return r;
}

/* Empties the server under test. */
static inline void test_redis_flush(void) {
  const char *av[] = {"FLUSHDB"};
  freeReplyObject(test_redis_cmd(1, av));
}

/* Everything the server holds (each key's DUMP), for secret checks. */
static inline char *test_redis_dump(size_t *len) {
  const char *av[] = {"KEYS", "*"};
  redisReply *keys = test_redis_cmd(2, av);
  char *buf = calloc(1, 1);
  size_t n = 0;
  for (size_t i = 0; buf != NULL && i < keys->elements; i++) {
    const char *dv[] = {"DUMP", keys->element[i]->str};
    redisReply *d = test_redis_cmd(2, dv);
    if (d->type == REDIS_REPLY_STRING) {
      char *nb = realloc(buf, n + d->len + keys->element[i]->len + 1);
      if (nb != NULL) {
        buf = nb;
        memcpy(buf + n, keys->element[i]->str, keys->element[i]->len);
        n += keys->element[i]->len;
        memcpy(buf + n, d->str, d->len);
        n += d->len;
        buf[n] = '\0';
      }
    }
    freeReplyObject(d);
  }
  freeReplyObject(keys);
  *len = n;
  return buf;
}

#endif
