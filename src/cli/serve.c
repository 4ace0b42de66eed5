/*
 * serve.c - gemini-pool serve: the HTTP front over the pool, until SIGINT
 * or SIGTERM (SIGHUP re-reads the configuration).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/serve.h"

static const char *SERVE_USAGE =
    "usage: gemini-pool serve --listen ADDR [--config F] [--state S]\n"
    "                         [--max-body BYTES] [--idle-timeout SECONDS]\n"
    "                         [--header-timeout SECONDS] [--max-memory SIZE]\n"
    "  ADDR: 127.0.0.1:8787, [::1]:8787 or unix:/path (port 0: any free port)\n"
    "  SIZE: request bodies held and being parsed, together (default 1G; 512M, ...)\n"
    "  Serves the Gemini REST API (/v1beta/models/...) from the pool; see\n"
    "  gemini-pool(1).  One log line per request on stderr.\n";

typedef struct serve_opts {
  cli_common common;
  gkp__front_opts front;
} serve_opts;

static int parse_uint(const char *name, const char *v, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno != 0 || *end != '\0' || v[0] == '\0' || v[0] == '-' || n > max) {
    cli_error("%s: expected a whole number up to %lu, got '%s'", name, max, v);
    return -1;
  }
  *out = n;
  return 0;
}

/* Returns 0, 1 for --help, -1 on a usage error (printed). */
static int parse_serve(serve_opts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int missing = 0, rc = cli_common_option(&o->common, argc, argv, &i);
    unsigned long n;
    const char *v;
    if (rc < 0) {
      return -1;
    }
    if (rc > 0) {
      continue;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      return 1;
    }
    if ((v = cli_value("--listen", argc, argv, &i, &missing)) != NULL) {
      o->front.listen = v;
    } else if ((v = cli_value("--max-body", argc, argv, &i, &missing)) != NULL) {
      if (parse_uint("--max-body", v, 1ul << 34, &n) != 0) {
        return -1;
      }
      o->front.max_body = n;
    } else if ((v = cli_value("--max-memory", argc, argv, &i, &missing)) != NULL) {
      size_t size = cli_parse_size(v);
      if (size < ((size_t)1 << 20)) {
        cli_error("serve: --max-memory %s: give a size of at least 1M (e.g. 512M, 2G)", v);
        return -1;
      }
      o->front.max_memory = size;
    } else if ((v = cli_value("--idle-timeout", argc, argv, &i, &missing)) != NULL) {
      if (parse_uint("--idle-timeout", v, 86400, &n) != 0) {
        return -1;
      }
      o->front.idle_timeout_s = (unsigned)n;
    } else if ((v = cli_value("--header-timeout", argc, argv, &i, &missing)) != NULL) {
      if (parse_uint("--header-timeout", v, 86400, &n) != 0) {
        return -1;
      }
      o->front.header_timeout_s = (unsigned)n;
    } else {
      if (!missing) {
        cli_error("serve: unknown argument '%s'", argv[i]);
      }
      return -1;
    }
  }
  if (o->front.listen == NULL) {
    cli_error("serve: --listen ADDR is required (e.g. --listen 127.0.0.1:8787)");
    return -1;
  }
  return 0;
}

static void serve_log(void *ud, const char *line) {
  (void)ud;
  fprintf(stderr, "gemini-pool: %s\n", line);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

gkp__front *cli_front_start(gkp_pool *pool, gkp__runner *runner, const gkp__front_opts *fo) {
  gkp__front *front = NULL;
  gkp_error err;
  gkp__front_opts o = *fo;
  if (o.log == NULL) {
    o.log = serve_log;
  }
  raise_nofile();
  if (gkp__front_start(pool, runner, &o, &front, &err) != 0) {
    cli_error("%s", err.msg);
    return NULL;
  }
  fprintf(stderr, "gemini-pool: serving the Gemini API on %s%s\n",
          strncmp(gkp__front_address(front), "unix:", 5) == 0 ? "" : "http://",
          gkp__front_address(front));
  return front;
}

int cmd_serve(int argc, char **argv) {
  serve_opts o = {0};
  int rc = parse_serve(&o, argc, argv), sig = 0;
  if (rc != 0) {
    fputs(SERVE_USAGE, rc > 0 ? stdout : stderr);
    return rc > 0 ? CLI_OK : CLI_USAGE;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started below inherits it */
  signal(SIGPIPE, SIG_IGN);
  gkp_pool *pool = cli_open_pool(&o.common);
  if (pool == NULL) {
    return CLI_FAILED;
  }
  gkp__runner *runner = NULL;
  gkp__runner_opts ro = {.stream = 1};
  gkp_error err;
  if (gkp__runner_new(pool, &ro, &runner, &err) != 0) {
    cli_error("%s", err.msg);
    gkp_pool_close(pool);
    return CLI_FAILED;
  }
  gkp__front *front = cli_front_start(pool, runner, &o.front);
  if (front == NULL) {
    gkp__runner_free(runner);
    gkp_pool_close(pool);
    return CLI_FAILED;
  }
  for (;;) {
    if (sigwait(&set, &sig) != 0) {
      continue;
    }
    if (sig != SIGHUP) {
      break;
    }
    if (gkp_pool_reload(pool, &err) != 0) {
      cli_error("reload refused, the running configuration stays: %s", err.msg);
    } else {
      fprintf(stderr, "gemini-pool: configuration reloaded\n");
    }
  }
  fprintf(stderr, "gemini-pool: stopping (signal %d)\n", sig);
  gkp__front_stop(front);
  gkp__runner_free(runner);
  gkp_pool_close(pool);
  return CLI_OK;
}

/* ---- usage per client in gemini-pool status ---------------------------------- */

/* The callers' usage as the pool's state has it; NULL if there are none. */
static cJSON *clients_usage(gkp_pool *pool) {
  char *json = gkp__front_usage_json(pool);
  cJSON *doc = json != NULL ? cJSON_Parse(json) : NULL;
  free(json);
  return doc;
}

char *cli_status_json(gkp_pool *pool, const gkp__status *st) {
  cJSON *usage = clients_usage(pool);
  char *extra = usage != NULL ? cJSON_PrintUnformatted(usage) : NULL;
  /* With the front's usage the document is compact, as it always was. */
  char *doc = gkp__status_render_json_with(st, extra != NULL, "http_clients", extra);
  free(extra);
  cJSON_Delete(usage);
  return doc;
}

static long long num(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

void cli_status_print_clients(gkp_pool *pool, FILE *out) {
  cJSON *usage = clients_usage(pool), *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(usage, "clients")) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
    fprintf(out, "client %-16s minute %lld/%lld  today %lld/%lld  requests %lld  rejected %lld\n",
            cJSON_IsString(id) ? id->valuestring : "?", num(c, "minute"), num(c, "rpm"),
            num(c, "today"), num(c, "rpd"), num(c, "requests"), num(c, "rejected"));
  }
  cJSON_Delete(usage);
}

char *cli_front_metrics(gkp__front *front) {
  static const struct {
    const char *field, *name, *type, *help;
  } series[] = {
      {"requests", "gemini_pool_http_client_requests_total", "counter",
       "Requests admitted from a client of the HTTP front."},
      {"minute", "gemini_pool_http_client_requests_last_minute", "gauge",
       "A client's requests in the last 60 s (its rpm applies to this)."},
      {"today", "gemini_pool_http_client_requests_today", "gauge",
       "A client's requests since midnight Pacific (its rpd applies to this)."},
      {"rejected", "gemini_pool_http_client_rejected_total", "counter",
       "A client's requests refused for its own rpm or rpd."},
      {"waiting", "gemini_pool_http_client_waiting", "gauge",
       "A client's requests waiting for a key."},
  };
  char *json = gkp__front_clients_json(front);
  cJSON *doc = json != NULL ? cJSON_Parse(json) : NULL, *c;
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "clients");
  size_t cap = 2048 + (size_t)cJSON_GetArraySize(list) * 1024, len = 0;
  char *out = cJSON_GetArraySize(list) > 0 ? malloc(cap) : NULL;
  free(json);
  for (size_t s = 0; out != NULL && s < sizeof series / sizeof series[0]; s++) {
    len += (size_t)snprintf(out + len, cap - len, "# HELP %s %s\n# TYPE %s %s\n", series[s].name,
                            series[s].help, series[s].name, series[s].type);
    cJSON_ArrayForEach(c, list) {
      const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
      len += (size_t)snprintf(out + len, cap - len, "%s{client=\"%s\"} %lld\n", series[s].name,
                              cJSON_IsString(id) ? id->valuestring : "", num(c, series[s].field));
    }
  }
  cJSON_Delete(doc);
  return out;
}
