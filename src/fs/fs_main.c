/*
 * fs_main.c - gemini-pool mount: options, the mount, the daemon, signals
 * and an orderly shutdown.
 *
 * Order of events: the configuration is checked and the mount made while
 * the command still has its terminal, so every mistake is seen; then the
 * process becomes a daemon (unless -f) and only then opens the pool for
 * good (a lease names its owner's pid), starts the runner and the spool
 * thread, brings finished jobs back and queues unfinished ones, and serves.
 * SIGINT/SIGTERM (or fusermount3 -u) end the loop: waiting readers get EIO,
 * the mount goes, jobs still running are cancelled (their prompts stay on
 * disk and run again at the next start), finished answers are written, and
 * the state file is closed.  SIGHUP reloads the configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/serve.h"
#include "common/timeutil.h"
#include "config/config.h"
#include "fs/fs.h"

extern char **environ;

fs_state fs;

typedef struct mount_opts {
  cli_common common;
  const char *mountpoint;
  int foreground, debug, single;
  size_t max_prompt;
  char fuse_opts[2048]; /* passed to libfuse */
  const char *listen;   /* --listen ADDR: the HTTP front too */
} mount_opts;

static const char MOUNT_USAGE[] =
    "usage: gemini-pool mount MOUNTPOINT [-f] [-d] [-s] [-o OPTS] [--config F] [--state F]\n"
    "  -f            stay in the foreground (log to stderr)\n"
    "  -d            debug: log every FUSE request (implies -f)\n"
    "  -s            single-threaded\n"
    "  --listen ADDR also serve the HTTP front (see gemini-pool serve) from this daemon\n"
    "  -o OPTS       comma-separated: max_prompt=SIZE (default 1M), allow_other,\n"
    "                allow_root, and other libfuse mount options\n"
    "Unmount with fusermount3 -u MOUNTPOINT (or Ctrl-C / SIGTERM on the daemon).\n";

/* "1048576", "512k", "8M", "1G" -> bytes; 0 on a bad value. */
static size_t parse_size(const char *s) {
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

/* Takes our own options out of a -o list; the rest goes to libfuse. */
static int parse_o(mount_opts *o, const char *list) {
  char *copy = strdup(list), *save = NULL, *opt;
  if (copy == NULL) {
    return -1;
  }
  for (opt = strtok_r(copy, ",", &save); opt != NULL; opt = strtok_r(NULL, ",", &save)) {
    if (strncmp(opt, "max_prompt=", 11) == 0) {
      o->max_prompt = parse_size(opt + 11);
      if (o->max_prompt == 0 || o->max_prompt > FS_SCRATCH_MAX) {
        cli_error("mount: -o max_prompt=%s: give a size from 1 to 64M (e.g. 4M)", opt + 11);
        free(copy);
        return -1;
      }
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

/* An absolute version of a path (the daemon changes to /). */
static char *absolute(const char *path) {
  char cwd[PATH_MAX], *out;
  if (path[0] == '/') {
    return strdup(path);
  }
  if (getcwd(cwd, sizeof cwd) == NULL) {
    return NULL;
  }
  out = malloc(strlen(cwd) + strlen(path) + 2);
  if (out != NULL) {
    sprintf(out, "%s/%s", cwd, path);
  }
  return out;
}

/* A mountpoint left behind by a daemon that was killed answers ENOTCONN:
 * detach it so the new mount can take its place. */
static void clear_stale_mount(const char *mnt) {
  struct statvfs sv;
  /* statfs always reaches the filesystem (stat may be answered from cache). */
  if (statvfs(mnt, &sv) == 0 || errno != ENOTCONN) {
    return;
  }
  fprintf(stderr, "gemini-pool: %s is a mount left by a daemon that stopped; unmounting it\n", mnt);
  if (geteuid() == 0 && umount2(mnt, MNT_DETACH) == 0) {
    return;
  }
  pid_t pid;
  char *args[] = {"fusermount3", "-uz", (char *)mnt, NULL};
  if (posix_spawnp(&pid, "fusermount3", NULL, NULL, args, environ) == 0) {
    int status;
    waitpid(pid, &status, 0);
  }
}

/* ---- SIGHUP ------------------------------------------------------------------- */

static pthread_t hup_thread;
static int hup_started;

static void *hup_main(void *arg) {
  sigset_t set;
  (void)arg;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) {
      continue;
    }
    if (sig == SIGUSR2) {
      break;
    }
    fs_log(GKP_LOG_INFO, "SIGHUP: reloading the configuration");
    fs_reload();
  }
  return NULL;
}

/* ---- serving --------------------------------------------------------------------- */

static int fs_init(const mount_opts *o, const char *statedir, const char *mnt) {
  memset(&fs, 0, sizeof fs);
  pthread_mutex_init(&fs.mu, NULL);
  pthread_mutex_init(&fs.spool_qmu, NULL);
  pthread_cond_init(&fs.spool_cv, NULL);
  fs.next_group = 1;
  fs.next_run_id = 1;
  fs.next_parked_id = 1;
  fs.uid = getuid();
  fs.gid = getgid();
  fs.max_prompt = o->max_prompt;
  fs.start_ms = gkp__now_ms();
  fs.spool_dir = malloc(strlen(statedir) + 8);
  if (fs.spool_dir == NULL) {
    return -ENOMEM;
  }
  sprintf(fs.spool_dir, "%s/spool", statedir);
  fs.readme = fs_readme_text(mnt);
  return fs.readme != NULL ? 0 : -ENOMEM;
}

static void fs_fini(void) {
  free(fs.spool_dir);
  free(fs.readme);
  pthread_mutex_destroy(&fs.mu);
  pthread_mutex_destroy(&fs.spool_qmu);
  pthread_cond_destroy(&fs.spool_cv);
}

static void front_log_line(void *ud, const char *line) {
  (void)ud;
  fs_log(GKP_LOG_INFO, "%s", line);
}

/* The HTTP front over the mount's pool and runner (--listen). */
static gkp__front *mount_front(const mount_opts *o) {
  gkp__front_opts fo = {.listen = o->listen, .log = front_log_line};
  gkp__front *front = cli_front_start(fs.pool, fs.runner, &fo);
  if (front == NULL) {
    fs_log(GKP_LOG_ERROR, "--listen %s: the HTTP front did not start (see above)", o->listen);
  }
  return front;
}

/* Everything after the mount: returns the exit code. */
static int serve(const mount_opts *o, struct fuse_session *se, const char *config,
                 const char *state, const char *statedir, const char *mnt) {
  gkp_options po = {.config_path = config, .state_path = state, .log = fs_log_pool};
  gkp__runner_opts ro = {.stream = 1};
  gkp_error err;
  gkp__front *front = NULL;
  int code = CLI_FAILED, rc;

  if (fs_init(o, statedir, mnt) != 0) {
    fs_log(GKP_LOG_ERROR, "out of memory");
    return CLI_FAILED;
  }
  if (gkp_pool_open(&fs.pool, &po, &err) != 0) {
    fs_log(GKP_LOG_ERROR, "%s", err.msg);
    goto out;
  }
  if (gkp__runner_new(fs.pool, &ro, &fs.runner, &err) != 0) {
    fs_log(GKP_LOG_ERROR, "%s", err.msg);
    goto out;
  }
  if (fs_tree_sync_config() != 0) {
    fs_log(GKP_LOG_ERROR, "out of memory");
    goto out;
  }
  if ((rc = fs_spool_start()) != 0) {
    fs_log(GKP_LOG_ERROR, "cannot use the spool directory %s: %s", fs.spool_dir, strerror(-rc));
    goto out;
  }
  fs_spool_restore();
  if (o->listen != NULL && (front = mount_front(o)) == NULL) {
    goto out;
  }
  if (pthread_create(&hup_thread, NULL, hup_main, NULL) == 0) {
    hup_started = 1;
  }
  fs.se = se;
  fs_log(GKP_LOG_INFO, "mounted at %s (config %s, state %s)", mnt, gkp_pool_config_path(fs.pool),
         gkp_pool_state_path(fs.pool));

  if (o->single) {
    rc = fuse_session_loop(se);
  } else {
    /* A bounded pool of workers: no operation ever waits for a job, so a
     * few threads serve any number of blocked readers. */
    struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 10};
    rc = fuse_session_loop_mt(se, &cfg);
  }
  code = rc == 0 ? CLI_OK : CLI_FAILED;
  fs_log(GKP_LOG_INFO, "unmounting %s", mnt);

out:
  pthread_mutex_lock(&fs.mu);
  fs.stopping = 1;
  pthread_mutex_unlock(&fs.mu);
  fs_job_stop_parked();
  fuse_session_unmount(se);
  if (hup_started) {
    pthread_kill(hup_thread, SIGUSR2);
    pthread_join(hup_thread, NULL);
    hup_started = 0;
  }
  gkp__front_stop(front);      /* before the runner its requests use */
  gkp__runner_free(fs.runner); /* running jobs end as cancelled: requeued next time */
  fs.runner = NULL;
  fs_spool_stop(); /* writes the answers that finished */
  fs_handles_free();
  fs_tree_free();
  gkp_pool_close(fs.pool); /* flushes the state file */
  fs.pool = NULL;
  fs_fini();
  return code;
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int cmd_mount(int argc, char **argv) {
  mount_opts o = {.max_prompt = FS_DEFAULT_MAX_PROMPT};
  char found[4096], fopts[2300];
  char *config = NULL, *state = NULL, *statedir = NULL, *mnt = NULL;
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  struct fuse_session *se = NULL;
  gkp_options po = {0};
  gkp_pool *pool = NULL;
  gkp_error err;
  sigset_t block;
  int rc = parse_args(&o, argc, argv), code = CLI_FAILED;
  const char *st;

  if (rc != 0) {
    fputs(MOUNT_USAGE, rc > 0 ? stdout : stderr);
    return rc > 0 ? CLI_OK : CLI_USAGE;
  }
  fs_log_open(1, NULL);

  /* The daemon runs in /: every path must be absolute. */
  if (gkp__config_find(o.common.config, found, sizeof found, &err) != 0) {
    cli_error("%s", err.msg);
    return CLI_FAILED;
  }
  config = realpath(found, NULL);
  st = o.common.state != NULL ? o.common.state : getenv("GEMINI_POOL_STATE");
  if (st != NULL && st[0] != '\0') {
    state = absolute(st);
  }
  po.config_path = config != NULL ? config : found;
  po.state_path = state;
  po.log = cli_log;
  if (gkp_pool_open(&pool, &po, &err) != 0) {
    cli_error("%s", err.msg);
    goto out;
  }
  statedir = strdup(gkp_pool_state_path(pool));
  gkp_pool_close(pool);
  if (statedir == NULL) {
    goto out;
  }
  char *slash = strrchr(statedir, '/');
  if (slash == NULL) {
    free(statedir);
    statedir = absolute(".");
  } else if (slash == statedir) {
    slash[1] = '\0';
  } else {
    *slash = '\0';
  }

  clear_stale_mount(o.mountpoint);
  mnt = realpath(o.mountpoint, NULL);
  if (mnt == NULL) {
    cli_error("mount: %s: %s (create the directory first)", o.mountpoint, strerror(errno));
    goto out;
  }
  struct stat sb;
  if (stat(mnt, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    cli_error("mount: %s is not a directory", mnt);
    goto out;
  }

  /* Private to the user unless -o allow_other; the kernel checks modes. */
  snprintf(fopts, sizeof fopts, "default_permissions,fsname=gemini-pool,subtype=gemini-pool%s%s",
           o.fuse_opts[0] ? "," : "", o.fuse_opts);
  if (fuse_opt_add_arg(&args, "gemini-pool") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
      fuse_opt_add_arg(&args, fopts) != 0 || (o.debug && fuse_opt_add_arg(&args, "-d") != 0)) {
    cli_error("mount: out of memory");
    goto out;
  }
  se = fuse_session_new(&args, &fs_ops, sizeof fs_ops, NULL);
  if (se == NULL) {
    cli_error("mount: libfuse refused the options (%s)", fopts);
    goto out;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    cli_error("mount: cannot install signal handlers");
    goto out;
  }
  /* SIGHUP (reload) is taken by a thread of its own: block it everywhere. */
  sigemptyset(&block);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  if (fuse_session_mount(se, mnt) != 0) {
    cli_error("mount: cannot mount on %s (is /dev/fuse there, and fusermount3 installed?)", mnt);
    fuse_remove_signal_handlers(se);
    goto out;
  }
  if (!o.foreground) {
    char logpath[PATH_MAX];
    snprintf(logpath, sizeof logpath, "%s/mount.log", statedir);
    if (fs_log_open(0, logpath) != 0) {
      cli_error("mount: cannot write the log %s: %s; its lines are lost", logpath, strerror(errno));
    } else {
      fprintf(stderr, "gemini-pool: mounted at %s; log: %s\n", mnt, logpath);
    }
  }
  raise_fd_limit();
  if (fuse_daemonize(o.foreground) != 0) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    goto out;
  }
  code = serve(&o, se, po.config_path, state, statedir, mnt);
  fuse_remove_signal_handlers(se);

out:
  if (se != NULL) {
    fuse_session_destroy(se);
  }
  fuse_opt_free_args(&args);
  fs_log_close();
  free(config);
  free(state);
  free(statedir);
  free(mnt);
  return code;
}
