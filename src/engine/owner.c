/*
 * owner.c - naming processes across pid namespaces.
 */
#include "engine/owner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* FNV-1a over a string. */
static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s != '\0'; s++) {
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  }
  return h != 0 ? h : 1;
}

static uint64_t boot_hash(void) {
  char buf[128] = "";
  FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
  uint64_t h = 0;
  if (f != NULL) {
    if (fgets(buf, sizeof buf, f) != NULL) {
      buf[strcspn(buf, "\n")] = '\0';
      h = buf[0] != '\0' ? hash_str(buf) : 0;
    }
    fclose(f);
  }
  return h;
}

/* Field 22 of /proc/PID/stat (or /proc/self/stat when pid is 0): the start
 * time in clock ticks.  0 when it cannot be read, with errno set. */
static uint64_t start_time(int pid) {
  char path[64], buf[1024];
  ssize_t n;
  int fd;
  if (pid == 0) {
    snprintf(path, sizeof path, "/proc/self/stat");
  } else {
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) {
    errno = EIO;
    return 0;
  }
  buf[n] = '\0';
  /* The command name (field 2) may hold spaces and parentheses: fields are
   * counted after its last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL) {
    errno = EIO;
    return 0;
  }
  p++;
  for (int field = 3; field < 22 && p != NULL; field++) {
    p = strchr(p + 1, ' ');
  }
  if (p == NULL) {
    errno = EIO;
    return 0;
  }
  return strtoull(p + 1, NULL, 10);
}

void gkp__owner_self(gkp__owner *o) {
  struct stat sb;
  memset(o, 0, sizeof *o);
  o->boot = boot_hash();
  o->pidns = stat("/proc/self/ns/pid", &sb) == 0 ? (uint64_t)sb.st_ino : 0;
  o->pid = (int32_t)getpid();
  o->start = start_time(0);
  /* /proc may belong to another pid namespace (not remounted after
   * unshare): then other processes' start times cannot be read there. */
  char self[32];
  ssize_t n = readlink("/proc/self", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    o->reserved = atoi(self) == o->pid ? GKP__OWNER_PROC_OK : 0;
  }
}

int gkp__owner_same(const gkp__owner *a, const gkp__owner *b) {
  return a->pid == b->pid && a->pidns == b->pidns && a->boot == b->boot && a->start == b->start;
}

int gkp__owner_alive(const gkp__owner *o, const gkp__owner *self) {
  uint64_t st;
  if (o->boot == 0 || self->boot == 0 || o->boot != self->boot || o->pidns == 0 ||
      o->pidns != self->pidns) {
    return 1; /* not ours to judge: wait for the lease to expire */
  }
  if (o->pid == self->pid) {
    return o->start == self->start;
  }
  if (o->pid <= 0 || (kill(o->pid, 0) != 0 && errno == ESRCH)) {
    return 0;
  }
  if (!(self->reserved & GKP__OWNER_PROC_OK)) {
    return 1;
  }
  st = start_time(o->pid);
  if (st == 0) {
    return errno != ENOENT && errno != ESRCH;
  }
  return o->start == 0 || st == o->start;
}
