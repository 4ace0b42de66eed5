/*
 * fb_scores.c - the mapped-file backend's rate and scores verbs.
 *
 * Scores live in STATE.scores beside the state file: one line
 * "TYPE\tCOMPLEXITY\tMODEL\tSCORE\n" per score, appended with one write
 * (O_APPEND), so lines of concurrent processes never interleave; reading
 * sums them.  The file is created 0600 like the state file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "engine/backend.h"

#define MAX_SCORES_FILE ((size_t)64 * 1024 * 1024)

static int scores_path(gkp__backend *b, char *buf, size_t len, gkp_error *err) {
  const char *state = b->ops->where(b);
  if (state == NULL || (size_t)snprintf(buf, len, "%s.scores", state) >= len) {
    return gkp__err(err, -ENAMETOOLONG, "the state path is too long for its scores file");
  }
  return 0;
}

int gkp__fb_rate(gkp__backend *b, const char *task_type, const char *complexity,
                 const char *model, int score, gkp_error *err) {
  char path[4200], line[3 * GKP_ID_MAX + 24];
  int rc = scores_path(b, path, sizeof path, err);
  if (rc != 0) {
    return rc;
  }
  int n = snprintf(line, sizeof line, "%s\t%s\t%s\t%d\n", task_type, complexity, model, score);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return gkp__err(err, -errno, "cannot write %s: %s", path, strerror(errno));
  }
  if (write(fd, line, (size_t)n) != n) {
    rc = gkp__err(err, -EIO, "cannot write %s: %s", path, strerror(errno));
  }
  close(fd);
  return rc;
}

/* Adds one line's score to the table (summed per triple). */
static int add_line(gkp__score **tab, size_t *n, size_t *cap, const char *line) {
  gkp__score e;
  int score;
  memset(&e, 0, sizeof e);
  if (sscanf(line, "%63[^\t]\t%15[^\t]\t%63[^\t]\t%d", e.task_type, e.complexity, e.model,
             &score) != 4 ||
      score < 1 || score > 5) {
    return 0; /* a damaged line counts for nothing */
  }
  for (size_t i = 0; i < *n; i++) {
    gkp__score *s = &(*tab)[i];
    if (strcmp(s->task_type, e.task_type) == 0 && strcmp(s->complexity, e.complexity) == 0 &&
        strcmp(s->model, e.model) == 0) {
      s->sum += score;
      s->n++;
      return 0;
    }
  }
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    gkp__score *g = realloc(*tab, nc * sizeof *g);
    if (g == NULL) {
      return -ENOMEM;
    }
    *tab = g;
    *cap = nc;
  }
  e.sum = score;
  e.n = 1;
  (*tab)[(*n)++] = e;
  return 0;
}

int gkp__fb_scores(gkp__backend *b, gkp__score **out, size_t *n, gkp_error *err) {
  char path[4200], line[512];
  size_t cap = 0, bytes = 0;
  int rc = scores_path(b, path, sizeof path, err);
  *out = NULL;
  *n = 0;
  if (rc != 0) {
    return rc;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return errno == ENOENT ? 0 : gkp__err(err, -errno, "cannot read %s: %s", path, strerror(errno));
  }
  FILE *f = fdopen(fd, "r");
  if (f == NULL) {
    close(fd);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  while (rc == 0 && bytes < MAX_SCORES_FILE && fgets(line, sizeof line, f) != NULL) {
    bytes += strlen(line);
    rc = add_line(out, n, &cap, line);
  }
  fclose(f);
  if (rc != 0) {
    free(*out);
    *out = NULL;
    *n = 0;
    return gkp__err(err, rc, "out of memory");
  }
  return 0;
}
