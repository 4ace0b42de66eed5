/*
 * replay_main.c - runs a fuzz target on files, without libFuzzer.
 *
 * Usage: fuzz-replay-NAME PATH...  Each PATH is a file or a directory whose
 * files (not starting with '.', in name order) are fed one at a time to
 * LLVMFuzzerTestOneInput, each in a buffer of exactly its size so that
 * AddressSanitizer sees a read past its end.  A missing path is skipped (a
 * target may have no regressions yet).  Exits 0 once every input ran, 1 if
 * no input was found at all or a file could not be read; an input that
 * breaks the target aborts the process, naming the file first.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#pragma weak LLVMFuzzerInitialize

/* Reads a whole file into a malloc'd buffer of exactly its size (1 byte
 * for an empty file, so the pointer is never NULL).  Returns 0 or -1. */
static int read_file(const char *path, uint8_t **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    return -1;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  while (buf != NULL) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) {
      break;
    }
    uint8_t *bigger = realloc(buf, cap * 2);
    if (bigger == NULL) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = bigger;
    cap *= 2;
  }
  int bad = buf == NULL || ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return -1;
  }
  /* Exactly n bytes: copy into a buffer of that size. */
  uint8_t *exact = malloc(n > 0 ? n : 1);
  if (exact == NULL) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, n);
  free(buf);
  *out = exact;
  *len = n;
  return 0;
}

static int run_file(const char *path, unsigned long *count) {
  uint8_t *data;
  size_t len;
  if (read_file(path, &data, &len) != 0) {
    fprintf(stderr, "replay: %s: cannot read: %s\n", path, strerror(errno));
    return -1;
  }
  /* Named first, so a crash below says which input caused it. */
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  LLVMFuzzerTestOneInput(data, len);
  free(data);
  (*count)++;
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_dir(const char *dir, unsigned long *count) {
  struct dirent **names;
  int n = scandir(dir, &names, NULL, by_name);
  int rc = 0;
  if (n < 0) {
    fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    if (names[i]->d_name[0] != '.') {
      snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
      if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && run_file(path, count) != 0) {
        rc = -1;
      }
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  unsigned long count = 0;
  int rc = 0;
  if (LLVMFuzzerInitialize != NULL) {
    LLVMFuzzerInitialize(&argc, &argv);
  }
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      continue;
    }
    if ((S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count)) != 0) {
      rc = 1;
    }
  }
  printf("replay: %lu inputs\n", count);
  if (count == 0) {
    fprintf(stderr, "replay: no input found\n");
    rc = 1;
  }
  return rc;
}
