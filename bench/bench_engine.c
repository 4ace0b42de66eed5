/*
 * bench_engine.c - reserve + record + release cycles per second on a durable
 * state file: one process, eight processes sharing the file, and a naive
 * baseline that locks, parses the whole JSON state and rewrites it (write a
 * new file, rename) for every operation.
 *
 * The same cycle, one process, with pools of 256 and 10 000 keys (one
 * project each): selection must not cost more with more keys.
 *
 * Usage: bench_engine [SECONDS_PER_PHASE]
 * Routing decisions per second on the 10 000-key pool (its quota used by the
 * phase before): a decision reads a cached per-model summary, never the keys.
 *
 * Last line: bench-engine: cycles_per_s_1proc=N cycles_per_s_8proc=N keys_256_per_s=N
 *            keys_10000_per_s=N naive_per_s=N route_per_s=N route_decide_per_s=N
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/route.h"
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

static gkp_pool *open_config(const char *state, const char *config) {
  gkp_pool *pool;
  gkp_options o = {.state_path = state};
  gkp_error err;
  if (gkp_pool_open_text(&pool, config, strlen(config), "bench.json", NULL, &o, &err) != 0) {
    fprintf(stderr, "bench-engine: %s\n", err.msg);
    exit(1);
  }
  return pool;
}

static gkp_pool *open_pool(const char *state) {
  return open_config(state, CONFIG);
}

/* A configuration of n keys (n projects) with the bench model. */
static char *config_of(int n) {
  size_t cap = (size_t)n * 64 + 256, len = 0;
  char *c = malloc(cap);
  len += (size_t)snprintf(c + len, cap - len, "{\"providers\":{\"gemini\":{\"keys\":[");
  for (int i = 0; i < n; i++) {
    len += (size_t)snprintf(c + len, cap - len, "%s{\"id\":\"k%d\",\"api_key\":\"FAKE-B-%d\"}",
                            i ? "," : "", i, i);
  }
  snprintf(c + len, cap - len,
           "]}},\"models\":{\"bench-model\":{\"rpm\":100000000,\"tpm\":1000000000000,"
           "\"rpd\":1000000000000}}}");
  return c;
}

/* Runs cycles for `secs` seconds; returns how many completed. */
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
      fprintf(stderr, "bench-engine: reserve: %s\n", err.msg);
      exit(1);
    }
    gkp_record_usage(pool, &l, &u, NULL);
    gkp_release(pool, &l, 1, NULL);
    n++;
  }
  return n;
}

static double bench_one(const char *state, double secs) {
  gkp_pool *pool = open_pool(state);
  double t = now_s();
  long n = run_cycles(pool, secs);
  t = now_s() - t;
  gkp_pool_close(pool);
  return (double)n / t;
}

/* One process on a pool of n keys; every key is used once before the
 * measurement (the first use of a key creates its records). */
static double bench_keys(const char *state, int n, double secs) {
  char *config = config_of(n);
  gkp_pool *pool = open_config(state, config);
  gkp_usage u = {.prompt_tokens = 120, .candidates_tokens = 40, .thoughts_tokens = -1};
  for (int i = 0; i < n; i++) {
    gkp_lease l;
    if (gkp_reserve(pool, "bench-model", 100, &l, NULL, NULL) == 0) {
      gkp_record_usage(pool, &l, &u, NULL);
      gkp_release(pool, &l, 1, NULL);
    }
  }
  double t = now_s();
  long cycles = run_cycles(pool, secs);
  t = now_s() - t;
  gkp_pool_close(pool);
  free(config);
  return (double)cycles / t;
}

/* Routing decisions (gkp_route: the decision and its JSON) per second on a
 * pool of n keys whose quota was used: the quota summary comes from the
 * cache, refreshed (one walk of the keys) every second. */
static double bench_route(const char *state, int n, double secs, double *decide_per_s) {
  static const char *const tasks[] = {
      "summarize this paragraph",
      "explain how a TCP handshake works, step by step",
      "refactor this module so that it has no global state",
      "fix typo in: teh cat",
      "what is the latest news about the Debian release",
      "a deep analysis of the strategic options for the company",
  };
  char *config = config_of(n);
  gkp_pool *pool = open_config(state, config);
  long count = 0;
  double t = now_s(), end = t + secs;
  while (now_s() < end) {
    for (int i = 0; i < 64; i++) {
      char *doc = NULL;
      if (gkp_route(pool, tasks[count % 6], NULL, 0, &doc, NULL) != 0) {
        fprintf(stderr, "gkp_route failed\n");
        exit(1);
      }
      gkp_free(doc);
      count++;
    }
  }
  t = now_s() - t;
  /* The decision alone (gkp__pool_route), without rendering its document:
   * what a routed job costs before it is queued, less the JSON it records. */
  long decided = 0;
  double t2 = now_s(), end2 = t2 + secs;
  while (now_s() < end2) {
    for (int i = 0; i < 64; i++) {
      gkp__route r;
      const char *task = tasks[decided % 6];
      gkp__route_in in = {.task = task, .len = strlen(task), .quality = -1};
      if (gkp__pool_route(pool, &in, &r, NULL) != 0) {
        fprintf(stderr, "gkp__pool_route failed\n");
        exit(1);
      }
      decided++;
    }
  }
  *decide_per_s = (double)decided / (now_s() - t2);
  gkp_pool_close(pool);
  free(config);
  return (double)count / t;
}

static double bench_many(const char *state, double secs) {
  long *counts =
      mmap(NULL, sizeof(long) * PROCS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pids[PROCS];
  double t = now_s();
  long total = 0;
  for (int i = 0; i < PROCS; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      gkp_pool *pool = open_pool(state);
      counts[i] = run_cycles(pool, secs);
      gkp_pool_close(pool);
      _exit(0);
    }
  }
  for (int i = 0; i < PROCS; i++) {
    waitpid(pids[i], NULL, 0);
    total += counts[i];
  }
  t = now_s() - t;
  munmap(counts, sizeof(long) * PROCS);
  return (double)total / t;
}

/* ---- the naive baseline: lock, parse the whole JSON, rewrite it ---------- */

typedef struct naive {
  const char *path;
  char tmp[4200];
  int lockfd;
} naive;

static cJSON *naive_load(naive *nv) {
  FILE *f = fopen(nv->path, "rb");
  char *buf;
  long len;
  cJSON *doc;
  if (f == NULL) {
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)len + 1);
  if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
    len = 0;
  }
  buf[len] = '\0';
  fclose(f);
  doc = cJSON_Parse(buf);
  free(buf);
  return doc;
}

static void naive_save(naive *nv, cJSON *doc) {
  char *text = cJSON_Print(doc);
  int fd = open(nv->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) {
    perror("naive");
    exit(1);
  }
  close(fd);
  rename(nv->tmp, nv->path);
  free(text);
}

static cJSON *naive_begin(naive *nv) {
  flock(nv->lockfd, LOCK_EX);
  return naive_load(nv);
}

static void naive_end(naive *nv, cJSON *doc) {
  naive_save(nv, doc);
  cJSON_Delete(doc);
  flock(nv->lockfd, LOCK_UN);
}

static void naive_init(naive *nv) {
  cJSON *doc = cJSON_CreateObject(), *keys = cJSON_AddArrayToObject(doc, "keys");
  for (int i = 0; i < NKEYS; i++) {
    char id[8];
    cJSON *k = cJSON_CreateObject(), *m;
    snprintf(id, sizeof id, "k%d", i + 1);
    cJSON_AddStringToObject(k, "id", id);
    cJSON_AddNumberToObject(k, "inflight", 0);
    cJSON_AddNumberToObject(k, "last_used", 0);
    cJSON_AddNumberToObject(k, "requests_total", 0);
    m = cJSON_AddObjectToObject(cJSON_AddObjectToObject(k, "models"), "bench-model");
    cJSON_AddNumberToObject(m, "requests_today", 0);
    cJSON_AddNumberToObject(m, "tokens", 0);
    cJSON_AddNumberToObject(m, "cooldown_until", 0);
    cJSON_AddItemToArray(keys, k);
  }
  naive_save(nv, doc);
  cJSON_Delete(doc);
}

static double num(cJSON *o, const char *f) {
  return cJSON_GetObjectItem(o, f)->valuedouble;
}

static void set(cJSON *o, const char *f, double v) {
  cJSON_SetNumberValue(cJSON_GetObjectItem(o, f), v);
}

/* One reserve + record + release cycle, each a locked read-modify-rewrite. */
static void naive_cycle(naive *nv, double t) {
  cJSON *doc = naive_begin(nv), *k, *best = NULL;
  int idx = 0, best_idx = 0;
  cJSON_ArrayForEach(k, cJSON_GetObjectItem(doc, "keys")) {
    if (num(k, "inflight") == 0 && (best == NULL || num(k, "last_used") < num(best, "last_used"))) {
      best = k;
      best_idx = idx;
    }
    idx++;
  }
  set(best, "inflight", 1);
  set(best, "last_used", t);
  set(best, "requests_total", num(best, "requests_total") + 1);
  naive_end(nv, doc);

  doc = naive_begin(nv);
  k = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "keys"), best_idx);
  cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(k, "models"), "bench-model");
  set(m, "requests_today", num(m, "requests_today") + 1);
  set(m, "tokens", num(m, "tokens") + 120);
  naive_end(nv, doc);

  doc = naive_begin(nv);
  k = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "keys"), best_idx);
  set(k, "inflight", 0);
  naive_end(nv, doc);
}

static double bench_naive(const char *path, double secs) {
  naive nv = {.path = path};
  char lock[4200];
  double t, end;
  long n = 0;
  snprintf(nv.tmp, sizeof nv.tmp, "%s.tmp", path);
  snprintf(lock, sizeof lock, "%s.lock", path);
  nv.lockfd = open(lock, O_RDWR | O_CREAT, 0600);
  naive_init(&nv);
  t = now_s();
  end = t + secs;
  while (now_s() < end) {
    naive_cycle(&nv, now_s());
    n++;
  }
  t = now_s() - t;
  close(nv.lockfd);
  return (double)n / t;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 3.0;
  char dir[] = "/tmp/gkp-bench-XXXXXX", state[4200], naive_path[4200], big[4200], huge[4200];
  char cmd[4300];

  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(state, sizeof state, "%s/state.db", dir);
  snprintf(naive_path, sizeof naive_path, "%s/naive.json", dir);
  snprintf(big, sizeof big, "%s/keys256.db", dir);
  snprintf(huge, sizeof huge, "%s/keys10000.db", dir);

  double one = bench_one(state, secs);
  printf("engine, 1 process:   %10.0f cycles/s (reserve + record usage + release)\n", one);
  double many = bench_many(state, secs);
  printf("engine, %d processes: %10.0f cycles/s aggregate, one state file\n", PROCS, many);
  double k256 = bench_keys(big, 256, secs);
  printf("engine, 256 keys:    %10.0f cycles/s (1 process)\n", k256);
  double k10000 = bench_keys(huge, 10000, secs);
  printf("engine, 10000 keys:  %10.0f cycles/s (1 process): %.0f%% of the %d-key figure\n", k10000,
         100.0 * k10000 / one, NKEYS);
  double decide;
  double route = bench_route(huge, 10000, secs, &decide);
  printf("routing, 10000 keys: %10.0f decisions/s with their JSON (gkp_route): %.1fx the "
         "1-process cycle\n",
         route, route / one);
  printf("routing, 10000 keys: %10.0f decisions/s without the JSON: %.1fx the 1-process cycle\n",
         decide, decide / one);
  double nv = bench_naive(naive_path, secs);
  printf("naive JSON rewrite:  %10.0f cycles/s (lock, parse, write new + rename per op)\n", nv);
  printf("ratio: 1 process %.0fx, %d processes %.0fx the naive baseline\n", one / nv, PROCS,
         many / nv);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not remove %s\n", dir);
  }
  printf("bench-engine: cycles_per_s_1proc=%.0f cycles_per_s_8proc=%.0f keys_256_per_s=%.0f "
         "keys_10000_per_s=%.0f naive_per_s=%.0f route_per_s=%.0f route_decide_per_s=%.0f\n",
         one, many, k256, k10000, nv, route, decide);
  return 0;
}
