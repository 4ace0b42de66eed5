/*
 * http.h - one HTTP request on the I/O loop.
 *
 * A request is started on the loop thread and reports back on the loop
 * thread: on_status once the response headers are complete, on_data as body
 * bytes arrive, and on_done exactly once at the end, whatever happens
 * (success, HTTP error, transport failure, timeout, cancellation, the loop
 * stopping).  After on_done returns the request is freed; the caller must
 * not touch it again.  No callback ever runs from inside gkp__http_start.
 *
 * Connections are reused through the loop's multi handle (keep-alive, HTTP/2
 * multiplexing when the server offers it).  Proxies come from the
 * environment as libcurl does by default.  Redirects are not followed.
 * Signals are never used (CURLOPT_NOSIGNAL), verbose output is never
 * enabled, and the header lines (which may carry an API key) are wiped from
 * memory when the request ends.  Never put secrets in URLs.
 */
#ifndef GKP_CLIENT_HTTP_H
#define GKP_CLIENT_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "client/loop.h"
#include "gkp.h"

/* Defaults for the timeouts in gkp__http_opts. */
#define GKP__HTTP_CONNECT_TIMEOUT_MS 10000L /* TCP + TLS (+ proxy) connect */
#define GKP__HTTP_LOW_SPEED_LIMIT 1L        /* bytes/s ... */
#define GKP__HTTP_LOW_SPEED_TIME_S 60L      /* ... below which for this long aborts */
#define GKP__HTTP_TIMEOUT_MS 600000L        /* the whole request */

typedef struct gkp__http_req gkp__http_req;

/* How a request ended. */
typedef struct gkp__http_result {
  CURLcode curl_code; /* CURLE_OK when the transfer completed (any HTTP status) */
  int http_status;    /* the final response status; 0 if no response arrived */
  int cancelled;      /* ended by gkp__http_cancel(_async) or by the loop stopping */
  int aborted;        /* ended because on_data returned non-zero */
  int timed_out;      /* ended by the connect, low-speed or overall timeout */
  const char *error;  /* "" on success, else a short reason without secrets, e.g.
                         "connection refused", "timed out after 10 s", "connection
                         reset", "cancelled" */
  int unsent;         /* nothing reached the server: the name did not resolve,
                         the connection or the TLS handshake failed, or no byte
                         of the request was written (never set once a response
                         status arrived) */
  uint64_t bytes;     /* body bytes received */
  int64_t elapsed_ms; /* from start to the end */
} gkp__http_result;

/* Callbacks, all on the loop thread; `ud` is the pointer given at start. */
typedef struct gkp__http_callbacks {
  /* Optional.  The final (non-1xx) status line and headers are complete;
   * called at most once, before any on_data. */
  void (*on_status)(void *ud, int http_status);
  /* Optional.  Body bytes (already de-chunked), valid during the call.
   * Return 0 to go on; non-zero aborts the request (on_done then reports
   * aborted = 1). */
  int (*on_data)(void *ud, const char *bytes, size_t len);
  /* Required.  Exactly once.  *r and its strings are valid during the call;
   * the request is freed right after it returns. */
  void (*on_done)(void *ud, const gkp__http_result *r);
} gkp__http_callbacks;

/* What to send.  Everything is copied by gkp__http_start. */
typedef struct gkp__http_opts {
  const char *method;         /* "GET", "POST", ...; NULL: POST if body is set, else GET */
  const char *url;            /* required; must not carry secrets */
  const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
  const char *user_agent;     /* NULL: "gemini-key-pool/" GKP_VERSION */
  const void *body;           /* request body or NULL */
  size_t body_len;
  long connect_timeout_ms; /* 0: GKP__HTTP_CONNECT_TIMEOUT_MS */
  long low_speed_limit;    /* bytes/s; 0: GKP__HTTP_LOW_SPEED_LIMIT */
  long low_speed_time_s;   /* 0: GKP__HTTP_LOW_SPEED_TIME_S; < 0: no low-speed check.
                              curl averages the speed over its last ~5 s, so a stall
                              after some bytes aborts up to ~5 s later than this. */
  long timeout_ms;         /* 0: GKP__HTTP_TIMEOUT_MS; < 0: no overall limit */
} gkp__http_opts;

/*
 * Starts a request.  Loop thread only.  Returns 0 and (if out is non-NULL)
 * *out, a handle valid until on_done returns; or a negative errno with a
 * message in err and no callback will ever run: -EINVAL (no URL, no
 * on_done, or not called on the loop thread), -ENOMEM, -ESHUTDOWN (the loop
 * is stopping), -EIO (libcurl refused).
 */
int gkp__http_start(gkp__loop *loop, const gkp__http_opts *opts, const gkp__http_callbacks *cb,
                    void *ud, gkp__http_req **out, gkp_error *err);

/*
 * Cancels a request in flight.  on_done follows (later, from the loop, never
 * from inside this call) with cancelled = 1 and error "cancelled"; no
 * on_status/on_data after this call.  If the request has already finished
 * and only its on_done is pending, on_done reports the real result.
 * Cancelling twice is harmless.  Must not be called once on_done has run.
 * Loop thread, from any callback (including this request's own on_data).
 */
void gkp__http_cancel(gkp__http_req *req);

/* The request's id: stable, never 0, for gkp__http_cancel_async. */
uint64_t gkp__http_id(const gkp__http_req *req);

/*
 * Thread-safe cancellation by id: posts a cancel to the loop.  A request
 * that has already ended is not an error (nothing happens).  Returns 0,
 * -ESHUTDOWN if the loop is stopping (its requests get cancelled anyway), or
 * -ENOMEM.  Any thread.
 */
int gkp__http_cancel_async(gkp__loop *loop, uint64_t id);

#endif
