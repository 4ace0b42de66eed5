/*
 * server.c - the HTTP daemon on libmicrohttpd.
 *
 * One internal polling thread (epoll) serves every connection.  A request
 * whose answer is not ready (waiting for a key, or for the next bytes of a
 * stream) is suspended; the runner's loop thread resumes it when something
 * arrives.  Stream bytes go out only as fast as the caller's socket takes
 * them (the content reader is called when the socket is writable).
 *
 * A watchdog thread does what libmicrohttpd cannot while a connection is
 * suspended: it notices callers that hung up (and cancels their jobs), and
 * it drops connections whose request headers do not complete in time
 * (slowloris): the first request's within the header deadline of the
 * connection opening; a later request's line within the idle timeout of
 * the previous answer, and its headers within the header deadline of that
 * line.
 *
 * A whole body is parsed and translated by one of FRONT_WORKERS body
 * workers, never on the polling thread, so that one large or crafted body
 * cannot stall every other connection.  Bodies held (read, queued, or
 * copied into a job) and their parsing count against one ceiling,
 * max_memory; a request that would pass it gets 503 with Retry-After.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "http/front_impl.h"

#define DEFAULT_MAX_BODY ((size_t)32 * 1024 * 1024)
#define DEFAULT_IDLE_S 60
#define DEFAULT_CONN_LIMIT 16384
#define DEFAULT_MAX_MEMORY ((size_t)1 << 30)
#define WATCHDOG_MS 200
/* libmicrohttpd allocates (and clears) a buffer this large with every
 * streamed response: 16 KiB cost a fifth of the polling thread's time. */
#define STREAM_CHUNK 4096

/* ---- the log ----------------------------------------------------------------- */

void front_log_escape(const char *line, char *out, size_t outlen) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (outlen == 0) {
    return;
  }
  for (const unsigned char *p = (const unsigned char *)line; *p != '\0'; p++) {
    char e[5];
    size_t n = 0;
    if (*p == '\\') {
      e[n++] = '\\';
      e[n++] = '\\';
    } else if (*p == '\n' || *p == '\r' || *p == '\t') {
      e[n++] = '\\';
      e[n++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
    } else if (*p < 0x20 || *p == 0x7f) {
      e[n++] = '\\';
      e[n++] = 'x';
      e[n++] = hex[*p >> 4];
      e[n++] = hex[*p & 15];
    } else {
      e[n++] = (char)*p;
    }
    if (o + n >= outlen) {
      break;
    }
    memcpy(out + o, e, n);
    o += n;
  }
  out[o] = '\0';
}

void front_log(gkp__front *f, const char *line) {
  char safe[2400];
  front_log_escape(line, safe, sizeof safe);
  if (f->opts.log != NULL) {
    f->opts.log(f->opts.log_ud, safe);
  } else {
    fprintf(stderr, "gemini-pool: %s\n", safe);
  }
}

/* ---- the memory ceiling ------------------------------------------------------------ */

int front_mem_take(hreq *q, size_t n) {
  gkp__front *f = q->f;
  size_t cur = atomic_load(&f->mem_used);
  do {
    if (n > f->opts.max_memory || cur > f->opts.max_memory - n) {
      return -ENOMEM;
    }
  } while (!atomic_compare_exchange_weak(&f->mem_used, &cur, cur + n));
  q->mem += n;
  return 0;
}

int front_mem_set(hreq *q, size_t n) {
  if (n > q->mem) {
    return front_mem_take(q, n - q->mem);
  }
  atomic_fetch_sub(&q->f->mem_used, q->mem - n);
  q->mem = n;
  return 0;
}

/* ---- requests ------------------------------------------------------------------ */

void front_req_unref(hreq *q) {
  if (atomic_fetch_sub(&q->refs, 1) != 1) {
    return;
  }
  if (q->pending != NULL) {
    MHD_destroy_response(q->pending);
  }
  gkp__dynbuf_reset(&q->body);
  gkp__dynbuf_reset(&q->out);
  free(q->reply);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

void front_wake(hreq *q) {
  pthread_mutex_lock(&q->mu);
  if (q->suspended) {
    q->suspended = 0;
    MHD_resume_connection(q->conn);
  }
  pthread_mutex_unlock(&q->mu);
}

void front_suspend(hreq *q) {
  pthread_mutex_lock(&q->mu);
  if (!q->ready) {
    q->suspended = 1;
    MHD_suspend_connection(q->conn);
  }
  pthread_mutex_unlock(&q->mu);
}

static void add_common_headers(hreq *q, struct MHD_Response *r, const char *ctype,
                               int64_t retry_after_s) {
  char num[32];
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  if (q->close_conn) {
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  }
  if (q->key_id[0] != '\0') {
    MHD_add_response_header(r, "x-pool-key", q->key_id);
  }
  if (q->model_used[0] != '\0') {
    MHD_add_response_header(r, "x-pool-model", q->model_used);
  }
  if (q->pool_route[0] != '\0') {
    MHD_add_response_header(r, "x-pool-route", q->pool_route);
  }
  if (retry_after_s > 0) {
    snprintf(num, sizeof num, "%lld", (long long)retry_after_s);
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, num);
  }
}

int front_reply(hreq *q, int status, const char *ctype, const char *body, size_t len,
                int64_t retry_after_s) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL) {
    return -ENOMEM;
  }
  add_common_headers(q, r, ctype, retry_after_s);
  q->status = status;
  q->replied = 1;
  if (q->in_headers && !q->close_conn) {
    /* Queued before the body, libmicrohttpd would close the connection. */
    q->pending = r;
    return 0;
  }
  enum MHD_Result ok = MHD_queue_response(q->conn, (unsigned)status, r);
  MHD_destroy_response(r);
  return ok == MHD_YES ? 0 : -EIO;
}

/* The content reader of a streamed answer: what is buffered, the end, or
 * (nothing yet) a suspension until the runner has more. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  hreq *q = cls;
  (void)pos;
  pthread_mutex_lock(&q->mu);
  size_t avail = gkp__dynbuf_len(&q->out) - q->out_off;
  if (avail > 0) {
    size_t n = avail < max ? avail : max;
    memcpy(buf, gkp__dynbuf_ptr(&q->out) + q->out_off, n);
    q->out_off += n;
    if (q->out_off == gkp__dynbuf_len(&q->out)) {
      gkp__dynbuf_clear(&q->out);
      q->out_off = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return (ssize_t)n;
  }
  if (q->finished) {
    pthread_mutex_unlock(&q->mu);
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  q->suspended = 1;
  MHD_suspend_connection(q->conn);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

/* Queues the response of a stream that has begun (polling thread). */
int front_stream_start(hreq *q, const char *ctype);
int front_stream_start(hreq *q, const char *ctype) {
  struct MHD_Response *r =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_CHUNK, stream_read, q, NULL);
  if (r == NULL) {
    return -ENOMEM;
  }
  add_common_headers(q, r, ctype, 0);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  q->status = 200;
  q->replied = 1;
  enum MHD_Result ok = MHD_queue_response(q->conn, 200, r);
  MHD_destroy_response(r);
  return ok == MHD_YES ? 0 : -EIO;
}

/* ---- libmicrohttpd's callbacks ------------------------------------------------------- */

static hreq *req_new(gkp__front *f, struct MHD_Connection *conn, const char *method,
                     const char *url) {
  hreq *q = calloc(1, sizeof *q);
  if (q == NULL) {
    return NULL;
  }
  q->f = f;
  q->conn = conn;
  atomic_init(&q->refs, 1);
  pthread_mutex_init(&q->mu, NULL);
  q->started_ms = gkp__mono_ms();
  snprintf(q->method, sizeof q->method, "%s", method);
  snprintf(q->path, sizeof q->path, "%s", url);
  gkp__dynbuf_init(&q->body, f->opts.max_body);
  gkp__dynbuf_init(&q->out, FRONT_MAX_STREAM_BUF);
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (ci != NULL && ci->socket_context != NULL) {
    q->hc = ci->socket_context;
    atomic_store(&q->hc->got_request, 1);
    pthread_mutex_lock(&f->mu);
    q->hc->req = q;
    pthread_mutex_unlock(&f->mu);
  }
  return q;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
  gkp__front *f = cls;
  hreq *q = *con_cls;
  (void)version;
  if (q == NULL) {
    q = req_new(f, conn, method, url);
    if (q == NULL) {
      return MHD_NO;
    }
    *con_cls = q;
    q->in_headers = 1;
    routes_begin(q, method, url);
    q->in_headers = 0;
    return MHD_YES;
  }
  if (q->replied) {
    if (*upload_size > 0) { /* answered from the headers (401, 404, 429 ...): dropped */
      *upload_size = 0;
      return MHD_YES;
    }
    if (q->pending != NULL) { /* the body is over: the answer goes out */
      struct MHD_Response *r = q->pending;
      q->pending = NULL;
      MHD_queue_response(conn, (unsigned)q->status, r);
      MHD_destroy_response(r);
    }
    return MHD_YES;
  }
  if (*upload_size > 0) {
    /* Over the limit (a chunked body, or one longer than it said): the rest
     * is read and dropped, and the answer is 413.  (libmicrohttpd sends a
     * reply queued in the middle of a body only once the body has ended.) */
    if (!q->too_big && !q->over_memory) {
      if (gkp__dynbuf_add(&q->body, upload_data, *upload_size) != 0) {
        gkp__dynbuf_reset(&q->body);
        q->too_big = 1;
      } else if (q->body.alloc > q->mem && front_mem_set(q, q->body.alloc) != 0) {
        gkp__dynbuf_reset(&q->body); /* a chunked body past the ceiling */
        front_mem_set(q, 0);
        q->over_memory = 1;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (!q->submitted) {
    routes_body_done(q);
    return MHD_YES;
  }
  routes_resumed(q);
  return MHD_YES;
}

/* The request line of a request is in (before its headers): its header
 * deadline starts. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  (void)cls;
  (void)uri;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (ci != NULL && ci->socket_context != NULL) {
    hconn *hc = ci->socket_context;
    atomic_store(&hc->line_ms, gkp__mono_ms());
  }
  return NULL;
}

/* How a request ended, for its log line ("" when it completed). */
static const char *toe_text(enum MHD_RequestTerminationCode toe) {
  switch (toe) {
  case MHD_REQUEST_TERMINATED_COMPLETED_OK:
    return "";
  case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
    return " (closed: idle timeout)";
  case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
    return " (closed: shutting down)";
  case MHD_REQUEST_TERMINATED_READ_ERROR:
    return " (closed: read error)";
  case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
    return " (closed by the client)";
  default:
    return " (closed: connection error)";
  }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  gkp__front *f = cls;
  hreq *q = *con_cls;
  char line[600];
  (void)conn;
  if (q == NULL) {
    return;
  }
  *con_cls = NULL;
  pthread_mutex_lock(&f->mu);
  if (q->hc != NULL && q->hc->req == q) {
    q->hc->req = NULL;
  }
  if (q->hc != NULL) { /* the next request's deadlines count from now */
    atomic_store(&q->hc->line_ms, 0);
    atomic_store(&q->hc->opened_ms, gkp__mono_ms());
    atomic_store(&q->hc->got_request, 0);
    q->hc->served++;
  }
  if (q->held) { /* still in its caller's queue */
    hreq **pp = &q->cl->held_head, *prev = NULL;
    while (*pp != NULL && *pp != q) {
      prev = *pp;
      pp = &(*pp)->held_next;
    }
    if (*pp == q) {
      *pp = q->held_next;
      if (q->cl->held_tail == q) {
        q->cl->held_tail = prev;
      }
    }
    q->held = 0;
  }
  pthread_mutex_unlock(&f->mu);
  /* The front is done with its body (a job still holding it is being
   * cancelled): the count goes now, while the front surely exists (the last
   * reference may be dropped on the loop thread after the front stopped). */
  front_mem_set(q, 0);
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  if (q->job != NULL) {
    gkp__job_cancel(q->job); /* its on_done follows and lets go of the job */
  }
  snprintf(line, sizeof line, "http: client=%s %s %s model=%s key=%s status=%d ms=%lld%s",
           q->cl != NULL ? q->cl->cfg->id : "-", q->method, q->path,
           q->model_used[0] ? q->model_used : (q->model[0] ? q->model : "-"),
           q->key_id[0] ? q->key_id : "-", q->status, (long long)(gkp__mono_ms() - q->started_ms),
           toe_text(toe));
  pthread_mutex_unlock(&q->mu);
  front_log(f, line);
  front_req_unref(q);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  gkp__front *f = cls;
  hconn *hc = *socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    hc = calloc(1, sizeof *hc);
    if (hc == NULL) {
      return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    hc->fd = ci != NULL ? ci->connect_fd : -1;
    hc->opened_ms = gkp__mono_ms();
    pthread_mutex_lock(&f->mu);
    hc->next = f->conns;
    if (f->conns != NULL) {
      f->conns->prev = hc;
    }
    f->conns = hc;
    f->nconns++;
    pthread_mutex_unlock(&f->mu);
    *socket_context = hc;
    return;
  }
  if (hc == NULL) {
    return;
  }
  pthread_mutex_lock(&f->mu);
  if (hc->prev != NULL) {
    hc->prev->next = hc->next;
  } else {
    f->conns = hc->next;
  }
  if (hc->next != NULL) {
    hc->next->prev = hc->prev;
  }
  f->nconns--;
  pthread_mutex_unlock(&f->mu);
  free(hc);
  *socket_context = NULL;
}

/* ---- the watchdog ------------------------------------------------------------------- */

/* Whether the peer of a suspended connection hung up. */
static int peer_gone(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Whether a connection is late with the headers of its next request. */
static int headers_late(const gkp__front *f, hconn *hc, int64_t now) {
  int64_t header_ms = (int64_t)f->opts.header_timeout_s * 1000;
  int64_t idle_ms = (int64_t)f->opts.idle_timeout_s * 1000;
  int64_t opened = atomic_load(&hc->opened_ms), line = atomic_load(&hc->line_ms);
  if (atomic_load(&hc->got_request) || hc->fd < 0) {
    return 0;
  }
  if (hc->served == 0) {
    return now - opened > header_ms; /* the first request: from the connection */
  }
  return line != 0 ? now - line > header_ms : now - opened > idle_ms;
}

static void watchdog_pass(gkp__front *f) {
  int64_t now = gkp__mono_ms();
  pthread_mutex_lock(&f->mu);
  for (hconn *hc = f->conns; hc != NULL; hc = hc->next) {
    if (headers_late(f, hc, now)) {
      shutdown(hc->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
      hc->fd = -1;
      continue;
    }
    hreq *q = hc->req;
    if (q == NULL) {
      continue;
    }
    pthread_mutex_lock(&q->mu);
    if (q->suspended && q->job != NULL && !q->finished && hc->fd >= 0 && peer_gone(hc->fd)) {
      gkp__job_cancel(q->job);
    }
    pthread_mutex_unlock(&q->mu);
  }
  pthread_mutex_unlock(&f->mu);
}

static void *watchdog_main(void *arg) {
  gkp__front *f = arg;
  while (!atomic_load(&f->stopping)) {
    struct timespec ts = {0, WATCHDOG_MS * 1000000L};
    nanosleep(&ts, NULL);
    watchdog_pass(f);
  }
  return NULL;
}

/* ---- the body workers ------------------------------------------------------------------ */

void front_work_post(hreq *q) {
  gkp__front *f = q->f;
  atomic_fetch_add(&q->refs, 1); /* the worker's */
  pthread_mutex_lock(&q->mu);
  q->working = 1;
  pthread_mutex_unlock(&q->mu);
  pthread_mutex_lock(&f->work_mu);
  if (f->work_stop) { /* no worker left: answered here, without parsing */
    pthread_mutex_unlock(&f->work_mu);
    routes_body_work(q);
    front_req_unref(q);
    return;
  }
  q->work_next = NULL;
  if (f->work_tail != NULL) {
    f->work_tail->work_next = q;
  } else {
    f->work_head = q;
  }
  f->work_tail = q;
  pthread_cond_signal(&f->work_cv);
  pthread_mutex_unlock(&f->work_mu);
}

static void *worker_main(void *arg) {
  gkp__front *f = arg;
  pthread_mutex_lock(&f->work_mu);
  for (;;) {
    while (f->work_head == NULL && !f->work_stop) {
      pthread_cond_wait(&f->work_cv, &f->work_mu);
    }
    hreq *q = f->work_head;
    if (q == NULL) {
      break;
    }
    f->work_head = q->work_next;
    if (f->work_head == NULL) {
      f->work_tail = NULL;
    }
    pthread_mutex_unlock(&f->work_mu);
    routes_body_work(q);
    front_req_unref(q);
    pthread_mutex_lock(&f->work_mu);
  }
  pthread_mutex_unlock(&f->work_mu);
  return NULL;
}

/* Lets the workers finish what is queued, then ends them. */
static void workers_stop(gkp__front *f) {
  pthread_mutex_lock(&f->work_mu);
  f->work_stop = 1;
  pthread_cond_broadcast(&f->work_cv);
  pthread_mutex_unlock(&f->work_mu);
  for (int i = 0; i < f->nworkers; i++) {
    pthread_join(f->workers[i], NULL);
  }
  f->nworkers = 0;
}

/* ---- listening ----------------------------------------------------------------------- */

static int listen_unix(gkp__front *f, const char *path, gkp_error *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) {
    return gkp__err(err, -ENAMETOOLONG, "--listen unix:%s: the path is too long", path);
  }
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return gkp__err(err, -errno, "--listen: socket: %s", strerror(errno));
  }
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
    unlink(path); /* a stale socket of an earlier run */
  }
  mode_t old = umask(0077); /* the socket is the caller's only */
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
  umask(old);
  if (rc != 0 || listen(fd, 4096) != 0) {
    int e = errno;
    close(fd);
    return gkp__err(err, -e, "--listen unix:%s: %s", path, strerror(e));
  }
  f->unix_path = strdup(path);
  snprintf(f->address, sizeof f->address, "unix:%s", path);
  return fd;
}

/* Parses "HOST:PORT" or "[V6]:PORT" into sa.  Returns 0 or -EINVAL. */
static int parse_inet(const char *a, struct sockaddr_storage *ss, socklen_t *len, int *loopback) {
  char host[256];
  const char *colon;
  if (a[0] == '[') {
    const char *end = strchr(a, ']');
    if (end == NULL || end[1] != ':' || (size_t)(end - a - 1) >= sizeof host) {
      return -EINVAL;
    }
    snprintf(host, sizeof host, "%.*s", (int)(end - a - 1), a + 1);
    colon = end + 1;
  } else {
    colon = strrchr(a, ':');
    if (colon == NULL || (size_t)(colon - a) >= sizeof host) {
      return -EINVAL;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - a), a);
  }
  char *endp;
  long port = strtol(colon + 1, &endp, 10);
  if (colon[1] == '\0' || *endp != '\0' || port < 0 || port > 65535) {
    return -EINVAL;
  }
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    *len = sizeof *s4;
    *loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    *len = sizeof *s6;
    *loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    return 0;
  }
  return -EINVAL;
}

static int listen_inet(gkp__front *f, const char *a, int need_loopback, gkp_error *err) {
  struct sockaddr_storage ss;
  socklen_t len;
  int loopback = 0, one = 1;
  if (parse_inet(a, &ss, &len, &loopback) != 0) {
    return gkp__err(err, -EINVAL,
                    "--listen %s: not an address; write 127.0.0.1:8787, [::1]:8787 or "
                    "unix:/path",
                    a);
  }
  if (need_loopback && !loopback) {
    return gkp__err(err, -EPERM,
                    "--listen %s: without \"clients\" in %s the front serves anyone who can "
                    "connect, so it listens only on loopback or a unix socket; add clients "
                    "with tokens to listen here",
                    a, gkp_pool_config_path(f->pool));
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return gkp__err(err, -errno, "--listen: socket: %s", strerror(errno));
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0) {
    int e = errno;
    close(fd);
    return gkp__err(err, -e, "--listen %s: %s", a, strerror(e));
  }
  len = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &len);
  char host[INET6_ADDRSTRLEN];
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    snprintf(f->address, sizeof f->address, "%s:%u", host, ntohs(s4->sin_port));
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    snprintf(f->address, sizeof f->address, "[%s]:%u", host, ntohs(s6->sin6_port));
  }
  return fd;
}

/* ---- start and stop -------------------------------------------------------------------- */

const char *gkp__front_address(const gkp__front *f) {
  return f->address;
}

static void front_free(gkp__front *f) {
  callers_free(f);
  for (size_t i = 0; i < f->nmodels; i++) {
    free(f->models[i]);
  }
  free(f->models);
  if (f->unix_path != NULL) {
    unlink(f->unix_path);
    free(f->unix_path);
  }
  pthread_mutex_destroy(&f->work_mu);
  pthread_cond_destroy(&f->work_cv);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

int front_models_init(gkp__front *f, gkp_error *err);

int gkp__front_start(gkp_pool *pool, gkp__runner *runner, const gkp__front_opts *opts,
                     gkp__front **out, gkp_error *err) {
  gkp__front *f = calloc(1, sizeof *f);
  int rc, fd;
  *out = NULL;
  if (f == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  f->pool = pool;
  f->runner = runner;
  f->opts = *opts;
  f->opts.max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
  f->opts.idle_timeout_s = opts->idle_timeout_s ? opts->idle_timeout_s : DEFAULT_IDLE_S;
  f->opts.header_timeout_s =
      opts->header_timeout_s ? opts->header_timeout_s : f->opts.idle_timeout_s;
  f->opts.connection_limit = opts->connection_limit ? opts->connection_limit : DEFAULT_CONN_LIMIT;
  f->opts.max_memory = opts->max_memory ? opts->max_memory : DEFAULT_MAX_MEMORY;
  pthread_mutex_init(&f->mu, NULL);
  pthread_mutex_init(&f->work_mu, NULL);
  pthread_cond_init(&f->work_cv, NULL);
  const char *listen_at = opts->listen != NULL ? opts->listen : "127.0.0.1:8787";
  if ((rc = callers_init(f, err)) != 0 || (rc = front_models_init(f, err)) != 0) {
    front_free(f);
    return rc;
  }
  fd = strncmp(listen_at, "unix:", 5) == 0 ? listen_unix(f, listen_at + 5, err)
                                           : listen_inet(f, listen_at, f->clients == NULL, err);
  if (fd < 0) {
    front_free(f);
    return fd;
  }
  f->d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO, 0,
      NULL, NULL, on_request, f, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, f, MHD_OPTION_NOTIFY_CONNECTION, on_connection, f,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)f->opts.idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)f->opts.connection_limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_URI_LOG_CALLBACK, on_uri, f,
      MHD_OPTION_END);
  if (f->d == NULL) {
    close(fd);
    front_free(f);
    return gkp__err(err, -EIO, "--listen %s: the HTTP server did not start", listen_at);
  }
  for (int i = 0; i < FRONT_WORKERS; i++) {
    if (pthread_create(&f->workers[f->nworkers], NULL, worker_main, f) == 0) {
      f->nworkers++;
    }
  }
  if (f->nworkers == 0) {
    MHD_stop_daemon(f->d);
    close(fd);
    front_free(f);
    return gkp__err(err, -EAGAIN, "--listen %s: no thread for the body workers", listen_at);
  }
  if (pthread_create(&f->watchdog, NULL, watchdog_main, f) == 0) {
    f->watchdog_started = 1;
  }
  if (f->clients == NULL) {
    char line[600];
    snprintf(line, sizeof line,
             "http: no \"clients\" in %s: serving %s without tokens (loopback or unix socket "
             "only)",
             gkp_pool_config_path(pool), f->address);
    front_log(f, line);
  }
  *out = f;
  return 0;
}

/* Cancels every job of a request still connected and wakes it, so that no
 * connection is left suspended when the daemon stops. */
static int cancel_all(gkp__front *f) {
  int suspended = 0;
  pthread_mutex_lock(&f->mu);
  for (hconn *hc = f->conns; hc != NULL; hc = hc->next) {
    hreq *q = hc->req;
    if (q == NULL) {
      continue;
    }
    pthread_mutex_lock(&q->mu);
    if (q->job != NULL) {
      gkp__job_cancel(q->job);
    }
    if (q->working) { /* a worker ends it (503: stopping) */
      suspended++;
    } else if (q->suspended) {
      suspended++;
      if (q->job == NULL) { /* held back, never submitted: end it */
        q->finished = 1;
        q->ready = 1;
        q->suspended = 0;
        MHD_resume_connection(q->conn);
      }
    }
    pthread_mutex_unlock(&q->mu);
  }
  pthread_mutex_unlock(&f->mu);
  return suspended;
}

void gkp__front_stop(gkp__front *f) {
  if (f == NULL) {
    return;
  }
  atomic_store(&f->stopping, 1);
  if (f->watchdog_started) {
    pthread_join(f->watchdog, NULL);
  }
  int fd = MHD_quiesce_daemon(f->d);
  for (int i = 0; i < 500 && cancel_all(f) > 0; i++) {
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  workers_stop(f);
  MHD_stop_daemon(f->d);
  if (fd >= 0) {
    close(fd);
  }
  front_free(f);
}
