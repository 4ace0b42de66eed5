/*
 * fuzz_sse.c - a server-sent event stream through the gkp__sse parser.
 *
 * The stream is parsed three ways: fed whole, fed in pieces cut at points
 * derived from the data, and fed one byte at a time (short streams), each
 * ended with gkp__sse_finish.  The parser promises that bytes may be split
 * anywhere, so the three must deliver the same events and end the same way.
 * Some inputs (chosen by their hash) get a small event limit, to reach
 * -EFBIG, or a callback that stops the parser after a few events.
 */
#include <errno.h>
#include <string.h>

#include "client/sse.h"
#include "fuzz.h"

#define STOP_CODE (-EPIPE)

/* What one parse delivered. */
typedef struct outcome {
  uint64_t events;     /* data events */
  uint64_t bares;      /* bare JSON values */
  uint64_t sum;        /* a checksum over the order and content of both */
  uint64_t stop_after; /* return STOP_CODE from this callback on (0: never) */
  size_t max_event;
  int feed_rc; /* the first non-zero gkp__sse_feed result */
  int finish_rc;
} outcome;

static int delivered(outcome *o, const char *data, size_t len, int bare) {
  FUZZ_CHECK(data != NULL && data[len] == '\0');
  FUZZ_CHECK(len <= o->max_event);
  if (!bare) {
    /* Line ends never get into an event's data ("\n" joins its lines). */
    FUZZ_CHECK(memchr(data, '\r', len) == NULL);
    o->events++;
  } else {
    FUZZ_CHECK(len > 0 && (data[0] == '{' || data[0] == '['));
    o->bares++;
  }
  o->sum = o->sum * 1000003u + fuzz_touch(data, len) + (bare ? 7 : 3) + len;
  if (o->stop_after != 0 && o->events + o->bares >= o->stop_after) {
    return STOP_CODE;
  }
  return 0;
}

static int on_event(void *ud, const char *data, size_t len) {
  return delivered(ud, data, len, 0);
}

static int on_bare(void *ud, const char *data, size_t len) {
  return delivered(ud, data, len, 1);
}

/* Parses data[0..size) fed in pieces: whole when step is 0, one byte at a
 * time when step is 1, else in lengths drawn from *rng (1..step). */
static void parse(const uint8_t *data, size_t size, size_t step, uint64_t rng, outcome *o) {
  gkp__sse p;
  gkp__sse_init(&p, o->max_event, on_event, on_bare, o);
  size_t i = 0;
  o->feed_rc = 0;
  while (i < size) {
    size_t n = size - i;
    if (step == 1) {
      n = 1;
    } else if (step > 1 && n > 1) {
      size_t cut = 1 + (size_t)(fuzz_next(&rng) % step);
      n = cut < n ? cut : n;
    }
    int rc = gkp__sse_feed(&p, data + i, n);
    if (rc != 0) {
      FUZZ_CHECK(rc == -EFBIG || rc == -ENOMEM || rc == STOP_CODE);
      if (o->feed_rc == 0) {
        o->feed_rc = rc;
      }
      /* A stopped parser stays stopped with the same error. */
      FUZZ_CHECK(gkp__sse_feed(&p, "data: x\n\n", 9) == rc);
      break;
    }
    i += n;
  }
  o->finish_rc = gkp__sse_finish(&p);
  FUZZ_CHECK(o->finish_rc == 0 || o->finish_rc == -EBADMSG || o->finish_rc == o->feed_rc);
  FUZZ_CHECK(o->feed_rc == 0 || o->finish_rc == o->feed_rc);
  gkp__sse_free(&p);
}

static void same(const outcome *a, const outcome *b) {
  FUZZ_CHECK(a->events == b->events);
  FUZZ_CHECK(a->bares == b->bares);
  FUZZ_CHECK(a->sum == b->sum);
  FUZZ_CHECK(a->feed_rc == b->feed_rc);
  FUZZ_CHECK(a->finish_rc == b->finish_rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t h = fuzz_hash(data, size);
  outcome whole, pieces, bytes;
  memset(&whole, 0, sizeof whole);
  whole.max_event = (h & 7) == 0 ? 16 + (size_t)(h >> 8) % 512 : GKP__SSE_MAX_EVENT;
  whole.stop_after = ((h >> 3) & 7) == 0 ? 1 + (h >> 20) % 4 : 0;
  pieces = whole;
  bytes = whole;

  parse(data, size, 0, h, &whole);
  parse(data, size, 2 + (size_t)((h >> 32) % 64), h, &pieces);
  same(&whole, &pieces);
  if (size <= 4096) {
    parse(data, size, 1, h, &bytes);
    same(&whole, &bytes);
  }
  return 0;
}
