/*
 * route.c - gemini-pool route (what `auto` would pick, and why; sends
 * nothing) and gemini-pool rate (a score for a run, kept in the state).
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/dynbuf.h"
#include "common/util.h"

void cli_run_id(char *buf, size_t len) {
  unsigned char r[8];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
    uint64_t x = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)time(NULL);
    memcpy(r, &x, sizeof r);
  }
  snprintf(buf, len, "r%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5], r[6],
           r[7]);
}

/* ---- route -------------------------------------------------------------------- */

static void print_route(const cJSON *d) {
  const cJSON *c;
  printf("task type: %s, complexity: %s, quality: %s (%s)\n",
         cJSON_GetStringValue(cJSON_GetObjectItem(d, "task_type")),
         cJSON_GetStringValue(cJSON_GetObjectItem(d, "complexity")),
         cJSON_GetStringValue(cJSON_GetObjectItem(d, "quality")),
         cJSON_IsTrue(cJSON_GetObjectItem(d, "quality_given")) ? "given" : "inferred");
  if (cJSON_IsTrue(cJSON_GetObjectItem(d, "scored"))) {
    printf("ordered by rate scores\n");
  }
  int i = 0;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(d, "candidates")) {
    const cJSON *th = cJSON_GetObjectItem(c, "thinking");
    const cJSON *t;
    printf("%d. %s  thinking: %s  tools:", ++i, cJSON_GetStringValue(cJSON_GetObjectItem(c, "model")),
           cJSON_IsString(th) ? th->valuestring : "none");
    int nt = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "tools")) {
      printf("%s%s", nt++ ? ", " : " ", t->valuestring);
    }
    printf("%s\n", nt ? "" : " none");
  }
  if (i == 0) {
    printf("no candidate: nothing can take this task today\n");
  }
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(d, "skipped")) {
    printf("skipped %s: %s (%s)\n", cJSON_GetStringValue(cJSON_GetObjectItem(c, "model")),
           cJSON_GetStringValue(cJSON_GetObjectItem(c, "reason")),
           cJSON_GetStringValue(cJSON_GetObjectItem(c, "detail")));
  }
}

int cmd_route(int argc, char **argv) {
  cli_common common = {0};
  const char *task = NULL, *quality = NULL;
  int json = 0, code = CLI_FAILED;
  gkp__dynbuf in;
  for (int i = 1; i < argc; i++) {
    int missing = 0, rc = cli_common_option(&common, argc, argv, &i);
    const char *v;
    if (rc < 0) {
      return CLI_USAGE;
    }
    if (rc > 0) {
      continue;
    }
    if ((v = cli_value("--task", argc, argv, &i, &missing)) != NULL) {
      task = v;
    } else if ((v = cli_value("--quality", argc, argv, &i, &missing)) != NULL) {
      quality = v;
    } else if (missing) {
      return CLI_USAGE;
    } else if (strcmp(argv[i], "--json") == 0) {
      json = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_usage(stdout);
      return CLI_OK;
    } else {
      cli_error("route: unknown option '%s' (see gemini-pool --help)", argv[i]);
      return CLI_USAGE;
    }
  }
  if (task == NULL) {
    cli_error("route: --task TEXT (or --task - to read it from stdin) is required");
    return CLI_USAGE;
  }
  gkp__dynbuf_init(&in, (size_t)16 * 1024 * 1024);
  if (strcmp(task, "-") == 0) {
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
      if (gkp__dynbuf_add(&in, chunk, n) != 0) {
        cli_error("route: the task is larger than 16 MiB");
        gkp__dynbuf_reset(&in);
        return CLI_USAGE;
      }
    }
  } else if (gkp__dynbuf_adds(&in, task) != 0) {
    gkp__dynbuf_reset(&in);
    return CLI_FAILED;
  }
  gkp_pool *pool = cli_open_pool(&common);
  char *doc = NULL;
  gkp_error err;
  if (pool != NULL) {
    int rc = gkp_route(pool, gkp__dynbuf_len(&in) > 0 ? gkp__dynbuf_ptr(&in) : "", quality, 0,
                       &doc, &err);
    if (rc != 0) {
      cli_error("route: %s", err.msg);
      code = rc == -EINVAL ? CLI_USAGE : CLI_FAILED;
    } else if (json) {
      cJSON *d = cJSON_Parse(doc);
      char *pretty = d != NULL ? cJSON_Print(d) : NULL;
      printf("%s\n", pretty != NULL ? pretty : doc);
      cJSON_free(pretty);
      cJSON_Delete(d);
      code = CLI_OK;
    } else {
      cJSON *d = cJSON_Parse(doc);
      print_route(d);
      cJSON_Delete(d);
      code = CLI_OK;
    }
  }
  gkp_free(doc);
  gkp_pool_close(pool);
  gkp__dynbuf_reset(&in);
  return code;
}

/* ---- rate ---------------------------------------------------------------------- */

typedef struct rated {
  char task_type[GKP_ID_MAX], complexity[16], model[GKP_ID_MAX];
} rated;

static int looks_like_run_id(const char *s) {
  if (s[0] != 'r' || strlen(s) != 17) {
    return 0;
  }
  for (int i = 1; i < 17; i++) {
    if (!isxdigit((unsigned char)s[i])) {
      return 0;
    }
  }
  return 1;
}

/* Takes task_type, complexity (top level or in "route") and model_used from
 * a run's JSON.  Returns 1 when the model and the pair were found. */
static int from_doc(const cJSON *d, rated *out) {
  const cJSON *route = cJSON_GetObjectItem(d, "route");
  const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(d, "task_type"));
  const char *cx = cJSON_GetStringValue(cJSON_GetObjectItem(d, "complexity"));
  const char *model = cJSON_GetStringValue(cJSON_GetObjectItem(d, "model_used"));
  if (cJSON_IsObject(route)) {
    type = cJSON_GetStringValue(cJSON_GetObjectItem(route, "task_type"));
    cx = cJSON_GetStringValue(cJSON_GetObjectItem(route, "complexity"));
  }
  if (model != NULL) {
    gkp__strlcpy(out->model, model, sizeof out->model);
  }
  if (type == NULL || cx == NULL) {
    return 0;
  }
  gkp__strlcpy(out->task_type, type, sizeof out->task_type);
  gkp__strlcpy(out->complexity, cx, sizeof out->complexity);
  return model != NULL;
}

/* A run of `ask`, by its id, from executions.jsonl.  Returns 0, or an exit
 * code after printing why. */
static int find_run(gkp_pool *pool, const char *id, rated *out) {
  char dir[4096], path[4200];
  gkp_error err = {0};
  if (gkp__local_state_dir(gkp_pool_state_path(pool), dir, sizeof dir, &err) != 0) {
    cli_error("rate: %s", err.msg[0] ? err.msg : "no state directory");
    return CLI_FAILED;
  }
  snprintf(path, sizeof path, "%s/executions.jsonl", dir);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    cli_error("rate: no run %s: %s: %s", id, path, strerror(errno));
    return CLI_FAILED;
  }
  char *line = NULL;
  size_t cap = 0;
  int found = 0;
  while (!found && getline(&line, &cap, f) > 0) {
    if (strstr(line, id) == NULL) {
      continue;
    }
    cJSON *d = cJSON_Parse(line);
    const char *rid = cJSON_GetStringValue(cJSON_GetObjectItem(d, "run_id"));
    if (rid != NULL && strcmp(rid, id) == 0) {
      found = from_doc(d, out) ? 1 : -1;
    }
    cJSON_Delete(d);
  }
  free(line);
  fclose(f);
  if (found <= 0) {
    cli_error(found < 0 ? "rate: run %s got no answer: there is no model to rate"
                        : "rate: no run %s in %s",
              id, path);
    return CLI_FAILED;
  }
  return 0;
}

static char *slurp(const char *path, size_t max) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    return NULL;
  }
  char *buf = malloc(max + 1);
  size_t n = buf != NULL ? fread(buf, 1, max, f) : 0;
  fclose(f);
  if (buf != NULL) {
    buf[n] = '\0';
  }
  return buf;
}

/* A job of the mount, by its path (the prompt, or its .json/.out/.err). */
static int find_job(gkp_pool *pool, const char *job, rated *out) {
  char base[4096], path[4200];
  gkp__strlcpy(base, job, sizeof base);
  size_t n = strlen(base);
  static const char *const sfx[] = {".json", ".out", ".err"};
  for (int i = 0; i < 3; i++) {
    size_t k = strlen(sfx[i]);
    if (n > k && strcmp(base + n - k, sfx[i]) == 0) {
      base[n - k] = '\0';
      break;
    }
  }
  snprintf(path, sizeof path, "%s.json", base);
  char *text = slurp(path, 1 << 20);
  if (text == NULL) {
    cli_error("rate: %s is neither a job of the mount (no %s: %s) nor a run id from ask --json",
              job, path, strerror(errno));
    return CLI_FAILED;
  }
  cJSON *d = cJSON_Parse(text);
  free(text);
  int ok = from_doc(d, out);
  const char *status = cJSON_GetStringValue(cJSON_GetObjectItem(d, "status"));
  if (!ok && out->model[0] != '\0') {
    /* Run with a named model: its pair from the task's words. */
    char *prompt = slurp(base, (size_t)16 << 20), *doc = NULL;
    gkp_error err;
    if (prompt != NULL && prompt[0] != '\0' && gkp_route(pool, prompt, NULL, 0, &doc, &err) == 0) {
      cJSON *r = cJSON_Parse(doc);
      cJSON *wrap = cJSON_CreateObject();
      cJSON_AddItemToObject(wrap, "route", r);
      cJSON_AddStringToObject(wrap, "model_used", out->model);
      ok = from_doc(wrap, out);
      cJSON_Delete(wrap);
    }
    gkp_free(doc);
    free(prompt);
  }
  if (!ok) {
    cli_error("rate: job %s has %s: there is no model to rate", base,
              status != NULL && strcmp(status, "done") != 0 ? "no answer yet" : "no answer");
  }
  cJSON_Delete(d);
  return ok ? 0 : CLI_FAILED;
}

int cmd_rate(int argc, char **argv) {
  cli_common common = {0};
  const char *pos[2] = {NULL, NULL};
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    int rc = cli_common_option(&common, argc, argv, &i);
    if (rc < 0) {
      return CLI_USAGE;
    }
    if (rc > 0) {
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_usage(stdout);
      return CLI_OK;
    }
    if (npos == 2 || (argv[i][0] == '-' && argv[i][1] != '\0')) {
      cli_error("rate: unexpected '%s'; usage: gemini-pool rate JOB SCORE", argv[i]);
      return CLI_USAGE;
    }
    pos[npos++] = argv[i];
  }
  if (npos != 2) {
    cli_error("rate: usage: gemini-pool rate JOB SCORE (JOB: a job's path in the mount or a "
              "run id from ask --json; SCORE: 1 to 5)");
    return CLI_USAGE;
  }
  char *end;
  long score = strtol(pos[1], &end, 10);
  if (end == pos[1] || *end != '\0' || score < 1 || score > 5) {
    cli_error("rate: SCORE is a whole number from 1 to 5 (got '%s')", pos[1]);
    return CLI_USAGE;
  }
  gkp_pool *pool = cli_open_pool(&common);
  if (pool == NULL) {
    return CLI_FAILED;
  }
  rated r;
  memset(&r, 0, sizeof r);
  struct stat sb;
  int code = looks_like_run_id(pos[0]) && stat(pos[0], &sb) != 0 ? find_run(pool, pos[0], &r)
                                                                   : find_job(pool, pos[0], &r);
  if (code == 0) {
    gkp_error err;
    if (gkp_rate(pool, r.task_type, r.complexity, r.model, (int)score, &err) != 0) {
      cli_error("rate: %s", err.msg);
      code = CLI_FAILED;
    } else {
      printf("rated %s %ld for %s, %s complexity\n", r.model, score, r.task_type, r.complexity);
    }
  }
  gkp_pool_close(pool);
  return code;
}
