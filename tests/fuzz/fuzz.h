/*
 * fuzz.h - what the fuzz targets share.
 *
 * Each tests/fuzz/fuzz_<name>.c defines LLVMFuzzerTestOneInput (and may
 * define LLVMFuzzerInitialize).  scripts/fuzz links them with libFuzzer
 * (clang -fsanitize=fuzzer,address,undefined); tests/fuzz/meson.build links
 * them with replay_main.c, which feeds them every input committed under
 * tests/fuzz/corpus/<name>/ and tests/fuzz/regressions/<name>/ in every
 * build.  A target returns 0 for every input; a broken invariant aborts
 * (FUZZ_CHECK), which both drivers report as a crash.
 */
#ifndef GKP_FUZZ_H
#define GKP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed condition when an invariant does not hold. */
#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                 \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* FNV-1a of the input: choices a target makes "at random" are derived from
 * it, so one input always runs the same way and corpus files stay plain
 * data (an SSE stream, a JSON answer) rather than carrying control bytes. */
static inline uint64_t fuzz_hash(const uint8_t *data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; i++) {
    h = (h ^ data[i]) * 0x100000001b3ull;
  }
  return h;
}

/* The next number of a xorshift64 sequence seeded with fuzz_hash. */
static inline uint64_t fuzz_next(uint64_t *state) {
  uint64_t x = *state != 0 ? *state : 0x9e3779b97f4a7c15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

/* Reads every byte of buf so that AddressSanitizer checks the whole range;
 * returns a checksum the caller may compare. */
static inline uint64_t fuzz_touch(const void *buf, size_t len) {
  const volatile unsigned char *p = buf;
  uint64_t sum = 0;
  for (size_t i = 0; i < len; i++) {
    sum = sum * 31 + p[i];
  }
  return sum;
}

#endif
