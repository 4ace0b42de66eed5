/*
 * fs_main.c - gemini-pool mount: options, the mount, the daemon, signals
 * and an orderly shutdown.
 *
 * Order of events: the configuration is checked and the mount made while
 * the command still has its terminal, so every mistake is seen; then the
 * process becomes a daemon (unless -f) and only then opens the pool for
 * good (a lease names its owner's pid), opens the job store and starts its
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
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/timeutil.h"
#include "config/config.h"
#include "fs/fs.h"

extern char **environ;

fs_state fs;

typedef struct mount_opts {
  cli_common common;
  const char *mountpoint;
  int foreground, debug, single, status_public;
  size_t max_prompt, max_answer;
  int64_t keep_ms;
  char fuse_opts[2048]; /* passed to libfuse */
} mount_opts;

static const char MOUNT_USAGE[] =
    "usage: gemini-pool mount MOUNTPOINT [-f] [-d] [-s] [-o OPTS] [--config F] [--state F]\n"
    "  -f            stay in the foreground (log to stderr)\n"
    "  -d            debug: log every FUSE request (implies -f)\n"
    "  -s            single-threaded\n"
    "  -o OPTS       comma-separated: max_prompt=SIZE (default 1M), max_answer=SIZE\n"
    "                (default 64M: a longer answer fails the job), keep=DURATION\n"
    "                (finished jobs kept this long: 30d by default, 0 forever),\n"
    "                status_public (status/ readable by all users; else by yours only),\n"
    "                allow_other, allow_root, and other libfuse mount options\n"
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

/* "30d", "12h", "90m", "10s", "0" (a bare number is seconds) -> ms; -1 on a
 * bad value. */
static int64_t parse_duration(const char *s) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  int64_t unit = 1000;
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
  if (*end != '\0' || v > (unsigned long long)(INT64_MAX / unit)) {
    return -1;
  }
  return (int64_t)v * unit;
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
    } else if (strncmp(opt, "max_answer=", 11) == 0) {
      o->max_answer = parse_size(opt + 11);
      if (o->max_answer == 0 || o->max_answer > FS_MAX_TEXT) {
        cli_error("mount: -o max_answer=%s: give a size from 1 to 64M (e.g. 8M)", opt + 11);
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

/* ---- one daemon per state ----------------------------------------------------------- */

static int lock_fd = -1;

/* Takes the state directory's lock for the daemon's life (released when the
 * process ends, however it ends): a second mount on the same state would
 * run every job twice.  Returns 0, or -1 with the reason printed. */
static int lock_state(const char *statedir, const char *state, const char *mnt) {
  char path[PATH_MAX], owner[PATH_MAX + 64] = "";
  snprintf(path, sizeof path, "%s/mount.lock", statedir);
  lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock_fd < 0) {
    cli_error("mount: cannot open the lock %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) == 0) {
    return 0;
  }
  ssize_t n = errno == EWOULDBLOCK ? pread(lock_fd, owner, sizeof owner - 1, 0) : -1;
  long pid = 0;
  int at = 0;
  if (n > 0) {
    owner[n] = '\0';
    owner[strcspn(owner, "\n")] = '\0';
    sscanf(owner, "%ld %n", &pid, &at);
  }
  if (pid > 0) {
    cli_error("mount: state %s is already served by pid %ld at %s; not mounting %s", state, pid,
              owner + at, mnt);
  } else {
    cli_error("mount: state %s is already served by another gemini-pool mount (lock %s); not "
              "mounting %s",
              state, path, mnt);
  }
  close(lock_fd);
  lock_fd = -1;
  return -1;
}

/* Records the daemon's pid and mountpoint in the lock (after it forked). */
static void lock_record(const char *mnt) {
  char line[PATH_MAX + 64];
  int n = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), mnt);
  if (lock_fd >= 0 && ftruncate(lock_fd, 0) == 0 && n > 0) {
    if (pwrite(lock_fd, line, (size_t)n, 0) != n) {
      fs_log(GKP_LOG_WARN, "cannot record the daemon in its lock file: %s", strerror(errno));
    }
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
  pthread_mutex_init(&fs.store_qmu, NULL);
  pthread_cond_init(&fs.store_cv, NULL);
  fs.next_group = 1;
  fs.next_run_id = 1;
  fs.next_parked_id = 1;
  fs.uid = getuid();
  fs.gid = getgid();
  fs.max_prompt = o->max_prompt;
  fs.start_ms = gkp__now_ms();
  fs.keep_ms = o->keep_ms;
  fs.max_answer = o->max_answer;
  fs.status_public = o->status_public;
  fs.spool_dir = malloc(strlen(statedir) + 8);
  fs.db_path = malloc(strlen(statedir) + 16);
  if (fs.spool_dir == NULL || fs.db_path == NULL) {
    return -ENOMEM;
  }
  sprintf(fs.spool_dir, "%s/spool", statedir);
  sprintf(fs.db_path, "%s/jobs.db", statedir);
  fs.readme = fs_readme_text(mnt);
  return fs.readme != NULL ? 0 : -ENOMEM;
}

static void fs_fini(void) {
  free(fs.spool_dir);
  free(fs.db_path);
  free(fs.readme);
  pthread_mutex_destroy(&fs.mu);
  pthread_mutex_destroy(&fs.store_qmu);
  pthread_cond_destroy(&fs.store_cv);
}

/* Everything after the mount: returns the exit code. */
static int serve(const mount_opts *o, struct fuse_session *se, const char *config,
                 const char *state, const char *statedir, const char *mnt) {
  gkp_options po = {.config_path = config, .state_path = state, .log = fs_log_pool};
  gkp__runner_opts ro = {.stream = 1};
  gkp_error err;
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
  if ((rc = fs_store_start()) != 0) {
    fs_log(GKP_LOG_ERROR, "cannot use the job store %s: %s", fs.db_path, strerror(-rc));
    goto out;
  }
  if (fs_store_restore() != 0) {
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
  gkp__runner_free(fs.runner); /* running jobs end as cancelled: requeued next time */
  fs.runner = NULL;
  fs_store_stop(); /* commits the answers that finished */
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
  mount_opts o = {.max_prompt = FS_DEFAULT_MAX_PROMPT,
                  .max_answer = FS_MAX_TEXT,
                  .keep_ms = FS_DEFAULT_KEEP_MS};
  char found[4096], fopts[2300];
  char *config = NULL, *state = NULL, *statedir = NULL, *statefile = NULL, *mnt = NULL;
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
  statefile = strdup(gkp_pool_state_path(pool));
  gkp_pool_close(pool);
  if (statedir == NULL || statefile == NULL) {
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
  if (lock_state(statedir, statefile, mnt) != 0) {
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
  lock_record(mnt);
  code = serve(&o, se, po.config_path, state, statedir, mnt);
  fuse_remove_signal_handlers(se);

out:
  if (se != NULL) {
    fuse_session_destroy(se);
  }
  fuse_opt_free_args(&args);
  fs_log_close();
  if (lock_fd >= 0) {
    close(lock_fd);
    lock_fd = -1;
  }
  free(config);
  free(state);
  free(statedir);
  free(statefile);
  free(mnt);
  return code;
}
