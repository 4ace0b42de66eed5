/*
 * fuzz_classify.c - error responses through gkp_classify.
 *
 * The first two bytes choose the HTTP status (0, a transport failure, up to
 * 599; 200 is an error mid-stream); the rest is the body.  Every input gives
 * a valid kind and action, the same verdict twice, and a message of one line
 * of valid UTF-8 that never shows a whole API key.
 */
#include <string.h>

#include "fuzz.h"
#include "gkp.h"

/* Whether s is valid UTF-8 without control characters. */
static int clean_utf8(const unsigned char *s) {
  while (*s != '\0') {
    size_t n = *s < 0x80             ? 1
               : (*s & 0xe0) == 0xc0 ? 2
               : (*s & 0xf0) == 0xe0 ? 3
               : (*s & 0xf8) == 0xf0 ? 4
                                     : 0;
    if (n == 0 || *s < 0x20 || *s == 0x7f) {
      return 0;
    }
    for (size_t k = 1; k < n; k++) {
      if ((s[k] & 0xc0) != 0x80) {
        return 0;
      }
    }
    s += n;
  }
  return 1;
}

/* Whether s holds "AIza" followed by 35 key characters: a whole key. */
static int shows_key(const char *s) {
  for (const char *p = strstr(s, "AIza"); p != NULL; p = strstr(p + 1, "AIza")) {
    size_t run = strspn(p + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
    if (run >= 35) {
      return 1;
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gkp_verdict a, b;
  if (size < 2) {
    return 0;
  }
  int status = (int)((data[0] | (unsigned)data[1] << 8) % 600);
  const char *body = (const char *)data + 2;
  size_t len = size - 2;

  gkp_classify(status, body, len, &a);
  FUZZ_CHECK(a.kind > GKP_KIND_NONE && a.kind < GKP_KIND_COUNT);
  FUZZ_CHECK(a.action == GKP_ACT_RETRY || a.action == GKP_ACT_FALLBACK || a.action == GKP_ACT_FAIL);
  FUZZ_CHECK(a.retry_ms >= -1 && a.learned_limit >= -1);
  FUZZ_CHECK(a.learned_limit < 0 || a.learned_metric == GKP_KIND_RPM ||
             a.learned_metric == GKP_KIND_TPM || a.learned_metric == GKP_KIND_RPD);
  FUZZ_CHECK(a.cooldown_until_ms == 0);
  FUZZ_CHECK(memchr(a.message, '\0', sizeof a.message) != NULL);
  FUZZ_CHECK(clean_utf8((const unsigned char *)a.message));
  FUZZ_CHECK(!shows_key(a.message));
  FUZZ_CHECK(strcmp(gkp_kind_name(a.kind), "unknown") != 0);

  /* Pure: the same input gives the same verdict. */
  gkp_classify(status, body, len, &b);
  FUZZ_CHECK(a.kind == b.kind && a.action == b.action && a.http_status == b.http_status &&
             a.retry_ms == b.retry_ms && a.learned_limit == b.learned_limit &&
             a.key_wide == b.key_wide && strcmp(a.message, b.message) == 0);
  return 0;
}
