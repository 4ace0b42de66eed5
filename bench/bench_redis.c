/*
 * bench_redis.c - the Redis backend's request cycles per second (reserve,
 * then finish: usage and release in one step, as the runner does) against a
 * running redis-server: one process, eight processes, and a
 * naive client-side baseline in eight processes that does the same work with
 * WATCH / MULTI / EXEC around a read-modify-write of the same records
 * (retrying when another client touched them).
 *
 * Usage: bench_redis URL SECONDS_PER_PHASE
 * Last line: bench-redis: redis_1proc_per_s=N redis_8proc_per_s=N redis_naive_per_s=N
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "gkp.h"

#define NKEYS 8
#define PROCS 8

static const char *CONFIG =
    "{\"providers\":{\"gemini\":{\"keys\":["
    "{\"id\":\"k1\",\"api_key\":\"FAKE-B-1\"},{\"id\":\"k2\",\"api_key\":\"FAKE-B-2\"},"
    "{\"id\":\"k3\",\"api_key\":\"FAKE-B-3\"},{\"id\":\"k4\",\"api_key\":\"FAKE-B-4\"},"
    "{\"id\":\"k5\",\"api_key\":\"FAKE-B-5\"},{\"id\":\"k6\",\"api_key\":\"FAKE-B-6\"},"
    "{\"id\":\"k7\",\"api_key\":\"FAKE-B-7\"},{\"id\":\"k8\",\"api_key\":\"FAKE-B-8\"}]}},"
    "\"models\":{\"bench-model\":{\"rpm\":100000000,\"tpm\":1000000000000,"
    "\"rpd\":1000000000000}}}";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static gkp_pool *open_pool(const char *url) {
  gkp_pool *pool;
  gkp_options o = {.state_path = url};
  gkp_error err;
  if (gkp_pool_open_text(&pool, CONFIG, strlen(CONFIG), "bench.json", NULL, &o, &err) != 0) {
    fprintf(stderr, "bench-redis: %s\n", err.msg);
    exit(1);
  }
  return pool;
}

static long run_cycles(gkp_pool *pool, double secs) {
  double end = now_s() + secs;
  long n = 0;
  gkp_usage u = {.prompt_tokens = 120, .candidates_tokens = 40, .thoughts_tokens = -1};
  while ((n & 63) != 0 || now_s() < end) {
    gkp_lease l;
    gkp_error err;
    int rc = gkp_reserve(pool, "bench-model", 100, &l, NULL, &err);
    if (rc == -EAGAIN) {
      sched_yield();
      continue;
    }
    if (rc != 0) {
      fprintf(stderr, "bench-redis: reserve: %s\n", err.msg);
      exit(1);
    }
    gkp__pool_finish(pool, &l, &u, 1, NULL);
    n++;
  }
  return n;
}

/* ---- the naive baseline ------------------------------------------------------ */

static redisContext *naive_connect(const char *url) {
  char host[256];
  int port;
  redisContext *c;
  if (sscanf(url, "redis://%255[^:]:%d", host, &port) != 2) {
    fprintf(stderr, "bench-redis: the naive baseline needs a redis://host:port URL\n");
    exit(1);
  }
  c = redisConnect(host, port);
  if (c == NULL || c->err) {
    fprintf(stderr, "bench-redis: cannot connect to %s\n", url);
    exit(1);
  }
  return c;
}

static long long ms_now(redisContext *c) {
  redisReply *r = redisCommand(c, "TIME");
  long long t = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
  freeReplyObject(r);
  return t;
}

/* EXEC's answer: 1 if the transaction ran, 0 if a watched key changed. */
static int exec_ok(redisContext *c) {
  redisReply *r = redisCommand(c, "EXEC");
  int ok = r != NULL && r->type == REDIS_REPLY_ARRAY;
  freeReplyObject(r);
  return ok;
}

/* Reserve: the least recently used key, its lease set and counters read,
 * checked and written back under WATCH.  Returns the key index or -1. */
static int naive_reserve(redisContext *c, long long *lease) {
  redisReply *lru = redisCommand(c, "ZRANGE nv:lru 0 %d", NKEYS - 1);
  int got = -1;
  for (size_t i = 0; got < 0 && i < lru->elements; i++) {
    const char *k = lru->element[i]->str;
    long long now = ms_now(c);
    freeReplyObject(redisCommand(c, "WATCH nv:{%s}:l nv:{%s}:m nv:{%s}:w nv:lru", k, k, k));
    redisReply *busy = redisCommand(c, "ZCOUNT nv:{%s}:l (%lld +inf", k, now);
    redisReply *m = redisCommand(c, "HGETALL nv:{%s}:m", k);
    redisReply *w = redisCommand(c, "HGETALL nv:{%s}:w", k);
    int free_key = busy->integer == 0;
    freeReplyObject(busy);
    freeReplyObject(m);
    freeReplyObject(w);
    if (!free_key) {
      freeReplyObject(redisCommand(c, "UNWATCH"));
      continue;
    }
    *lease = now;
    freeReplyObject(redisCommand(c, "MULTI"));
    freeReplyObject(redisCommand(c, "ZADD nv:{%s}:l %lld %lld", k, now + 60000, now));
    freeReplyObject(redisCommand(c, "HINCRBY nv:{%s}:w r%lld 1", k, now / 1000));
    freeReplyObject(redisCommand(c, "HINCRBY nv:{%s}:w t%lld 100", k, now / 1000));
    freeReplyObject(redisCommand(c, "HINCRBY nv:{%s}:m dc 1", k));
    freeReplyObject(redisCommand(c, "ZADD nv:lru %lld %s", now, k));
    if (exec_ok(c)) {
      got = atoi(k + 1);
    }
  }
  freeReplyObject(lru);
  return got;
}

static void naive_record(redisContext *c, int k, long long started) {
  for (;;) {
    freeReplyObject(redisCommand(c, "WATCH nv:{k%d}:m nv:{k%d}:w", k, k));
    redisReply *t = redisCommand(c, "HGET nv:{k%d}:w t%lld", k, started / 1000);
    long long v = t->str != NULL ? atoll(t->str) : 0;
    freeReplyObject(t);
    freeReplyObject(redisCommand(c, "MULTI"));
    freeReplyObject(redisCommand(c, "HSET nv:{k%d}:w t%lld %lld", k, started / 1000, v + 20));
    freeReplyObject(redisCommand(c, "HSET nv:{k%d}:m prv 1 s429 0 ssrv 0", k));
    freeReplyObject(redisCommand(c, "HINCRBY nv:{k%d}:m tin 120", k));
    if (exec_ok(c)) {
      return;
    }
  }
}

static void naive_release(redisContext *c, int k, long long lease) {
  for (;;) {
    freeReplyObject(redisCommand(c, "WATCH nv:{k%d}:l", k));
    redisReply *s = redisCommand(c, "ZSCORE nv:{k%d}:l %lld", k, lease);
    freeReplyObject(s);
    freeReplyObject(redisCommand(c, "MULTI"));
    freeReplyObject(redisCommand(c, "ZREM nv:{k%d}:l %lld", k, lease));
    if (exec_ok(c)) {
      return;
    }
  }
}

static long naive_cycles(const char *url, double secs) {
  redisContext *c = naive_connect(url);
  double end = now_s() + secs;
  long n = 0;
  for (int i = 1; i <= NKEYS; i++) {
    freeReplyObject(redisCommand(c, "ZADD nv:lru NX 0 k%d", i));
  }
  while ((n & 63) != 0 || now_s() < end) {
    long long lease;
    int k = naive_reserve(c, &lease);
    if (k < 0) {
      sched_yield();
      continue;
    }
    naive_record(c, k, lease);
    naive_release(c, k, lease);
    n++;
  }
  redisFree(c);
  return n;
}

/* ---- phases ---------------------------------------------------------------------------- */

/* Runs `procs` processes for `secs`; returns cycles per second in all. */
static double in_processes(const char *url, int procs, double secs, int naive) {
  long *counts =
      mmap(NULL, sizeof(long) * PROCS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pids[PROCS];
  double t = now_s();
  long total = 0;
  for (int i = 0; i < procs; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      if (naive) {
        counts[i] = naive_cycles(url, secs);
      } else {
        gkp_pool *pool = open_pool(url);
        counts[i] = run_cycles(pool, secs);
        gkp_pool_close(pool);
      }
      _exit(0);
    }
  }
  for (int i = 0; i < procs; i++) {
    waitpid(pids[i], NULL, 0);
    total += counts[i];
  }
  t = now_s() - t;
  munmap(counts, sizeof(long) * PROCS);
  return (double)total / t;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_redis URL SECONDS\n");
    return 2;
  }
  const char *url = argv[1];
  double secs = atof(argv[2]);
  gkp_pool_close(open_pool(url)); /* the keys' records exist before the race */
  double one = in_processes(url, 1, secs, 0);
  printf("redis backend, 1 process:   %10.0f cycles/s (reserve + finish)\n", one);
  double many = in_processes(url, PROCS, secs, 0);
  printf("redis backend, %d processes: %10.0f cycles/s aggregate, one server\n", PROCS, many);
  double nv = in_processes(url, PROCS, secs, 1);
  printf("naive WATCH/MULTI/EXEC, %d processes: %10.0f cycles/s aggregate\n", PROCS, nv);
  printf("ratio: %d processes %.1fx the naive baseline\n", PROCS, many / nv);
  printf("bench-redis: redis_1proc_per_s=%.0f redis_8proc_per_s=%.0f redis_naive_per_s=%.0f\n", one,
         many, nv);
  return 0;
}
