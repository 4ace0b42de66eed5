/*
 * main.c - gemini-pool: the command line entry point.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"

static const char *USAGE =
    "usage:\n"
    "  gemini-pool mount MOUNTPOINT [-f] [-o OPTS]     the filesystem\n"
    "  gemini-pool ask --task TEXT|- [--model M|auto] [--profile P] [--context-file F]\n"
    "                  [--output F] [--image-file F] [--image-output F]\n"
    "                  [--system-prompt S] [--quality draft|standard|production|research]\n"
    "                  [--thinking minimal|low|medium|high]\n"
    "                  [--enable-tools] [--capture-thinking] [--json]\n"
    "                  [--max-wait SECONDS] [--timeout SECONDS]\n"
    "                  without --model or --profile, the pool picks the model (auto)\n"
    "  gemini-pool route --task TEXT|- [--quality Q] [--json]\n"
    "                                                  what auto would pick, and why (sends "
    "nothing)\n"
    "  gemini-pool rate JOB SCORE                      teach the router: JOB is a job's path in "
    "the\n"
    "                                                  mount or a run id from ask --json; SCORE "
    "1-5\n"
    "  gemini-pool serve --listen ADDR                 the HTTP front (Gemini REST API)\n"
    "  gemini-pool status [--json]                     the pool, from the state file\n"
    "  gemini-pool keys check                          validate every key (models.list)\n"
    "  gemini-pool reset [KEY_ID|all]                  clear cooldowns, re-enable keys\n"
    "  gemini-pool state copy FROM TO                  move the state between a file and Redis\n"
    "  gemini-pool skill [install [--dir DIR]]         the agent skill (SKILL.md)\n"
    "  gemini-pool --help | --version\n"
    "\n"
    "Every command takes --config FILE (else $GEMINI_POOL_CONFIG, ./keys.json,\n"
    "$XDG_CONFIG_HOME/gemini-pool/keys.json) and --state FILE|URL (else $GEMINI_POOL_STATE,\n"
    "$XDG_STATE_HOME/gemini-pool/state.db), before or after the command.\n"
    "$GOOGLE_GEMINI_BASE_URL overrides the API endpoint (e.g. http://127.0.0.1:PORT\n"
    "for scripts/fake-gemini).\n"
    "$GEMINI_POOL_STALL_TIMEOUT (seconds, default 300): a request that receives\n"
    "nothing for this long is retried on another key.\n";

/* The usage text: on stdout for --help (exit 0), on stderr otherwise.  The
 * subcommands' --help comes here too. */
void cli_usage(FILE *f) {
  fputs(USAGE, f);
}

void cli_error(const char *fmt, ...) {
  va_list ap;
  fputs("gemini-pool: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void cli_log(void *ud, int level, const char *line) {
  (void)ud;
  if (level >= GKP_LOG_WARN) {
    fprintf(stderr, "gemini-pool: warning: %s\n", line);
  }
}

void cli_say_config(const gkp_pool *pool) {
  int origin = gkp_pool_config_origin(pool);
  if (origin == GKP_CONFIG_CWD || (origin == GKP_CONFIG_ENV && isatty(STDERR_FILENO))) {
    cli_error("configuration: %s (%s)", gkp_pool_config_path(pool),
              origin == GKP_CONFIG_ENV ? "named by $GEMINI_POOL_CONFIG"
                                       : "found in the current directory");
  }
}

gkp_pool *cli_open_pool(const cli_common *c) {
  gkp_pool *pool = NULL;
  gkp_error err;
  gkp_options o = {.config_path = c->config, .state_path = c->state, .log = cli_log};
  if (gkp_pool_open(&pool, &o, &err) != 0) {
    cli_error("%s", err.msg);
    return NULL;
  }
  cli_say_config(pool);
  return pool;
}

const char *cli_value(const char *name, int argc, char **argv, int *i, int *missing) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) {
    return NULL;
  }
  if (a[n] == '=') {
    return a + n + 1;
  }
  if (a[n] != '\0') {
    return NULL;
  }
  if (*i + 1 >= argc) {
    *missing = 1;
    cli_error("%s needs a value", name);
    return NULL;
  }
  return argv[++*i];
}

int cli_common_option(cli_common *c, int argc, char **argv, int *i) {
  int missing = 0;
  const char *v;
  if ((v = cli_value("--config", argc, argv, i, &missing)) != NULL) {
    c->config = v;
    return 1;
  }
  if ((v = cli_value("--state", argc, argv, i, &missing)) != NULL) {
    c->state = v;
    cli_warn_literal_password(v, "--state");
    return 1;
  }
  return missing ? -1 : 0;
}

void cli_warn_literal_password(const char *state, const char *what) {
  const char *rest = strncmp(state, "redis://", 8) == 0  ? state + 8
                     : strncmp(state, "unix://", 7) == 0 ? state + 7
                                                         : NULL;
  if (rest == NULL) {
    return;
  }
  /* As the URL is parsed: the user info ends at the last '@'. */
  const char *at = strrchr(rest, '@');
  if (at == NULL) {
    return;
  }
  const char *colon = memchr(rest, ':', (size_t)(at - rest));
  const char *pw = colon != NULL ? colon + 1 : rest;
  if (pw < at && strncmp(pw, "env:", 4) != 0) {
    cli_error("warning: %s carries a literal Redis password, which every user of this machine "
              "can read (/proc/PID/cmdline); write it as redis://:env:NAME@host:port/db and set "
              "NAME in the environment or in the .env beside keys.json",
              what);
  }
}

void cli_log_execution(gkp_pool *pool, const char *json_line) {
  char path[4200], dir[4096];
  int fd;
  gkp_error derr = {0};
  if (gkp__local_state_dir(gkp_pool_state_path(pool), dir, sizeof dir, &derr) != 0) {
    cli_error("warning: executions.jsonl not written: %s",
              derr.msg[0] != '\0' ? derr.msg : "no place for it: set XDG_STATE_HOME or HOME");
    return;
  }
  snprintf(path, sizeof path, "%s/executions.jsonl", dir);
  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    cli_error("warning: cannot append to %s: %s", path, strerror(errno));
    return;
  }
  /* One write of the whole line: lines of concurrent runs never interleave. */
  size_t len = strlen(json_line);
  char *line = malloc(len + 2);
  if (line != NULL) {
    memcpy(line, json_line, len);
    line[len] = '\n';
    if (write(fd, line, len + 1) != (ssize_t)(len + 1)) {
      cli_error("warning: cannot append to %s: %s", path, strerror(errno));
    }
    free(line);
  }
  close(fd);
}

/* Keeps the keys this process holds out of core dumps: no core file
 * (RLIMIT_CORE 0, which a child cannot raise past), and not dumpable (which
 * also keeps other processes of the user from reading its memory through
 * /proc or ptrace).  The library's key pages are MADV_DONTDUMP besides. */
static void no_core_dumps(void) {
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* `gemini-pool --state URL status` is `gemini-pool status --state URL`: the
 * options every command takes (--config, --state) may come before the
 * command; they are moved after its arguments.  Returns 0, or -1 (one line
 * said) when one lacks its value. */
static int globals_first(int *argc, char **argv) {
  int n = 0;
  while (1 + n < *argc) {
    const char *a = argv[1 + n];
    int eq = strncmp(a, "--config=", 9) == 0 || strncmp(a, "--state=", 8) == 0;
    int sep = strcmp(a, "--config") == 0 || strcmp(a, "--state") == 0;
    if (!eq && !sep) {
      break;
    }
    if (sep && 2 + n >= *argc) {
      cli_error("%s needs a value", a);
      return -1;
    }
    n += sep ? 2 : 1;
  }
  if (n == 0 || 1 + n >= *argc) {
    return 0; /* none, or nothing after them (the command's absence is said) */
  }
  char *moved[8];
  if (n > (int)(sizeof moved / sizeof moved[0])) {
    cli_error("--config and --state are given too many times");
    return -1;
  }
  memcpy(moved, argv + 1, sizeof *argv * (size_t)n);
  memmove(argv + 1, argv + 1 + n, sizeof *argv * (size_t)(*argc - 1 - n));
  memcpy(argv + *argc - n, moved, sizeof *argv * (size_t)n);
  return 0;
}

int main(int argc, char **argv) {
  no_core_dumps();
  if (globals_first(&argc, argv) != 0) {
    return CLI_USAGE;
  }
  if (argc < 2) {
    fputs(USAGE, stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    fputs(USAGE, stdout);
    return CLI_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("gemini-pool %s\n", GKP_VERSION);
    return CLI_OK;
  }
  if (strcmp(cmd, "ask") == 0) {
    return cmd_ask(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "status") == 0) {
    return cmd_status(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "reset") == 0) {
    return cmd_reset(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "state") == 0) {
    return cmd_state(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "keys") == 0) {
    return cmd_keys(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "route") == 0) {
    return cmd_route(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "rate") == 0) {
    return cmd_rate(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "serve") == 0) {
    return cmd_serve(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "skill") == 0) {
    return cmd_skill(argc - 1, argv + 1);
  }
  if (strcmp(cmd, "mount") == 0) {
    return cmd_mount(argc - 1, argv + 1);
  }
  cli_error("unknown command '%s' (see gemini-pool --help)", cmd);
  return CLI_USAGE;
}
