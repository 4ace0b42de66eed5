/*
 * sse.h - an incremental parser for the server-sent events Gemini streams.
 *
 * Bytes are fed as they arrive, split anywhere.  For every complete event
 * (ended by a blank line) the parser calls on_event with the `data:` lines of
 * the event joined by '\n'.  Lines end with "\r\n", "\n" or "\r", in any mix,
 * so the blank line between events may be "\r\n\r\n", "\n\n", "\r\r" or a
 * mixture.  `data:` may or may not be followed by one space (which is not
 * part of the value).  Comment lines (":...") and the fields event:, id:,
 * retry: and any other field are ignored; an event without data: lines is not
 * delivered.
 *
 * Google sends errors that happen after the HTTP 200 header as a bare JSON
 * object, pretty-printed over many lines and without "data:".  A line whose
 * first non-blank character is '{' or '[' starts such a bare JSON value; the
 * parser tracks the nesting (aware of strings and escapes) and calls on_bare
 * with the whole value when its closing bracket arrives.  The rest of that
 * line is ignored.
 *
 * Memory is bounded: an event's data, or a bare value, larger than
 * `max_event` bytes stops the parser with -EFBIG.
 *
 * A gkp__sse is owned by its caller and used from one thread at a time.
 */
#ifndef GKP_CLIENT_SSE_H
#define GKP_CLIENT_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/dynbuf.h"

/* The default limit on one event (or one bare JSON value). */
#define GKP__SSE_MAX_EVENT ((size_t)32 * 1024 * 1024)

/*
 * Receives one event's data (or one bare JSON value): `len` bytes, followed
 * by a NUL that is not counted.  The bytes are valid only during the call.
 * Returns 0 to go on; any other value (a negative errno by convention) stops
 * the parser, and gkp__sse_feed/gkp__sse_finish return that value from then
 * on.
 */
typedef int (*gkp__sse_fn)(void *ud, const char *data, size_t len);

typedef struct gkp__sse {
  gkp__sse_fn on_event; /* required */
  gkp__sse_fn on_bare;  /* NULL: bare JSON values are dropped */
  void *ud;
  /* private */
  gkp__dynbuf data; /* the current event's joined data lines */
  gkp__dynbuf bare; /* the current bare JSON value */
  int state;
  int after_cr;  /* the previous line ended with '\r': a following '\n' belongs to it */
  int have_data; /* the current event has at least one data: line */
  char field[8];
  size_t field_len;
  int depth, in_str, esc; /* bare JSON scanning */
  int err;                /* latched error, 0 while healthy */
  uint64_t events;        /* events and bare values delivered */
} gkp__sse;

/* Prepares a parser.  max_event 0 means GKP__SSE_MAX_EVENT.  Allocates
 * nothing until bytes arrive. */
void gkp__sse_init(gkp__sse *p, size_t max_event, gkp__sse_fn on_event, gkp__sse_fn on_bare,
                   void *ud);

/*
 * Feeds `len` bytes.  Callbacks run from inside this call, on the calling
 * thread.  Returns 0; -EFBIG when an event passes the size limit; -ENOMEM;
 * or the non-zero value a callback returned.  Once it has returned an error
 * the parser stays stopped and returns the same error.
 */
int gkp__sse_feed(gkp__sse *p, const void *bytes, size_t len);

/*
 * Ends the stream.  Returns 0 if the stream ended on an event boundary;
 * -EBADMSG if an event, a data line, a field line or a bare JSON value was
 * left incomplete (the stream was truncated); or the latched error.
 */
int gkp__sse_finish(gkp__sse *p);

/* Frees the parser's buffers.  The parser may be initialised again. */
void gkp__sse_free(gkp__sse *p);

#endif
