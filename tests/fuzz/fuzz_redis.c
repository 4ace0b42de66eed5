/*
 * fuzz_redis.c - what a Redis server answers, through the checks the
 * client makes before using it.
 *
 * The first byte picks what the rest is:
 *   0 RESP:     bytes as a server sends them, parsed by hiredis's reader;
 *               every reply goes through the CLUSTER SLOTS and TIME checks
 *               (gkp__redis_slots_bad, gkp__redis_time_ms);
 *   1 redirect: an error's text, through gkp__redis_redirect_parse;
 *   2 counts:   a caller's record as stored (gkp__client_decode).
 * A reply the checks accept must really be in range (every slot below
 * 16384, a port from 1 to 65535, a time of two decimal strings); a record
 * that decodes encodes back to the same counts, and counting on it stays
 * in range.
 */
#include <hiredis/hiredis.h>
#include <string.h>

#include "engine/client_counts.h"
#include "engine/redis_conn.h"
#include "fuzz.h"

static void check_slots(const redisReply *r) {
  if (gkp__redis_slots_bad(r) != 0) {
    return;
  }
  FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY);
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i];
    FUZZ_CHECK(e->type == REDIS_REPLY_ARRAY && e->elements >= 3);
    long long a = e->element[0]->integer, b = e->element[1]->integer;
    FUZZ_CHECK(a >= 0 && a <= b && b < 16384);
    const redisReply *m = e->element[2];
    FUZZ_CHECK(m->type == REDIS_REPLY_ARRAY && m->elements >= 2);
    FUZZ_CHECK(m->element[0]->type == REDIS_REPLY_STRING && strlen(m->element[0]->str) < 256);
    FUZZ_CHECK(m->element[1]->integer > 0 && m->element[1]->integer <= 65535);
  }
}

static void check_time(const redisReply *r) {
  int64_t ms = gkp__redis_time_ms(r);
  if (ms < 0) {
    return;
  }
  FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
  for (size_t i = 0; i < 2; i++) {
    const redisReply *x = r->element[i];
    FUZZ_CHECK(x->type == REDIS_REPLY_STRING && x->len > 0);
    for (size_t k = 0; k < x->len; k++) {
      FUZZ_CHECK(x->str[k] >= '0' && x->str[k] <= '9');
    }
  }
}

/* Whether the bytes announce an array of more than a million elements:
 * Debian's hiredis (0.14) allocates an announced array whole, with no
 * limit of its own, and freeing it walks every slot.  The connection's
 * command timeout bounds what a server can do with that; here such inputs
 * would only measure the allocator. */
static int huge_array(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '*') {
      continue;
    }
    uint64_t v = 0;
    for (size_t k = i + 1; k < n && p[k] >= '0' && p[k] <= '9' && v <= (1u << 20); k++) {
      v = v * 10 + (p[k] - '0');
    }
    if (v > (1u << 20)) {
      return 1;
    }
  }
  return 0;
}

static void resp(const uint8_t *p, size_t n) {
  if (huge_array(p, n)) {
    return;
  }
  redisReader *rd = redisReaderCreate();
  FUZZ_CHECK(rd != NULL);
  if (redisReaderFeed(rd, (const char *)p, n) == REDIS_OK) {
    for (int i = 0; i < 64; i++) {
      void *reply = NULL;
      if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL) {
        break;
      }
      check_slots(reply);
      check_time(reply);
      freeReplyObject(reply);
    }
  }
  redisReaderFree(rd);
}

static void redirect(const uint8_t *p, size_t n) {
  char msg[512], host[256];
  int ask = -1, slot = -1, port = -1;
  if (n >= sizeof msg) {
    n = sizeof msg - 1;
  }
  memcpy(msg, p, n);
  msg[n] = '\0';
  if (gkp__redis_redirect_parse(msg, &ask, &slot, host, &port) == 0) {
    FUZZ_CHECK(ask == 0 || ask == 1);
    FUZZ_CHECK(slot >= 0 && slot < 16384 && port > 0 && port <= 65535);
    FUZZ_CHECK(host[0] != '\0' && strlen(host) < 256);
  }
}

static void counts(const uint8_t *p, size_t n) {
  gkp__client_counts c, again;
  char text[GKP__CLIENT_TEXT_MAX];
  if (gkp__client_decode((const char *)p, n, &c) != 0) {
    return;
  }
  gkp__client_encode(&c, text, sizeof text);
  FUZZ_CHECK(strlen(text) < sizeof text - 1);
  FUZZ_CHECK(gkp__client_decode(text, strlen(text), &again) == 0);
  FUZZ_CHECK(memcmp(&c, &again, sizeof c) == 0);
  int64_t now = c.day_ms > 0 && c.day_ms < INT64_C(1) << 45 ? c.day_ms + 1000 : 1764000000000;
  gkp_client_usage u;
  gkp__client_read(&c, now, &u);
  FUZZ_CHECK(u.minute >= 0 && u.today >= 0);
  int64_t wait = gkp__client_count(&c, GKP__CLIENT_ADMIT, now, 5, 100);
  FUZZ_CHECK(wait >= 0 && wait <= 25 * 3600);
  gkp__client_encode(&c, text, sizeof text);
  FUZZ_CHECK(gkp__client_decode(text, strlen(text), &again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) {
    return 0;
  }
  switch (data[0] % 3) {
  case 0:
    resp(data + 1, size - 1);
    break;
  case 1:
    redirect(data + 1, size - 1);
    break;
  default:
    counts(data + 1, size - 1);
    break;
  }
  return 0;
}
