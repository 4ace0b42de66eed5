/*
 * fs_status.c - the generated files: README, ctl's help, and status/ (pool,
 * pool.json, metrics, jobs, keys/<id>, models/<model>).  Every status file
 * is rendered fresh when it is opened, from the state file (the pool's
 * status document) and the filesystem's own job table.  None of them ever
 * holds a key: the status document names keys by id only.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dynbuf.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "engine/engine.h"
#include "engine/pool_impl.h"
#include "engine/status.h"
#include "fs/fs.h"

#define OUT_MAX ((size_t)256 << 20)

static const char CTL_HELP[] =
    "Write one command to this file:\n"
    "  reload         re-read the configuration (keys.json and .env)\n"
    "  reset KEY_ID   clear the cooldowns of a key and enable it again\n"
    "  reset all      the same for every key\n"
    "  rate DIR/NAME SCORE   score a finished job 1 to 5; routing learns from the scores\n"
    "e.g.  echo reload > ctl;  echo 'rate auto/q1 5' > ctl\n"
    "A bad command is refused with \"Invalid argument\"; the mount's log says why.\n";

/* ---- helpers --------------------------------------------------------------------- */

static double num(const cJSON *o, const char *field, double dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str(const cJSON *o, const char *field, const char *dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
  return cJSON_IsString(v) ? v->valuestring : dflt;
}

static int finish(gkp__dynbuf *b, char **out, size_t *len) {
  *out = gkp__dynbuf_take(b, len);
  return *out != NULL ? 0 : -ENOMEM;
}

/* The pool's status document, parsed. */
static cJSON *status_doc(char **text) {
  gkp_error err;
  char *json = NULL;
  cJSON *doc;
  if (gkp_status_json(fs.pool, &json, &err) != 0) {
    fs_log(GKP_LOG_WARN, "status: %s", err.msg);
    return NULL;
  }
  doc = cJSON_Parse(json);
  if (text != NULL) {
    *text = json;
  } else {
    free(json);
  }
  return doc;
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void label(gkp__dynbuf *b, const char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\\' || *s == '"') {
      gkp__dynbuf_printf(b, "\\%c", *s);
    } else if (*s == '\n') {
      gkp__dynbuf_adds(b, "\\n");
    } else {
      gkp__dynbuf_add(b, s, 1);
    }
  }
}

static void help(gkp__dynbuf *b, const char *name, const char *type, const char *text) {
  gkp__dynbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* One sample: name{key="k",model="m",kind="x"} value.  NULL labels are left out. */
static void sample(gkp__dynbuf *b, const char *name, const char *key, const char *model,
                   const char *kind, double v) {
  const char *names[3] = {"key", "model", "kind"}, *vals[3] = {key, model, kind};
  int any = 0;
  gkp__dynbuf_adds(b, name);
  for (int i = 0; i < 3; i++) {
    if (vals[i] == NULL) {
      continue;
    }
    gkp__dynbuf_printf(b, "%s%s=\"", any ? "," : "{", names[i]);
    label(b, vals[i]);
    gkp__dynbuf_adds(b, "\"");
    any = 1;
  }
  gkp__dynbuf_printf(b, "%s %.17g\n", any ? "}" : "", v);
}

static int model_active(const cJSON *m) {
  return num(m, "requests_total", 0) > 0 || num(m, "cooldown_until", 0) > 0 ||
         str(m, "last_error", NULL) != NULL;
}

/* ---- status/metrics ------------------------------------------------------------------ */

static void metrics_pool(gkp__dynbuf *b, const cJSON *doc, double now_s) {
  const cJSON *keys = cJSON_GetObjectItemCaseSensitive(doc, "keys"), *k, *m;
  static const char *states[] = {"ready", "busy", "cooling", "disabled"};
  static const char *const per_model[][3] = {
      {"gemini_pool_requests_total", "counter", "Requests sent, by key and model."},
      {"gemini_pool_requests_today", "gauge", "Requests since the last midnight Pacific."},
      {"gemini_pool_requests_last_minute", "gauge", "Requests in the last 60 s."},
      {"gemini_pool_input_tokens_last_minute", "gauge", "Input tokens in the last 60 s."},
      {"gemini_pool_input_tokens_total", "counter", "Input tokens sent."},
      {"gemini_pool_output_tokens_total", "counter", "Output tokens received."},
  };
  static const char *const fields[] = {"requests_total",       "requests_today",
                                       "requests_last_minute", "input_tokens_last_minute",
                                       "input_tokens_total",   "output_tokens_total"};

  help(b, "gemini_pool_keys", "gauge", "Keys by state.");
  for (size_t s = 0; s < 4; s++) {
    double n = 0;
    cJSON_ArrayForEach(k, keys) {
      n += strcmp(str(k, "state", ""), states[s]) == 0;
    }
    gkp__dynbuf_printf(b, "gemini_pool_keys{state=\"%s\"} %.0f\n", states[s], n);
  }
  help(b, "gemini_pool_key_inflight", "gauge", "Requests in flight on a key.");
  cJSON_ArrayForEach(k, keys) {
    sample(b, "gemini_pool_key_inflight", str(k, "id", ""), NULL, NULL, num(k, "inflight", 0));
  }
  help(b, "gemini_pool_key_requests_total", "counter", "Requests sent with a key.");
  cJSON_ArrayForEach(k, keys) {
    sample(b, "gemini_pool_key_requests_total", str(k, "id", ""), NULL, NULL,
           num(k, "requests_total", 0));
  }
  for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
    help(b, per_model[f][0], per_model[f][1], per_model[f][2]);
    cJSON_ArrayForEach(k, keys) {
      cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(k, "models")) {
        if (model_active(m)) {
          sample(b, per_model[f][0], str(k, "id", ""), m->string, NULL, num(m, fields[f], 0));
        }
      }
    }
  }
  help(b, "gemini_pool_errors_total", "counter", "Error answers, by key, model and kind.");
  cJSON_ArrayForEach(k, keys) {
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(k, "models")) {
      const cJSON *e;
      cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(m, "errors")) {
        if (cJSON_IsNumber(e) && e->valuedouble > 0) {
          sample(b, "gemini_pool_errors_total", str(k, "id", ""), m->string, e->string,
                 e->valuedouble);
        }
      }
    }
  }
  help(b, "gemini_pool_cooldown_remaining_seconds", "gauge",
       "Seconds until a cooldown ends, by key, model and kind (only while cooling).");
  cJSON_ArrayForEach(k, keys) {
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(k, "models")) {
      double until = num(m, "cooldown_until", 0);
      if (until > now_s) {
        sample(b, "gemini_pool_cooldown_remaining_seconds", str(k, "id", ""), m->string,
               str(m, "cooldown_kind", "unknown"), until - now_s);
      }
    }
  }
  help(b, "gemini_pool_cooldown_until_seconds", "gauge",
       "When a cooldown ends (Unix seconds), by key, model and kind (only while cooling).");
  cJSON_ArrayForEach(k, keys) {
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(k, "models")) {
      double until = num(m, "cooldown_until", 0);
      if (until > now_s) {
        sample(b, "gemini_pool_cooldown_until_seconds", str(k, "id", ""), m->string,
               str(m, "cooldown_kind", "unknown"), until);
      }
    }
  }
  help(b, "gemini_pool_keys_cooling", "gauge", "Keys cooling down, by model.");
  const cJSON *first = cJSON_GetArrayItem(keys, 0);
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(first, "models")) {
    double n = 0;
    cJSON_ArrayForEach(k, keys) {
      const cJSON *mm = cJSON_GetObjectItemCaseSensitive(
          cJSON_GetObjectItemCaseSensitive(k, "models"), m->string);
      n += num(mm, "cooldown_until", 0) > now_s;
    }
    sample(b, "gemini_pool_keys_cooling", NULL, m->string, NULL, n);
  }
}

/* The lines of what else the daemon serves (the HTTP front's callers). */
static void metrics_extra(gkp__dynbuf *b) {
  char *lines = NULL;
  pthread_mutex_lock(&fs.mu);
  if (fs.extra != NULL && fs.extra->metrics != NULL) {
    lines = fs.extra->metrics(fs.extra->ud, fs.extra_handle);
  }
  pthread_mutex_unlock(&fs.mu);
  if (lines != NULL) {
    gkp__dynbuf_adds(b, lines);
    free(lines);
  }
}

static void metrics_jobs(gkp__dynbuf *b) {
  uint64_t by_status[5] = {0}, hist[FS_HIST_BUCKETS], finished[5];
  double sum;
  uint64_t count, submitted;
  size_t it = 0, blocked;
  fs_dir *d;
  gkp__runner_stats st;
  static const char *names[] = {"queued", "running", "done", "failed", "cancelled"};

  /* Finished jobs of the store come from its counts; memory holds the
   * others and a bounded number of stored ones. */
  pthread_mutex_lock(&fs.mu);
  while ((d = fs_smap_next(&fs.dirs, &it)) != NULL) {
    size_t j = 0;
    fs_slot *s;
    while ((s = fs_smap_next(&d->slots, &j)) != NULL) {
      if (s->run != NULL && !s->run->stored && s->run->status >= 0 &&
          s->run->status <= GKP__JOB_CANCELLED) {
        by_status[s->run->status]++;
      }
    }
  }
  by_status[GKP__JOB_DONE] += fs.stored[0];
  by_status[GKP__JOB_FAILED] += fs.stored[1];
  memcpy(hist, fs.hist, sizeof hist);
  memcpy(finished, fs.finished, sizeof finished);
  sum = fs.hist_sum;
  count = fs.hist_count;
  submitted = fs.submitted;
  blocked = fs.parked.n;
  pthread_mutex_unlock(&fs.mu);
  gkp__runner_stats_get(fs.runner, &st);

  help(b, "gemini_pool_jobs", "gauge", "Jobs shown in the mount, by status.");
  for (int i = 0; i < 5; i++) {
    gkp__dynbuf_printf(b, "gemini_pool_jobs{status=\"%s\"} %llu\n", names[i],
                       (unsigned long long)by_status[i]);
  }
  help(b, "gemini_pool_fs_memory_bytes", "gauge",
       "Bytes of prompts, scratch files, answers and images the mount holds in memory.");
  gkp__dynbuf_printf(b, "gemini_pool_fs_memory_bytes %zu\n", fs_mem_used());
  help(b, "gemini_pool_fs_memory_limit_bytes", "gauge", "The ceiling on them (-o max_memory).");
  gkp__dynbuf_printf(b, "gemini_pool_fs_memory_limit_bytes %zu\n", fs.max_memory);
  help(b, "gemini_pool_jobs_submitted_total", "counter", "Jobs submitted since the mount.");
  gkp__dynbuf_printf(b, "gemini_pool_jobs_submitted_total %llu\n", (unsigned long long)submitted);
  help(b, "gemini_pool_jobs_finished_total", "counter",
       "Jobs finished since the mount, by status.");
  for (int i = 2; i < 5; i++) {
    gkp__dynbuf_printf(b, "gemini_pool_jobs_finished_total{status=\"%s\"} %llu\n", names[i],
                       (unsigned long long)finished[i]);
  }
  help(b, "gemini_pool_blocked_reads", "gauge", "Reads of .out files waiting for text.");
  gkp__dynbuf_printf(b, "gemini_pool_blocked_reads %zu\n", blocked);
  help(b, "gemini_pool_runner_jobs", "gauge", "Jobs in the runner: waiting for a key, or sending.");
  gkp__dynbuf_printf(b, "gemini_pool_runner_jobs{state=\"waiting\"} %llu\n",
                     (unsigned long long)st.waiting);
  gkp__dynbuf_printf(b, "gemini_pool_runner_jobs{state=\"running\"} %llu\n",
                     (unsigned long long)st.running);
  help(b, "gemini_pool_job_latency_seconds", "histogram",
       "Time from submission to the end of a job, for jobs finished since the mount.");
  uint64_t cum = 0;
  for (int i = 0; i < FS_HIST_BUCKETS - 1; i++) {
    cum += hist[i];
    gkp__dynbuf_printf(b, "gemini_pool_job_latency_seconds_bucket{le=\"%g\"} %llu\n",
                       fs_hist_bounds[i], (unsigned long long)cum);
  }
  cum += hist[FS_HIST_BUCKETS - 1];
  gkp__dynbuf_printf(b, "gemini_pool_job_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                     (unsigned long long)cum);
  gkp__dynbuf_printf(b, "gemini_pool_job_latency_seconds_sum %.6f\n", sum);
  gkp__dynbuf_printf(b, "gemini_pool_job_latency_seconds_count %llu\n", (unsigned long long)count);
}

static int render_metrics(char **out, size_t *len) {
  gkp__dynbuf b;
  int64_t now = gkp_pool_now(fs.pool);
  cJSON *doc = status_doc(NULL);
  gkp__dynbuf_init(&b, OUT_MAX);
  help(&b, "gemini_pool_up", "gauge", "1 while the mount serves.");
  gkp__dynbuf_adds(&b, "gemini_pool_up 1\n");
  help(&b, "gemini_pool_start_time_seconds", "gauge", "When the mount started (Unix seconds).");
  gkp__dynbuf_printf(&b, "gemini_pool_start_time_seconds %.3f\n", (double)fs.start_ms / 1000.0);
  if (doc != NULL) {
    const char *reset = str(doc, "next_daily_reset", NULL);
    (void)reset;
    help(&b, "gemini_pool_next_daily_reset_seconds", "gauge",
         "The next midnight in America/Los_Angeles (Unix seconds).");
    gkp__dynbuf_printf(&b, "gemini_pool_next_daily_reset_seconds %.0f\n",
                       (double)gkp_next_pacific_midnight(now) / 1000.0);
    metrics_pool(&b, doc, (double)now / 1000.0);
    cJSON_Delete(doc);
  }
  metrics_jobs(&b);
  metrics_extra(&b);
  return finish(&b, out, len);
}

/* ---- status/keys/<id> ----------------------------------------------------------------- */

static const cJSON *find_key(const cJSON *doc, const char *id) {
  const cJSON *k;
  cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(doc, "keys")) {
    if (strcmp(str(k, "id", ""), id) == 0) {
      return k;
    }
  }
  return NULL;
}

/* "field value" for any JSON scalar (null as "-"). */
static void field(gkp__dynbuf *b, const char *prefix, const char *name, const cJSON *v) {
  gkp__dynbuf_printf(b, "%s%s ", prefix, name);
  if (cJSON_IsString(v)) {
    gkp__dynbuf_adds(b, v->valuestring);
  } else if (cJSON_IsNumber(v)) {
    gkp__dynbuf_printf(b, "%.17g", v->valuedouble);
  } else if (cJSON_IsBool(v)) {
    gkp__dynbuf_adds(b, cJSON_IsTrue(v) ? "true" : "false");
  } else {
    gkp__dynbuf_adds(b, "-");
  }
  gkp__dynbuf_adds(b, "\n");
}

static int render_key(const char *id, char **out, size_t *len) {
  cJSON *doc = status_doc(NULL);
  const cJSON *k, *v, *m;
  gkp__dynbuf b;
  if (doc == NULL) {
    return -EIO;
  }
  k = find_key(doc, id);
  if (k == NULL) {
    cJSON_Delete(doc);
    return -ENOENT;
  }
  gkp__dynbuf_init(&b, OUT_MAX);
  cJSON_ArrayForEach(v, k) {
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) {
      field(&b, "", v->string, v);
    }
  }
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(k, "models")) {
    char prefix[GKP_ID_MAX + 2];
    if (!model_active(m)) {
      continue;
    }
    snprintf(prefix, sizeof prefix, "%s.", m->string);
    cJSON_ArrayForEach(v, m) {
      if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) {
        field(&b, prefix, v->string, v);
      }
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(m, "errors")) {
      if (cJSON_IsNumber(e) && e->valuedouble > 0) {
        gkp__dynbuf_printf(&b, "%serrors.%s %.0f\n", prefix, e->string, e->valuedouble);
      }
    }
  }
  cJSON_Delete(doc);
  return finish(&b, out, len);
}

/* ---- status/models/<model> -------------------------------------------------------------- */

static int render_model(const char *model, char **out, size_t *len) {
  cJSON *doc = status_doc(NULL);
  const cJSON *k;
  gkp__dynbuf b;
  gkp_error err;
  int64_t now = gkp_pool_now(fs.pool);
  double now_s = (double)now / 1000.0, next = INFINITY, left = 0;
  int ready, cooling = 0, disabled = 0, nkeys = 0, unknown_left = 0;
  char when[40], projects[4096] = "";
  const char *fallback;
  char fb[GKP_ID_MAX] = "";

  if (doc == NULL) {
    return -EIO;
  }
  ready = gkp_count_available(fs.pool, model, &err);
  const gkp__config *cfg = gkp__pool_config(fs.pool);
  int mi = gkp__config_model_index(cfg, model);
  fallback = mi >= 0 ? cfg->models[mi].fallback : NULL;
  snprintf(fb, sizeof fb, "%s", fallback != NULL ? fallback : "");
  gkp__config_unref(cfg);

  gkp__dynbuf_init(&b, OUT_MAX);
  gkp__dynbuf_printf(&b, "model %s\n", model);
  gkp__dynbuf_printf(&b, "fallback %s\n", fb[0] ? fb : "-");
  cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(doc, "keys")) {
    const cJSON *m =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(k, "models"), model);
    const char *state = str(k, "state", "");
    double until = num(m, "cooldown_until", 0), rpd = num(m, "rpd_limit", -1);
    double today = num(m, "requests_today", 0), rpm = num(m, "rpm_limit", -1);
    double avail = now_s;
    const char *project = str(k, "project", "");
    nkeys++;
    if (strcmp(state, "disabled") == 0) {
      disabled++;
      avail = INFINITY;
    } else if (until > now_s) {
      cooling++;
      avail = until;
    } else if (rpd >= 0 && today >= rpd) {
      avail = (double)gkp_next_pacific_midnight(now) / 1000.0;
    } else if (rpm >= 0 && num(m, "requests_last_minute", 0) >= rpm) {
      avail = now_s + 60;
    }
    if (avail < next) {
      next = avail;
    }
    /* Capacity is per project: count each project once. */
    char tag[GKP_ID_MAX + 2];
    snprintf(tag, sizeof tag, "|%s|", project);
    if (strstr(projects, tag) == NULL && strlen(projects) + strlen(tag) < sizeof projects) {
      strcat(projects, tag);
      if (rpd < 0) {
        unknown_left = 1;
      } else if (rpd > today && strcmp(state, "disabled") != 0) {
        left += rpd - today;
      }
    }
    gkp__dynbuf_printf(&b, "key.%s %s today=%.0f%s%.0f minute=%.0f cooldown=%s%s\n",
                       str(k, "id", ""), state, today, rpd >= 0 ? "/" : "", rpd >= 0 ? rpd : 0,
                       num(m, "requests_last_minute", 0),
                       until > now_s ? str(m, "cooldown_kind", "?") : "-",
                       until > now_s ? gkp__rfc3339((int64_t)until * 1000, when, sizeof when) : "");
  }
  gkp__dynbuf_printf(&b, "keys %d\n", nkeys);
  gkp__dynbuf_printf(&b, "keys_ready %d\n", ready >= 0 ? ready : 0);
  gkp__dynbuf_printf(&b, "keys_cooling %d\n", cooling);
  gkp__dynbuf_printf(&b, "keys_disabled %d\n", disabled);
  if (ready > 0 || next <= now_s) {
    gkp__dynbuf_adds(&b, "next_available now\n");
  } else if (isinf(next)) {
    gkp__dynbuf_adds(&b, "next_available never (every key is disabled)\n");
  } else {
    gkp__dynbuf_printf(&b, "next_available %s\n",
                       gkp__rfc3339((int64_t)(next * 1000), when, sizeof when));
  }
  if (unknown_left) {
    gkp__dynbuf_printf(&b, "capacity_left_today unknown (at least %.0f)\n", left);
  } else {
    gkp__dynbuf_printf(&b, "capacity_left_today %.0f\n", left);
  }
  gkp__dynbuf_printf(&b, "next_daily_reset %s\n",
                     gkp__rfc3339(gkp_next_pacific_midnight(now), when, sizeof when));
  cJSON_Delete(doc);
  return finish(&b, out, len);
}

/* ---- status/jobs ----------------------------------------------------------------------- */

typedef struct job_line {
  int64_t created;
  char *text;
  char *key; /* "profile/name" */
} job_line;

static int by_created(const void *a, const void *b) {
  const job_line *x = a, *y = b;
  return x->created < y->created ? -1 : x->created > y->created;
}

static int add_line(job_line **lines, size_t *n, size_t *cap, const fs_slot *s, int64_t created,
                    const char *text) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 256;
    job_line *nl = realloc(*lines, nc * sizeof *nl);
    if (nl == NULL) {
      return -ENOMEM;
    }
    *lines = nl;
    *cap = nc;
  }
  job_line *l = &(*lines)[*n];
  l->text = strdup(text);
  l->key = malloc(strlen(s->profile) + strlen(s->name) + 2);
  if (l->text == NULL || l->key == NULL) {
    free(l->text);
    free(l->key);
    return -ENOMEM;
  }
  sprintf(l->key, "%s/%s", s->profile, s->name);
  l->created = created;
  (*n)++;
  return 0;
}

typedef struct jobs_out {
  gkp__dynbuf *b;
  job_line *mem; /* jobs of memory that are not in the store, by creation */
  size_t n, i;
  fs_smap names; /* their keys: a job stored since the snapshot shows once */
} jobs_out;

/* Writes a stored job's line, after the memory jobs created before it. */
static int store_line(void *ud, int64_t created, const char *profile, const char *name,
                      const char *line) {
  jobs_out *o = ud;
  char key[2 * FS_NAME_MAX + 8];
  int rc = 0;
  snprintf(key, sizeof key, "%s/%s", profile != NULL ? profile : "", name != NULL ? name : "");
  if (line == NULL || fs_smap_get(&o->names, key) != NULL) {
    return 0; /* the snapshot of memory has this name's current job */
  }
  while (rc == 0 && o->i < o->n && o->mem[o->i].created <= created) {
    rc = gkp__dynbuf_adds(o->b, o->mem[o->i++].text);
  }
  return rc == 0 ? gkp__dynbuf_adds(o->b, line) : rc;
}

/* status/jobs: the jobs in memory that are not stored (running, queued,
 * cancelled), taken under fs.mu (a bounded number), merged with the lines
 * of the store, read without it. */
static int render_jobs(char **out, size_t *len) {
  job_line *lines = NULL;
  size_t n = 0, cap = 0, it = 0;
  fs_dir *d;
  gkp__dynbuf b;
  int rc = 0;
  char line[2048];

  gkp__dynbuf_init(&b, OUT_MAX);
  pthread_mutex_lock(&fs.mu);
  while (rc == 0 && (d = fs_smap_next(&fs.dirs, &it)) != NULL) {
    size_t j = 0;
    fs_slot *s;
    while (rc == 0 && (s = fs_smap_next(&d->slots, &j)) != NULL) {
      if (s->run != NULL && !s->run->stored) {
        fs_job_line(s->run, 0, line, sizeof line);
        rc = add_line(&lines, &n, &cap, s, s->run->created_ms, line);
      }
    }
  }
  pthread_mutex_unlock(&fs.mu);
  if (n > 1) {
    qsort(lines, n, sizeof *lines, by_created);
  }
  jobs_out o = {.b = &b, .mem = lines, .n = n};
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = fs_smap_put(&o.names, lines[i].key, &lines[i]);
  }
  if (rc == 0) {
    rc = fs_store_lines(store_line, &o);
  }
  while (rc == 0 && o.i < n) {
    rc = gkp__dynbuf_adds(&b, lines[o.i++].text);
  }
  fs_smap_free(&o.names);
  for (size_t i = 0; i < n; i++) {
    free(lines[i].text);
    free(lines[i].key);
  }
  free(lines);
  if (rc != 0) {
    gkp__dynbuf_reset(&b);
    return rc;
  }
  return finish(&b, out, len);
}

static int copy_text(const char *text, size_t n, char **out, size_t *len) {
  *out = gkp__dup_n(text, n);
  *len = n;
  return *out != NULL ? 0 : -ENOMEM;
}

int fs_status_render(fuse_ino_t ino, char **out, size_t *len) {
  char *json = NULL, *table;
  gkp_error err;
  int rc;

  switch (ino) {
  case FS_INO_README:
    return copy_text(fs.readme, fs.readme_len, out, len);
  case FS_INO_CTL:
    return copy_text(CTL_HELP, sizeof CTL_HELP - 1, out, len);
  case FS_INO_ST_POOLJSON:
    rc = gkp_status_json(fs.pool, &json, &err);
    if (rc != 0) {
      fs_log(GKP_LOG_WARN, "status/pool.json: %s", err.msg);
      return rc;
    }
    rc = copy_text(json, strlen(json), out, len);
    if (rc == 0) {
      /* One trailing newline, as text files have. */
      char *t = realloc(*out, *len + 2);
      if (t != NULL) {
        t[(*len)++] = '\n';
        t[*len] = '\0';
        *out = t;
      }
    }
    free(json);
    return rc;
  case FS_INO_ST_POOL:
    rc = gkp_status_json(fs.pool, &json, &err);
    if (rc == -EAGAIN) { /* the state server is unreachable: say so */
      size_t n = strlen(err.msg);
      char *t = malloc(n + 2);
      if (t == NULL) {
        return -ENOMEM;
      }
      memcpy(t, err.msg, n);
      t[n] = '\n';
      t[n + 1] = '\0';
      *out = t;
      *len = n + 1;
      return 0;
    }
    if (rc != 0) {
      fs_log(GKP_LOG_WARN, "status/pool: %s", err.msg);
      return rc;
    }
    table = gkp__status_table(json, gkp_pool_now(fs.pool));
    free(json);
    if (table == NULL) {
      return -ENOMEM;
    }
    *out = table;
    *len = strlen(table);
    return 0;
  case FS_INO_ST_METRICS:
    return render_metrics(out, len);
  case FS_INO_ST_JOBS:
    return render_jobs(out, len);
  default:
    break;
  }
  /* status/keys/<id> and status/models/<model>. */
  char name[GKP_ID_MAX];
  int type = 0;
  pthread_mutex_lock(&fs.mu);
  fs_obj *o = FS_INO_SUB(ino) == 0 ? fs_obj_get(FS_INO_GROUP(ino)) : NULL;
  if (o != NULL && (o->type == FS_T_ST_KEY || o->type == FS_T_ST_MODEL)) {
    type = o->type;
    snprintf(name, sizeof name, "%s", ((fs_named *)o)->name);
  }
  pthread_mutex_unlock(&fs.mu);
  if (type == FS_T_ST_KEY) {
    return render_key(name, out, len);
  }
  if (type == FS_T_ST_MODEL) {
    return render_model(name, out, len);
  }
  return -ENOENT;
}

/* ---- ctl --------------------------------------------------------------------------------- */

int fs_reload(void) {
  gkp_error err;
  if (gkp_pool_reload(fs.pool, &err) != 0) {
    fs_log(GKP_LOG_WARN, "reload failed; the running configuration is kept: %s", err.msg);
    return -EINVAL;
  }
  if (fs_tree_sync_config() != 0) {
    fs_log(GKP_LOG_WARN, "reload: out of memory while updating the directories");
    return -ENOMEM;
  }
  fs_log(GKP_LOG_INFO, "configuration reloaded from %s", gkp_pool_config_path(fs.pool));
  return 0;
}

/* rate DIR/NAME SCORE: the job's model, task type and complexity, from
 * memory or the store, into gkp_rate.  Returns 0 or -EINVAL. */
static int ctl_rate(const char *line) {
  char job[256], model[GKP_ID_MAX] = "", type[GKP_ID_MAX] = "", cx[16] = "";
  char extra[2];
  int score;
  gkp_error err;
  if (sscanf(line, "rate %255s %d %1s", job, &score, extra) != 2 || score < 1 || score > 5) {
    fs_log(GKP_LOG_WARN, "ctl: usage: rate DIR/NAME SCORE (SCORE 1 to 5), got '%s'", line);
    return -EINVAL;
  }
  char *name = strchr(job, '/');
  if (name == NULL) {
    fs_log(GKP_LOG_WARN, "ctl: rate %s: name the job as DIR/NAME, e.g. auto/q1", job);
    return -EINVAL;
  }
  *name++ = '\0';
  pthread_mutex_lock(&fs.mu);
  fs_dir *d = fs_dir_get(job);
  fs_slot *s = d != NULL ? fs_slot_get(d, name, 0) : NULL;
  if (d != NULL && (s == NULL || s->run == NULL) && fs_store_fault(d, name) == 1) {
    s = fs_slot_get(d, name, 0);
  }
  if (s != NULL && s->run != NULL && s->run->status == GKP__JOB_DONE) {
    gkp__strlcpy(model, s->run->model_used, sizeof model);
    gkp__strlcpy(type, s->run->task_type, sizeof type);
    gkp__strlcpy(cx, s->run->complexity, sizeof cx);
  }
  pthread_mutex_unlock(&fs.mu);
  if (model[0] == '\0' || type[0] == '\0') {
    fs_log(GKP_LOG_WARN, "ctl: rate %s/%s: no finished job with an answer by that name", job,
           name);
    return -EINVAL;
  }
  if (gkp_rate(fs.pool, type, cx, model, score, &err) != 0) {
    fs_log(GKP_LOG_WARN, "ctl: rate %s/%s: %s", job, name, err.msg);
    return -EINVAL;
  }
  fs_log(GKP_LOG_INFO, "ctl: rated %s/%s (%s, %s, %s) %d", job, name, model, type, cx, score);
  return 0;
}

/* Runs one command line. */
static int ctl_line(const char *line) {
  gkp_error err;
  char word[16], arg[GKP_ID_MAX + 8];
  int n = sscanf(line, "%15s %71s", word, arg);
  if (n <= 0) {
    return 0; /* a blank line */
  }
  if (strcmp(word, "rate") == 0) {
    return ctl_rate(line);
  }
  if (strcmp(word, "reload") == 0 && n == 1) {
    return fs_reload();
  }
  if (strcmp(word, "reset") == 0) {
    const char *id = n == 2 ? arg : "all";
    if (gkp_reset(fs.pool, strcmp(id, "all") == 0 ? NULL : id, &err) != 0) {
      fs_log(GKP_LOG_WARN, "ctl: reset %s: %s", id, err.msg);
      return -EINVAL;
    }
    fs_log(GKP_LOG_INFO, "ctl: reset %s", id);
    return 0;
  }
  fs_log(GKP_LOG_WARN,
         "ctl: unknown command '%s' (reload, reset KEY_ID, reset all, rate DIR/NAME SCORE)", line);
  return -EINVAL;
}

int fs_ctl_run(const char *text, size_t len) {
  char line[256];
  size_t i = 0;
  int rc = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && text[j] != '\n') {
      j++;
    }
    size_t n = j - i < sizeof line - 1 ? j - i : sizeof line - 1;
    memcpy(line, text + i, n);
    line[n] = '\0';
    if (memchr(line, '\0', n) != NULL && strlen(line) != n) {
      return -EINVAL;
    }
    int r = ctl_line(line);
    if (r != 0 && rc == 0) {
      rc = r;
    }
    i = j + 1;
  }
  return rc;
}

/* ---- README ------------------------------------------------------------------------------- */

char *fs_readme_text(const char *mountpoint) {
  gkp__dynbuf b;
  gkp__dynbuf_init(&b, 1 << 20);
  gkp__dynbuf_printf(
      &b,
      "gemini-pool %s - a pool of Gemini API keys, mounted at %s\n"
      "\n"
      "Every directory is a profile (a model and its settings).  Write a prompt\n"
      "into a file of one, and read the answer next to it:\n"
      "\n"
      "  echo \"Summarize this log\" > flash/task     the job is sent when the file is closed\n"
      "  cat flash/task.out                         the answer, streamed as it arrives\n"
      "  cat flash/task.json                        status, model, key, tokens, timings\n"
      "  cat flash/task.err                         why it failed (only if it failed)\n"
      "  rm flash/task                              cancel the job, remove its outputs\n"
      "\n"
      "Files of a profile directory:\n"
      "  NAME           the prompt; writing it again sends a new job (the old one is\n"
      "                 cancelled and its outputs replaced); a file renamed onto NAME\n"
      "                 (how editors save) is sent too\n"
      "  NAME.out       the answer: reading blocks until text arrives and ends when it\n"
      "                 is complete; if the job fails, the read fails with EIO after\n"
      "                 the text that was complete\n"
      "  NAME.err       exists only when the job failed: why, and what to do\n"
      "  NAME.json      metadata, never blocks: status (queued, running, done, failed,\n"
      "                 cancelled), model_requested, model_used, key_id, attempts,\n"
      "                 tokens_in, tokens_out, latency_ms, error, created, finished\n"
      "  NAME.png ...   generated images: NAME.png, NAME-2.png, ... (by type); a name\n"
      "                 another job's image already has gets -1, -2, ... (the first\n"
      "                 free: NAME-2-1.png); NAME.json lists them under \"images\"\n"
      "Names starting with '.', ending with '~', and empty files are scratch files:\n"
      "kept, never sent (so editors and sed -i work).  Prompts larger than %zu bytes\n"
      "are refused with \"File too large\".\n"
      "\n"
      "status/pool        one row per key and model: usage, limits, cooldowns\n"
      "status/pool.json   the same, machine-readable\n"
      "status/metrics     Prometheus text format\n"
      "status/keys/ID     one key;  status/models/MODEL  one model\n"
      "status/jobs        one line per job: name, status, model, key, latency, bytes,\n"
      "                   created, error\n"
      "ctl                echo reload > ctl;  echo 'reset KEY_ID' > ctl;  echo 'reset all' > ctl\n"
      "\n"
      "Finished answers are kept in %s and come back after a\n"
      "restart; jobs that had not finished are sent again.\n"
      "Unmount with: fusermount3 -u %s\n",
      GKP_VERSION, mountpoint, fs.max_prompt, fs.db_path, mountpoint);
  return gkp__dynbuf_take(&b, &fs.readme_len);
}
