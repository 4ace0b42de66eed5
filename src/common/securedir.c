/*
 * securedir.c - checking that a directory belongs to the user alone.
 */
#include "common/securedir.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

/* The name of user `uid` ("uid N" when it has none) into buf. */
static const char *user_name(uid_t uid, char *buf, size_t len) {
  struct passwd pw, *found = NULL;
  char tmp[1024];
  if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &found) == 0 && found != NULL) {
    snprintf(buf, len, "%s", found->pw_name);
  } else {
    snprintf(buf, len, "uid %u", (unsigned)uid);
  }
  return buf;
}

/* Creates `dir` and its missing parents, each 0700.  Returns 0 or a
 * negative errno with err set. */
static int make_dirs(const char *dir, const char *what, gkp_error *err) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
    return gkp__err(err, -ENAMETOOLONG, "%s: path too long for %s", dir, what);
  }
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0') {
      continue;
    }
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
      int e = errno;
      return gkp__err(err, -e, "cannot create %s %s: %s", what, buf, strerror(e));
    }
    *p = c;
    if (c == '\0') {
      return 0;
    }
  }
}

/* Checks one directory on the way down: `last` is the directory itself.
 * Returns 0 or a negative errno with the refusal in err. */
static int check_one(const char *path, int last, int private_, const char *dir,
                     const char *what, gkp_error *err) {
  struct stat st;
  char owner[128], me[128];
  uid_t uid = geteuid();
  /* The owners' names are looked up only for a refusal: reading the user
   * database costs more than the rest of the check. */
  if (lstat(path, &st) != 0) {
    int e = errno;
    return gkp__err(err, -e, "%s: %s (%s)", path, strerror(e), what);
  }
  if (!S_ISDIR(st.st_mode)) {
    return gkp__err(err, -ENOTDIR, "%s: not a directory (%s); name a directory", path, what);
  }
  unsigned mode = (unsigned)(st.st_mode & 07777);
  int others_write = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  if (last && (st.st_uid != uid || others_write)) {
    user_name(st.st_uid, owner, sizeof owner);
    user_name(uid, me, sizeof me);
    return gkp__err(err, -EPERM,
                    "%s: %s is owned by %s with mode %04o, so another user could plant files in "
                    "it; use a directory that belongs to %s alone (chown %s '%s' && chmod 700 "
                    "'%s'), or another path",
                    path, what, owner, mode, me, me, path, path);
  }
  if (last && private_ && (st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    return gkp__err(err, -EPERM,
                    "%s: %s holds prompts and answers but has mode %04o, so other users can list "
                    "it; chmod 700 '%s', or use another path",
                    path, what, mode, path);
  }
  if (!last &&
      ((st.st_uid != uid && st.st_uid != 0) || (others_write && (st.st_mode & S_ISVTX) == 0))) {
    user_name(st.st_uid, owner, sizeof owner);
    return gkp__err(err, -EPERM,
                    "%s: %s %s is inside %s, owned by %s with mode %04o, where another user "
                    "could replace it; use a directory whose parents belong to you or root and "
                    "are not writable by others (sticky ones like /tmp are fine)",
                    dir, what, dir, path, owner, mode);
  }
  return 0;
}

static int secure_dir(const char *dir, int create, int private_, const char *what,
                      gkp_error *err) {
  char real[PATH_MAX];
  int rc;
  if (dir == NULL || dir[0] == '\0') {
    dir = ".";
  }
  if (create && (rc = make_dirs(dir, what, err)) != 0) {
    return rc;
  }
  if (realpath(dir, real) == NULL) {
    int e = errno;
    return gkp__err(err, -e, "%s: %s (%s)", dir, strerror(e), what);
  }
  /* From the root down: "/", "/a", "/a/b", ... each checked as a parent,
   * the full path as the directory itself. */
  size_t n = strlen(real);
  rc = check_one("/", n == 1, private_, dir, what, err);
  for (size_t i = 1; rc == 0 && n > 1 && i <= n; i++) {
    if (real[i] == '/' || real[i] == '\0') {
      char c = real[i];
      real[i] = '\0';
      rc = check_one(real, i == n, private_, dir, what, err);
      real[i] = c;
    }
  }
  return rc;
}

/* See securedir.h. */
int gkp__secure_dir(const char *dir, int create, const char *what, gkp_error *err) {
  return secure_dir(dir, create, 0, what, err);
}

/* See securedir.h. */
int gkp__private_dir(const char *dir, int create, const char *what, gkp_error *err) {
  return secure_dir(dir, create, 1, what, err);
}

/* See securedir.h. */
int gkp__secure_parent(const char *path, int create, const char *what, gkp_error *err) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    return gkp__secure_dir(".", create, what, err);
  }
  size_t len = slash == path ? 1 : (size_t)(slash - path);
  if (len >= sizeof dir) {
    return gkp__err(err, -ENAMETOOLONG, "%s: path too long", path);
  }
  memcpy(dir, path, len);
  dir[len] = '\0';
  return gkp__secure_dir(dir, create, what, err);
}
