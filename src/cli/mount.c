/*
 * mount.c - gemini-pool mount: its options.  The filesystem itself is behind
 * fs_mount_run (src/fs/fs_mount.h).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "fs/fs_mount.h"

typedef struct mount_opts {
  cli_common common;
  const char *mountpoint;
  int foreground, debug, single;
  size_t max_prompt, max_answer, max_images, max_memory;
  long long keep_ms;
  int status_public;
  char fuse_opts[2048]; /* passed to libfuse */
  const char *listen;   /* --listen ADDR: the HTTP front too */
} mount_opts;

static const char MOUNT_USAGE[] =
    "usage: gemini-pool mount MOUNTPOINT [-f] [-d] [-s] [-o OPTS] [--config F] [--state F]\n"
    "  -f            stay in the foreground (log to stderr)\n"
    "  -d            debug: log every FUSE request (implies -f)\n"
    "  -s            single-threaded\n"
    "  --listen ADDR also serve the HTTP front (see gemini-pool serve) from this daemon\n"
    "  -o OPTS       comma-separated: max_prompt=SIZE (default 1M), max_answer=SIZE\n"
    "                (default 64M: a longer answer fails the job), max_images=SIZE\n"
    "                (default 64M: the images of one job), max_memory=SIZE (default\n"
    "                1G: prompts, scratch files, answers and images in memory),\n"
    "                keep=DURATION\n"
    "                (finished jobs kept this long: 30d by default, 0 forever),\n"
    "                status_public (status/ readable by all users; else by yours only),\n"
    "                allow_other, allow_root, and other libfuse mount options\n"
    "Unmount with fusermount3 -u MOUNTPOINT (or Ctrl-C / SIGTERM on the daemon).\n";

/* "1048576", "512k", "8M", "1G" -> bytes; 0 on a bad value. */
size_t cli_parse_size(const char *s) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) {
    return 0;
  }
  switch (*end) {
  case 'k':
  case 'K':
    v <<= 10;
    end++;
    break;
  case 'm':
  case 'M':
    v <<= 20;
    end++;
    break;
  case 'g':
  case 'G':
    v <<= 30;
    end++;
    break;
  default:
    break;
  }
  if (*end == 'i' || *end == 'B') {
    end++;
  }
  if (*end == 'B') {
    end++;
  }
  return *end == '\0' ? (size_t)v : 0;
}

/* "30d", "12h", "90m", "10s", "0" (a bare number is seconds) -> ms; -1 on a
 * bad value. */
static long long parse_duration(const char *s) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  long long unit = 1000;
  if (end == s || s[0] == '-') {
    return -1;
  }
  switch (*end) {
  case 'd':
    unit = 86400 * 1000LL;
    end++;
    break;
  case 'h':
    unit = 3600 * 1000LL;
    end++;
    break;
  case 'm':
    unit = 60 * 1000LL;
    end++;
    break;
  case 's':
    end++;
    break;
  default:
    break;
  }
  if (*end != '\0' || v > (unsigned long long)(LLONG_MAX / unit)) {
    return -1;
  }
  return (long long)v * unit;
}

/* Takes our own options out of a -o list; the rest goes to libfuse. */
static int parse_o(mount_opts *o, const char *list) {
  char *copy = strdup(list), *save = NULL, *opt;
  if (copy == NULL) {
    return -1;
  }
  for (opt = strtok_r(copy, ",", &save); opt != NULL; opt = strtok_r(NULL, ",", &save)) {
    if (strncmp(opt, "max_prompt=", 11) == 0) {
      o->max_prompt = cli_parse_size(opt + 11);
      if (o->max_prompt == 0 || o->max_prompt > FS_SCRATCH_MAX) {
        cli_error("mount: -o max_prompt=%s: give a size from 1 to 64M (e.g. 4M)", opt + 11);
        free(copy);
        return -1;
      }
    } else if (strncmp(opt, "max_answer=", 11) == 0) {
      o->max_answer = cli_parse_size(opt + 11);
      if (o->max_answer == 0 || o->max_answer > FS_MAX_TEXT) {
        cli_error("mount: -o max_answer=%s: give a size from 1 to 64M (e.g. 8M)", opt + 11);
        free(copy);
        return -1;
      }
    } else if (strncmp(opt, "max_images=", 11) == 0) {
      o->max_images = cli_parse_size(opt + 11);
      if (o->max_images == 0 || o->max_images > FS_MAX_IMAGE_BYTES) {
        cli_error("mount: -o max_images=%s: give a size from 1 to 64M (e.g. 16M)", opt + 11);
        free(copy);
        return -1;
      }
    } else if (strncmp(opt, "max_memory=", 11) == 0) {
      o->max_memory = cli_parse_size(opt + 11);
      if (o->max_memory < FS_MIN_MAX_MEMORY) {
        cli_error("mount: -o max_memory=%s: give a size of at least 1M (e.g. 512M, 2G)", opt + 11);
        free(copy);
        return -1;
      }
    } else if (strncmp(opt, "keep=", 5) == 0) {
      o->keep_ms = parse_duration(opt + 5);
      if (o->keep_ms < 0) {
        cli_error("mount: -o keep=%s: give a duration such as 30d, 12h, 90m, 10s, or 0 (forever)",
                  opt + 5);
        free(copy);
        return -1;
      }
    } else if (strcmp(opt, "status_public") == 0) {
      o->status_public = 1;
    } else if (strcmp(opt, "debug") == 0) {
      o->debug = o->foreground = 1;
    } else if (strcmp(opt, "default_permissions") == 0) {
      continue; /* always on */
    } else {
      size_t n = strlen(o->fuse_opts);
      if (n + strlen(opt) + 2 > sizeof o->fuse_opts) {
        cli_error("mount: -o: too many options");
        free(copy);
        return -1;
      }
      snprintf(o->fuse_opts + n, sizeof o->fuse_opts - n, "%s%s", n ? "," : "", opt);
    }
  }
  free(copy);
  return 0;
}

/* Returns 0, 1 for --help, -1 on a usage error (printed). */
static int parse_args(mount_opts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int rc = cli_common_option(&o->common, argc, argv, &i);
    const char *a = argv[i];
    if (rc < 0) {
      return -1;
    }
    if (rc > 0) {
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      return 1;
    } else if (strcmp(a, "-f") == 0 || strcmp(a, "--foreground") == 0) {
      o->foreground = 1;
    } else if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0) {
      o->debug = o->foreground = 1;
    } else if (strcmp(a, "-s") == 0) {
      o->single = 1;
    } else if (strcmp(a, "--listen") == 0 || strncmp(a, "--listen=", 9) == 0) {
      int missing = 0;
      if ((o->listen = cli_value("--listen", argc, argv, &i, &missing)) == NULL) {
        return -1;
      }
    } else if (strcmp(a, "-o") == 0) {
      if (i + 1 >= argc) {
        cli_error("mount: -o needs a list of options");
        return -1;
      }
      if (parse_o(o, argv[++i]) != 0) {
        return -1;
      }
    } else if (strncmp(a, "-o", 2) == 0) {
      if (parse_o(o, a + 2) != 0) {
        return -1;
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      cli_error("mount: unknown option '%s' (see gemini-pool mount --help)", a);
      return -1;
    } else if (o->mountpoint == NULL) {
      o->mountpoint = a;
    } else {
      cli_error("mount: one mountpoint only ('%s' and '%s')", o->mountpoint, a);
      return -1;
    }
  }
  if (o->mountpoint == NULL) {
    cli_error("mount: a MOUNTPOINT is required (see gemini-pool mount --help)");
    return -1;
  }
  return 0;
}

/* The mount's log, for the front's lines (one daemon, one front). */
static void (*mount_log)(const char *line);

static void front_log(void *ud, const char *line) {
  (void)ud;
  mount_log(line);
}

/* --listen: the HTTP front in the mount's daemon, over its pool and runner. */
static void *front_start(void *ud, struct gkp_pool *pool, struct gkp__runner *runner,
                         void (*log)(const char *line)) {
  const mount_opts *o = ud;
  /* The front's ceiling mirrors the mount's: a budget of its own, of the same size. */
  gkp__front_opts fo = {.listen = o->listen, .log = front_log, .max_memory = o->max_memory};
  mount_log = log;
  return cli_front_start(pool, runner, &fo);
}

static void front_stop(void *ud, void *front) {
  (void)ud;
  gkp__front_stop(front);
}

/* status/metrics: the front's callers, one series per client. */
static char *front_metrics(void *ud, void *front) {
  (void)ud;
  return cli_front_metrics(front);
}

int cmd_mount(int argc, char **argv) {
  mount_opts o = {.max_prompt = FS_DEFAULT_MAX_PROMPT,
                  .max_answer = FS_MAX_TEXT,
                  .max_images = FS_MAX_IMAGE_BYTES,
                  .max_memory = FS_DEFAULT_MAX_MEMORY,
                  .keep_ms = FS_DEFAULT_KEEP_MS};
  char err[4096 + 512];
  int rc = parse_args(&o, argc, argv);

  if (rc != 0) {
    fputs(MOUNT_USAGE, rc > 0 ? stdout : stderr);
    return rc > 0 ? CLI_OK : CLI_USAGE;
  }
  fs_mount_opts fo = {.config = o.common.config,
                      .state = o.common.state,
                      .mountpoint = o.mountpoint,
                      .foreground = o.foreground,
                      .debug = o.debug,
                      .single = o.single,
                      .max_prompt = o.max_prompt,
                      .max_answer = o.max_answer,
                      .max_images = o.max_images,
                      .max_memory = o.max_memory,
                      .keep_ms = o.keep_ms,
                      .status_public = o.status_public,
                      .fuse_opts = o.fuse_opts};
  fs_mount_extra extra = {
      .start = front_start, .stop = front_stop, .metrics = front_metrics, .ud = &o};
  if (o.listen != NULL) {
    fo.extra = &extra;
  }
  if (fs_mount_run(&fo, err, sizeof err) != 0) {
    if (err[0] != '\0') {
      cli_error("%s", err);
    }
    return CLI_FAILED;
  }
  return CLI_OK;
}
