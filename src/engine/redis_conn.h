/*
 * redis_conn.h - the connection the Redis backend talks through: the state
 * URL, authentication, routing by hash slot (a single server, or a Redis
 * Cluster followed through MOVED and ASK), Lua scripts loaded once and run
 * by SHA, the server's clock, and waiting out an unreachable server.
 *
 * A connection is used by one thread at a time (the caller holds `mu`
 * around each call).  A call never blocks longer than the command timeout;
 * while the server is unreachable, calls fail at once until the next
 * reconnection attempt is due (backoff from 250 ms to 5 s).
 *
 * The password is kept only in this structure (wiped when closed) and never
 * appears in `where`, in messages or in logs.
 */
#ifndef GKP_ENGINE_REDIS_CONN_H
#define GKP_ENGINE_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "gkp.h"

#define GKP__REDIS_MAX_NODES 32

/* A parsed state URL. */
typedef struct gkp__rurl {
  int is_unix;
  char host[256];
  int port;
  char path[512]; /* unix socket */
  char user[128];
  char *password; /* NULL: none; a secret */
  int db;
  char where[600]; /* the URL without credentials, for messages */
} gkp__rurl;

/* Whether a state string names Redis (redis:// or unix://); 0 for a path. */
int gkp__state_is_redis(const char *state);

/* Whether a state string has a URL scheme (NAME://). */
int gkp__state_has_scheme(const char *state);

/*
 * Parses redis://[user:password@]host:port[/db] or unix:///path[?db=N].
 * A password `env:NAME` is read from the environment, then from the .env in
 * `env_dir` (may be NULL).  Returns 0, or a negative errno with one line in
 * err that never contains the password.
 */
int gkp__rurl_parse(const char *url, const char *env_dir, gkp__rurl *out, gkp_error *err);

void gkp__rurl_wipe(gkp__rurl *u);

/* The scripts the backend runs. */
enum gkp__rscript {
  GKP__RS_RESERVE,
  GKP__RS_RENEW,
  GKP__RS_RELEASE,
  GKP__RS_USAGE,
  GKP__RS_VERDICT,
  GKP__RS_RESET,
  GKP__RS_GC,
  GKP__RS_CAS,
  GKP__RS_RENEW_MANY,
  GKP__RS_FINISH,
  GKP__RS_COUNT
};

typedef struct gkp__rnode {
  redisContext *c;
  char host[256];
  int port;
} gkp__rnode;

typedef struct gkp__rconn {
  pthread_mutex_t mu;
  gkp__rurl url;
  gkp__rnode nodes[GKP__REDIS_MAX_NODES]; /* nodes[0]: the URL's server */
  int nnodes;
  int cluster;                 /* the server runs in cluster mode */
  uint8_t *slot_node;          /* 16384 entries: node index per slot (cluster) */
  char sha[GKP__RS_COUNT][41]; /* the scripts' SHA1s */
  int64_t down_since_ms;       /* 0: reachable */
  int64_t next_try_ms;         /* no attempt before this (local clock) */
  int64_t backoff_ms;
  char down_why[GKP_MSG_MAX]; /* the last failure, for messages */
  int64_t offset_ms;          /* the server's clock minus ours */
  int connected_once;
} gkp__rconn;

/* Prepares a connection (no network yet). */
void gkp__rconn_init(gkp__rconn *c, gkp__rurl *url);

/* Connects, authenticates, selects the database, checks that the peer is a
 * Redis server, discovers a cluster and loads the scripts.  Returns 0, or
 * -EAGAIN (unreachable: try later) / -EACCES / -EPROTO with err. */
int gkp__rconn_connect(gkp__rconn *c, gkp_error *err);

/* Drops every connection (keeps the URL).  */
void gkp__rconn_drop(gkp__rconn *c);

/* Frees everything and wipes the password. */
void gkp__rconn_free(gkp__rconn *c);

/* The hash slot of a Redis key (with {hash tag} rules). */
unsigned gkp__redis_slot(const char *key, size_t len);

/*
 * Runs one command on the node that serves `route_key` (NULL: any node),
 * connecting first if needed, following MOVED/ASK.  Returns the reply (the
 * caller frees it with freeReplyObject) or NULL with err: -EAGAIN while the
 * server is unreachable (the message says since when), else the server's
 * error.
 */
redisReply *gkp__rconn_cmd(gkp__rconn *c, const char *route_key, int argc, const char **argv,
                           const size_t *lens, gkp_error *err);

/* Runs a script by SHA (loading it again after NOSCRIPT) with its keys
 * first (all in one slot) then its arguments. */
redisReply *gkp__rconn_script(gkp__rconn *c, int script, int nkeys, int argc, const char **argv,
                              gkp_error *err);

/* 0 if a CLUSTER SLOTS reply is an array of [start, end, [host, port, ..]]
 * entries with slots in 0..16383, a host and a port in 1..65535; else the
 * number of the first entry that is not (1 for a reply that is no array). */
size_t gkp__redis_slots_bad(const redisReply *r);

/* Parses a redirection "MOVED slot host:port" or "ASK slot host:port":
 * 0 with *ask, a slot in 0..16383, a non-empty host and a port in
 * 1..65535, or -1. */
int gkp__redis_redirect_parse(const char *msg, int *ask, int *slot, char host[256], int *port);

/* A TIME reply in ms, or -1 unless it is two decimal strings (seconds,
 * microseconds below a million). */
int64_t gkp__redis_time_ms(const redisReply *r);

/* Our estimate of the server's clock now. */
int64_t gkp__rconn_server_now(const gkp__rconn *c);

/* Updates the clock offset from a time the server reported just now. */
void gkp__rconn_saw_server_time(gkp__rconn *c, int64_t server_ms);

/* Whether the server is known unreachable; *since with the time it went. */
int gkp__rconn_is_down(const gkp__rconn *c, int64_t *since);

#endif
