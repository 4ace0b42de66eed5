/*
 * ask.c - gemini-pool ask: one task through the pool, streamed to stdout.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/dynbuf.h"
#include "common/timeutil.h"
#include "runner/runner.h"

#define MAX_TASK ((size_t)16 * 1024 * 1024)

typedef struct ask {
  cli_common common;
  const char *task, *model, *profile, *context_file, *output, *image_file, *image_output;
  const char *system, *quality, *thinking;
  int enable_tools, capture_thinking, json;
  int64_t max_wait_ms, timeout_ms;

  /* While running. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished;
  FILE *out;
  int out_seekable;
  off_t out_start;          /* where our output began in a seekable out */
  int restarted_unseekable; /* a retry differed and stdout cannot be rewound */
  int progress;             /* stderr is a terminal */
  int progress_shown;
  int images_written;
  int image_failed;        /* an image could not be written: exit non-zero */
  gkp__dynbuf image_paths; /* JSON array text */
  gkp__job_info result;
  int has_result;
  char run_id[40];
} ask;

static int read_all(FILE *f, gkp__dynbuf *b) {
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    int rc = gkp__dynbuf_add(b, chunk, n);
    if (rc != 0) {
      return rc;
    }
  }
  return ferror(f) ? -EIO : 0;
}

static int read_file(const char *path, gkp__dynbuf *b, const char *what) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  int rc;
  if (f == NULL) {
    cli_error("%s %s: %s", what, path, strerror(errno));
    return -errno;
  }
  rc = read_all(f, b);
  if (f != stdin) {
    fclose(f);
  }
  if (rc == -EFBIG) {
    cli_error("%s %s is larger than %zu MiB", what, path, b->cap >> 20);
  } else if (rc != 0) {
    cli_error("%s %s: %s", what, path, strerror(-rc));
  }
  return rc;
}

/* ---- sink (loop thread) ----------------------------------------------------- */

static void clear_progress(ask *a) {
  if (a->progress_shown) {
    fputs("\r\033[K", stderr);
    a->progress_shown = 0;
  }
}

static void on_text(void *ud, gkp__job *job, const char *text, size_t len) {
  ask *a = ud;
  (void)job;
  if (a->json || a->restarted_unseekable) {
    return;
  }
  clear_progress(a);
  fwrite(text, 1, len, a->out);
  fflush(a->out);
}

static void on_restart(void *ud, gkp__job *job) {
  ask *a = ud;
  (void)job;
  if (a->json) {
    return;
  }
  fflush(a->out);
  /* Only what this run wrote is taken back: `{ echo head; gemini-pool ask ..; } > f`
   * keeps its head. */
  if (a->out_seekable && ftruncate(fileno(a->out), a->out_start) == 0 &&
      fseeko(a->out, a->out_start, SEEK_SET) == 0) {
    return;
  }
  /* Text already written to a pipe or terminal cannot be taken back, and a
   * different answer must not be appended to it. */
  a->restarted_unseekable = 1;
}

/* Writes an image next to --image-output (name, name-2.png, ...) or as
 * ./gemini-image-TIME[-N].EXT. */
static void on_image(void *ud, gkp__job *job, const char *mime, const void *data, size_t len) {
  ask *a = ud;
  char path[4200];
  const char *ext = strstr(mime, "jpeg") ? "jpg" : strstr(mime, "webp") ? "webp" : "png";
  int n = ++a->images_written;
  (void)job;
  if (a->image_output != NULL && n == 1) {
    snprintf(path, sizeof path, "%s", a->image_output);
  } else if (a->image_output != NULL) {
    const char *dot = strrchr(a->image_output, '.');
    int stem = dot != NULL && strchr(dot, '/') == NULL ? (int)(dot - a->image_output)
                                                       : (int)strlen(a->image_output);
    snprintf(path, sizeof path, "%.*s-%d.%s", stem, a->image_output, n, ext);
  } else {
    snprintf(path, sizeof path, "gemini-image-%lld%s%.0d.%s", (long long)(gkp__now_ms() / 1000),
             n > 1 ? "-" : "", n > 1 ? n : 0, ext);
  }
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, len, f) != len || fflush(f) != 0) {
    cli_error("cannot write image %s: %s", path, strerror(errno));
    a->image_failed = 1; /* the image is lost: the run must not look successful */
  } else if (!a->json) {
    clear_progress(a);
    fprintf(stderr, "gemini-pool: image written to %s (%zu bytes)\n", path, len);
  }
  if (f != NULL) {
    fclose(f);
  }
  cJSON *item = cJSON_CreateString(path); /* was leaked (printed, never deleted) */
  char *quoted = item != NULL ? cJSON_PrintUnformatted(item) : NULL;
  gkp__dynbuf_printf(&a->image_paths, "%s%s", gkp__dynbuf_len(&a->image_paths) ? "," : "",
                     quoted != NULL ? quoted : "\"\"");
  cJSON_free(quoted);
  cJSON_Delete(item);
}

static void on_state(void *ud, gkp__job *job, const gkp__job_info *info) {
  ask *a = ud;
  (void)job;
  if (!a->progress || a->json) {
    return;
  }
  if (info->status == GKP__JOB_QUEUED) {
    fprintf(stderr, "\r\033[K[gemini-pool] waiting for a key%s%s…",
            info->nattempts ? " after " : "",
            info->nattempts ? gkp_kind_name(info->attempts[info->nattempts - 1].kind) : "");
    a->progress_shown = 1;
  } else if (info->status == GKP__JOB_RUNNING && info->text_len == 0) {
    fprintf(stderr, "\r\033[K[gemini-pool] asking…");
    a->progress_shown = 1;
  }
}

static void on_done(void *ud, gkp__job *job, const gkp__job_info *info) {
  ask *a = ud;
  pthread_mutex_lock(&a->mu);
  a->has_result = gkp__job_snapshot(job, &a->result) == 0;
  (void)info;
  a->finished = 1;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

/* ---- output ----------------------------------------------------------------- */

static cJSON *result_json(const ask *a, const gkp__job_info *r, const char *images) {
  cJSON *o = cJSON_CreateObject(), *att = cJSON_CreateArray();
  char t[40];
  cJSON_AddStringToObject(o, "run_id", a->run_id);
  cJSON_AddStringToObject(o, "status", gkp__job_status_name(r->status));
  cJSON_AddStringToObject(o, "model_requested", r->model_requested);
  cJSON_AddItemToObject(o, "model_used",
                        r->model_used[0] ? cJSON_CreateString(r->model_used) : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "key_id",
                        r->key_id[0] ? cJSON_CreateString(r->key_id) : cJSON_CreateNull());
  for (size_t i = 0; i < r->nattempts; i++) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "key_id", r->attempts[i].key_id);
    cJSON_AddStringToObject(x, "model", r->attempts[i].model);
    cJSON_AddNumberToObject(x, "http_status", r->attempts[i].http_status);
    cJSON_AddStringToObject(x, "kind",
                            r->attempts[i].kind ? gkp_kind_name(r->attempts[i].kind) : "ok");
    cJSON_AddNumberToObject(x, "ms", (double)r->attempts[i].ms);
    cJSON_AddItemToArray(att, x);
  }
  cJSON_AddItemToObject(o, "attempts", att);
  cJSON_AddItemToObject(o, "tokens_in",
                        r->tokens_in >= 0 ? cJSON_CreateNumber((double)r->tokens_in)
                                          : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "tokens_out",
                        r->tokens_out >= 0 ? cJSON_CreateNumber((double)r->tokens_out)
                                           : cJSON_CreateNull());
  cJSON_AddNumberToObject(o, "latency_ms", (double)r->latency_ms);
  cJSON_AddItemToObject(o, "error",
                        r->error[0] ? cJSON_CreateString(r->error) : cJSON_CreateNull());
  cJSON_AddStringToObject(o, "created", gkp__rfc3339(r->created_ms, t, sizeof t));
  cJSON_AddStringToObject(o, "finished", gkp__rfc3339(r->finished_ms, t, sizeof t));
  cJSON *route = r->route != NULL ? cJSON_Parse(r->route) : NULL;
  cJSON_AddItemToObject(o, "route", route != NULL ? route : cJSON_CreateNull());
  if (images != NULL) {
    char *arr = malloc(strlen(images) + 3);
    if (arr != NULL) {
      sprintf(arr, "[%s]", images);
      cJSON_AddItemToObject(o, "images", cJSON_Parse(arr));
      free(arr);
    }
  }
  return o;
}

/* What `rate` needs of a run: its task type and complexity (those of its
 * route, or of the task's words for a run with a named model). */
static void add_pair(cJSON *o, gkp_pool *pool, const gkp__job_info *r, const char *task,
                     int has_image) {
  char *doc = NULL;
  gkp_error err;
  cJSON *route = r->route != NULL ? cJSON_Parse(r->route) : NULL;
  if (route == NULL && gkp_route(pool, task, NULL, has_image, &doc, &err) == 0) {
    route = cJSON_Parse(doc);
  }
  gkp_free(doc);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(route, "task_type");
  const cJSON *cx = cJSON_GetObjectItemCaseSensitive(route, "complexity");
  if (cJSON_IsString(type) && cJSON_IsString(cx)) {
    cJSON_AddStringToObject(o, "task_type", type->valuestring);
    cJSON_AddStringToObject(o, "complexity", cx->valuestring);
  }
  cJSON_Delete(route);
}

static void log_execution(gkp_pool *pool, const ask *a, const gkp__job_info *r, const char *task,
                          const char *full_task) {
  cJSON *o = result_json(a, r, gkp__dynbuf_ptr(&a->image_paths));
  add_pair(o, pool, r, full_task, a->image_file != NULL);
  char preview[121];
  size_t n = strlen(task) < 120 ? strlen(task) : 120;
  while (n > 0 && n < strlen(task) && ((unsigned char)task[n] & 0xC0) == 0x80) {
    n--; /* never cut a UTF-8 character */
  }
  memcpy(preview, task, n);
  preview[n] = '\0';
  cJSON_AddStringToObject(o, "command", "ask");
  cJSON_AddItemToObject(o, "profile",
                        a->profile ? cJSON_CreateString(a->profile) : cJSON_CreateNull());
  cJSON_AddItemToObject(o, "quality",
                        a->quality ? cJSON_CreateString(a->quality) : cJSON_CreateNull());
  cJSON_AddStringToObject(o, "task_preview", preview);
  cJSON_AddNumberToObject(o, "task_bytes", (double)strlen(task));
  if (a->restarted_unseekable && r->text != NULL) {
    /* stdout got an interrupted attempt and the retry differed: the message
     * sends the user here for the complete answer, so it must be here. */
    cJSON_AddStringToObject(o, "text", r->text);
  }
  char *line = cJSON_PrintUnformatted(o);
  if (line != NULL) {
    cli_log_execution(pool, line);
  }
  cJSON_free(line);
  cJSON_Delete(o);
}

/* ---- the command ------------------------------------------------------------- */

/* A number of seconds for --max-wait / --timeout: finite, >= 0.  Returns the
 * milliseconds, or -1 after printing an error ("abc" used to mean 0). */
static int64_t parse_seconds(const char *opt, const char *v) {
  char *end;
  double d = strtod(v, &end);
  if (end == v || *end != '\0' || !isfinite(d) || d < 0 || d > 365.0 * 86400) {
    cli_error("ask: %s needs a number of seconds (got '%s')", opt, v);
    return -1;
  }
  return (int64_t)(d * 1000);
}

static int parse_args(ask *a, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int missing = 0, rc = cli_common_option(&a->common, argc, argv, &i);
    const char *v;
    if (rc != 0) {
      if (rc < 0) {
        return -1;
      }
      continue;
    }
#define OPT(name, field)                                                                           \
  if ((v = cli_value(name, argc, argv, &i, &missing)) != NULL) {                                   \
    a->field = v;                                                                                  \
    continue;                                                                                      \
  }                                                                                                \
  if (missing)                                                                                     \
    return -1;
    OPT("--task", task)
    OPT("--model", model)
    OPT("--profile", profile)
    OPT("--context-file", context_file)
    OPT("--output", output)
    OPT("--image-file", image_file)
    OPT("--image-output", image_output)
    OPT("--system-prompt", system)
    OPT("--quality", quality)
    OPT("--thinking", thinking)
#undef OPT
    if ((v = cli_value("--max-wait", argc, argv, &i, &missing)) != NULL) {
      if ((a->max_wait_ms = parse_seconds("--max-wait", v)) < 0) {
        return -1;
      }
      continue;
    }
    if ((v = cli_value("--timeout", argc, argv, &i, &missing)) != NULL) {
      if ((a->timeout_ms = parse_seconds("--timeout", v)) < 0) {
        return -1;
      }
      continue;
    }
    if (missing) {
      return -1;
    }
    if (strcmp(argv[i], "--enable-tools") == 0) {
      a->enable_tools = 1;
    } else if (strcmp(argv[i], "--capture-thinking") == 0) {
      a->capture_thinking = 1;
    } else if (strcmp(argv[i], "--json") == 0) {
      a->json = 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      return 1;
    } else {
      cli_error("ask: unknown option '%s' (see gemini-pool --help)", argv[i]);
      return -1;
    }
  }
  if (a->task == NULL) {
    cli_error("ask: --task TEXT (or --task - to read it from stdin) is required");
    return -1;
  }
  return 0;
}

/* The inputs of a task: its text (with the quality's note), the context
 * file and the image file.  Returns 0, or -1 after printing why. */
typedef struct ask_inputs {
  gkp__dynbuf task, context, image;
} ask_inputs;

static int read_inputs(const ask *a, ask_inputs *in) {
  if (strcmp(a->task, "-") == 0 ? read_file("-", &in->task, "task from") != 0
                                : gkp__dynbuf_adds(&in->task, a->task) != 0) {
    return -1;
  }
  if (gkp__dynbuf_len(&in->task) == 0) {
    cli_error("ask: the task is empty");
    return -1;
  }
  if (a->context_file != NULL && read_file(a->context_file, &in->context, "context file") != 0) {
    return -1;
  }
  if (a->image_file != NULL && read_file(a->image_file, &in->image, "image file") != 0) {
    return -1;
  }
  return 0;
}

/* Where the answer streams: stdout or --output.  Returns 0, or -1 after
 * printing why. */
static int open_answer(ask *a) {
  a->out = stdout;
  if (a->output != NULL && !a->json) {
    a->out = fopen(a->output, "w+");
    if (a->out == NULL) {
      cli_error("ask: cannot write %s: %s", a->output, strerror(errno));
      return -1;
    }
  }
  struct stat sb;
  /* A regular file can be rewound when a retry's answer differs from what
   * was written -- but only back to where this run started writing, and not
   * when it is opened for appending (`>>`: others may write to it too). */
  int fl = fcntl(fileno(a->out), F_GETFL);
  a->out_start = lseek(fileno(a->out), 0, SEEK_CUR);
  a->out_seekable = fstat(fileno(a->out), &sb) == 0 && S_ISREG(sb.st_mode) && fl >= 0 &&
                    !(fl & O_APPEND) && a->out_start >= 0;
  a->progress = isatty(STDERR_FILENO);
  return 0;
}

/* The job to submit: with neither --model nor --profile, the pool picks
 * the model (routing); the quality's thinking and note, and the tools the
 * task's words call for, are applied by the runner. */
static gkp__job_spec job_spec(const ask *a, ask_inputs *in) {
  gkp__job_spec spec = {
      .profile = a->profile,
      .model = a->model,
      .prompt = gkp__dynbuf_ptr(&in->task),
      .prompt_len = gkp__dynbuf_len(&in->task),
      .context = a->context_file != NULL ? gkp__dynbuf_ptr(&in->context) : NULL,
      .context_len = gkp__dynbuf_len(&in->context),
      .system = a->system,
      .image = a->image_file != NULL ? gkp__dynbuf_ptr(&in->image) : NULL,
      .image_len = gkp__dynbuf_len(&in->image),
      .thinking = a->thinking,
      .capture_thinking = a->capture_thinking,
      .max_wait_ms = a->max_wait_ms,
      .deadline_ms = a->timeout_ms,
      .quality = a->quality,
      .enable_tools = a->enable_tools,
  };
  return spec;
}

/* --json: the result document, on stdout or in --output.  Returns the exit
 * code. */
static int print_json(const ask *a, const gkp__job_info *r, int code) {
  cJSON *o = result_json(a, r, gkp__dynbuf_ptr(&a->image_paths));
  cJSON_AddStringToObject(o, "text", r->text);
  if (a->capture_thinking) {
    cJSON_AddStringToObject(o, "thoughts", r->thoughts);
  }
  char *doc = cJSON_Print(o);
  if (a->output != NULL) {
    FILE *f = fopen(a->output, "w");
    if (f == NULL) {
      cli_error("ask: cannot write %s: %s", a->output, strerror(errno));
      code = CLI_FAILED;
    } else {
      fprintf(f, "%s\n", doc);
      fclose(f);
    }
  } else {
    printf("%s\n", doc);
  }
  cJSON_free(doc);
  cJSON_Delete(o);
  return code;
}

/* The end of a streamed answer: a final newline on a terminal, the
 * thoughts, and why it failed.  Returns the exit code. */
static int finish_text(const ask *a, const gkp__job_info *r, int code) {
  if (r->text_len > 0 && r->text[r->text_len - 1] != '\n' && a->out == stdout &&
      isatty(STDOUT_FILENO)) {
    fputc('\n', a->out);
  }
  fflush(a->out);
  if (a->capture_thinking && r->thoughts_len > 0) {
    fprintf(stderr, "--- thinking ---\n%s\n--- end of thinking ---\n", r->thoughts);
  }
  if (a->restarted_unseekable && code == CLI_OK) {
    cli_error("ask: the answer was interrupted and its retry differed; what was printed "
              "above is incomplete. The complete answer: run with --output FILE or "
              "--json, or see executions.jsonl");
    code = CLI_FAILED;
  }
  if (r->status != GKP__JOB_DONE) {
    cli_error("%s", r->error[0] ? r->error : gkp__job_status_name(r->status));
  }
  return code;
}

/* Submits the job on a new *runner (the caller frees it) and waits for its
 * end (a.result).  Returns CLI_OK, or an exit code after printing why. */
static int run_job(ask *a, gkp_pool *pool, const gkp__job_spec *spec, gkp__runner **runner) {
  gkp__job *job;
  gkp_error err;

  if (gkp__runner_new(pool, NULL, runner, &err) != 0) {
    cli_error("%s", err.msg);
    return CLI_FAILED;
  }
  gkp__job_sink sink = {.on_text = on_text,
                        .on_restart = on_restart,
                        .on_image = on_image,
                        .on_state = on_state,
                        .on_done = on_done};
  job = gkp__runner_submit(*runner, spec, &sink, a, &err);
  if (job == NULL) {
    cli_error("ask: %s", err.msg);
    return CLI_USAGE;
  }
  pthread_mutex_lock(&a->mu);
  while (!a->finished) {
    pthread_cond_wait(&a->cv, &a->mu);
  }
  pthread_mutex_unlock(&a->mu);
  gkp__job_release(job);
  if (!a->has_result) {
    cli_error("ask: out of memory");
    return CLI_FAILED;
  }
  return CLI_OK;
}

int cmd_ask(int argc, char **argv) {
  ask a = {.max_wait_ms = -1};
  ask_inputs in;
  gkp_pool *pool = NULL;
  gkp__runner *runner = NULL;
  int rc = parse_args(&a, argc, argv), code = CLI_USAGE;

  if (rc != 0) {
    if (rc > 0) {
      cli_usage(stdout); /* ask --help printed nothing */
    }
    return rc > 0 ? CLI_OK : CLI_USAGE;
  }
  gkp__dynbuf_init(&in.task, MAX_TASK);
  gkp__dynbuf_init(&in.context, MAX_TASK);
  gkp__dynbuf_init(&in.image, (size_t)20 * 1024 * 1024);
  gkp__dynbuf_init(&a.image_paths, 1 << 20);
  pthread_mutex_init(&a.mu, NULL);
  pthread_cond_init(&a.cv, NULL);

  if (a.quality != NULL && strcmp(a.quality, "draft") != 0 && strcmp(a.quality, "standard") != 0 &&
      strcmp(a.quality, "production") != 0 && strcmp(a.quality, "research") != 0) {
    cli_error("ask: unknown --quality '%s' (draft, standard, production, research)", a.quality);
    goto out;
  }
  cli_run_id(a.run_id, sizeof a.run_id);
  if (read_inputs(&a, &in) != 0) {
    goto out;
  }
  pool = cli_open_pool(&a.common);
  if (pool == NULL || open_answer(&a) != 0) {
    goto out;
  }
  gkp__job_spec spec = job_spec(&a, &in);
  if (a.image_file != NULL && spec.context == NULL && gkp__dynbuf_len(&in.image) == 0) {
    cli_error("ask: image file %s is empty", a.image_file);
    goto out;
  }
  if ((code = run_job(&a, pool, &spec, &runner)) != CLI_OK) {
    goto out;
  }
  clear_progress(&a);
  gkp__job_info *r = &a.result;
  code = r->status == GKP__JOB_DONE ? CLI_OK : CLI_FAILED;
  code = a.json ? print_json(&a, r, code) : finish_text(&a, r, code);
  if (a.image_failed && code == CLI_OK) {
    code = CLI_FAILED; /* the reason was printed by on_image */
  }
  log_execution(pool, &a, r, a.task[0] == '-' && a.task[1] == '\0' ? "(stdin)" : a.task,
                gkp__dynbuf_ptr(&in.task));
  gkp__job_info_free(r);
out:
  gkp__runner_free(runner);
  if (a.out != NULL && a.out != stdout) {
    fclose(a.out);
  }
  gkp_pool_close(pool);
  gkp__dynbuf_reset(&in.task);
  gkp__dynbuf_reset(&in.context);
  gkp__dynbuf_reset(&in.image);
  gkp__dynbuf_reset(&a.image_paths);
  pthread_mutex_destroy(&a.mu);
  pthread_cond_destroy(&a.cv);
  return code;
}
