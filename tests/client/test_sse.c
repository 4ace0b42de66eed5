/*
 * test_sse.c - the incremental SSE parser: framings, fields, bare JSON,
 * every split point, truncation and the size cap.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/sse.h"

/* What the parser delivered: "E:<data>" for events, "B:<json>" for bare
 * values, one per line... kept as a list of strings. */
typedef struct got {
  char *items[64];
  size_t n;
  int stop_after; /* return -ECANCELED after this many deliveries (0: never) */
} got;

static int record(got *g, char kind, const char *data, size_t len) {
  assert_true(g->n < 64);
  assert_int_equal(data[len], '\0'); /* NUL-terminated for convenience */
  char *s = malloc(len + 3);
  assert_non_null(s);
  s[0] = kind;
  s[1] = ':';
  memcpy(s + 2, data, len);
  s[len + 2] = '\0';
  g->items[g->n++] = s;
  if (g->stop_after > 0 && g->n >= (size_t)g->stop_after) {
    return -ECANCELED;
  }
  return 0;
}

static int on_event(void *ud, const char *data, size_t len) {
  return record(ud, 'E', data, len);
}

static int on_bare(void *ud, const char *data, size_t len) {
  return record(ud, 'B', data, len);
}

static void got_free(got *g) {
  for (size_t i = 0; i < g->n; i++) {
    free(g->items[i]);
  }
  g->n = 0;
}

/* Feeds `s` in pieces cut at the given offsets (sorted), then finishes. */
static int feed_split(got *g, const char *s, const size_t *cuts, size_t ncuts, size_t cap) {
  gkp__sse p;
  gkp__sse_init(&p, cap, on_event, on_bare, g);
  size_t len = strlen(s), at = 0;
  int rc = 0;
  for (size_t i = 0; i <= ncuts && rc == 0; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    rc = gkp__sse_feed(&p, s + at, end - at);
    at = end;
  }
  if (rc == 0) {
    rc = gkp__sse_finish(&p);
  }
  gkp__sse_free(&p);
  return rc;
}

static int feed_all(got *g, const char *s) {
  return feed_split(g, s, NULL, 0, 0);
}

static void expect(got *g, size_t n, ...) {
  va_list ap;
  va_start(ap, n);
  assert_int_equal(g->n, n);
  for (size_t i = 0; i < n; i++) {
    const char *want = va_arg(ap, const char *);
    assert_string_equal(g->items[i], want);
  }
  va_end(ap);
}

/* ---- framing ---------------------------------------------------------------- */

static void test_framings(void **state) {
  (void)state;
  static const char *const streams[] = {
      "data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n\r\n",
      "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n",
      "data: {\"a\":1}\r\rdata: {\"b\":2}\r\r",
      "data: {\"a\":1}\r\n\ndata: {\"b\":2}\n\r\n",
      "data: {\"a\":1}\n\r\ndata: {\"b\":2}\r\r\n",
      "data:{\"a\":1}\r\n\r\ndata:{\"b\":2}\n\n",
  };
  for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
    got g = {0};
    assert_int_equal(feed_all(&g, streams[i]), 0);
    expect(&g, 2, "E:{\"a\":1}", "E:{\"b\":2}");
    got_free(&g);
  }
}

static void test_multiline_and_fields(void **state) {
  (void)state;
  got g = {0};
  assert_int_equal(feed_all(&g, ": a comment\r\n"
                                "event: message\r\n"
                                "id: 7\r\n"
                                "retry: 1000\r\n"
                                "data: line one\r\n"
                                "data:line two\r\n"
                                "data:  leading space kept\r\n"
                                "data\r\n"
                                "unknownfield: x\r\n"
                                "\r\n"
                                "event: no data here\n\n"
                                ":\n\n"
                                "data: last\n\n"),
                   0);
  expect(&g, 2, "E:line one\nline two\n leading space kept\n", "E:last");
  got_free(&g);
}

static void test_data_error_event(void **state) {
  (void)state;
  got g = {0};
  const char *s = "data: {\"candidates\":[]}\r\n\r\n"
                  "data: {\"error\":{\"code\":503,\"message\":\"overloaded\"}}\r\n\r\n";
  assert_int_equal(feed_all(&g, s), 0);
  expect(&g, 2, "E:{\"candidates\":[]}", "E:{\"error\":{\"code\":503,\"message\":\"overloaded\"}}");
  got_free(&g);
}

/* ---- bare JSON ---------------------------------------------------------------- */

#define BARE_ERROR                                                                                 \
  "{\n"                                                                                            \
  "  \"error\": {\n"                                                                               \
  "    \"code\": 500,\n"                                                                           \
  "    \"message\": \"internal {not a brace} \\\"quoted }\\\" \\\\\",\n"                           \
  "    \"details\": [ { \"k\": \"]}\" } ],\n"                                                      \
  "    \"status\": \"INTERNAL\"\n"                                                                 \
  "  }\n"                                                                                          \
  "}"

static void test_bare_after_events(void **state) {
  (void)state;
  got g = {0};
  const char *s = "data: {\"a\":1}\r\n\r\n"
                  "data: {\"b\":2}\r\n\r\n" BARE_ERROR "\n";
  assert_int_equal(feed_all(&g, s), 0);
  expect(&g, 3, "E:{\"a\":1}", "E:{\"b\":2}", "B:" BARE_ERROR);
  got_free(&g);
}

static void test_bare_array_and_indented(void **state) {
  (void)state;
  got g = {0};
  const char *s = "[{\n  \"error\": {\"code\": 400}\n}]\n"
                  "  {\"x\": \"[\"}\r\n";
  assert_int_equal(feed_all(&g, s), 0);
  expect(&g, 2, "B:[{\n  \"error\": {\"code\": 400}\n}]", "B:{\"x\": \"[\"}");
  got_free(&g);
}

/* ---- every split point ---------------------------------------------------------- */

static const char *split_stream(void) {
  return ": keep-alive\r\n"
         "data: {\"t\":\"one\"}\r\n\r\n"
         "event: x\n"
         "data: two-a\n"
         "data:two-b\n\n"
         "data: {\"t\":\"three\"}\r\r"
         "data: four\r\n\n" BARE_ERROR "\r\n"
         "data: five\r\n\r\n";
}

static void expect_split_result(got *g) {
  expect(g, 6, "E:{\"t\":\"one\"}", "E:two-a\ntwo-b", "E:{\"t\":\"three\"}", "E:four",
         "B:" BARE_ERROR, "E:five");
}

static void test_byte_by_byte(void **state) {
  (void)state;
  const char *s = split_stream();
  size_t len = strlen(s);
  size_t *cuts = malloc(len * sizeof *cuts);
  assert_non_null(cuts);
  for (size_t i = 0; i + 1 < len; i++) {
    cuts[i] = i + 1;
  }
  got g = {0};
  assert_int_equal(feed_split(&g, s, cuts, len - 1, 0), 0);
  expect_split_result(&g);
  got_free(&g);
  free(cuts);
}

static void test_all_two_way_splits(void **state) {
  (void)state;
  const char *s = split_stream();
  size_t len = strlen(s);
  for (size_t cut = 0; cut <= len; cut++) {
    got g = {0};
    assert_int_equal(feed_split(&g, s, &cut, 1, 0), 0);
    expect_split_result(&g);
    got_free(&g);
  }
}

static void test_all_three_way_splits(void **state) {
  (void)state;
  const char *s = "data: a\r\n\r\ndata: b\r\rdata: c\n\r\n{\"e\":\"}\"}\r\n";
  size_t len = strlen(s);
  for (size_t a = 0; a <= len; a++) {
    for (size_t b = a; b <= len; b++) {
      size_t cuts[2] = {a, b};
      got g = {0};
      assert_int_equal(feed_split(&g, s, cuts, 2, 0), 0);
      expect(&g, 4, "E:a", "E:b", "E:c", "B:{\"e\":\"}\"}");
      got_free(&g);
    }
  }
}

/* ---- truncation, limits, stopping ---------------------------------------------- */

static void test_truncated(void **state) {
  (void)state;
  static const char *const cut[] = {
      "data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n", /* no blank line */
      "data: {\"a\":1}\r\n\r\ndata: {\"b\"",        /* mid-line */
      "data: {\"a\":1}\r\n\r\ndata",                /* mid-field */
      "data: {\"a\":1}\r\n\r\n{\n  \"error\": {\n", /* mid bare value */
  };
  for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
    got g = {0};
    assert_int_equal(feed_all(&g, cut[i]), -EBADMSG);
    assert_true(g.n >= 1);
    assert_string_equal(g.items[0], "E:{\"a\":1}");
    got_free(&g);
  }
  /* Complete streams, with or without trailing comment lines, are fine. */
  got g = {0};
  assert_int_equal(feed_all(&g, "data: x\n\n"), 0);
  assert_int_equal(feed_all(&g, "data: y\n\n: bye"), 0);
  assert_int_equal(feed_all(&g, ""), 0);
  expect(&g, 2, "E:x", "E:y");
  got_free(&g);
}

static void test_oversized(void **state) {
  (void)state;
  size_t cap = 1024;
  char *big = malloc(4096);
  assert_non_null(big);
  /* Exactly at the cap is fine. */
  memcpy(big, "data: ", 6);
  memset(big + 6, 'x', cap);
  memcpy(big + 6 + cap, "\n\n", 3);
  got g = {0};
  assert_int_equal(feed_split(&g, big, NULL, 0, cap), 0);
  assert_int_equal(g.n, 1);
  assert_int_equal(strlen(g.items[0]), cap + 2);
  got_free(&g);
  /* One byte more is -EFBIG, and the parser stays stopped. */
  memset(big + 6, 'x', cap + 1);
  memcpy(big + 6 + cap + 1, "\n\ndata: after\n\n", 16);
  gkp__sse p;
  gkp__sse_init(&p, cap, on_event, on_bare, &g);
  assert_int_equal(gkp__sse_feed(&p, big, strlen(big)), -EFBIG);
  assert_int_equal(gkp__sse_feed(&p, "data: z\n\n", 9), -EFBIG);
  assert_int_equal(gkp__sse_finish(&p), -EFBIG);
  assert_int_equal(g.n, 0);
  gkp__sse_free(&p);
  /* Many data lines that add up past the cap, fed in small pieces. */
  gkp__sse_init(&p, cap, on_event, on_bare, &g);
  int rc = 0;
  for (int i = 0; i < 200 && rc == 0; i++) {
    rc = gkp__sse_feed(&p, "data: 0123456789\n", 17);
  }
  assert_int_equal(rc, -EFBIG);
  gkp__sse_free(&p);
  /* A bare value past the cap. */
  memset(big, ' ', 4095);
  big[0] = '{';
  big[4095] = '\0';
  gkp__sse_init(&p, cap, on_event, on_bare, &g);
  assert_int_equal(gkp__sse_feed(&p, big, strlen(big)), -EFBIG);
  gkp__sse_free(&p);
  free(big);
}

static void test_callback_stops(void **state) {
  (void)state;
  got g = {.stop_after = 1};
  gkp__sse p;
  gkp__sse_init(&p, 0, on_event, on_bare, &g);
  const char *s = "data: a\n\ndata: b\n\n";
  assert_int_equal(gkp__sse_feed(&p, s, strlen(s)), -ECANCELED);
  assert_int_equal(gkp__sse_feed(&p, s, strlen(s)), -ECANCELED);
  assert_int_equal(gkp__sse_finish(&p), -ECANCELED);
  expect(&g, 1, "E:a");
  gkp__sse_free(&p);
  got_free(&g);
}

static void test_no_bare_callback(void **state) {
  (void)state;
  got g = {0};
  gkp__sse p;
  gkp__sse_init(&p, 0, on_event, NULL, &g);
  const char *s = "{\"error\":{}}\ndata: a\n\n";
  assert_int_equal(gkp__sse_feed(&p, s, strlen(s)), 0);
  assert_int_equal(gkp__sse_finish(&p), 0);
  expect(&g, 1, "E:a");
  gkp__sse_free(&p);
  got_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_framings),
      cmocka_unit_test(test_multiline_and_fields),
      cmocka_unit_test(test_data_error_event),
      cmocka_unit_test(test_bare_after_events),
      cmocka_unit_test(test_bare_array_and_indented),
      cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_all_two_way_splits),
      cmocka_unit_test(test_all_three_way_splits),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_oversized),
      cmocka_unit_test(test_callback_stops),
      cmocka_unit_test(test_no_bare_callback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
