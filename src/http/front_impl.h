/*
 * front_impl.h - the structures the parts of the HTTP front share.
 */
#ifndef GKP_HTTP_FRONT_IMPL_H
#define GKP_HTTP_FRONT_IMPL_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/dynbuf.h"
#include "config/clients.h"
#include "http/front.h"

/* What a stream may hold for a caller slower than Google. */
#define FRONT_MAX_STREAM_BUF ((size_t)64 * 1024 * 1024)
/* The threads that parse and translate bodies; a body up to
 * FRONT_INLINE_BODY bytes is parsed where it arrives (linear: tens of
 * microseconds at most, less than the hand-off). */
#define FRONT_WORKERS 2
#define FRONT_INLINE_BODY ((size_t)16 * 1024)
/* Retry-After of a request refused for the memory ceiling. */
#define FRONT_MEMORY_RETRY_S 2

typedef struct hconn hconn;
typedef struct hreq hreq;

/* A caller of `clients` and its requests in this process (under the front's
 * mutex); what it used is kept with the pool's state (gkp_client_admit). */
typedef struct caller {
  const gkp__client_cfg *cfg;
  unsigned waiting;            /* its requests waiting for a key in the runner */
  hreq *held_head, *held_tail; /* requests held back for fairness */
} caller;

struct gkp__front {
  struct MHD_Daemon *d;
  gkp_pool *pool;
  gkp__runner *runner;
  gkp__front_opts opts;
  char address[300];
  char *unix_path;
  gkp__clients *clients; /* NULL: none configured */
  caller *callers;
  char **models; /* configured model ids */
  size_t nmodels;
  pthread_mutex_t mu; /* connections, callers */
  hconn *conns;
  size_t nconns;
  pthread_t watchdog;
  int watchdog_started;
  atomic_int stopping;
  _Atomic size_t mem_used;      /* counted against opts.max_memory */
  /* The body workers' queue. */
  pthread_mutex_t work_mu;
  pthread_cond_t work_cv;
  hreq *work_head, *work_tail;
  int work_stop;
  pthread_t workers[FRONT_WORKERS];
  int nworkers;
};

/* One connection (MHD's socket context). */
struct hconn {
  int fd;
  _Atomic int64_t opened_ms; /* monotonic: when it connected, or its last answer went out */
  _Atomic int64_t line_ms;   /* when the request line of the next request came (0: not yet) */
  atomic_int got_request;    /* the headers of its current request are in */
  unsigned served;           /* requests completed (under the front's mutex) */
  hreq *req; /* the request being served, or NULL (under the front's mutex) */
  hconn *prev, *next;
};

enum {
  ROUTE_NONE = 0,
  ROUTE_MODELS, /* Gemini: GET /v1beta/models */
  ROUTE_MODEL,  /* Gemini: GET /v1beta/models/{m} */
  ROUTE_ACTION, /* Gemini: POST /v1beta/models/{m}:{action} */
  ROUTE_OAI_CHAT,
  ROUTE_OAI_EMBED,
  ROUTE_OAI_MODELS,
  ROUTE_OAI_MODEL,
};

enum { API_GEMINI = 0, API_OPENAI };

/* An OpenAI request translated to Gemini's (openai.c). */
typedef struct oai_req {
  char model[128];
  int stream, include_usage;
  int base64;  /* embeddings: encoding_format "base64" */
  char *gbody; /* the generateContent / batchEmbedContents body (malloc'd) */
  size_t gbody_len;
} oai_req;

/* A chat.completions stream being translated. */
typedef struct oai_stream {
  char id[96];
  unsigned next_call, ncalls;
  int role_sent, include_usage;
  int base64;   /* embeddings as base64 float32 */
  cJSON *usage; /* the last usageMetadata, as OpenAI usage */
} oai_stream;

/* One HTTP request.  Fields above `mu` belong to the polling thread; those
 * below are shared with the runner's loop thread under `mu`. */
struct hreq {
  gkp__front *f;
  struct MHD_Connection *conn;
  hconn *hc;
  atomic_int refs; /* the connection's and the job's */
  int route;
  char path[256]; /* for the log, without the query */
  char method[8];
  char action[32];
  char model[128];
  int sse;
  int pin;
  int api; /* API_GEMINI or API_OPENAI */
  oai_stream oai;
  int64_t est_tokens;
  caller *cl;
  int64_t started_ms; /* monotonic */
  gkp__dynbuf body;
  size_t mem; /* bytes of f->mem_used that are this request's */
  int too_big;
  int over_memory; /* a chunked body passed the memory ceiling */
  int close_conn;  /* answer with Connection: close (and at once, before a body) */
  int in_headers;  /* routes_begin is deciding */
  struct MHD_Response *pending; /* decided from the headers, queued once the body is in */
  hreq *work_next; /* in the body workers' queue */
  int submitted;
  int replied;     /* a response was queued */
  hreq *held_next; /* in its caller's held queue */
  int held;

  pthread_mutex_t mu;
  int working; /* with a body worker */
  int closed;  /* libmicrohttpd is done with it: no job may start */
  gkp__job *job; /* until the job ended */
  int suspended;
  int ready;    /* something to queue (a stream's start or the whole reply) */
  int finished; /* the job ended */
  int streaming;
  int waiting; /* counted in its caller's `waiting` */
  int status;
  char *reply; /* a whole reply body (JSON) */
  size_t reply_len;
  int64_t retry_after_s; /* > 0: a Retry-After header */
  char key_id[GKP_ID_MAX];
  char model_used[GKP_ID_MAX];
  char pool_route[512]; /* model "auto": the decision, compact (the x-pool-route header) */
  gkp__dynbuf out;      /* stream bytes not yet sent */
  size_t out_off;
  unsigned events;
};

/* ---- server.c ---- */
/* Resumes a suspended request (any thread; takes q->mu). */
void front_wake(hreq *q);
/* Drops a reference to a request. */
void front_req_unref(hreq *q);
/* Queues a whole reply now (polling thread; q->mu not held).  Decided from
 * the headers alone, it goes out once the body has been read (and
 * dropped), so that the connection stays open: at once only with
 * close_conn. */
int front_reply(hreq *q, int status, const char *ctype, const char *body, size_t len,
                int64_t retry_after_s);
/* Suspends the request until front_wake (polling thread). */
void front_suspend(hreq *q);
/* Hands the request to a body worker, which calls routes_body_work
 * (polling thread; the request is suspended after). */
void front_work_post(hreq *q);
/* Counts n more bytes of q against the memory ceiling: 0, or -ENOMEM
 * (nothing counted) past it.  front_mem_set makes q's count n. */
int front_mem_take(hreq *q, size_t n);
int front_mem_set(hreq *q, size_t n);
/* Writes one line to the daemon's log, control characters escaped. */
void front_log(gkp__front *f, const char *line);
/* A line with its control characters and backslashes escaped (\n, \xHH):
 * into out (NUL-terminated, cut to outlen). */
void front_log_escape(const char *line, char *out, size_t outlen);

/* ---- routes.c ---- */
/* Decides a request from its method, path and headers, before its body:
 * returns 0 to read the body, or non-zero after queueing the reply. */
int routes_begin(hreq *q, const char *method, const char *url);
/* The whole body is in: answers, or submits the job and suspends. */
void routes_body_done(hreq *q);
/* The request was resumed with something ready: queues it. */
void routes_resumed(hreq *q);
/* A body worker's part: parses and translates the body, then submits the
 * job, holds the request back, or makes its error ready (any thread but
 * the polling one). */
void routes_body_work(hreq *q);


/* ---- paths.c ---- */
/* Splits a request path into its route: the API (API_GEMINI or API_OPENAI),
 * the model and the action.  Returns the route or ROUTE_NONE. */
int routes_parse_path(const char *url, int *api, char *model, size_t model_len, char *action,
                      size_t action_len);
/* A Host value naming loopback ("localhost", "127.x.y.z", "[::1]", with or
 * without ":PORT"); an Origin of such a host ("http(s)://HOST[:PORT]"). */
int routes_host_is_loopback(const char *h, size_t len);
int routes_origin_is_loopback(const char *origin);
/* A Content-Type a browser may send from any page unasked (text/plain, the
 * form types). */
int routes_simple_request_type(const char *ctype);
/* What parsing `len` bytes of JSON may allocate (cJSON's nodes and strings
 * with malloc's headers), at most: counted against the memory ceiling
 * before parsing. */
size_t routes_json_cost(const char *s, size_t len);
/* Submits a held request (its caller's turn came). */
void routes_submit(hreq *q);
/* A Gemini-format error body: {"error":{"code":..,"message":..,"status":..}}
 * (+ RetryInfo when retry_s > 0).  malloc'd. */
char *routes_error_json(int code, const char *status, const char *message, int64_t retry_s,
                        size_t *len);

/* ---- openai.c ---- */
/* Translate a request; 0, or an HTTP status with a message. */
int oai_chat_request(const char *body, size_t len, oai_req *out, char *msg, size_t msglen);
int oai_embed_request(const char *body, size_t len, oai_req *out, char *msg, size_t msglen);
/* Translate a whole Gemini answer (malloc'd JSON). */
char *oai_chat_response(const char *gjson, size_t len, const char *model, size_t *outlen);
char *oai_embed_response(const char *gjson, size_t len, const char *model, int64_t tokens,
                         int base64, size_t *outlen);
/* Appends the chunk(s) of one Gemini stream event ("data: ...\n\n"). */
void oai_chat_chunk(oai_stream *st, const char *gjson, size_t len, const char *model,
                    gkp__dynbuf *out);
/* Ends a stream: the usage chunk (if asked) and [DONE] when ok. */
void oai_stream_end(oai_stream *st, const char *model, int ok, gkp__dynbuf *out);
/* OpenAI error bodies. */
char *oai_error_json(int code, const char *message, size_t *len);
char *oai_error_from_gemini(int code, const char *gjson, size_t glen, size_t *len);
/* GET /v1/models (only NULL) or /v1/models/{only}; NULL if none. */
char *oai_models_json(char *const *models, size_t n, const caller *cl, const char *only);

/* ---- server.c ---- */
/* One line for the daemon's log. */
void front_log(gkp__front *f, const char *line);

/* ---- callers.c ---- */
int callers_init(gkp__front *f, gkp_error *err);
void callers_free(gkp__front *f);
/* Finds the caller of a presented token (constant time in the token);
 * NULL if none. */
caller *callers_find(gkp__front *f, const char *token);
/* Admits one request of c now (0), or returns the seconds until it may
 * (its rpm or rpd spent), or a negative errno (the state unreachable,
 * logged); counted in the pool's state.  Not under the front's mutex. */
int64_t callers_admit(gkp__front *f, caller *c);
/* Counts an error answered to c (logged if it cannot).  Not under the
 * front's mutex. */
void callers_error(gkp__front *f, caller *c);
/* Whether the client may use the profile/model (its allowed profiles). */
int callers_allows(const caller *c, const char *model);

#endif
