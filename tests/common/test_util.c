/*
 * test_util.c - the shared helpers of common/util.h: floor division,
 * bounded copies, counted duplicates and growing arrays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static void floor_div_rounds_down(void **st) {
  (void)st;
  assert_int_equal(gkp__floor_div(7, 2), 3);
  assert_int_equal(gkp__floor_div(-7, 2), -4);
  assert_int_equal(gkp__floor_div(-8, 2), -4);
  assert_int_equal(gkp__floor_div(7, -2), -4);
  assert_int_equal(gkp__floor_div(-7, -2), 3);
  assert_int_equal(gkp__floor_div(-1, 1000), -1);
  assert_int_equal(gkp__floor_div(0, 1000), 0);
}

static void strlcpy_truncates_and_terminates(void **st) {
  char buf[4];
  (void)st;
  memset(buf, 'x', sizeof buf);
  gkp__strlcpy(buf, "abcdef", sizeof buf);
  assert_string_equal(buf, "abc");
  gkp__strlcpy(buf, "ab", sizeof buf);
  assert_string_equal(buf, "ab");
  gkp__strlcpy(buf, NULL, sizeof buf);
  assert_string_equal(buf, "");
  buf[0] = 'z';
  gkp__strlcpy(buf, "q", 0); /* no room: nothing written */
  assert_int_equal(buf[0], 'z');
}

static void dup_n_copies_exactly_n_bytes(void **st) {
  (void)st;
  char *d = gkp__dup_n("hello world", 5);
  assert_non_null(d);
  assert_string_equal(d, "hello");
  free(d);
  d = gkp__dup_n(NULL, 0);
  assert_non_null(d);
  assert_string_equal(d, "");
  free(d);
  d = gkp__dup_n("a\0b", 3); /* embedded NUL kept */
  assert_non_null(d);
  assert_memory_equal(d, "a\0b", 4);
  free(d);
}

static void grow_doubles_and_keeps_contents(void **st) {
  int *v = NULL;
  size_t n = 0, cap = 0;
  (void)st;
  for (int i = 0; i < 1000; i++) {
    int *g = gkp__grow(v, &cap, n + 1, sizeof *g, 16);
    assert_non_null(g);
    v = g;
    v[n++] = i;
    assert_true(cap >= n);
  }
  assert_int_equal(cap, 1024); /* 16 doubled six times */
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(v[i], i);
  }
  /* Large enough already: the same array, the same capacity. */
  assert_ptr_equal(gkp__grow(v, &cap, 10, sizeof *v, 16), v);
  assert_int_equal(cap, 1024);
  /* A jump past several doublings at once. */
  int *g = gkp__grow(v, &cap, 5000, sizeof *v, 16);
  assert_non_null(g);
  v = g;
  assert_int_equal(cap, 8192);
  free(v);
}

static void grow_refuses_overflow(void **st) {
  char *p = malloc(8);
  size_t cap = 8;
  (void)st;
  assert_non_null(p);
  assert_null(gkp__grow(p, &cap, SIZE_MAX / 2 + 2, 1, 8));
  assert_int_equal(cap, 8); /* untouched, p still ours */
  assert_null(gkp__grow(p, &cap, SIZE_MAX / 8, 16, 8));
  assert_int_equal(cap, 8);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(floor_div_rounds_down),
      cmocka_unit_test(strlcpy_truncates_and_terminates),
      cmocka_unit_test(dup_n_copies_exactly_n_bytes),
      cmocka_unit_test(grow_doubles_and_keeps_contents),
      cmocka_unit_test(grow_refuses_overflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
