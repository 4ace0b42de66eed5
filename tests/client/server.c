#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

long long test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_no_proxy(void) {
  static const char *const vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                     "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    unsetenv(vars[i]);
  }
  setenv("no_proxy", "127.0.0.1,localhost", 1);
  setenv("NO_PROXY", "127.0.0.1,localhost", 1);
}

static void script_path(char *buf, size_t len) {
  const char *root = getenv("GKP_SOURCE_ROOT");
  if (root != NULL && root[0] != '\0') {
    snprintf(buf, len, "%s/tests/client/test_server.py", root);
  } else {
    snprintf(buf, len, "%s", TEST_SERVER_PY);
  }
}

int test_server_start(test_server *s) {
  char path[4096];
  script_path(path, sizeof path);
  if (access(path, R_OK) != 0) {
    fprintf(stderr, "test server script %s not found\n", path);
    return -1;
  }
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  char *argv[] = {"python3", "-u", path, NULL};
  pid_t pid;
  int rc = posix_spawnp(&pid, "python3", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    fprintf(stderr, "cannot run python3: %s\n", strerror(rc));
    close(in[1]);
    close(out[0]);
    return -1;
  }
  s->pid = pid;
  s->in_fd = in[1];
  char line[32] = {0};
  size_t n = 0;
  while (n < sizeof line - 1) {
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    if (poll(&p, 1, 20000) <= 0) {
      break;
    }
    ssize_t r = read(out[0], line + n, 1);
    if (r <= 0 || line[n] == '\n') {
      break;
    }
    n++;
  }
  close(out[0]);
  s->port = atoi(line);
  if (s->port <= 0) {
    fprintf(stderr, "the test server did not report its port\n");
    test_server_stop(s);
    return -1;
  }
  return 0;
}

void test_server_stop(test_server *s) {
  if (s->in_fd >= 0) {
    close(s->in_fd);
    s->in_fd = -1;
  }
  if (s->pid > 0) {
    for (int i = 0; i < 100; i++) {
      if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
        s->pid = 0;
        return;
      }
      usleep(50000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
  }
}

int test_refusing_port(int *fd) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(s, (struct sockaddr *)&a, &len);
  *fd = s;
  return ntohs(a.sin_port);
}
