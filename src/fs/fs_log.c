/*
 * fs_log.c - the mount's log: stderr in the foreground, else a log file
 * under the state directory (one line per event, with a timestamp).  Lines
 * come from the filesystem, the pool and libfuse; none of them carries a
 * key (the engine names keys by id only).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "fs/fs.h"

static FILE *log_file;
static int log_stderr = 1;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(int level) {
  switch (level) {
  case GKP_LOG_DEBUG:
    return "debug";
  case GKP_LOG_INFO:
    return "info";
  case GKP_LOG_WARN:
    return "warning";
  default:
    return "error";
  }
}

/* Writes a line's text with control characters escaped (\n, \t, \xHH),
 * in one piece: a job name cannot forge a log line or send a terminal
 * sequence. */
static void put_escaped(FILE *f, const char *s) {
  char buf[8192];
  size_t n = 0;
  for (; *s != '\0' && n + 6 < sizeof buf; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\n' || c == '\t') {
      buf[n++] = '\\';
      buf[n++] = c == '\n' ? 'n' : 't';
    } else if (c < 0x20 || c == 0x7f) {
      n += (size_t)snprintf(buf + n, sizeof buf - n, "\\x%02x", c);
    } else {
      buf[n++] = (char)c;
    }
  }
  buf[n++] = '\n';
  fwrite(buf, 1, n, f);
}

static void log_line(int level, const char *line) {
  char when[40];
  pthread_mutex_lock(&log_mu);
  if (log_stderr) {
    if (level >= GKP_LOG_WARN) {
      fprintf(stderr, "gemini-pool: %s: ", level_name(level));
    } else {
      fputs("gemini-pool: ", stderr);
    }
    put_escaped(stderr, line);
  } else if (log_file != NULL) {
    fprintf(log_file, "%s [%d] %s: ", gkp__rfc3339(gkp__now_ms(), when, sizeof when), (int)getpid(),
            level_name(level));
    put_escaped(log_file, line);
    fflush(log_file);
  }
  pthread_mutex_unlock(&log_mu);
}

/* libfuse logs lines in pieces (printf calls without a newline, then one
 * with it): gather them, per thread, into one line. */
static void fuse_log_cb(enum fuse_log_level level, const char *fmt, va_list ap) {
  static __thread char line[1024];
  static __thread size_t len;
  vsnprintf(line + len, sizeof line - len, fmt, ap);
  len = strlen(line);
  if (len == 0 || (line[len - 1] != '\n' && len < sizeof line - 1)) {
    return;
  }
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
    line[--len] = '\0';
  }
  log_line(level <= FUSE_LOG_ERR       ? GKP_LOG_ERROR
           : level <= FUSE_LOG_WARNING ? GKP_LOG_WARN
           : level <= FUSE_LOG_INFO    ? GKP_LOG_INFO
                                       : GKP_LOG_DEBUG,
           line);
  len = 0;
  line[0] = '\0';
}

int fs_log_open(int foreground, const char *path) {
  fuse_set_log_func(fuse_log_cb);
  if (foreground || path == NULL) {
    log_stderr = 1;
    return 0;
  }
  /* In the state directory, which belongs to the user alone; never through
   * a symbolic link. */
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return -errno;
  }
  FILE *f = fdopen(fd, "a");
  if (f == NULL) {
    close(fd);
    return -errno;
  }
  pthread_mutex_lock(&log_mu);
  log_file = f;
  log_stderr = 0;
  pthread_mutex_unlock(&log_mu);
  return 0;
}

void fs_log_close(void) {
  pthread_mutex_lock(&log_mu);
  if (log_file != NULL) {
    fclose(log_file);
    log_file = NULL;
  }
  log_stderr = 1;
  pthread_mutex_unlock(&log_mu);
}

void fs_log(int level, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  log_line(level, line);
}

void fs_log_pool(void *ud, int level, const char *line) {
  (void)ud;
  log_line(level, line);
}
