/*
 * bench_fs.c - the helper of scripts/bench-fs.
 *
 *   bench_fs upstream --port-file F [--hold-ms N] [--chunks N --chunk-ms M]
 *       A zero-cost Gemini upstream: an epoll HTTP/1.1 server (keep-alive, one
 *       thread) that answers every POST with the same small streamGenerateContent
 *       SSE answer, after holding it N ms (default 0).  With --chunks, a slow
 *       stream instead: N events (chunked encoding), one every M ms, the first
 *       at once.
 *   bench_fs direct --url BASE --n N
 *       N sequential requests with libcurl straight to BASE (one reused
 *       connection, as the engine's client reuses its connections); prints the
 *       latency percentiles.
 *   bench_fs mount --dir D --n N --threads T [--prefix P] [--no-read]
 *       T threads write N prompts into directory D of the mount and read every
 *       answer to EOF; prints jobs/s and the job latency percentiles.  With
 *       --no-read it only submits (for the pending-jobs measurement).
 *
 * Output lines are "key=value ..." for the script to pick up.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_TEXT "bench answer: the quick brown fox jumps over the lazy dog."

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *opt(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 2; i + 1 < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      return argv[i + 1];
    }
  }
  return dflt;
}

static int flag(int argc, char **argv, const char *name) {
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      return 1;
    }
  }
  return 0;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, double p) {
  if (n == 0) {
    return 0;
  }
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i];
}

/* ---- upstream ------------------------------------------------------------------ */

typedef struct conn {
  int fd;
  char in[65536];
  size_t inlen;
  char *out;
  size_t outlen, outoff;
  int alive;
  int pending; /* responses held in the queue */
  struct conn *next_free;
} conn;

typedef struct held {
  int64_t due_us;
  conn *c;
  int step; /* slow streams: events sent so far */
} held;

static char response[2048];
static size_t response_len;
static held *queue;
static size_t qhead, qtail, qcap;
static int epfd;

static void conn_close(conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->alive = 0;
  if (c->pending == 0) {
    free(c->out);
    free(c);
  }
}

static void conn_send(conn *c, const char *data, size_t len) {
  if (!c->alive) {
    return;
  }
  if (c->outlen == c->outoff) {
    ssize_t n = write(c->fd, data, len);
    if (n == (ssize_t)len) {
      return;
    }
    if (n < 0 && errno != EAGAIN) {
      conn_close(c);
      return;
    }
    if (n < 0) {
      n = 0;
    }
    data += n;
    len -= (size_t)n;
  }
  char *o = realloc(c->out, c->outlen + len);
  if (o == NULL) {
    conn_close(c);
    return;
  }
  c->out = o;
  memcpy(c->out + c->outlen, data, len);
  c->outlen += len;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void queue_push_step(conn *c, int64_t due, int step);

static void queue_push(conn *c, int64_t due) {
  queue_push_step(c, due, 0);
}

/* Slow streams (--chunks): how many events, how far apart. */
static int stream_chunks;
static int64_t stream_gap_us;
#define STREAM_EVENT                                                                               \
  "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"slow \"}],\"role\": "         \
  "\"model\"},\"index\": 0}]}\r\n\r\n"
#define STREAM_LAST                                                                                \
  "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"end\"}],\"role\": "          \
  "\"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": "                      \
  "{\"promptTokenCount\": 8,\"candidatesTokenCount\": 16,\"totalTokenCount\": 24}}\r\n\r\n"

/* Sends event `step` of a slow stream (its headers before the first) and
 * holds the next one back. */
static void stream_step(conn *c, int step, int64_t now) {
  char buf[1024];
  const char *ev = step == stream_chunks - 1 ? STREAM_LAST : STREAM_EVENT;
  int n = 0;
  if (step == 0) {
    n = snprintf(buf, sizeof buf,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
  }
  n += snprintf(buf + n, sizeof buf - (size_t)n, "%zx\r\n%s\r\n", strlen(ev), ev);
  if (step == stream_chunks - 1) {
    n += snprintf(buf + n, sizeof buf - (size_t)n, "0\r\n\r\n");
  }
  conn_send(c, buf, (size_t)n);
  if (step < stream_chunks - 1) {
    queue_push_step(c, now + stream_gap_us, step + 1);
  }
}

static void queue_push_step(conn *c, int64_t due, int step) {
  if (qtail - qhead == qcap) {
    size_t ncap = qcap ? qcap * 2 : 1024;
    held *n = malloc(ncap * sizeof *n);
    for (size_t i = 0; i < qtail - qhead; i++) {
      n[i] = queue[(qhead + i) % qcap];
    }
    qtail -= qhead;
    qhead = 0;
    free(queue);
    queue = n;
    qcap = ncap;
  }
  queue[qtail % qcap] = (held){due, c, step};
  qtail++;
  c->pending++;
}

/* Parses complete requests out of c->in; answers or holds each. */
static void conn_requests(conn *c, int64_t hold_us) {
  for (;;) {
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (end == NULL) {
      return;
    }
    size_t head = (size_t)(end - c->in) + 4, body = 0;
    for (char *p = c->in; p < end; p++) {
      if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
        body = strtoul(p + 15, NULL, 10);
      }
    }
    if (c->inlen < head + body) {
      return;
    }
    memmove(c->in, c->in + head + body, c->inlen - head - body);
    c->inlen -= head + body;
    if (stream_chunks > 0) {
      stream_step(c, 0, now_us());
    } else if (hold_us > 0) {
      queue_push(c, now_us() + hold_us);
    } else {
      conn_send(c, response, response_len);
    }
  }
}

static int cmd_upstream(int argc, char **argv) {
  const char *port_file = opt(argc, argv, "--port-file", NULL);
  int64_t hold_us = (int64_t)atol(opt(argc, argv, "--hold-ms", "0")) * 1000;
  stream_chunks = atoi(opt(argc, argv, "--chunks", "0"));
  stream_gap_us = (int64_t)atol(opt(argc, argv, "--chunk-ms", "100")) * 1000;
  const char *body_fmt =
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"" ANSWER_TEXT "\"}],"
      "\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],"
      "\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 16,"
      "\"totalTokenCount\": 24},\"modelVersion\": \"gemini-3-flash-preview\","
      "\"responseId\": \"bench\"}\r\n\r\n";
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;

  signal(SIGPIPE, SIG_IGN);
  response_len = (size_t)snprintf(response, sizeof response,
                                  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                  "Content-Length: %zu\r\n\r\n%s",
                                  strlen(body_fmt), body_fmt);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
    perror("bench_fs upstream");
    return 1;
  }
  if (port_file != NULL) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "%d\n", ntohs(sa.sin_port));
    fclose(f);
    rename(tmp, port_file);
  } else {
    printf("port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
  }
  epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int timeout = -1;
    if (qhead != qtail) {
      int64_t wait = queue[qhead % qcap].due_us - now_us();
      timeout = wait <= 0 ? 0 : (int)((wait + 999) / 1000);
    }
    int n = epoll_wait(epfd, evs, 256, timeout);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (c == NULL) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          c->fd = fd;
          c->alive = 1;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      if (!c->alive) {
        continue;
      }
      if (evs[i].events & EPOLLOUT) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w > 0) {
          c->outoff += (size_t)w;
        }
        if (c->outoff == c->outlen) {
          c->outoff = c->outlen = 0;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
        }
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
        if (r <= 0) {
          if (r == 0 || errno != EAGAIN) {
            conn_close(c);
          }
          continue;
        }
        c->inlen += (size_t)r;
        conn_requests(c, hold_us);
      }
    }
    int64_t t = now_us();
    while (qhead != qtail && queue[qhead % qcap].due_us <= t) {
      conn *c = queue[qhead % qcap].c;
      int step = queue[qhead % qcap].step;
      qhead++;
      c->pending--;
      if (c->alive && stream_chunks > 0) {
        stream_step(c, step, t);
      } else if (c->alive) {
        conn_send(c, response, response_len);
      } else if (c->pending == 0) {
        free(c->out);
        free(c);
      }
    }
  }
  return 0;
}

/* ---- direct ------------------------------------------------------------------------ */

static size_t sink_cb(char *p, size_t s, size_t n, void *ud) {
  size_t *got = ud;
  (void)p;
  *got += s * n;
  return s * n;
}

static int cmd_direct(int argc, char **argv) {
  const char *base = opt(argc, argv, "--url", NULL);
  size_t n = (size_t)atol(opt(argc, argv, "--n", "2000")), got = 0;
  char url[1024];
  const char *body = "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"bench prompt\"}]}]}";
  int64_t *lat = calloc(n, sizeof *lat);
  struct curl_slist *hdr = NULL;
  CURL *e;

  if (base == NULL) {
    fprintf(stderr, "bench_fs direct --url BASE\n");
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  e = curl_easy_init();
  snprintf(url, sizeof url, "%s/v1beta/models/gemini-3-flash-preview:streamGenerateContent?alt=sse",
           base);
  hdr = curl_slist_append(hdr, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "x-goog-api-key: BENCH-KEY");
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &got);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  for (size_t i = 0; i < n + 50; i++) {
    int64_t t0 = now_us();
    CURLcode rc = curl_easy_perform(e);
    int64_t t1 = now_us();
    if (rc != CURLE_OK) {
      fprintf(stderr, "bench_fs direct: %s\n", curl_easy_strerror(rc));
      return 1;
    }
    if (i >= 50) { /* warm-up first */
      lat[i - 50] = t1 - t0;
    }
  }
  qsort(lat, n, sizeof *lat, cmp_i64);
  printf("direct n=%zu p50_us=%lld p99_us=%lld\n", n, (long long)pct(lat, n, 0.5),
         (long long)pct(lat, n, 0.99));
  curl_easy_cleanup(e);
  curl_slist_free_all(hdr);
  free(lat);
  return 0;
}

/* ---- mount ------------------------------------------------------------------------- */

/* Time spent in each step of a job, summed over a worker's jobs (us). */
enum { PH_CREATE, PH_WRITE, PH_CLOSE, PH_OPEN_OUT, PH_FIRST, PH_REST, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"create",   "write",      "close_submit",
                                                  "open_out", "first_read", "rest_to_eof"};

typedef struct worker {
  pthread_t th;
  const char *dir, *prefix;
  int id, no_read;
  size_t first, count;
  int64_t *lat;
  size_t errors;
  int64_t phases[PH_COUNT];
} worker;

static int one_job(const char *dir, const char *name, size_t i, int no_read, int64_t *ph) {
  char path[4096], prompt[256], buf[65536];
  int fd, plen = snprintf(prompt, sizeof prompt, "bench prompt %zu: say something short\n", i);
  size_t total = 0;
  int64_t t = now_us(), t1;
#define PHASE(k)                                                                                   \
  do {                                                                                             \
    t1 = now_us();                                                                                 \
    ph[k] += t1 - t;                                                                               \
    t = t1;                                                                                        \
  } while (0)
  snprintf(path, sizeof path, "%s/%s", dir, name);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  PHASE(PH_CREATE);
  if (fd < 0 || write(fd, prompt, (size_t)plen) != plen) {
    return -1;
  }
  PHASE(PH_WRITE);
  if (close(fd) != 0) {
    return -1;
  }
  PHASE(PH_CLOSE);
  if (no_read) {
    return 0;
  }
  snprintf(path, sizeof path, "%s/%s.out", dir, name);
  fd = open(path, O_RDONLY);
  PHASE(PH_OPEN_OUT);
  if (fd < 0) {
    return -1;
  }
  for (int first = 1;; first = 0) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (first) {
      PHASE(PH_FIRST);
    }
    if (n < 0) {
      close(fd);
      return -1;
    }
    if (n == 0) {
      break;
    }
    total += (size_t)n;
  }
  close(fd);
  PHASE(PH_REST);
#undef PHASE
  return total == strlen(ANSWER_TEXT) ? 0 : -1;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  char name[256];
  for (size_t k = 0; k < w->count; k++) {
    size_t i = w->first + k;
    snprintf(name, sizeof name, "%s%d-%zu", w->prefix, w->id, k);
    int64_t t0 = now_us();
    if (one_job(w->dir, name, i, w->no_read, w->phases) != 0) {
      w->errors++;
    }
    w->lat[k] = now_us() - t0;
  }
  return NULL;
}

static int cmd_mount(int argc, char **argv) {
  const char *dir = opt(argc, argv, "--dir", NULL);
  const char *prefix = opt(argc, argv, "--prefix", "b");
  size_t n = (size_t)atol(opt(argc, argv, "--n", "10000"));
  int threads = atoi(opt(argc, argv, "--threads", "64")), no_read = flag(argc, argv, "--no-read");
  worker *w = calloc((size_t)threads, sizeof *w);
  int64_t *lat = calloc(n, sizeof *lat);
  size_t errors = 0, at = 0;

  if (dir == NULL || threads <= 0) {
    fprintf(stderr, "bench_fs mount --dir D --n N --threads T\n");
    return 2;
  }
  int64_t t0 = now_us();
  for (int t = 0; t < threads; t++) {
    w[t].dir = dir;
    w[t].prefix = prefix;
    w[t].id = t;
    w[t].no_read = no_read;
    w[t].first = at;
    w[t].count = n / (size_t)threads + ((size_t)t < n % (size_t)threads);
    w[t].lat = lat + at;
    at += w[t].count;
    pthread_create(&w[t].th, NULL, worker_main, &w[t]);
  }
  for (int t = 0; t < threads; t++) {
    pthread_join(w[t].th, NULL);
    errors += w[t].errors;
  }
  double secs = (double)(now_us() - t0) / 1e6;
  qsort(lat, n, sizeof *lat, cmp_i64);
  printf("mount n=%zu threads=%d seconds=%.3f jobs_per_s=%.0f p50_us=%lld p99_us=%lld "
         "errors=%zu",
         n, threads, secs, (double)n / secs, (long long)pct(lat, n, 0.5),
         (long long)pct(lat, n, 0.99), errors);
  for (int k = 0; k < PH_COUNT; k++) {
    int64_t sum = 0;
    for (int t = 0; t < threads; t++) {
      sum += w[t].phases[k];
    }
    printf(" %s_us=%.0f", phase_names[k], (double)sum / (double)n);
  }
  printf("\n");
  free(w);
  free(lat);
  return errors == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "upstream") == 0) {
    return cmd_upstream(argc, argv);
  }
  if (argc >= 2 && strcmp(argv[1], "direct") == 0) {
    return cmd_direct(argc, argv);
  }
  if (argc >= 2 && strcmp(argv[1], "mount") == 0) {
    return cmd_mount(argc, argv);
  }
  fprintf(stderr, "usage: bench_fs upstream|direct|mount ... (see bench_fs.c)\n");
  return 2;
}
