/*
 * redis_conn.c - the state URL, and the connection to a Redis server or
 * cluster (see redis_conn.h).
 */
#include "engine/redis_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "config/internal.h"
#include "engine/redis_lua.h"

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define NSLOTS 16384

/* ---- the URL --------------------------------------------------------------------------- */

int gkp__state_has_scheme(const char *s) {
  const char *p = s != NULL ? strstr(s, "://") : NULL;
  if (p == NULL || p == s) {
    return 0;
  }
  for (const char *q = s; q < p; q++) {
    if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
          *q == '+' || *q == '-' || *q == '.')) {
      return 0;
    }
  }
  return 1;
}

int gkp__state_is_redis(const char *s) {
  return s != NULL && (strncmp(s, "redis://", 8) == 0 || strncmp(s, "unix://", 7) == 0);
}

static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* Percent-decodes n bytes of s into a new string. */
static char *pct_decode(const char *s, size_t n) {
  char *o = malloc(n + 1), *d = o;
  if (o == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      *d++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      *d++ = s[i];
    }
  }
  *d = '\0';
  return o;
}

/* Resolves a password `env:NAME` from the environment, then the .env in dir. */
static int password_from_env(const char *name, const char *dir, const char *where, char **out,
                             gkp_error *err) {
  const char *v = getenv(name);
  gkp__dotenv env = {0};
  char path[4096];
  int rc = 0;
  if (v != NULL && v[0] != '\0') {
    *out = strdup(v);
    return *out != NULL ? 0 : gkp__err(err, -ENOMEM, "out of memory");
  }
  if (dir != NULL) {
    snprintf(path, sizeof path, "%s/.env", dir);
    rc = gkp__dotenv_load(path, &env, err);
    if (rc == 0 && (v = gkp__dotenv_get(&env, name)) != NULL && v[0] != '\0') {
      *out = strdup(v);
      gkp__dotenv_free(&env);
      return *out != NULL ? 0 : gkp__err(err, -ENOMEM, "out of memory");
    }
    gkp__dotenv_free(&env);
    if (rc != 0) {
      return rc;
    }
  }
  return gkp__err(err, -ENOENT,
                  "state %s: the password variable %s is not set (looked in the environment%s%s); "
                  "set it or fix the URL",
                  where, name, dir != NULL ? " and " : "", dir != NULL ? path : "");
}

/* Parses "[user:password@]" at the start of an authority; returns its length. */
static int parse_userinfo(const char *a, size_t alen, const char *dir, gkp__rurl *u,
                          gkp_error *err) {
  const char *at = memrchr(a, '@', alen), *colon;
  char *pw;
  int rc = 0;
  if (at == NULL) {
    return 0;
  }
  colon = memchr(a, ':', (size_t)(at - a));
  if (colon == NULL) {
    colon = at; /* only a user name, or only a password (redis://pw@host) */
  }
  if (colon > a) {
    char *user = pct_decode(a, (size_t)(colon - a));
    if (user == NULL) {
      return gkp__err(err, -ENOMEM, "out of memory");
    }
    if (colon == at) { /* redis://secret@host: like redis-cli, a password */
      u->password = user;
      return (int)(at - a) + 1;
    }
    gkp__strlcpy(u->user, user, sizeof u->user);
    free(user);
  }
  if (colon < at) {
    pw = pct_decode(colon + 1, (size_t)(at - colon - 1));
    if (pw == NULL) {
      return gkp__err(err, -ENOMEM, "out of memory");
    }
    if (strncmp(pw, "env:", 4) == 0) {
      rc = password_from_env(pw + 4, dir, u->where, &u->password, err);
      memset(pw, 0, strlen(pw));
      free(pw);
    } else {
      u->password = pw;
    }
  }
  return rc < 0 ? rc : (int)(at - a) + 1;
}

static int bad_url(const char *where, const char *why, gkp_error *err) {
  return gkp__err(err, -EINVAL,
                  "state %s: %s; use redis://[user:password@]host:port[/db] or "
                  "unix:///path/redis.sock",
                  where, why);
}

static int parse_tcp(const char *rest, const char *dir, gkp__rurl *u, gkp_error *err) {
  /* A password may hold '/', '#', '?' or '@' unencoded: the authority ends
   * at the first of "/?#" after the last '@'. */
  const char *last_at = strrchr(rest, '@');
  size_t alen = last_at != NULL ? (size_t)(last_at - rest) + strcspn(last_at, "/?#")
                                : strcspn(rest, "/?#");
  const char *a = rest, *hp, *end = rest + alen, *colon;
  int ui;
  snprintf(u->where, sizeof u->where, "redis://");
  /* The shown form never carries the user info. */
  hp = last_at != NULL ? last_at + 1 : a;
  snprintf(u->where + 8, sizeof u->where - 8, "%.*s%s", (int)(end - hp), hp, end);
  ui = parse_userinfo(a, alen, dir, u, err);
  if (ui < 0) {
    return ui;
  }
  hp = a + ui;
  colon = memchr(hp, ':', (size_t)(end - hp));
  if (hp[0] == '[') { /* [v6]:port */
    const char *rb = memchr(hp, ']', (size_t)(end - hp));
    if (rb == NULL) {
      return bad_url(u->where, "unclosed [ in the host", err);
    }
    snprintf(u->host, sizeof u->host, "%.*s", (int)(rb - hp - 1), hp + 1);
    colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
  } else {
    size_t hl = colon != NULL ? (size_t)(colon - hp) : (size_t)(end - hp);
    if (hl == 0 || hl >= sizeof u->host) {
      return bad_url(u->where, "no host", err);
    }
    snprintf(u->host, sizeof u->host, "%.*s", (int)hl, hp);
  }
  u->port = 6379;
  if (colon != NULL) {
    char *e;
    long p = strtol(colon + 1, &e, 10);
    if (e != end || p <= 0 || p > 65535) {
      return bad_url(u->where, "the port is not a number from 1 to 65535", err);
    }
    u->port = (int)p;
  }
  if (*end == '/' && end[1] != '\0') {
    char *e;
    long db = strtol(end + 1, &e, 10);
    if (*e != '\0' || db < 0 || db > 1000000) {
      return bad_url(u->where, "the database after the / is not a number", err);
    }
    u->db = (int)db;
  } else if (*end != '\0' && strcmp(end, "/") != 0) {
    return bad_url(u->where, "unexpected text after the host", err);
  }
  return 0;
}

static int parse_unix(const char *rest, const char *dir, gkp__rurl *u, gkp_error *err) {
  const char *q = strchr(rest, '?');
  size_t n = q != NULL ? (size_t)(q - rest) : strlen(rest);
  const char *at = memchr(rest, '@', n);
  u->is_unix = 1;
  if (at != NULL) { /* unix://user:password@/path */
    snprintf(u->where, sizeof u->where, "unix://%.*s", (int)(n - (size_t)(at + 1 - rest)), at + 1);
    int ui = parse_userinfo(rest, n, dir, u, err);
    if (ui < 0) {
      return ui;
    }
    rest += ui;
    n -= (size_t)ui;
  } else {
    snprintf(u->where, sizeof u->where, "unix://%.*s", (int)n, rest);
  }
  if (n == 0 || rest[0] != '/' || n >= sizeof u->path) {
    return bad_url(u->where, "the socket path must be absolute (unix:///run/redis.sock)", err);
  }
  snprintf(u->path, sizeof u->path, "%.*s", (int)n, rest);
  if (q != NULL) {
    char *e;
    long db;
    if (strncmp(q, "?db=", 4) != 0 || (db = strtol(q + 4, &e, 10)) < 0 || *e != '\0') {
      return bad_url(u->where, "the only option is ?db=N", err);
    }
    u->db = (int)db;
  }
  return 0;
}

int gkp__rurl_parse(const char *url, const char *dir, gkp__rurl *u, gkp_error *err) {
  int rc;
  memset(u, 0, sizeof *u);
  if (strncmp(url, "redis://", 8) == 0) {
    rc = parse_tcp(url + 8, dir, u, err);
  } else if (strncmp(url, "unix://", 7) == 0) {
    rc = parse_unix(url + 7, dir, u, err);
  } else {
    const char *p = strstr(url, "://");
    return gkp__err(err, -EINVAL,
                    "state: unknown scheme '%.*s://'; use a file path, "
                    "redis://[user:password@]host:port[/db] or unix:///path/redis.sock",
                    p != NULL ? (int)(p - url) : 0, url);
  }
  if (rc != 0) {
    gkp__rurl_wipe(u);
  }
  return rc;
}

void gkp__rurl_wipe(gkp__rurl *u) {
  if (u->password != NULL) {
    memset(u->password, 0, strlen(u->password));
    free(u->password);
    u->password = NULL;
  }
}

/* ---- hash slots ------------------------------------------------------------------------- */

static uint16_t crc16(const char *buf, size_t len) {
  uint16_t crc = 0;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)((unsigned char)buf[i] << 8);
    for (int b = 0; b < 8; b++) {
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

unsigned gkp__redis_slot(const char *key, size_t len) {
  const char *l = memchr(key, '{', len);
  if (l != NULL) {
    const char *r = memchr(l + 1, '}', len - (size_t)(l + 1 - key));
    if (r != NULL && r > l + 1) {
      key = l + 1;
      len = (size_t)(r - l - 1);
    }
  }
  return crc16(key, len) & (NSLOTS - 1);
}

/* ---- connections --------------------------------------------------------------------------- */

void gkp__rconn_init(gkp__rconn *c, gkp__rurl *url) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  c->url = *url;
  memset(url, 0, sizeof *url); /* the password moves here */
  c->nnodes = 1;
  gkp__strlcpy(c->nodes[0].host, c->url.host, sizeof c->nodes[0].host);
  c->nodes[0].port = c->url.port;
}

static void node_drop(gkp__rnode *n) {
  if (n->c != NULL) {
    redisFree(n->c);
    n->c = NULL;
  }
}

void gkp__rconn_drop(gkp__rconn *c) {
  for (int i = 0; i < c->nnodes; i++) {
    node_drop(&c->nodes[i]);
  }
}

void gkp__rconn_free(gkp__rconn *c) {
  gkp__rconn_drop(c);
  free(c->slot_node);
  gkp__rurl_wipe(&c->url);
  pthread_mutex_destroy(&c->mu);
}

static redisReply *node_cmd(gkp__rnode *n, int argc, const char **argv, const size_t *lens) {
  return redisCommandArgv(n->c, argc, argv, lens);
}

/* Text from the server made fit for a message: at most 200 bytes, control
 * characters and bytes beyond ASCII shown as '?'. */
static const char *shown(const char *s, char *buf, size_t len) {
  size_t i = 0;
  for (; s != NULL && s[i] != '\0' && i + 1 < len && i < 200; i++) {
    unsigned char ch = (unsigned char)s[i];
    buf[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
  }
  buf[i] = '\0';
  return buf;
}

/* A reply that is an error with this prefix. */
static int is_error(const redisReply *r, const char *prefix) {
  return r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* Authenticates and checks the peer speaks Redis.  0, or -EACCES/-EPROTO. */
static int node_handshake(gkp__rconn *c, gkp__rnode *n, gkp_error *err) {
  redisReply *r;
  if (c->url.password != NULL) {
    const char *av[3] = {"AUTH", c->url.user[0] ? c->url.user : c->url.password, c->url.password};
    int ac = c->url.user[0] ? 3 : 2;
    r = redisCommandArgv(n->c, ac, av, NULL);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
      int proto = r == NULL;
      freeReplyObject(r);
      return gkp__err(err, proto ? -EPROTO : -EACCES,
                      proto ? "state %s: the server does not speak the Redis protocol"
                            : "state %s: the server refused the user name or password; check "
                              "the URL and the password's variable",
                      c->url.where);
    }
    freeReplyObject(r);
  }
  r = redisCommand(n->c, "PING");
  if (r == NULL || (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR)) {
    freeReplyObject(r);
    return gkp__err(err, -EPROTO, "state %s: the server does not speak the Redis protocol",
                    c->url.where);
  }
  if (is_error(r, "NOAUTH") || is_error(r, "WRONGPASS")) {
    freeReplyObject(r);
    return gkp__err(err, -EACCES,
                    "state %s: the server wants a password; put it in the URL "
                    "(redis://user:env:NAME@host:port)",
                    c->url.where);
  }
  freeReplyObject(r);
  if (c->url.db != 0 && !c->cluster) {
    r = redisCommand(n->c, "SELECT %d", c->url.db);
    int bad = r == NULL || r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (bad) {
      return gkp__err(err, -EINVAL, "state %s: the server has no database %d", c->url.where,
                      c->url.db);
    }
  }
  return 0;
}

static int node_open(gkp__rconn *c, gkp__rnode *n, gkp_error *err) {
  struct timeval ct = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
  struct timeval to = {COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000};
  if (n->c != NULL) {
    return 0;
  }
  if (c->url.is_unix && n == &c->nodes[0]) {
    n->c = redisConnectUnixWithTimeout(c->url.path, ct);
  } else {
    n->c = redisConnectWithTimeout(n->host, n->port, ct);
  }
  if (n->c == NULL || n->c->err != 0) {
    int rc = gkp__err(err, -EAGAIN, "%s", n->c != NULL ? n->c->errstr : "out of memory");
    node_drop(n);
    return rc;
  }
  redisSetTimeout(n->c, to);
  int rc = node_handshake(c, n, err);
  if (rc != 0) {
    node_drop(n);
  }
  return rc;
}

/* Whether a CLUSTER SLOTS entry is [start, end, [host, port, ...], ...] with
 * 0 <= start <= end < 16384, a host of at most 255 bytes and a port from 1
 * to 65535. */
static int slot_entry_ok(const redisReply *e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
    return 0;
  }
  const redisReply *a = e->element[0], *b = e->element[1], *m = e->element[2];
  if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER || a->integer < 0 ||
      b->integer >= NSLOTS || a->integer > b->integer) {
    return 0;
  }
  if (m->type != REDIS_REPLY_ARRAY || m->elements < 2) {
    return 0;
  }
  const redisReply *h = m->element[0], *p = m->element[1];
  return h->type == REDIS_REPLY_STRING && h->len < 256 && strlen(h->str) == h->len &&
         p->type == REDIS_REPLY_INTEGER && p->integer > 0 && p->integer <= 65535;
}

size_t gkp__redis_slots_bad(const redisReply *r) {
  if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
    return 1;
  }
  for (size_t i = 0; i < r->elements; i++) {
    if (!slot_entry_ok(r->element[i])) {
      return i + 1;
    }
  }
  return 0;
}

/* Reads CLUSTER SLOTS into the slot table; an answer out of shape or out
 * of range is refused whole. */
static int load_slots(gkp__rconn *c, gkp_error *err) {
  redisReply *r = redisCommand(c->nodes[0].c, "CLUSTER SLOTS");
  if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
    freeReplyObject(r);
    return gkp__err(err, -EPROTO, "state %s: CLUSTER SLOTS failed", c->url.where);
  }
  size_t bad = gkp__redis_slots_bad(r);
  if (bad != 0) {
    freeReplyObject(r);
    return gkp__err(err, -EPROTO,
                    "state %s: the server's CLUSTER SLOTS answer is malformed (entry %zu: "
                    "slots must be 0 to 16383, a host and a port); refusing it",
                    c->url.where, bad);
  }
  if (c->slot_node == NULL && (c->slot_node = calloc(NSLOTS, 1)) == NULL) {
    freeReplyObject(r);
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < r->elements; i++) {
    redisReply *e = r->element[i];
    const char *host = e->element[2]->element[0]->str;
    int port = (int)e->element[2]->element[1]->integer, ni = -1;
    if (host[0] == '\0') {
      host = c->url.host;
    }
    for (int k = 0; k < c->nnodes && ni < 0; k++) {
      ni = strcmp(c->nodes[k].host, host) == 0 && c->nodes[k].port == port ? k : -1;
    }
    if (ni < 0 && c->nnodes < GKP__REDIS_MAX_NODES) {
      ni = c->nnodes++;
      gkp__strlcpy(c->nodes[ni].host, host, sizeof c->nodes[ni].host);
      c->nodes[ni].port = port;
    }
    for (long long sl = e->element[0]->integer; ni >= 0 && sl <= e->element[1]->integer; sl++) {
      c->slot_node[sl] = (uint8_t)ni;
    }
  }
  freeReplyObject(r);
  return 0;
}

static int load_scripts(gkp__rconn *c, gkp__rnode *n, gkp_error *err) {
  for (int s = 0; s < GKP__RS_COUNT; s++) {
    redisReply *r = redisCommand(n->c, "SCRIPT LOAD %s", gkp__redis_script_text(s));
    char text[256];
    int hex = r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40;
    for (size_t i = 0; hex && i < 40; i++) {
      hex = strchr("0123456789abcdef", r->str[i]) != NULL && r->str[i] != '\0';
    }
    if (!hex) {
      int rc = gkp__err(err, r == NULL ? -EAGAIN : -EPROTO, "state %s: loading a script failed: %s",
                        c->url.where,
                        r != NULL && r->type == REDIS_REPLY_ERROR
                            ? shown(r->str, text, sizeof text)
                            : (r != NULL ? "not a script's SHA1" : "no answer"));
      freeReplyObject(r);
      return rc;
    }
    memcpy(c->sha[s], r->str, 41);
    freeReplyObject(r);
  }
  return 0;
}

/* The message while the server is unreachable. */
static int down_err(const gkp__rconn *c, gkp_error *err) {
  char when[40], hp[300];
  snprintf(hp, sizeof hp, "%s:%d", c->url.host, c->url.port);
  return gkp__err(err, -EAGAIN, "state server %s unreachable since %s (%s)",
                  c->url.is_unix ? c->url.path : hp,
                  gkp__hms_utc(c->down_since_ms, when, sizeof when), c->down_why);
}

/* Marks the server unreachable (keeping the first time it went). */
static int went_down(gkp__rconn *c, const char *why, gkp_error *err) {
  int64_t now = gkp__now_ms();
  if (why != NULL) { /* it may point into a context about to be freed */
    gkp__strlcpy(c->down_why, why, sizeof c->down_why);
  }
  gkp__rconn_drop(c);
  if (c->down_since_ms == 0) {
    c->down_since_ms = now;
    c->backoff_ms = BACKOFF_MIN_MS;
  } else {
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
  }
  c->next_try_ms = now + c->backoff_ms;
  return down_err(c, err);
}

/* A decimal string of at most `max` digits, or -1. */
static int64_t decimal(const redisReply *x, size_t max) {
  int64_t v = 0;
  if (x->type != REDIS_REPLY_STRING || x->len == 0 || x->len > max) {
    return -1;
  }
  for (size_t i = 0; i < x->len; i++) {
    if (x->str[i] < '0' || x->str[i] > '9') {
      return -1;
    }
    v = v * 10 + (x->str[i] - '0');
  }
  return v;
}

int64_t gkp__redis_time_ms(const redisReply *r) {
  if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
    return -1;
  }
  int64_t sec = decimal(r->element[0], 12), usec = decimal(r->element[1], 6);
  return sec < 0 || usec < 0 || usec >= 1000000 ? -1 : sec * 1000 + usec / 1000;
}

int gkp__rconn_connect(gkp__rconn *c, gkp_error *err) {
  gkp_error e;
  redisReply *r;
  int rc;
  if (c->nodes[0].c != NULL) {
    return 0;
  }
  if (c->down_since_ms != 0 && gkp__now_ms() < c->next_try_ms) {
    return down_err(c, err);
  }
  rc = node_open(c, &c->nodes[0], &e);
  if (rc == -EAGAIN) {
    return went_down(c, e.msg, err);
  }
  if (rc != 0) {
    if (err != NULL) {
      *err = e;
    }
    return rc;
  }
  r = redisCommand(c->nodes[0].c, "INFO cluster");
  if (r == NULL) {
    return went_down(c, "no answer", err);
  }
  c->cluster = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1") != NULL;
  freeReplyObject(r);
  if (c->cluster && (rc = load_slots(c, err)) != 0) {
    gkp__rconn_drop(c);
    return rc;
  }
  if ((rc = load_scripts(c, &c->nodes[0], err)) != 0) {
    if (rc == -EAGAIN) {
      return went_down(c, "no answer", err);
    }
    gkp__rconn_drop(c);
    return rc;
  }
  r = redisCommand(c->nodes[0].c, "TIME");
  if (r == NULL) {
    return went_down(c, "no answer", err);
  }
  int64_t server_ms = gkp__redis_time_ms(r);
  freeReplyObject(r);
  if (server_ms < 0) {
    gkp__rconn_drop(c);
    return gkp__err(err, -EPROTO,
                    "state %s: the server's TIME answer is malformed (two decimal strings "
                    "expected); refusing it",
                    c->url.where);
  }
  gkp__rconn_saw_server_time(c, server_ms);
  c->down_since_ms = 0;
  c->backoff_ms = 0;
  c->connected_once = 1;
  return 0;
}

/* The node that serves a key; connects to it. */
static gkp__rnode *route(gkp__rconn *c, const char *key, gkp_error *err) {
  int ni = 0;
  if (c->cluster && key != NULL && c->slot_node != NULL) {
    ni = c->slot_node[gkp__redis_slot(key, strlen(key))];
  }
  if (node_open(c, &c->nodes[ni], err) != 0) {
    return NULL;
  }
  return &c->nodes[ni];
}

int gkp__redis_redirect_parse(const char *msg, int *ask, int *slot, char host[256], int *port) {
  char tail;
  const char *arg, *colon;
  if (strncmp(msg, "ASK ", 4) == 0) {
    *ask = 1, arg = msg + 4;
  } else if (strncmp(msg, "MOVED ", 6) == 0) {
    *ask = 0, arg = msg + 6;
  } else {
    return -1;
  }
  /* "slot host:port": the last ':' separates the port (an IPv6 host has
   * colons of its own). */
  colon = strrchr(arg, ':');
  if (colon == NULL || sscanf(arg, "%d %255s", slot, host) != 2 ||
      sscanf(colon + 1, "%d%c", port, &tail) != 1 || *slot < 0 || *slot >= NSLOTS ||
      *port <= 0 || *port > 65535 || strrchr(host, ':') == NULL) {
    return -1;
  }
  *strrchr(host, ':') = '\0';
  return host[0] != '\0' ? 0 : -1;
}

/* Follows a MOVED/ASK reply: the node it names (added if new). */
static gkp__rnode *redirect(gkp__rconn *c, const redisReply *r, int *ask, gkp_error *err) {
  char host[256];
  int port, slot, ni = -1;
  char text[256];
  if (gkp__redis_redirect_parse(r->str, ask, &slot, host, &port) != 0) {
    gkp__err(err, -EPROTO, "state %s: malformed redirection from the server: %s", c->url.where,
             shown(r->str, text, sizeof text));
    return NULL;
  }
  for (int k = 0; k < c->nnodes && ni < 0; k++) {
    ni = strcmp(c->nodes[k].host, host) == 0 && c->nodes[k].port == port ? k : -1;
  }
  if (ni < 0) {
    if (c->nnodes == GKP__REDIS_MAX_NODES) {
      gkp__err(err, -EPROTO, "state %s: too many cluster nodes", c->url.where);
      return NULL;
    }
    ni = c->nnodes++;
    gkp__strlcpy(c->nodes[ni].host, host, sizeof c->nodes[ni].host);
    c->nodes[ni].port = port;
  }
  if (!*ask && c->slot_node != NULL) {
    c->slot_node[slot] = (uint8_t)ni;
  }
  if (node_open(c, &c->nodes[ni], err) != 0) {
    return NULL;
  }
  return &c->nodes[ni];
}

redisReply *gkp__rconn_cmd(gkp__rconn *c, const char *key, int argc, const char **argv,
                           const size_t *lens, gkp_error *err) {
  gkp__rnode *n;
  redisReply *r = NULL;
  gkp_error e;
  int rc = gkp__rconn_connect(c, err);
  if (rc != 0) {
    return NULL;
  }
  n = route(c, key, &e);
  for (int hop = 0; n != NULL && hop < 5; hop++) {
    int ask = 0;
    r = node_cmd(n, argc, argv, lens);
    if (r == NULL) {
      break;
    }
    if (!is_error(r, "MOVED ") && !is_error(r, "ASK ")) {
      return r;
    }
    n = redirect(c, r, &ask, &e);
    freeReplyObject(r);
    r = NULL;
    if (n != NULL && ask) {
      freeReplyObject(redisCommand(n->c, "ASKING"));
    }
  }
  if (n == NULL && e.code != -EAGAIN) {
    if (err != NULL) {
      *err = e;
    }
    return NULL;
  }
  went_down(c, n != NULL && n->c != NULL ? n->c->errstr : e.msg, err);
  return NULL;
}

redisReply *gkp__rconn_script(gkp__rconn *c, int script, int nkeys, int argc, const char **argv,
                              gkp_error *err) {
  const char **av = malloc(sizeof *av * (size_t)(argc + 3));
  char nk[16];
  redisReply *r = NULL;
  if (av == NULL) {
    gkp__err(err, -ENOMEM, "out of memory");
    return NULL;
  }
  snprintf(nk, sizeof nk, "%d", nkeys);
  av[0] = "EVALSHA";
  av[2] = nk;
  for (int i = 0; i < argc; i++) {
    av[3 + i] = argv[i];
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    if (gkp__rconn_connect(c, err) != 0) {
      free(av);
      return NULL;
    }
    av[1] = c->sha[script];
    r = gkp__rconn_cmd(c, nkeys > 0 ? argv[0] : NULL, argc + 3, av, NULL, err);
    if (r == NULL || !is_error(r, "NOSCRIPT")) {
      break;
    }
    /* A server restarted without its script cache: load them again there. */
    freeReplyObject(r);
    r = NULL;
    const char *lv[3] = {"SCRIPT", "LOAD", gkp__redis_script_text(script)};
    freeReplyObject(gkp__rconn_cmd(c, nkeys > 0 ? argv[0] : NULL, 3, lv, NULL, err));
  }
  free(av);
  if (r != NULL && r->type == REDIS_REPLY_ERROR) {
    char text[256];
    gkp__err(err, -EIO, "state %s: %s", c->url.where, shown(r->str, text, sizeof text));
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

int64_t gkp__rconn_server_now(const gkp__rconn *c) {
  return gkp__now_ms() + c->offset_ms;
}

void gkp__rconn_saw_server_time(gkp__rconn *c, int64_t server_ms) {
  c->offset_ms = server_ms - gkp__now_ms();
}

int gkp__rconn_is_down(const gkp__rconn *c, int64_t *since) {
  if (since != NULL) {
    *since = c->down_since_ms;
  }
  return c->down_since_ms != 0;
}
