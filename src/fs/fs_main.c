/*
 * fs_main.c - gemini-pool mount: options, the mount, the daemon, signals
 * and an orderly shutdown.
 *
 * Order of events: the configuration is checked and the mount made while
 * the command still has its terminal, so every mistake is seen; then the
 * process becomes a daemon (unless -f) and only then opens the pool for
 * good (a lease names its owner's pid), opens the job store and starts its
 * thread, queues unfinished jobs again, and serves.  The state directory's
 * lock (mount.lock) is taken before the mount and held for the daemon's
 * life: one daemon per state.
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
#include <sys/file.h>
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

/* ---- one daemon per state ----------------------------------------------------------- */

static int lock_fd = -1;

/* Takes the state directory's lock for the daemon's life (released when the
 * process ends, however it ends): a second mount on the same state would
 * run every job twice.  Returns 0, or -1 with the reason in err. */
static int lock_state(const char *statedir, const char *state, const char *mnt, char *err,
                      size_t errlen) {
  char path[PATH_MAX], owner[PATH_MAX + 64] = "";
  snprintf(path, sizeof path, "%s/mount.lock", statedir);
  lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock_fd < 0) {
    fail(err, errlen, "mount: cannot open the lock %s: %s", path, strerror(errno));
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
    fail(err, errlen, "mount: state %s is already served by pid %ld at %s; not mounting %s", state,
         pid, owner + at, mnt);
  } else {
    fail(err, errlen,
         "mount: state %s is already served by another gemini-pool mount (lock %s); not "
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

static void lock_release(void) {
  if (lock_fd >= 0) {
    close(lock_fd);
    lock_fd = -1;
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
  pthread_mutex_init(&fs.store_qmu, NULL);
  pthread_cond_init(&fs.store_cv, NULL);
  fs.next_group = 1;
  fs.next_run_id = 1;
  fs.next_parked_id = 1;
  fs.uid = getuid();
  fs.gid = getgid();
  fs.max_prompt = o->max_prompt;
  fs.start_ms = gkp__now_ms();
  fs.max_answer = o->max_answer > 0 ? o->max_answer : FS_MAX_TEXT;
  fs.max_images = o->max_images > 0 ? o->max_images : FS_MAX_IMAGE_BYTES;
  fs.max_memory = o->max_memory > 0 ? o->max_memory : FS_DEFAULT_MAX_MEMORY;
  fs.keep_ms = o->keep_ms;
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

/* The log of an fs_mount_extra: the mount's. */
static void extra_log(const char *line) {
  fs_log(GKP_LOG_INFO, "%s", line);
}

/* Everything after the mount: returns 0 after a clean unmount, else -1. */
static int serve(const fs_mount_opts *o, struct fuse_session *se, const char *config,
                 const char *state, const char *statedir, const char *mnt) {
  gkp_options po = {.config_path = config, .state_path = state, .log = fs_log_pool};
  gkp__runner_opts ro = {.stream = 1};
  gkp_error err;
  void *extra = NULL;
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
  if ((rc = fs_store_start(&err)) != 0) {
    fs_log(GKP_LOG_ERROR, "%s", err.msg);
    goto out;
  }
  if (fs_store_restore() != 0) {
    goto out;
  }
  if (o->extra != NULL &&
      (extra = o->extra->start(o->extra->ud, fs.pool, fs.runner, extra_log)) == NULL) {
    goto out;
  }
  pthread_mutex_lock(&fs.mu);
  fs.extra = o->extra;
  fs.extra_handle = extra;
  pthread_mutex_unlock(&fs.mu);
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
  if (extra != NULL) {
    pthread_mutex_lock(&fs.mu);
    fs.extra = NULL;
    fs.extra_handle = NULL;
    pthread_mutex_unlock(&fs.mu);
    o->extra->stop(o->extra->ud, extra); /* before the runner it uses */
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

/* The absolute paths the daemon (which runs in /) works with. */
typedef struct mount_paths {
  char found[4096]; /* the configuration file as found */
  char *config;     /* its real path (NULL: use found) */
  char *state;      /* the state file asked for, or NULL for the default */
  char *statedir;   /* the directory of the state file the pool uses */
  char *statefile;  /* the state file the pool uses */
  char *mnt;        /* the mountpoint's real path */
} mount_paths;

static void paths_free(mount_paths *p) {
  free(p->config);
  free(p->state);
  free(p->statedir);
  free(p->statefile);
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

/* Says which configuration is used when it comes from the current directory
 * (or from $GEMINI_POOL_CONFIG, on a terminal), as every command does. */
static void say_config(const gkp_pool *pool) {
  int origin = gkp_pool_config_origin(pool);
  if (origin == GKP_CONFIG_CWD || (origin == GKP_CONFIG_ENV && isatty(STDERR_FILENO))) {
    fs_log(GKP_LOG_INFO, "configuration: %s (%s)", gkp_pool_config_path(pool),
           origin == GKP_CONFIG_ENV ? "named by $GEMINI_POOL_CONFIG"
                                    : "found in the current directory");
  }
}

/* Finds the configuration and the state file (opening the pool once, so
 * that every mistake in them is reported here) and the mountpoint. */
static int resolve_paths(const fs_mount_opts *o, mount_paths *p, char *err, size_t errlen) {
  gkp_options po = {.log = log_pool_warning};
  gkp_pool *pool = NULL;
  gkp_error e;
  const char *st;

  st = o->state != NULL ? o->state : getenv("GEMINI_POOL_STATE");
  if (st != NULL && st[0] != '\0') {
    p->state = strstr(st, "://") != NULL ? strdup(st) : absolute(st);
  }
  /* Found as every command finds it (a ./keys.json is used only under the
   * trust rules); the daemon then names its real path. */
  po.config_path = o->config;
  po.state_path = p->state;
  if (gkp_pool_open(&pool, &po, &e) != 0) {
    fail(err, errlen, "%s", e.msg);
    return -1;
  }
  say_config(pool);
  snprintf(p->found, sizeof p->found, "%s", gkp_pool_config_path(pool));
  p->config = realpath(p->found, NULL);
  /* The spool, jobs and lock live beside a state file, or for a state
   * server in the local state directory. */
  char dir[4096];
  gkp_error derr = {0};
  int dir_rc = gkp__local_state_dir(gkp_pool_state_path(pool), dir, sizeof dir, &derr);
  p->statefile = strdup(gkp_pool_state_path(pool));
  gkp_pool_close(pool);
  if (dir_rc != 0) {
    fail(err, errlen, "mount: %s",
         derr.msg[0] != '\0' ? derr.msg : "no place for the job store: set XDG_STATE_HOME or HOME");
    return -1;
  }
  p->statedir = strcmp(dir, ".") == 0 ? absolute(".") : strdup(dir);
  if (p->statedir == NULL || p->statefile == NULL) {
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
  int rc = fs_log_open(0, logpath);
  if (rc != 0) {
    fs_log(GKP_LOG_WARN, "mount: cannot write the log %s: %s; its lines are lost", logpath,
           strerror(-rc));
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
  if (resolve_paths(o, &p, err, errlen) != 0 ||
      lock_state(p.statedir, p.statefile, p.mnt, err, errlen) != 0) {
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
    lock_record(p.mnt);
    code = serve(o, se, paths_config(&p), p.state, p.statedir, p.mnt);
  }
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);

out:
  fuse_opt_free_args(&args);
  fs_log_close();
  lock_release();
  paths_free(&p);
  return code;
}
