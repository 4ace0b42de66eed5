#include "client/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/timeutil.h"

#ifndef CURL_WRITEFUNC_ERROR /* before curl 7.87 any short count is an error */
#define CURL_WRITEFUNC_ERROR 0
#endif

struct gkp__http_req {
  gkp__loop_xfer xfer; /* first: the loop hands it back */
  gkp__loop *loop;
  uint64_t id;
  gkp__http_callbacks cb;
  void *ud;
  struct curl_slist *headers;
  char *body;
  long connect_timeout_ms, low_speed_limit, low_speed_time_s, timeout_ms;
  int64_t start_mono;
  uint64_t bytes;
  int status;
  int status_reported;
  int cancelled; /* no more callbacks but on_done */
  int receiver_abort;
  char errbuf[CURL_ERROR_SIZE];
  char errtext[128];
};

/* Wipes and frees the header lines (one of them may hold an API key). */
static void free_headers(struct curl_slist *h) {
  for (struct curl_slist *p = h; p != NULL; p = p->next) {
    if (p->data != NULL) {
      explicit_bzero(p->data, strlen(p->data));
    }
  }
  curl_slist_free_all(h);
}

/* ---- easy handles, reused ------------------------------------------------ */

/* The easy handles of ended requests, reset and kept for the next ones: a
 * thread's own (requests start and end on their loop's thread), freed when
 * it exits.  Creating a handle costs a dozen allocations; reusing one, a
 * reset. */
#define EASY_CACHE_MAX 64

typedef struct easy_cache {
  CURL *v[EASY_CACHE_MAX];
  size_t n;
} easy_cache;

static pthread_key_t easy_key;
static pthread_once_t easy_once = PTHREAD_ONCE_INIT;

static void easy_cache_free(void *p) {
  easy_cache *c = p;
  for (size_t i = 0; i < c->n; i++) {
    curl_easy_cleanup(c->v[i]);
  }
  free(c);
}

static void easy_key_make(void) {
  pthread_key_create(&easy_key, easy_cache_free);
}

static CURL *easy_get(void) {
  pthread_once(&easy_once, easy_key_make);
  easy_cache *c = pthread_getspecific(easy_key);
  if (c != NULL && c->n > 0) {
    return c->v[--c->n];
  }
  return curl_easy_init();
}

static void easy_put(CURL *e) {
  pthread_once(&easy_once, easy_key_make);
  easy_cache *c = pthread_getspecific(easy_key);
  if (c == NULL && (c = calloc(1, sizeof *c)) != NULL && pthread_setspecific(easy_key, c) != 0) {
    free(c);
    c = NULL;
  }
  if (c == NULL || c->n == EASY_CACHE_MAX) {
    curl_easy_cleanup(e);
    return;
  }
  curl_easy_reset(e); /* every option back to its default; connections stay in the multi */
  c->v[c->n++] = e;
}

static void req_free(gkp__http_req *req) {
  if (req->xfer.easy != NULL) {
    easy_put(req->xfer.easy);
  }
  free_headers(req->headers);
  free(req->body);
  free(req);
}

/* ---- curl callbacks (inside curl_multi_perform) ---------------------------- */

/* Reports the status once, when the final response's headers are complete. */
static void report_status(gkp__http_req *req) {
  if (req->status_reported) {
    return;
  }
  long code = 0;
  curl_easy_getinfo(req->xfer.easy, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200) {
    return; /* 1xx interim response, or nothing yet */
  }
  req->status = (int)code;
  req->status_reported = 1;
  if (req->cb.on_status != NULL) {
    req->cb.on_status(req->ud, req->status);
  }
}

static size_t header_cb(char *buf, size_t size, size_t n, void *arg) {
  gkp__http_req *req = arg;
  size_t len = size * n;
  if (req->cancelled) {
    return 0;
  }
  int blank = (len == 2 && buf[0] == '\r' && buf[1] == '\n') || (len == 1 && buf[0] == '\n');
  if (blank) {
    report_status(req);
  }
  return req->cancelled ? 0 : len;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *arg) {
  gkp__http_req *req = arg;
  size_t len = size * n;
  if (req->cancelled || req->receiver_abort) {
    return CURL_WRITEFUNC_ERROR;
  }
  report_status(req);
  if (req->cancelled) {
    return CURL_WRITEFUNC_ERROR;
  }
  req->bytes += len;
  if (req->cb.on_data != NULL && len > 0) {
    if (req->cb.on_data(req->ud, buf, len) != 0) {
      req->receiver_abort = 1;
      return CURL_WRITEFUNC_ERROR;
    }
  }
  return req->cancelled ? CURL_WRITEFUNC_ERROR : len;
}

/* ---- results --------------------------------------------------------------- */

/* "10 s" or "2.5 s". */
static void fmt_seconds(char *buf, size_t len, long ms) {
  if (ms % 1000 == 0) {
    snprintf(buf, len, "%ld s", ms / 1000);
  } else {
    snprintf(buf, len, "%.1f s", (double)ms / 1000.0);
  }
}

/* Describes a timeout: which of the three limits ended the request. */
static void describe_timeout(gkp__http_req *req, int64_t elapsed) {
  char s[32];
  const char *e = req->errbuf;
  if (strncmp(e, "Operation too slow", 18) == 0) {
    fmt_seconds(s, sizeof s, req->low_speed_time_s * 1000);
    snprintf(req->errtext, sizeof req->errtext, "stalled: less than %ld byte%s/s for %s",
             req->low_speed_limit, req->low_speed_limit == 1 ? "" : "s", s);
  } else if (strstr(e, "Operation timed out") != NULL ||
             (e[0] == '\0' && req->timeout_ms > 0 && elapsed >= req->timeout_ms)) {
    fmt_seconds(s, sizeof s, req->timeout_ms);
    snprintf(req->errtext, sizeof req->errtext, "timed out after %s", s);
  } else {
    fmt_seconds(s, sizeof s, req->connect_timeout_ms);
    snprintf(req->errtext, sizeof req->errtext, "timed out after %s connecting", s);
  }
}

/* A short reason for a transport failure, without secrets. */
static const char *describe_failure(gkp__http_req *req, CURLcode rc, int64_t elapsed) {
  long os_errno = 0;
  curl_easy_getinfo(req->xfer.easy, CURLINFO_OS_ERRNO, &os_errno);
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    describe_timeout(req, elapsed);
    return req->errtext;
  case CURLE_COULDNT_CONNECT:
    if (os_errno == ECONNREFUSED) {
      return "connection refused";
    }
    if (os_errno == ENETUNREACH || os_errno == EHOSTUNREACH) {
      return "network unreachable";
    }
    return "could not connect";
  case CURLE_COULDNT_RESOLVE_HOST:
    return "could not resolve the host name";
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "could not resolve the proxy host name";
  case CURLE_RECV_ERROR:
    return os_errno == ECONNRESET ? "connection reset" : "error receiving data";
  case CURLE_SEND_ERROR:
    return (os_errno == ECONNRESET || os_errno == EPIPE) ? "connection reset while sending"
                                                         : "error sending data";
  case CURLE_PARTIAL_FILE:
    return "connection closed before the whole answer arrived";
  case CURLE_GOT_NOTHING:
    return "the server closed the connection without answering";
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return "HTTP/2 stream error (connection reset)";
  case CURLE_PEER_FAILED_VERIFICATION:
    return "TLS certificate verification failed";
  case CURLE_SSL_CONNECT_ERROR:
    return "TLS handshake failed";
  case CURLE_WEIRD_SERVER_REPLY:
    return "the server sent a malformed HTTP answer";
  case CURLE_TOO_MANY_REDIRECTS:
    return "too many redirects";
  case CURLE_OUT_OF_MEMORY:
    return "out of memory";
  default:
    /* curl's own text for the code: generic, never the URL or headers. */
    snprintf(req->errtext, sizeof req->errtext, "%s", curl_easy_strerror(rc));
    return req->errtext;
  }
}

/* Whether a failed transfer never reached the server: curl's own codes for
 * failures before anything is sent, or no byte of the request written. */
static int nothing_sent(gkp__http_req *req, CURLcode rc) {
  long sent = 0;
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
    return 1;
  default:
    break;
  }
  /* CURLINFO_REQUEST_SIZE: the bytes of the request written so far. */
  if (curl_easy_getinfo(req->xfer.easy, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK) {
    return 0;
  }
  return sent == 0;
}

/* The loop's completion callback: reports on_done once and frees. */
static void xfer_done(gkp__loop_xfer *x, CURLcode rc, int aborted) {
  gkp__http_req *req = (gkp__http_req *)x;
  int64_t elapsed = gkp__mono_ms() - req->start_mono;
  gkp__http_result r = {0};
  r.curl_code = rc;
  r.bytes = req->bytes;
  r.elapsed_ms = elapsed;
  long code = 0;
  curl_easy_getinfo(req->xfer.easy, CURLINFO_RESPONSE_CODE, &code);
  r.http_status = code >= 200 ? (int)code : 0;
  if (aborted) {
    r.cancelled = 1;
    r.error = "cancelled";
  } else if (req->receiver_abort) {
    r.aborted = 1;
    r.error = "aborted by the receiver";
  } else if (rc != CURLE_OK) {
    r.timed_out = (rc == CURLE_OPERATION_TIMEDOUT);
    r.error = describe_failure(req, rc, elapsed);
    r.unsent = r.http_status == 0 && nothing_sent(req, rc);
  } else {
    r.error = "";
  }
  gkp__loop_handle_del(req->loop, req->id);
  req->cb.on_done(req->ud, &r);
  req_free(req);
}

/* ---- starting ------------------------------------------------------------- */

/* Fills in the option defaults. */
static void apply_defaults(gkp__http_req *req, const gkp__http_opts *o) {
  req->connect_timeout_ms =
      o->connect_timeout_ms > 0 ? o->connect_timeout_ms : GKP__HTTP_CONNECT_TIMEOUT_MS;
  req->low_speed_limit = o->low_speed_limit > 0 ? o->low_speed_limit : GKP__HTTP_LOW_SPEED_LIMIT;
  req->low_speed_time_s =
      o->low_speed_time_s != 0 ? o->low_speed_time_s : GKP__HTTP_LOW_SPEED_TIME_S;
  req->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : GKP__HTTP_TIMEOUT_MS;
}

/* Sets every easy option.  Returns 0 or a negative errno. */
static int setup_easy(gkp__http_req *req, const gkp__http_opts *o) {
  CURL *e = req->xfer.easy;
  int ok = 1;
#define SET(opt, val) ok = ok && (curl_easy_setopt(e, opt, val) == CURLE_OK)
  SET(CURLOPT_URL, o->url);
  SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  SET(CURLOPT_USERAGENT, o->user_agent != NULL ? o->user_agent : "gemini-key-pool/" GKP_VERSION);
  SET(CURLOPT_HTTPHEADER, req->headers);
  SET(CURLOPT_HEADERFUNCTION, header_cb);
  SET(CURLOPT_HEADERDATA, (void *)req);
  SET(CURLOPT_WRITEFUNCTION, write_cb);
  SET(CURLOPT_WRITEDATA, (void *)req);
  SET(CURLOPT_ERRORBUFFER, req->errbuf);
  SET(CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
  if (req->low_speed_time_s > 0) {
    SET(CURLOPT_LOW_SPEED_LIMIT, req->low_speed_limit);
    SET(CURLOPT_LOW_SPEED_TIME, req->low_speed_time_s);
  }
  if (req->timeout_ms > 0) {
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms);
  }
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TCP_KEEPIDLE, 60L);
  SET(CURLOPT_TCP_KEEPINTVL, 30L);
  SET(CURLOPT_PIPEWAIT, 1L);
  const char *method = o->method;
  if (method == NULL) {
    method = o->body != NULL ? "POST" : "GET";
  }
  if (strcmp(method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else {
    if (strcmp(method, "POST") != 0) {
      SET(CURLOPT_CUSTOMREQUEST, method);
    }
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    SET(CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
  }
#undef SET
  return ok ? 0 : -EINVAL;
}

/* Copies the caller's headers, adding "Expect:" (no 100-continue wait). */
static int copy_headers(gkp__http_req *req, const char *const *headers) {
  struct curl_slist *h = NULL;
  for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
    struct curl_slist *t = curl_slist_append(h, headers[i]);
    if (t == NULL) {
      free_headers(h);
      return -ENOMEM;
    }
    h = t;
  }
  struct curl_slist *t = curl_slist_append(h, "Expect:");
  if (t == NULL) {
    free_headers(h);
    return -ENOMEM;
  }
  req->headers = t;
  return 0;
}

int gkp__http_start(gkp__loop *loop, const gkp__http_opts *opts, const gkp__http_callbacks *cb,
                    void *ud, gkp__http_req **out, gkp_error *err) {
  if (out != NULL) {
    *out = NULL;
  }
  if (opts == NULL || opts->url == NULL || cb == NULL || cb->on_done == NULL) {
    return gkp__err(err, -EINVAL, "HTTP request without a URL or a completion callback");
  }
  if (!gkp__loop_in_thread(loop)) {
    return gkp__err(err, -EINVAL, "HTTP requests must be started on the I/O loop thread");
  }
  gkp__http_req *req = calloc(1, sizeof *req);
  if (req == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory starting an HTTP request");
  }
  req->loop = loop;
  req->cb = *cb;
  req->ud = ud;
  req->start_mono = gkp__mono_ms();
  apply_defaults(req, opts);
  int rc = -ENOMEM;
  if (opts->body != NULL) {
    req->body = malloc(opts->body_len + 1);
    if (req->body == NULL) {
      goto fail;
    }
    memcpy(req->body, opts->body, opts->body_len);
    req->body[opts->body_len] = '\0';
  }
  if (copy_headers(req, opts->headers) < 0) {
    goto fail;
  }
  req->xfer.easy = easy_get();
  if (req->xfer.easy == NULL) {
    goto fail;
  }
  req->xfer.done = xfer_done;
  rc = setup_easy(req, opts);
  if (rc < 0) {
    gkp__err(err, -EINVAL, "libcurl refused an option of the request");
    goto fail_msg;
  }
  req->id = gkp__loop_handle_add(loop, GKP__HANDLE_HTTP, req);
  if (req->id == 0) {
    rc = -ENOMEM;
    goto fail;
  }
  rc = gkp__loop_xfer_add(loop, &req->xfer);
  if (rc < 0) {
    gkp__loop_handle_del(loop, req->id);
    if (rc == -ESHUTDOWN) {
      gkp__err(err, rc, "the I/O loop is shutting down");
    } else {
      gkp__err(err, rc, "libcurl refused the request");
    }
    goto fail_msg;
  }
  if (out != NULL) {
    *out = req;
  }
  return 0;
fail:
  gkp__err(err, rc, "out of memory starting an HTTP request");
fail_msg:
  req_free(req);
  return rc;
}

void gkp__http_cancel(gkp__http_req *req) {
  if (gkp__loop_xfer_abort(req->loop, &req->xfer, CURLE_ABORTED_BY_CALLBACK)) {
    req->cancelled = 1;
  }
}

uint64_t gkp__http_id(const gkp__http_req *req) {
  return req->id;
}

static void cancel_by_handle(void *ptr) {
  gkp__http_cancel(ptr);
}

int gkp__http_cancel_async(gkp__loop *loop, uint64_t id) {
  return gkp__loop_post_handle(loop, id, GKP__HANDLE_HTTP, cancel_by_handle);
}
