/*
 * fuzz_store.c - state files through gkp__store_open, then a pool on them.
 *
 * The first byte picks how the rest becomes the state file:
 *   0 raw:    the bytes are the whole file (size, magic and header checks);
 *   1 prefix: the bytes from offset 0, padded or cut to the layout size (a
 *             header and the first key records taken from the input);
 *   2 patch:  a valid state file with keys, model records, counts, a
 *             cooldown, a lease and a journal, generated here, with the bytes
 *             applied as patches (region, offset, length, bytes) to its
 *             header, records or anywhere, so the record checks are reached;
 *   3 resize: that valid file cut or extended to a length from the bytes.
 * gkp__store_open must accept the file or move it aside and start afresh;
 * never fail, never crash.  A file it accepts must be safe to use: a
 * transaction (which rolls back an active journal), lookups and attaching
 * records, and a whole pool on it (count, reserve, report, release, status)
 * must all work.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/status.h"
#include "engine/store.h"
#include "fuzz.h"
#include "gkp.h"

#define NOW_MS INT64_C(1764000000000) /* a fixed clock: the same input runs the same way */

static const char config[] =
    "{\"providers\":{\"gemini\":{\"keys\":["
    "{\"id\":\"k1\",\"api_key\":\"AIzaFuzzStoreKey1\",\"project\":\"p1\"},"
    "{\"id\":\"k2\",\"api_key\":\"AIzaFuzzStoreKey2\",\"project\":\"p1\"},"
    "{\"id\":\"k3\",\"api_key\":\"AIzaFuzzStoreKey3\",\"max_inflight\":2}]}}}";

static const char quota_429[] =
    "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\",\"message\":\"Quota exceeded. "
    "Please retry in 12.5s.\",\"details\":[{\"@type\":\"type.googleapis.com/"
    "google.rpc.QuotaFailure\",\"violations\":[{\"quotaId\":"
    "\"GenerateRequestsPerMinutePerProjectPerModel-FreeTier\",\"quotaValue\":\"15\"}]}]}}";

static char dir[256];          /* a private directory for the files */
static char path[300];         /* the state file under test */
static char aside[340];        /* where an invalid one is moved */
static uint8_t *valid;         /* a valid state file (template) */
static size_t layout;          /* its size */
static size_t key_off, pm_off; /* where its record regions start */
#define PAGE 4096
static size_t *pages; /* the template's pages that are not all zero */
static size_t npages;

/* Keeps the store's note that a file was moved aside (not other notes). */
static void note_moved(void *ud, const char *line) {
  if (strstr(line, "moved it to") != NULL) {
    snprintf(ud, 4096, "%s", line);
  }
}

static int open_store(gkp__store **st, char *moved, gkp_error *err) {
  moved[0] = '\0';
  return gkp__store_open(path, NOW_MS, note_moved, moved, st, err);
}

static int64_t fixed_clock(void *ud) {
  (void)ud;
  return NOW_MS;
}

static void remove_files(void) {
  unlink(path);
  unlink(aside);
}

static void cleanup(void) {
  char t[320];
  remove_files();
  snprintf(t, sizeof t, "%s/template.db", dir);
  unlink(t);
  rmdir(dir);
}

static void use_pool(gkp_pool *pool, int strict);

/* Builds the template: a pool's real records, then a lease of another
 * process and a journal left from the last change. */
static void make_template(void) {
  const char *tmp = getenv("TMPDIR");
  char tpath[320];
  snprintf(dir, sizeof dir, "%s/gkp-fuzz-store-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
  FUZZ_CHECK(mkdtemp(dir) != NULL);
  atexit(cleanup);
  snprintf(path, sizeof path, "%s/state.db", dir);
  snprintf(aside, sizeof aside, "%s.corrupt-%lld", path, (long long)(NOW_MS / 1000));
  snprintf(tpath, sizeof tpath, "%s/template.db", dir);

  gkp_options opts = {.state_path = tpath, .clock = fixed_clock};
  gkp_pool *pool;
  gkp_error err;
  FUZZ_CHECK(gkp_pool_open_text(&pool, config, strlen(config), "fuzz", NULL, &opts, &err) == 0);
  use_pool(pool, 1);
  gkp_pool_close(pool);

  gkp__store *st;
  FUZZ_CHECK(gkp__store_open(tpath, NOW_MS, NULL, NULL, &st, &err) == 0);
  FUZZ_CHECK(gkp__store_lock(st, &err) >= 0);
  int ks = -1;
  for (uint32_t i = 0; i < st->hdr->lay.nkeys; i++) {
    ks = strcmp(st->keys[i].id, "k3") == 0 ? (int)i : ks;
  }
  FUZZ_CHECK(ks >= 0 && st->hdr->lay.npm > 0);
  gkp__store_save_recs(st, ks, 0);
  gkp__lease_rec *l = &st->keys[ks].leases[3];
  l->id = st->hdr->next_lease_id++;
  l->owner.pid = 1; /* not us, of no known boot: alive until it expires */
  l->started_ms = NOW_MS - 1000;
  l->expires_ms = NOW_MS + GKP_LEASE_TTL_MS;
  l->est_tokens = 10;
  l->pm_slot = 0;
  st->keys[ks].nleases++;
  gkp__store_commit(st);
  /* A change left unfinished: the next transaction rolls it back. */
  gkp__store_save(st, &st->keys[ks].c, sizeof st->keys[ks].c);
  st->keys[ks].c.requests_total = 999;
  key_off = st->hdr->lay.key_off;
  pm_off = st->hdr->lay.pm_off;
  gkp__store_unlock(st);
  layout = st->size;
  gkp__store_close(st);

  valid = malloc(layout);
  FUZZ_CHECK(valid != NULL);
  int fd = open(tpath, O_RDONLY);
  FUZZ_CHECK(fd >= 0 && pread(fd, valid, layout, 0) == (ssize_t)layout);
  close(fd);
  pages = calloc(layout / PAGE + 1, sizeof *pages);
  FUZZ_CHECK(pages != NULL);
  for (size_t off = 0; off < layout; off += PAGE) {
    size_t n = layout - off < PAGE ? layout - off : PAGE;
    static const uint8_t zero[PAGE];
    if (memcmp(valid + off, zero, n) != 0) {
      pages[npages++] = off / PAGE;
    }
  }
}

/* Writes n bytes at offset 0 into a file of `size` bytes (sparse). */
static void write_file(const void *bytes, size_t n, size_t size) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(ftruncate(fd, (off_t)size) == 0);
  if (n > size) {
    n = size;
  }
  FUZZ_CHECK(n == 0 || pwrite(fd, bytes, n, 0) == (ssize_t)n);
  close(fd);
}

/* Writes the template cut or extended to `size` bytes, leaving its
 * all-zero pages (most of it) as holes.  Returns the open file. */
static int write_valid(size_t size) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(ftruncate(fd, (off_t)size) == 0);
  for (size_t i = 0; i < npages; i++) {
    size_t off = pages[i] * PAGE;
    size_t n = layout - off < PAGE ? layout - off : PAGE;
    n = off >= size ? 0 : size - off < n ? size - off : n;
    FUZZ_CHECK(n == 0 || pwrite(fd, valid + off, n, (off_t)off) == (ssize_t)n);
  }
  return fd;
}

/* Applies patches to the open file: [region u8][offset u16 LE][length u8]
 * [bytes].  Regions: the header, key records 0-3, model records 0-3, or (9)
 * anywhere, with a wider offset. */
static void apply_patches(int fd, const uint8_t *p, const uint8_t *end) {
  size_t hdr = sizeof(gkp__store_hdr), key = sizeof(gkp__key_rec), pm = sizeof(gkp__pm_rec);
  (void)hdr;
  while (end - p >= 4) {
    unsigned region = p[0] % 10;
    size_t off = (size_t)p[1] | (size_t)p[2] << 8;
    size_t len = p[3];
    size_t base, span;
    p += 4;
    if (region == 0) {
      base = 0, span = hdr;
    } else if (region <= 4) {
      base = key_off + (region - 1) * key, span = key;
    } else if (region <= 8) {
      base = pm_off + (region - 5) * pm, span = pm;
    } else {
      base = 0, span = layout;
      off = off << 8 | len;
      len = end > p ? *p++ : 0;
    }
    off %= span;
    if (len > (size_t)(end - p)) {
      len = (size_t)(end - p);
    }
    if (len > span - off) {
      len = span - off;
    }
    FUZZ_CHECK(len == 0 || pwrite(fd, p, len, (off_t)(base + off)) == (ssize_t)len);
    p += len;
  }
}

/* Checks one step of use_pool, printing the pool's message if it failed. */
#define STEP(call, ok)                                                                             \
  do {                                                                                             \
    int rc_ = (call);                                                                              \
    if (!(ok)) {                                                                                   \
      fprintf(stderr, "fuzz_store: %s returned %d: %s\n", #call, rc_, err.msg);                    \
    }                                                                                              \
    FUZZ_CHECK(ok);                                                                                \
  } while (0)

/* Runs a pool through its paces.  `strict`: every step must succeed (the
 * template); otherwise a full state file (-ENOSPC) may refuse. */
static void use_pool(gkp_pool *pool, int strict) {
  gkp_error err;
  gkp_lease lease;
  gkp_wait wait;
  gkp_verdict v;
  gkp_limits lim;
  static const char *const models[] = {"gemini-2.5-flash", "gemini-3-flash-preview",
                                       "gemma-3-1b-it"};
  for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
    int n = gkp_count_available(pool, models[m], &err);
    FUZZ_CHECK(n >= 0 || (!strict && n == -ENOSPC));
    FUZZ_CHECK(n <= 3);
    for (int i = 0; i < 2; i++) {
      int rc = gkp_reserve(pool, models[m], 100 + i, &lease, &wait, &err);
      FUZZ_CHECK(rc == 0 || rc == -EAGAIN || (!strict && rc == -ENOSPC));
      if (rc == -EAGAIN) {
        FUZZ_CHECK(wait.reason > GKP_WAIT_NONE && wait.reason <= GKP_WAIT_NEVER);
      }
      if (rc != 0) {
        continue;
      }
      STEP(gkp_effective_limits(pool, lease.key_id, models[m], &lim, &err), rc_ == 0);
      if (i == 0) {
        STEP(gkp_report_error(pool, &lease, 429, quota_429, strlen(quota_429), &v, &err), rc_ == 0);
      } else {
        gkp_usage u = {.prompt_tokens = 90, .candidates_tokens = 20, .thoughts_tokens = -1};
        STEP(gkp_record_usage(pool, &lease, &u, &err), rc_ == 0);
      }
      STEP(gkp_release(pool, &lease, 1, &err), rc_ == 0);
    }
  }
  STEP(gkp_clear_expired(pool, &err), rc_ >= 0);
  char *json = NULL;
  STEP(gkp_status_json(pool, &json, &err), rc_ == 0);
  cJSON *doc = cJSON_Parse(json);
  FUZZ_CHECK(doc != NULL);
  cJSON_Delete(doc);
  gkp__status *st = NULL;
  STEP(gkp__status_take(pool, &st, &err), rc_ == 0);
  char *table = st != NULL ? gkp__status_table(st, NOW_MS) : NULL;
  FUZZ_CHECK(st == NULL || table != NULL);
  free(table);
  gkp__status_free(st);
  free(json);
}

/* Uses a state file the store accepted: a transaction, adding records. */
static void use_store(gkp__store *st) {
  gkp_error err;
  FUZZ_CHECK(gkp__store_lock(st, &err) >= 0);
  FUZZ_CHECK(st->hdr->journal.n == 0); /* rolled back */
  FUZZ_CHECK(st->hdr->lru_dirty == 0);
  int rc = gkp__store_new_key(st, "fuzz-key", "fuzz-project", -1, &err);
  FUZZ_CHECK(rc >= 0 || rc == -ENOSPC);
  rc = gkp__store_new_pm(st, "fuzz-project", "gemini-2.5-flash", -1, &err);
  FUZZ_CHECK(rc >= 0 || rc == -ENOSPC);
  gkp__store_lru_repair(st);
  gkp__store_unlock(st);
}

/* A state file this process accepted and used is still accepted: rolling
 * back a journal, and every change since, left only valid records. */
static void reopen_unchanged(void) {
  gkp__store *st = NULL;
  gkp_error err;
  char moved[4096];
  FUZZ_CHECK(open_store(&st, moved, &err) == 0);
  if (moved[0] != '\0') {
    fprintf(stderr, "fuzz_store: a used state file turned invalid: %s\n", moved);
  }
  FUZZ_CHECK(moved[0] == '\0');
  gkp__store_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (valid == NULL) {
    make_template();
  }
  if (size < 1) {
    return 0;
  }
  remove_files();
  const uint8_t *rest = data + 1, *end = data + size;
  size_t n = size - 1;
  switch (data[0] % 4) {
  case 0:
    write_file(rest, n, n);
    break;
  case 1:
    write_file(rest, n, layout);
    break;
  case 2: {
    int fd = write_valid(layout);
    apply_patches(fd, rest, end);
    close(fd);
    break;
  }
  default: {
    /* A signed 24-bit change of size (from -8 MiB to +8 MiB). */
    int32_t delta = 1;
    if (n >= 3) {
      uint32_t u = (uint32_t)rest[0] << 16 | (uint32_t)rest[1] << 8 | rest[2];
      delta = (int32_t)(u ^ 0x800000u) - 0x800000;
    }
    int64_t want = (int64_t)layout + delta;
    close(write_valid(want > 0 ? (size_t)want : 0));
    break;
  }
  }

  gkp__store *st = NULL;
  gkp_error err;
  char moved[4096];
  int rc = open_store(&st, moved, &err);
  FUZZ_CHECK((rc == 0 && st != NULL) || rc == -EPROTO); /* -EPROTO: a newer format */
  if (rc == -EPROTO) {
    return 0;
  }
  if (moved[0] != '\0') {
    struct stat sb;
    FUZZ_CHECK(strstr(moved, aside) != NULL && stat(aside, &sb) == 0);
    FUZZ_CHECK(st->hdr->lay.nkeys == 0 && st->hdr->lay.npm == 0); /* a fresh one */
  }
  use_store(st);
  gkp__store_close(st);
  reopen_unchanged();
  if (moved[0] != '\0') {
    return 0; /* the pool would only see the fresh file: nothing new */
  }

  gkp_options opts = {.state_path = path, .clock = fixed_clock};
  gkp_pool *pool = NULL;
  rc = gkp_pool_open_text(&pool, config, strlen(config), "fuzz", NULL, &opts, &err);
  FUZZ_CHECK(rc == 0 || rc == -ENOSPC);
  if (rc == 0) {
    use_pool(pool, 0);
    gkp_pool_close(pool);
    reopen_unchanged();
  }
  return 0;
}
