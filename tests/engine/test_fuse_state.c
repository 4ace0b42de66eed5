/*
 * test_fuse_state.c - a state file on FUSE is refused: mapped pages are not
 * coherent there.  Mounts the in-memory FUSE filesystem of the benchmarks
 * (bench/bench_memfs) in a temporary directory and points a library open and
 * `gemini-pool --state` at a file inside it: one line naming FUSE and the
 * Redis backend, a non-zero exit, nothing created.  Skips (77) where FUSE
 * cannot be mounted.
 *
 *   test_fuse_state BENCH_MEMFS GEMINI_POOL
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gkp.h"

#define FUSE_MAGIC 0x65735546l

static int failures;

static void check(int ok, const char *what) {
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  failures += !ok;
}

/* Whether a message is one line naming FUSE and the Redis backend. */
static int one_clear_line(const char *msg) {
  size_t n = strlen(msg);
  if (n > 0 && msg[n - 1] == '\n') {
    n--;
  }
  return n > 0 && memchr(msg, '\n', n) == NULL && strstr(msg, "FUSE") != NULL &&
         strstr(msg, "redis://") != NULL && strstr(msg, "state.db") != NULL;
}

static int mounted(const char *dir) {
  struct statfs sf;
  return statfs(dir, &sf) == 0 && (long)sf.f_type == FUSE_MAGIC;
}

/* Runs argv with stderr into buf; returns the exit status (-1: not run). */
static int run(char *const argv[], char *buf, size_t len) {
  int fds[2], status;
  ssize_t n;
  size_t got = 0;
  pid_t pid;
  if (pipe(fds) != 0 || (pid = fork()) < 0) {
    return -1;
  }
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(fds[1]);
  while (got + 1 < len && (n = read(fds[0], buf + got, len - 1 - got)) > 0) {
    got += (size_t)n;
  }
  buf[got] = '\0';
  close(fds[0]);
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int empty_dir(const char *dir, const char *file) {
  char path[4200];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return stat(path, &st) != 0 && errno == ENOENT;
}

int main(int argc, char **argv) {
  char tmp[] = "/tmp/gkp-fuse-state-XXXXXX", mnt[256], keys[256], state[300], out[4096];
  const char *json =
      "{\"providers\":{\"gemini\":{\"keys\":[{\"id\":\"k1\",\"api_key\":\"FAKE-K1\"}]}}}";
  gkp_options opts = {0};
  gkp_error err = {0};
  gkp_pool *pool = NULL;
  pid_t fs;
  FILE *f;
  int rc;

  if (argc != 3) {
    fprintf(stderr, "usage: test_fuse_state BENCH_MEMFS GEMINI_POOL\n");
    return 2;
  }
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    printf("skipped: /dev/fuse is missing or not usable here (%s)\n", strerror(errno));
    return 77;
  }
  if (mkdtemp(tmp) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(mnt, sizeof mnt, "%s/mnt", tmp);
  snprintf(keys, sizeof keys, "%s/keys.json", tmp);
  snprintf(state, sizeof state, "%s/state.db", mnt);
  mkdir(mnt, 0700);
  f = fopen(keys, "w");
  fputs(json, f);
  fclose(f);
  chmod(keys, 0600);

  fs = fork();
  if (fs == 0) {
    execl(argv[1], argv[1], mnt, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 500 && !mounted(mnt); i++) {
    if (waitpid(fs, &rc, WNOHANG) == fs) {
      printf("skipped: a FUSE filesystem cannot be mounted here (bench_memfs exited)\n");
      rmdir(mnt);
      unlink(keys);
      rmdir(tmp);
      return 77;
    }
    usleep(10000);
  }
  check(mounted(mnt), "the FUSE filesystem is mounted");

  opts.config_path = keys;
  opts.state_path = state;
  rc = gkp_pool_open(&pool, &opts, &err);
  printf("library: %s\n", err.msg);
  check(rc != 0 && pool == NULL, "gkp_pool_open refuses a state file on FUSE");
  check(one_clear_line(err.msg), "its message is one line naming FUSE and redis://");
  check(empty_dir(mnt, "state.db"), "no state file was created");

  char *cli[] = {argv[2], "status", "--config", keys, "--state", state, NULL};
  rc = run(cli, out, sizeof out);
  printf("gemini-pool status: exit %d: %s", rc, out);
  check(rc != 0 && rc != 127, "gemini-pool --state on FUSE exits non-zero");
  check(one_clear_line(out), "it prints one line naming FUSE and redis://");
  check(empty_dir(mnt, "state.db"), "still no state file");

  char *umount[] = {"/usr/bin/fusermount3", "-u", mnt, NULL};
  run(umount, out, sizeof out);
  waitpid(fs, &rc, 0);
  rmdir(mnt);
  unlink(keys);
  rmdir(tmp);
  printf("%d failed\n", failures);
  return failures != 0;
}
