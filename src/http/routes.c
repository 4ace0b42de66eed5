/*
 * routes.c - what a request means: the Gemini REST API passed through the
 * pool.  Before the body, from the headers alone: where the request may come
 * from, routing, tokens, the caller's limits and room under the memory
 * ceiling.  After it, on a body worker: parsing, the OpenAI translation and
 * the runner's raw job.  Google's answer (or an error in the API's format)
 * back.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/gemini.h"
#include "common/err.h"
#include "common/timeutil.h"
#include "config/config.h"
#include "http/front_impl.h"

#define JSON_TYPE "application/json; charset=UTF-8"
#define SSE_TYPE "text/event-stream"

int front_stream_start(hreq *q, const char *ctype);

/* ---- errors ------------------------------------------------------------------- */

char *routes_error_json(int code, const char *status, const char *message, int64_t retry_s,
                        size_t *len) {
  cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
  cJSON_AddNumberToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", message);
  cJSON_AddStringToObject(e, "status", status);
  if (retry_s > 0) {
    char delay[32];
    cJSON *d = cJSON_AddArrayToObject(e, "details"), *ri = cJSON_CreateObject();
    snprintf(delay, sizeof delay, "%llds", (long long)retry_s);
    cJSON_AddStringToObject(ri, "@type", "type.googleapis.com/google.rpc.RetryInfo");
    cJSON_AddStringToObject(ri, "retryDelay", delay);
    cJSON_AddItemToArray(d, ri);
  }
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  *len = s != NULL ? strlen(s) : 0;
  return s;
}

/* Whether the request's model is served to its caller: a configured model,
 * or "auto" (the pool picks one; generation only) for a caller allowed
 * the "auto" profile. */
static int model_served(const hreq *q) {
  if (strcmp(q->model, "auto") == 0) {
    return callers_allows(q->cl, "auto") &&
           (q->route == ROUTE_OAI_CHAT || strcmp(q->action, "generateContent") == 0 ||
            strcmp(q->action, "streamGenerateContent") == 0);
  }
  return gkp_model_known(q->f->pool, q->model) && callers_allows(q->cl, q->model);
}

static const char *status_name(int code) {
  switch (code) {
  case 400:
    return "INVALID_ARGUMENT";
  case 401:
    return "UNAUTHENTICATED";
  case 403:
    return "PERMISSION_DENIED";
  case 404:
    return "NOT_FOUND";
  case 405:
    return "METHOD_NOT_ALLOWED";
  case 413:
  case 415:
    return "INVALID_ARGUMENT";
  case 429:
    return "RESOURCE_EXHAUSTED";
  case 499:
    return "CANCELLED";
  case 504:
    return "DEADLINE_EXCEEDED";
  default:
    return code >= 500 ? "UNAVAILABLE" : "FAILED_PRECONDITION";
  }
}

/* An error body in the request's API format (malloc'd). */
static char *error_body(const hreq *q, int code, const char *msg, int64_t retry_s, size_t *len) {
  if (q->api == API_OPENAI) {
    return oai_error_json(code, msg, len);
  }
  return routes_error_json(code, status_name(code), msg, retry_s, len);
}

/* Replies with an error in the request's API format now (polling thread). */
static int reply_error(hreq *q, int code, int64_t retry_s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reply_error(hreq *q, int code, int64_t retry_s, const char *fmt, ...) {
  char msg[GKP_MSG_MAX];
  va_list ap;
  size_t len;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char *body = error_body(q, code, msg, retry_s, &len);
  front_reply(q, code, JSON_TYPE, body != NULL ? body : "", len, retry_s);
  free(body);
  if (q->cl != NULL) {
    callers_error(q->f, q->cl);
  }
  return 1;
}

/* ---- models ------------------------------------------------------------------- */

int front_models_init(gkp__front *f, gkp_error *err);
int front_models_init(gkp__front *f, gkp_error *err) {
  gkp__config *cfg = NULL;
  int rc = gkp__config_load(gkp_pool_config_path(f->pool), NULL, NULL, &cfg, err);
  if (rc != 0) {
    return rc;
  }
  f->models = calloc(cfg->nmodels + 1, sizeof *f->models);
  for (size_t i = 0; f->models != NULL && i < cfg->nmodels; i++) {
    if ((f->models[i] = strdup(cfg->models[i].id)) != NULL) {
      f->nmodels++;
    }
  }
  gkp__config_free(cfg);
  return f->models != NULL ? 0 : gkp__err(err, -ENOMEM, "out of memory");
}

static cJSON *model_resource(const char *id) {
  char name[200];
  cJSON *m = cJSON_CreateObject(), *methods;
  snprintf(name, sizeof name, "models/%s", id);
  cJSON_AddStringToObject(m, "name", name);
  cJSON_AddStringToObject(m, "displayName", id);
  methods = cJSON_AddArrayToObject(m, "supportedGenerationMethods");
  if (strstr(id, "embedding") != NULL) {
    cJSON_AddItemToArray(methods, cJSON_CreateString("embedContent"));
    cJSON_AddItemToArray(methods, cJSON_CreateString("batchEmbedContents"));
  } else {
    cJSON_AddItemToArray(methods, cJSON_CreateString("generateContent"));
    cJSON_AddItemToArray(methods, cJSON_CreateString("streamGenerateContent"));
  }
  cJSON_AddItemToArray(methods, cJSON_CreateString("countTokens"));
  return m;
}

static int reply_json(hreq *q, int code, cJSON *doc) {
  char *s = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  front_reply(q, code, JSON_TYPE, s != NULL ? s : "{}", s != NULL ? strlen(s) : 2, 0);
  free(s);
  return 1;
}

static int models_list(hreq *q) {
  cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "models");
  for (size_t i = 0; i < q->f->nmodels; i++) {
    if (callers_allows(q->cl, q->f->models[i])) {
      cJSON_AddItemToArray(list, model_resource(q->f->models[i]));
    }
  }
  return reply_json(q, 200, root);
}

static int model_get(hreq *q) {
  if (!gkp_model_known(q->f->pool, q->model) || !callers_allows(q->cl, q->model)) {
    return reply_error(q, 404, 0, "models/%s is not found for API version v1beta", q->model);
  }
  return reply_json(q, 200, model_resource(q->model));
}

static int oai_models(hreq *q) {
  char *s = oai_models_json(q->f->models, q->f->nmodels, q->cl,
                            q->route == ROUTE_OAI_MODEL ? q->model : NULL);
  if (s == NULL) {
    return reply_error(q, 404, 0, "The model '%s' does not exist", q->model);
  }
  front_reply(q, 200, JSON_TYPE, s, strlen(s), 0);
  free(s);
  return 1;
}

/* ---- routing -------------------------------------------------------------------- */

static const char *header(hreq *q, const char *name) {
  return MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, name);
}

/* The token the caller presented: x-goog-api-key, Authorization: Bearer, or
 * ?key=. */
static const char *presented_token(hreq *q) {
  const char *t = header(q, "x-goog-api-key");
  if (t != NULL && t[0] != '\0') {
    return t;
  }
  t = header(q, MHD_HTTP_HEADER_AUTHORIZATION);
  if (t != NULL && strncasecmp(t, "Bearer ", 7) == 0) {
    return t + 7;
  }
  return MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "key");
}

/* Without `clients` a request answers to anyone who can reach the port, so
 * it must be one no web page can make: a loopback Host, no foreign Origin,
 * and on API routes no body type a page may send unasked.  (No browser
 * reaches a unix socket: anything goes there.)  Returns 0, or 1 after replying 403 / 415. */
static int refuse_web_pages(hreq *q) {
  if (q->f->clients != NULL || q->f->unix_path != NULL) {
    return 0; /* every request presents a token; no browser reaches a unix socket */
  }
  const char *host = header(q, MHD_HTTP_HEADER_HOST);
  const char *origin = header(q, MHD_HTTP_HEADER_ORIGIN);
  if (host == NULL || !routes_host_is_loopback(host, strlen(host))) {
    return reply_error(q, 403, 0,
                       "the request's Host is not a loopback name: without \"clients\" the "
                       "front answers only requests addressed to localhost, 127.0.0.1 or [::1]");
  }
  if (origin != NULL && !routes_origin_is_loopback(origin)) {
    return reply_error(q, 403, 0,
                       "requests from web pages of other sites (Origin %.100s) are refused: "
                       "without \"clients\" the front serves only local programs",
                       origin);
  }
  const char *ct = header(q, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (strcmp(q->method, "GET") != 0 && ct != NULL && routes_simple_request_type(ct)) {
    return reply_error(q, 415, 0,
                       "Content-Type %.80s is refused (a web page can send it unasked); send "
                       "application/json",
                       ct);
  }
  return 0;
}

/* Content-Length given twice with different values: where the body ends
 * is ambiguous, so the request is refused and the connection closed. */
typedef struct length_seen {
  const char *first;
  int conflict;
} length_seen;

static enum MHD_Result content_length_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value) {
  length_seen *ls = cls;
  (void)kind;
  if (key != NULL && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0 && value != NULL) {
    if (ls->first == NULL) {
      ls->first = value;
    } else if (strcmp(ls->first, value) != 0) {
      ls->conflict = 1;
    }
  }
  return MHD_YES;
}

static int conflicting_length(hreq *q) {
  length_seen ls = {NULL, 0};
  MHD_get_connection_values(q->conn, MHD_HEADER_KIND, content_length_value, &ls);
  if (!ls.conflict) {
    return 0;
  }
  q->close_conn = 1;
  return reply_error(q, 400, 0, "Content-Length is given twice with different values");
}

static int action_known(const char *a) {
  return strcmp(a, "generateContent") == 0 || strcmp(a, "streamGenerateContent") == 0 ||
         strcmp(a, "countTokens") == 0 || strcmp(a, "embedContent") == 0 ||
         strcmp(a, "batchEmbedContents") == 0;
}

/* Checks the caller's token.  Returns 0, or 1 after replying 401. */
static int authenticate(hreq *q) {
  gkp__front *f = q->f;
  if (f->clients == NULL) {
    return 0; /* loopback or unix socket only: said at start */
  }
  const char *t = presented_token(q);
  if (t == NULL || t[0] == '\0') {
    return reply_error(q, 401, 0,
                       "no caller token: send one of the pool's client tokens in x-goog-api-key, "
                       "Authorization: Bearer, or ?key=");
  }
  q->cl = callers_find(f, t);
  if (q->cl != NULL) {
    return 0;
  }
  if (strncmp(t, "AIza", 4) == 0) {
    return reply_error(q, 401, 0,
                       "that is a Gemini API key, not a caller token: the pool holds the keys; "
                       "send your client token instead");
  }
  return reply_error(q, 401, 0,
                     "unknown caller token: check the token of your entry in "
                     "\"clients\"");
}

/* Before a body is read: refused over the size limit (413), the caller's
 * own limits (429), or the memory ceiling (503, the declared length counted
 * now).  Returns 0, or 1 after replying. */
static int admit_body(hreq *q) {
  gkp__front *f = q->f;
  const char *cl = header(q, MHD_HTTP_HEADER_CONTENT_LENGTH);
  unsigned long long declared = cl != NULL ? strtoull(cl, NULL, 10) : 0;
  if (declared > f->opts.max_body) {
    q->close_conn = 1; /* at once, before the body is sent */
    return reply_error(q, 413, 0, "the request body is larger than the limit of %zu bytes",
                       f->opts.max_body);
  }
  if (q->cl != NULL) {
    int64_t wait_s = callers_admit(f, q->cl); /* one step of the state backend */
    if (wait_s < 0) {
      return reply_error(q, 503, 1, "the pool's state could not count client %s's request; retry",
                         q->cl->cfg->id);
    }
    if (wait_s > 0) {
      return reply_error(q, 429, wait_s,
                         "client %s is over its own limit (rpm %lld, rpd %lld); retry in %lld s",
                         q->cl->cfg->id, (long long)q->cl->cfg->rpm, (long long)q->cl->cfg->rpd,
                         (long long)wait_s);
    }
  }
  if (cl != NULL) { /* the buffer never grows past what was declared */
    gkp__dynbuf_init(&q->body, (size_t)declared);
    if (front_mem_take(q, (size_t)declared + 1) != 0) {
      return reply_error(q, 503, FRONT_MEMORY_RETRY_S,
                         "the front holds as many request bodies as its memory limit allows "
                         "(--max-memory %zu bytes); retry in %d s",
                         f->opts.max_memory, FRONT_MEMORY_RETRY_S);
    }
  }
  return 0;
}

int routes_begin(hreq *q, const char *method, const char *url) {
  int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
  q->route = routes_parse_path(url, &q->api, q->model, sizeof q->model, q->action,
                               sizeof q->action);
  if (refuse_web_pages(q) || conflicting_length(q)) {
    return 1;
  }
  if (q->route == ROUTE_NONE) {
    return reply_error(q, 404, 0, "no such method: %.200s", url);
  }
  if (authenticate(q)) {
    return 1;
  }
  if (q->route == ROUTE_MODELS || q->route == ROUTE_MODEL) {
    if (!is_get) {
      return reply_error(q, 405, 0, "use GET for %.200s", url);
    }
    return q->route == ROUTE_MODELS ? models_list(q) : model_get(q);
  }
  if (q->route == ROUTE_OAI_MODELS || q->route == ROUTE_OAI_MODEL) {
    if (!is_get) {
      return reply_error(q, 405, 0, "use GET for %.200s", url);
    }
    return oai_models(q);
  }
  const char *fb = header(q, "x-pool-fallback");
  q->pin = fb != NULL && strcasecmp(fb, "off") == 0;
  if (q->route == ROUTE_OAI_CHAT || q->route == ROUTE_OAI_EMBED) {
    if (!is_post) {
      return reply_error(q, 405, 0, "use POST for %.200s", url);
    }
    return admit_body(q);
  }
  if (!is_post) {
    return reply_error(q, 405, 0, "use POST for %.200s", url);
  }
  if (!action_known(q->action)) {
    return reply_error(q, 404, 0, "unknown method models.%s", q->action);
  }
  if (!model_served(q)) {
    return reply_error(q, 404, 0,
                       "models/%s is not found for API version v1beta, or is not supported for "
                       "%s (the pool serves the models of its configuration)",
                       q->model, q->action);
  }
  if (admit_body(q)) {
    return 1;
  }
  const char *alt = MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, "alt");
  q->sse = alt != NULL && strcmp(alt, "sse") == 0;
  return 0;
}

/* ---- the job ---------------------------------------------------------------------- */

static int is_stream(const hreq *q) {
  return strcmp(q->action, "streamGenerateContent") == 0;
}

/* Appends one event in the caller's framing (q->mu held). */
static void frame_event(hreq *q, const char *json, size_t len) {
  if (q->sse) {
    gkp__dynbuf_adds(&q->out, "data: ");
    gkp__dynbuf_add(&q->out, json, len);
    gkp__dynbuf_adds(&q->out, "\r\n\r\n");
  } else {
    gkp__dynbuf_adds(&q->out, q->events == 0 ? "[" : ",\r\n");
    gkp__dynbuf_add(&q->out, json, len);
  }
  q->events++;
}

static int sink_raw(void *ud, gkp__job *job, const char *model, const char *key_id,
                    const char *json, size_t len) {
  hreq *q = ud;
  (void)job;
  pthread_mutex_lock(&q->mu);
  if (!q->streaming) { /* the stream's headers may be going out already */
    snprintf(q->model_used, sizeof q->model_used, "%s", model);
    snprintf(q->key_id, sizeof q->key_id, "%s", key_id);
  }
  if (!is_stream(q)) {
    free(q->reply);
    if (q->route == ROUTE_OAI_CHAT) {
      q->reply = oai_chat_response(json, len, model, &q->reply_len);
    } else if (q->route == ROUTE_OAI_EMBED) {
      q->reply = oai_embed_response(json, len, model, q->est_tokens, q->oai.base64, &q->reply_len);
    } else if ((q->reply = malloc(len + 1)) != NULL) {
      memcpy(q->reply, json, len);
      q->reply_len = len;
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
  }
  q->streaming = 1;
  q->ready = 1;
  if (q->api == API_OPENAI) {
    oai_chat_chunk(&q->oai, json, len, model, &q->out);
  } else {
    frame_event(q, json, len);
  }
  pthread_mutex_unlock(&q->mu);
  front_wake(q);
  return 0;
}

/* A caller's request stopped waiting for a key: the next one it holds back
 * may enter the runner (round robin between callers). */
static void leave_waiting(hreq *q) {
  gkp__front *f = q->f;
  hreq *next = NULL;
  if (q->cl == NULL) {
    return;
  }
  pthread_mutex_lock(&f->mu);
  if (q->waiting) {
    q->waiting = 0;
    q->cl->waiting--;
    next = q->cl->held_head;
    if (next != NULL) {
      q->cl->held_head = next->held_next;
      if (q->cl->held_tail == next) {
        q->cl->held_tail = NULL;
      }
      next->held = 0;
      next->waiting = 1;
      next->cl->waiting++;
      atomic_fetch_add(&next->refs, 1);
    }
  }
  pthread_mutex_unlock(&f->mu);
  if (next != NULL) {
    routes_submit(next);
    front_req_unref(next);
  }
}

/* A routed request's decision, for the x-pool-route header (before any
 * header goes out: the job's first state comes at once). */
static void note_route(hreq *q, const gkp__job_info *info) {
  if (info->route_compact != NULL) {
    pthread_mutex_lock(&q->mu);
    if (q->pool_route[0] == '\0' && !q->streaming) {
      snprintf(q->pool_route, sizeof q->pool_route, "%s", info->route_compact);
    }
    pthread_mutex_unlock(&q->mu);
  }
}

static void sink_state(void *ud, gkp__job *job, const gkp__job_info *info) {
  (void)job;
  note_route(ud, info);
  if (info->status == GKP__JOB_RUNNING) {
    leave_waiting(ud);
  }
}

/* The failure of a job as a Gemini error (q->mu held). */
static void failed_reply(hreq *q, const gkp__job_info *in) {
  int64_t now = gkp_pool_now(q->f->pool), retry = 0;
  int code = 503;
  free(q->reply);
  q->reply = NULL;
  if (in->refused_status > 0 && in->error_body != NULL && q->api == API_OPENAI) {
    q->status = in->refused_status; /* Google's message in OpenAI's format */
    q->reply = oai_error_from_gemini(in->refused_status, in->error_body, in->error_body_len,
                                     &q->reply_len);
    return;
  }
  if (in->refused_status > 0 && in->error_body != NULL) {
    q->status = in->refused_status; /* Google's own answer, unchanged */
    q->reply = malloc(in->error_body_len + 1);
    if (q->reply != NULL) {
      memcpy(q->reply, in->error_body, in->error_body_len);
      q->reply_len = in->error_body_len;
      return;
    }
  }
  if (in->status == GKP__JOB_CANCELLED) {
    code = 499;
  } else if (strncmp(in->error, "timed out", 9) == 0) {
    code = 504;
  } else if (in->retry_at_ms > now) {
    code = 429;
    retry = (in->retry_at_ms - now + 999) / 1000;
  } else if (strstr(in->error, "no key can serve") != NULL ||
             strstr(in->error, "exhausted") != NULL) {
    code = 429;
  } else if (in->nattempts > 0 && in->attempts[in->nattempts - 1].http_status == 404) {
    code = 404;
  }
  q->status = code;
  q->retry_after_s = retry;
  q->reply = error_body(q, code, in->error, retry, &q->reply_len);
}

static void sink_done(void *ud, gkp__job *job, const gkp__job_info *in) {
  hreq *q = ud;
  note_route(q, in);
  leave_waiting(q);
  pthread_mutex_lock(&q->mu);
  if (q->key_id[0] == '\0' && !q->streaming) {
    snprintf(q->key_id, sizeof q->key_id, "%s", in->key_id);
  }
  if (q->model_used[0] == '\0' && !q->streaming) {
    snprintf(q->model_used, sizeof q->model_used, "%s", in->model_used);
  }
  if (q->streaming) {
    if (in->status != GKP__JOB_DONE) {
      size_t len;
      int code = in->status == GKP__JOB_CANCELLED ? 499 : 503;
      char *e = error_body(q, code, in->error, 0, &len);
      if (e != NULL && q->api == API_OPENAI) {
        gkp__dynbuf_adds(&q->out, "data: ");
        gkp__dynbuf_add(&q->out, e, len);
        gkp__dynbuf_adds(&q->out, "\n\n");
      } else if (e != NULL) {
        frame_event(q, e, len);
      }
      free(e);
    }
    if (q->api == API_OPENAI) {
      oai_stream_end(&q->oai, q->model_used, in->status == GKP__JOB_DONE, &q->out);
    } else if (!q->sse) {
      gkp__dynbuf_adds(&q->out, "]");
    }
  } else if (in->status == GKP__JOB_DONE) {
    q->status = 200;
    if (q->reply == NULL) { /* a stream that ended without an event */
      q->reply = strdup(q->sse ? "" : "[]");
      q->reply_len = q->reply != NULL ? strlen(q->reply) : 0;
    }
  } else {
    failed_reply(q, in);
  }
  q->finished = 1;
  q->ready = 1;
  q->job = NULL;
  pthread_mutex_unlock(&q->mu);
  gkp__job_release(job);
  front_wake(q);
  front_req_unref(q); /* the job's reference */
}

/* Fallback may serve a caller only with the models it may use (loop thread).
 * A caller admitted to "auto" accepts whatever the router picks. */
static int job_model_allowed(void *ud, const char *model) {
  const hreq *q = ud;
  return strcmp(q->model, "auto") == 0 || callers_allows(q->cl, model);
}

void routes_submit(hreq *q) {
  size_t body_len = 0;
  char *body = gkp__dynbuf_take(&q->body, &body_len); /* the job's from now on */
  gkp__raw_spec spec = {.model = q->model,
                        .action = q->action,
                        .body = body,
                        .body_len = body_len,
                        .take_body = 1,
                        .est_tokens = q->est_tokens,
                        .pin_model = q->pin,
                        .model_allowed = q->cl != NULL ? job_model_allowed : NULL,
                        .max_wait_ms = -1};
  gkp__job_sink sink = {.on_state = sink_state, .on_done = sink_done, .on_raw = sink_raw};
  gkp_error err;
  gkp__job *job = NULL;
  atomic_fetch_add(&q->refs, 1); /* the job's, dropped by sink_done */
  pthread_mutex_lock(&q->mu);
  if (q->closed) { /* its connection ended while it was held back */
    gkp__err(&err, -ECANCELED, "the request was cancelled");
  } else {
    job = gkp__runner_submit_raw(q->f->runner, &spec, &sink, q, &err);
  }
  /* Under q->mu: sink_done, which clears q->job, waits for it. */
  q->job = job;
  if (job == NULL) {
    int code = err.code == -ENOENT      ? 404
               : err.code == -EAGAIN    ? 429
               : err.code == -ECANCELED ? 499
                                        : 400;
    q->status = code;
    q->reply = error_body(q, code, err.msg, 0, &q->reply_len);
    q->finished = 1;
    q->ready = 1;
  }
  pthread_mutex_unlock(&q->mu);
  if (job == NULL) {
    free(body);
  } /* else the job holds the body, still counted as the request's */
  if (job == NULL) {
    leave_waiting(q);
    front_wake(q);
    front_req_unref(q);
  }
}

/* A body worker's error: made ready for the polling thread to queue. */
static void work_error(hreq *q, int code, int64_t retry_s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void work_error(hreq *q, int code, int64_t retry_s, const char *fmt, ...) {
  char msg[GKP_MSG_MAX];
  va_list ap;
  size_t len = 0;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char *body = error_body(q, code, msg, retry_s, &len);
  pthread_mutex_lock(&q->mu);
  free(q->reply);
  q->reply = body;
  q->reply_len = len;
  q->status = code;
  q->retry_after_s = retry_s;
  q->finished = 1;
  q->ready = 1;
  pthread_mutex_unlock(&q->mu);
  if (q->cl != NULL) {
    callers_error(q->f, q->cl);
  }
  front_wake(q);
}

/* Turns an OpenAI request into the Gemini one it stands for (a body
 * worker).  Returns 0, or 1 after making its error ready. */
static int translate_openai(hreq *q) {
  oai_req o;
  char msg[GKP_MSG_MAX];
  int rc = q->route == ROUTE_OAI_CHAT
               ? oai_chat_request(gkp__dynbuf_ptr(&q->body), gkp__dynbuf_len(&q->body), &o, msg,
                                  sizeof msg)
               : oai_embed_request(gkp__dynbuf_ptr(&q->body), gkp__dynbuf_len(&q->body), &o, msg,
                                   sizeof msg);
  if (rc != 0) {
    free(o.gbody);
    work_error(q, rc, 0, "%s", msg);
    return 1;
  }
  snprintf(q->model, sizeof q->model, "%s", o.model);
  if (!model_served(q) || gkp__gemini_model_path(q->model) == NULL) {
    free(o.gbody);
    work_error(q, 404, 0, "The model '%s' does not exist or you do not have access to it",
               q->model);
    return 1;
  }
  snprintf(q->action, sizeof q->action, "%s",
           q->route == ROUTE_OAI_EMBED ? "batchEmbedContents"
           : o.stream                  ? "streamGenerateContent"
                                       : "generateContent");
  q->sse = 1;
  q->oai.include_usage = o.include_usage;
  q->oai.base64 = o.base64;
  q->est_tokens = gkp__raw_estimate_tokens(o.gbody, o.gbody_len);
  gkp__dynbuf_reset(&q->body);
  gkp__dynbuf_init(&q->body, o.gbody_len + 1);
  gkp__dynbuf_add(&q->body, o.gbody, o.gbody_len);
  free(o.gbody);
  return 0;
}

void routes_body_done(hreq *q) {
  gkp__front *f = q->f;
  q->submitted = 1;
  if (q->route != ROUTE_ACTION && q->route != ROUTE_OAI_CHAT && q->route != ROUTE_OAI_EMBED) {
    reply_error(q, 404, 0, "no such method");
    return;
  }
  if (q->too_big) {
    reply_error(q, 413, 0, "the request body is larger than the limit of %zu bytes",
                f->opts.max_body);
    return;
  }
  if (q->over_memory) {
    reply_error(q, 503, FRONT_MEMORY_RETRY_S,
                "the front holds as many request bodies as its memory limit allows "
                "(--max-memory %zu bytes); retry in %d s",
                f->opts.max_memory, FRONT_MEMORY_RETRY_S);
    return;
  }
  if (gkp__dynbuf_len(&q->body) <= FRONT_INLINE_BODY) {
    routes_body_work(q); /* microseconds: not worth a hand-off */
  } else {
    front_work_post(q);
  }
  front_suspend(q);
}

/* Parses (and translates) the body under the memory ceiling.  Returns 0,
 * or 1 after making its error ready. */
static int body_parse(hreq *q) {
  gkp__front *f = q->f;
  size_t held = q->mem;
  size_t cost = routes_json_cost(gkp__dynbuf_ptr(&q->body), gkp__dynbuf_len(&q->body));
  /* The OpenAI translation holds the request's tree, Gemini's and its text. */
  if (q->api == API_OPENAI) {
    cost = cost > SIZE_MAX / 3 ? SIZE_MAX : cost * 3;
  }
  if (front_mem_take(q, cost) != 0) {
    work_error(q, 503, FRONT_MEMORY_RETRY_S,
               "the front holds as many request bodies as its memory limit allows "
               "(--max-memory %zu bytes); retry in %d s",
               f->opts.max_memory, FRONT_MEMORY_RETRY_S);
    return 1;
  }
  int rc = 0;
  if (q->api == API_OPENAI) {
    rc = translate_openai(q); /* it parses the body itself */
  } else {
    cJSON *doc = cJSON_ParseWithLength(gkp__dynbuf_ptr(&q->body), gkp__dynbuf_len(&q->body));
    int ok = cJSON_IsObject(doc);
    q->est_tokens = ok ? gkp__raw_estimate_tokens_doc(doc) : 0;
    cJSON_Delete(doc);
    if (!ok) {
      work_error(q, 400, 0,
                 "Invalid JSON payload received: the request body must be one JSON object");
      rc = 1;
    }
  }
  /* What stays is the body the job will hold. */
  front_mem_set(q, rc == 0 ? (q->body.alloc > held ? q->body.alloc : held) : 0);
  return rc;
}

void routes_body_work(hreq *q) {
  gkp__front *f = q->f;
  int hold = 0;
  if (atomic_load(&f->stopping)) {
    work_error(q, 503, 0, "the service is stopping");
  } else if (body_parse(q) == 0) {
    if (q->cl != NULL) {
      pthread_mutex_lock(&f->mu);
      hold = q->cl->waiting > 0;
      if (hold) { /* its earlier request still waits: take turns with other callers */
        q->held = 1;
        if (q->cl->held_tail != NULL) {
          q->cl->held_tail->held_next = q;
        } else {
          q->cl->held_head = q;
        }
        q->cl->held_tail = q;
      } else {
        q->waiting = 1;
        q->cl->waiting++;
      }
      pthread_mutex_unlock(&f->mu);
    }
    if (!hold) {
      routes_submit(q);
    }
  }
  pthread_mutex_lock(&q->mu);
  q->working = 0;
  pthread_mutex_unlock(&q->mu);
}

void routes_resumed(hreq *q) {
  pthread_mutex_lock(&q->mu);
  if (!q->ready) {
    q->suspended = 1;
    MHD_suspend_connection(q->conn);
    pthread_mutex_unlock(&q->mu);
    return;
  }
  int streaming = q->streaming;
  int status = q->status ? q->status : 503;
  char *reply = q->reply;
  size_t len = q->reply_len;
  int64_t retry = q->retry_after_s;
  q->reply = NULL;
  pthread_mutex_unlock(&q->mu);
  if (q->replied) {
    free(reply);
    return;
  }
  if (streaming) {
    front_stream_start(q, q->sse ? SSE_TYPE : JSON_TYPE);
  } else if (reply != NULL) {
    front_reply(q, status, is_stream(q) && q->sse && status == 200 ? SSE_TYPE : JSON_TYPE, reply,
                len, retry);
  } else {
    reply_error(q, 503, 0, "the service is stopping");
  }
  free(reply);
}
