/*
 * bench_memfs.c - the ceiling for scripts/bench-fs: a trivial in-memory FUSE
 * filesystem mounted with the same libfuse options and loop as the mount
 * (low-level API, default_permissions, multi-threaded loop with 10 idle
 * workers, direct I/O for outputs, no flush round trip for them).  Writing
 * <name> stores the bytes; <name>.out reads bench_fs's answer at once.  It
 * does what the FUSE round trips of one job cost and nothing else, so the
 * same write-then-read loop against it is the most the mount could reach.
 *
 *   bench_memfs MOUNTPOINT      (runs in the foreground; fusermount3 -u ends it)
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ANSWER_TEXT "bench answer: the quick brown fox jumps over the lazy dog."
#define NBUCKETS 65536

/* A prompt (ino even) and its .out (ino + 1). */
typedef struct node {
  char *name;
  fuse_ino_t ino;
  char *data;
  size_t len;
  struct node *next;
} node;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static node *buckets[NBUCKETS];
static node **by_ino;
static size_t nnodes, cap;

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++) {
    h = (h ^ (unsigned char)*s) * 16777619u;
  }
  return h % NBUCKETS;
}

static node *find(const char *name) {
  for (node *n = buckets[hash(name)]; n != NULL; n = n->next) {
    if (strcmp(n->name, name) == 0) {
      return n;
    }
  }
  return NULL;
}

static node *add(const char *name) {
  node *n = calloc(1, sizeof *n);
  if (nnodes == cap) {
    cap = cap ? cap * 2 : 1024;
    by_ino = realloc(by_ino, cap * sizeof *by_ino);
  }
  n->name = strdup(name);
  n->ino = 2 + 2 * nnodes;
  by_ino[nnodes++] = n;
  n->next = buckets[hash(name)];
  buckets[hash(name)] = n;
  return n;
}

static node *of_ino(fuse_ino_t ino) {
  size_t i = (ino - 2) / 2;
  return ino >= 2 && i < nnodes ? by_ino[i] : NULL;
}

static void attr(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_uid = getuid();
  st->st_gid = getgid();
  st->st_nlink = 1;
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else if (ino % 2 == 0) {
    node *n = of_ino(ino);
    st->st_mode = S_IFREG | 0644;
    st->st_size = n != NULL ? (off_t)n->len : 0;
  } else {
    st->st_mode = S_IFREG | 0444;
    st->st_size = (off_t)strlen(ANSWER_TEXT);
  }
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino) {
  struct fuse_entry_param e = {.ino = ino};
  attr(ino, &e.attr);
  fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  size_t len = strlen(name);
  char stem[1024];
  node *n;
  int out = len > 4 && strcmp(name + len - 4, ".out") == 0 && len - 4 < sizeof stem;
  (void)parent;
  pthread_mutex_lock(&mu);
  if (out) {
    memcpy(stem, name, len - 4);
    stem[len - 4] = '\0';
    n = find(stem);
  } else {
    n = find(name);
  }
  fuse_ino_t ino = n != NULL ? n->ino + (out ? 1 : 0) : 0;
  pthread_mutex_unlock(&mu);
  if (ino == 0) {
    fuse_reply_err(req, ENOENT);
  } else {
    reply_entry(req, ino);
  }
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct stat st;
  (void)fi;
  pthread_mutex_lock(&mu);
  attr(ino, &st);
  pthread_mutex_unlock(&mu);
  fuse_reply_attr(req, &st, 0);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  struct fuse_entry_param e;
  (void)parent;
  (void)mode;
  pthread_mutex_lock(&mu);
  node *n = find(name);
  if (n == NULL) {
    n = add(name);
  }
  n->len = 0;
  memset(&e, 0, sizeof e);
  e.ino = n->ino;
  attr(n->ino, &e.attr);
  pthread_mutex_unlock(&mu);
  fi->keep_cache = 0;
  fuse_reply_create(req, &e, fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino % 2 == 1) {
    fi->direct_io = 1;
    fi->noflush = 1;
  } else if (fi->flags & O_TRUNC) {
    pthread_mutex_lock(&mu);
    node *n = of_ino(ino);
    if (n != NULL) {
      n->len = 0;
    }
    pthread_mutex_unlock(&mu);
  }
  fuse_reply_open(req, fi);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  (void)fi;
  pthread_mutex_lock(&mu);
  node *n = of_ino(ino);
  if (n != NULL && ino % 2 == 0) {
    char *d = realloc(n->data, (size_t)off + size);
    if (d != NULL) {
      n->data = d;
      memcpy(d + off, buf, size);
      if ((size_t)off + size > n->len) {
        n->len = (size_t)off + size;
      }
    }
  }
  pthread_mutex_unlock(&mu);
  fuse_reply_write(req, size);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  static const char answer[] = ANSWER_TEXT;
  size_t len = sizeof answer - 1;
  (void)fi;
  (void)ino;
  if ((size_t)off >= len) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  fuse_reply_buf(req, answer + off, len - (size_t)off < size ? len - (size_t)off : size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup,
    .getattr = op_getattr,
    .create = op_create,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
};

int main(int argc, char **argv) {
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 10};
  if (argc != 2) {
    fprintf(stderr, "usage: bench_memfs MOUNTPOINT\n");
    return 2;
  }
  fuse_opt_add_arg(&args, "bench_memfs");
  fuse_opt_add_arg(&args, "-o");
  fuse_opt_add_arg(&args, "default_permissions,fsname=bench-memfs,subtype=bench-memfs");
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (se == NULL || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) {
    fprintf(stderr, "bench_memfs: cannot mount on %s\n", argv[1]);
    return 1;
  }
  int rc = fuse_session_loop_mt(se, &cfg);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  return rc == 0 ? 0 : 1;
}
