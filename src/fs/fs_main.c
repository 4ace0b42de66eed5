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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "common/util.h"
#include "config/config.h"
#include "fs/fs.h"

extern char **environ;

fs_state fs;

/* A failure before the daemon leaves its terminal: one line into err. */
static void fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
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
  fs_log(GKP_LOG_INFO, "%s is a mount left by a daemon that stopped; unmounting it", mnt);
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

static int fs_init(const fs_mount_opts *o, const char *statedir, const char *mnt) {
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

/* Everything after the mount: returns 0 after a clean unmount, else -1. */
static int serve(const fs_mount_opts *o, struct fuse_session *se, const char *config,
                 const char *state, const char *statedir, const char *mnt) {
  gkp_options po = {.config_path = config, .state_path = state, .log = fs_log_pool};
  gkp__runner_opts ro = {.stream = 1};
  gkp_error err;
  int code = -1, rc;

  if (fs_init(o, statedir, mnt) != 0) {
    fs_log(GKP_LOG_ERROR, "out of memory");
    return -1;
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
  code = rc == 0 ? 0 : -1;
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

/* The absolute paths the daemon (which runs in /) works with. */
typedef struct mount_paths {
  char found[4096]; /* the configuration file as found */
  char *config;     /* its real path (NULL: use found) */
  char *state;      /* the state file asked for, or NULL for the default */
  char *statedir;   /* the directory of the state file the pool uses */
  char *mnt;        /* the mountpoint's real path */
} mount_paths;

static void paths_free(mount_paths *p) {
  free(p->config);
  free(p->state);
  free(p->statedir);
  free(p->mnt);
}

static const char *paths_config(const mount_paths *p) {
  return p->config != NULL ? p->config : p->found;
}

/* Pool warnings while the command still has its terminal. */
static void log_pool_warning(void *ud, int level, const char *line) {
  if (level >= GKP_LOG_WARN) {
    fs_log_pool(ud, level, line);
  }
}

/* Finds the configuration and the state file (opening the pool once, so
 * that every mistake in them is reported here) and the mountpoint. */
static int resolve_paths(const fs_mount_opts *o, mount_paths *p, char *err, size_t errlen) {
  gkp_options po = {.log = log_pool_warning};
  gkp_pool *pool = NULL;
  gkp_error e;
  const char *st;

  if (gkp__config_find(o->config, p->found, sizeof p->found, &e) != 0) {
    fail(err, errlen, "%s", e.msg);
    return -1;
  }
  p->config = realpath(p->found, NULL);
  st = o->state != NULL ? o->state : getenv("GEMINI_POOL_STATE");
  if (st != NULL && st[0] != '\0') {
    p->state = strstr(st, "://") != NULL ? strdup(st) : absolute(st);
  }
  po.config_path = paths_config(p);
  po.state_path = p->state;
  if (gkp_pool_open(&pool, &po, &e) != 0) {
    fail(err, errlen, "%s", e.msg);
    return -1;
  }
  char dir[4096];
  int dir_rc = gkp__local_state_dir(gkp_pool_state_path(pool), dir, sizeof dir);
  gkp_pool_close(pool);
  if (dir_rc != 0) {
    fail(err, errlen, "mount: no place for the spool: set XDG_STATE_HOME or HOME");
    return -1;
  }
  p->statedir = strcmp(dir, ".") == 0 ? absolute(".") : strdup(dir);
  if (p->statedir == NULL) {
    fail(err, errlen, "mount: out of memory");
    return -1;
  }

  clear_stale_mount(o->mountpoint);
  p->mnt = realpath(o->mountpoint, NULL);
  if (p->mnt == NULL) {
    fail(err, errlen, "mount: %s: %s (create the directory first)", o->mountpoint, strerror(errno));
    return -1;
  }
  struct stat sb;
  if (stat(p->mnt, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    fail(err, errlen, "mount: %s is not a directory", p->mnt);
    return -1;
  }
  return 0;
}

/* A FUSE session with our options, its signal handlers installed, mounted
 * on mnt; NULL (err set) on failure. */
static struct fuse_session *mount_session(const fs_mount_opts *o, const char *mnt,
                                          struct fuse_args *args, char *err, size_t errlen) {
  char fopts[2300];
  struct fuse_session *se;
  sigset_t block;
  const char *extra = o->fuse_opts != NULL ? o->fuse_opts : "";

  /* Private to the user unless -o allow_other; the kernel checks modes. */
  snprintf(fopts, sizeof fopts, "default_permissions,fsname=gemini-pool,subtype=gemini-pool%s%s",
           extra[0] ? "," : "", extra);
  if (fuse_opt_add_arg(args, "gemini-pool") != 0 || fuse_opt_add_arg(args, "-o") != 0 ||
      fuse_opt_add_arg(args, fopts) != 0 || (o->debug && fuse_opt_add_arg(args, "-d") != 0)) {
    fail(err, errlen, "mount: out of memory");
    return NULL;
  }
  se = fuse_session_new(args, &fs_ops, sizeof fs_ops, NULL);
  if (se == NULL) {
    fail(err, errlen, "mount: libfuse refused the options (%s)", fopts);
    return NULL;
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fail(err, errlen, "mount: cannot install signal handlers");
    fuse_session_destroy(se);
    return NULL;
  }
  /* SIGHUP (reload) is taken by a thread of its own: block it everywhere. */
  sigemptyset(&block);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  if (fuse_session_mount(se, mnt) != 0) {
    fail(err, errlen, "mount: cannot mount on %s (is /dev/fuse there, and fusermount3 installed?)",
         mnt);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return NULL;
  }
  return se;
}

/* In the background the log moves to mount.log beside the state file. */
static void log_to_file(const fs_mount_opts *o, const mount_paths *p) {
  char logpath[PATH_MAX];
  if (o->foreground || o->debug) {
    return;
  }
  snprintf(logpath, sizeof logpath, "%s/mount.log", p->statedir);
  if (fs_log_open(0, logpath) != 0) {
    fs_log(GKP_LOG_WARN, "mount: cannot write the log %s: %s; its lines are lost", logpath,
           strerror(errno));
  } else {
    fprintf(stderr, "gemini-pool: mounted at %s; log: %s\n", p->mnt, logpath);
  }
}

int fs_mount_run(const fs_mount_opts *o, char *err, size_t errlen) {
  mount_paths p = {.config = NULL};
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  struct fuse_session *se = NULL;
  int code = -1;

  err[0] = '\0';
  fs_log_open(1, NULL);
  if (resolve_paths(o, &p, err, errlen) != 0) {
    goto out;
  }
  se = mount_session(o, p.mnt, &args, err, errlen);
  if (se == NULL) {
    goto out;
  }
  log_to_file(o, &p);
  raise_fd_limit();
  if (fuse_daemonize(o->foreground || o->debug) != 0) {
    fuse_session_unmount(se);
  } else {
    code = serve(o, se, paths_config(&p), p.state, p.statedir, p.mnt);
  }
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);

out:
  fuse_opt_free_args(&args);
  fs_log_close();
  paths_free(&p);
  return code;
}
