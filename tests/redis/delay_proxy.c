/*
 * delay_proxy.c - a TCP proxy that holds every byte back a fixed delay in
 * each direction, to put a local redis-server "one millisecond away".
 *
 *   delay_proxy --listen-port-file F --to HOST:PORT [--delay-ms 1]
 *               [--stall-ms 6000] [--port P]
 *
 * Listens on loopback (port P, or a free one), writes the port to F once
 * listening, connects each client to HOST:PORT and forwards what either
 * side sends after the delay, in order.  SIGUSR1 makes the server slow:
 * what arrives from then on is held back --stall-ms instead, until SIGUSR2.
 * SIGTERM ends it and every connection with it (a lost server); the tests
 * start a new one on the same port to bring the server back.  One thread,
 * epoll; the tests and scripts/bench-http use it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct chunk {
  struct chunk *next;
  int64_t due_us;
  size_t len, off;
  char data[];
} chunk;

/* One direction of a connection: bytes read from `from`, written to `to`. */
typedef struct dir {
  struct pair *owner;
  int from, to;
  chunk *head, *tail;
  int64_t last_due;
  int eof;  /* `from` said end of file */
  int shut; /* `to` was told so */
} dir;

typedef struct pair {
  dir d[2]; /* 0: client to server; 1: server to client */
  struct pair *next, *prev;
  int dead;
} pair;

static pair *pairs;
static volatile sig_atomic_t slow, stop;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_signal(int sig) {
  if (sig == SIGUSR1) {
    slow = 1;
  } else if (sig == SIGUSR2) {
    slow = 0;
  } else {
    stop = 1;
  }
}

static void pair_free(pair *p) {
  for (int i = 0; i < 2; i++) {
    while (p->d[i].head != NULL) {
      chunk *c = p->d[i].head;
      p->d[i].head = c->next;
      free(c);
    }
  }
  close(p->d[0].from);
  close(p->d[0].to);
  if (p->prev != NULL) {
    p->prev->next = p->next;
  } else {
    pairs = p->next;
  }
  if (p->next != NULL) {
    p->next->prev = p->prev;
  }
  free(p);
}

/* Reads what `d->from` has and queues it with its due time. */
static void pump_in(pair *p, dir *d, int64_t delay_us) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(d->from, buf, sizeof buf);
    if (n > 0) {
      chunk *c = malloc(sizeof *c + (size_t)n);
      if (c == NULL) {
        p->dead = 1;
        return;
      }
      int64_t due = now_us() + delay_us;
      c->due_us = due > d->last_due ? due : d->last_due;
      d->last_due = c->due_us;
      c->len = (size_t)n;
      c->off = 0;
      c->next = NULL;
      memcpy(c->data, buf, (size_t)n);
      if (d->tail != NULL) {
        d->tail->next = c;
      } else {
        d->head = c;
      }
      d->tail = c;
      continue;
    }
    if (n == 0) {
      d->eof = 1;
    } else if (errno != EAGAIN && errno != EINTR) {
      p->dead = 1;
    }
    return;
  }
}

/* Writes what is due; returns the next due time (INT64_MAX: none). */
static int64_t pump_out(pair *p, dir *d, int64_t now) {
  while (d->head != NULL && d->head->due_us <= now) {
    chunk *c = d->head;
    ssize_t n = write(d->to, c->data + c->off, c->len - c->off);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        return now + 1000; /* the reader is slow: look again soon */
      }
      p->dead = 1;
      return INT64_MAX;
    }
    c->off += (size_t)n;
    if (c->off < c->len) {
      return now + 1000;
    }
    d->head = c->next;
    if (d->head == NULL) {
      d->tail = NULL;
    }
    free(c);
  }
  if (d->head == NULL && d->eof && !d->shut) {
    shutdown(d->to, SHUT_WR);
    d->shut = 1;
  }
  return d->head != NULL ? d->head->due_us : INT64_MAX;
}

static int connect_to(const char *host, int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
      connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    if (fd >= 0) {
      close(fd);
    }
    return -1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

static const char *opt(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      return argv[i + 1];
    }
  }
  return dflt;
}

int main(int argc, char **argv) {
  const char *port_file = opt(argc, argv, "--listen-port-file", NULL);
  const char *to = opt(argc, argv, "--to", NULL);
  int64_t delay_us = (int64_t)(atof(opt(argc, argv, "--delay-ms", "1")) * 1000);
  int64_t stall_us = (int64_t)(atof(opt(argc, argv, "--stall-ms", "6000")) * 1000);
  int port = atoi(opt(argc, argv, "--port", "0")), one = 1;
  char host[256];
  int to_port;
  if (port_file == NULL || to == NULL || sscanf(to, "%255[^:]:%d", host, &to_port) != 2) {
    fprintf(stderr, "usage: delay_proxy --listen-port-file F --to HOST:PORT [--delay-ms MS] "
                    "[--stall-ms MS] [--port P]\n");
    return 2;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t ll = sizeof la;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&la, sizeof la) != 0 || listen(lfd, 256) != 0 ||
      getsockname(lfd, (struct sockaddr *)&la, &ll) != 0) {
    perror("delay_proxy: listen");
    return 1;
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
  FILE *f = fopen(tmp, "w");
  if (f == NULL || fprintf(f, "%d\n", ntohs(la.sin_port)) < 0 || fclose(f) != 0 ||
      rename(tmp, port_file) != 0) {
    perror("delay_proxy: port file");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  while (!stop) {
    int64_t next = INT64_MAX, now = now_us();
    for (pair *p = pairs; p != NULL; p = p->next) {
      for (int i = 0; i < 2; i++) {
        int64_t n = pump_out(p, &p->d[i], now);
        next = n < next ? n : next;
      }
    }
    for (pair *p = pairs, *nx; p != NULL; p = nx) {
      nx = p->next;
      int over = p->d[0].shut && p->d[1].shut;
      if (p->dead || over) {
        pair_free(p);
      }
    }
    struct timespec ts = {0, 0};
    if (next != INT64_MAX) {
      int64_t wait = next - now_us();
      if (wait > 0) {
        ts.tv_sec = wait / 1000000;
        ts.tv_nsec = (wait % 1000000) * 1000;
      }
    }
    struct epoll_event evs[64];
    int n = epoll_pwait2(ep, evs, 64, next == INT64_MAX ? NULL : &ts, NULL);
    int64_t d = slow ? stall_us : delay_us;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        int cfd;
        while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int sfd = connect_to(host, to_port);
          pair *p = sfd >= 0 ? calloc(1, sizeof *p) : NULL;
          if (p == NULL) {
            close(cfd);
            if (sfd >= 0) {
              close(sfd);
            }
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          p->d[0] = (dir){.owner = p, .from = cfd, .to = sfd};
          p->d[1] = (dir){.owner = p, .from = sfd, .to = cfd};
          p->next = pairs;
          if (pairs != NULL) {
            pairs->prev = p;
          }
          pairs = p;
          struct epoll_event e0 = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &p->d[0]};
          struct epoll_event e1 = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &p->d[1]};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e0);
          epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e1);
        }
        continue;
      }
      dir *dr = evs[i].data.ptr;
      pair *p = dr->owner;
      if (!dr->eof) {
        pump_in(p, dr, d);
        if (dr->eof) {
          epoll_ctl(ep, EPOLL_CTL_DEL, dr->from, NULL);
        }
      }
    }
  }
  return 0;
}
