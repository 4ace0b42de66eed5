/*
 * routes.c - what a request means: the Gemini REST API passed through the
 * pool.  Routing and tokens before the body; the runner's raw job after it;
 * Google's answer (or a Gemini-format error) back.
 */
#include <cjson/cJSON.h>
#include <errno.h>
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

/* Splits "/v1beta/models[/{m}[:{action}]]" into the request.  Returns the
 * route or ROUTE_NONE. */
static int parse_openai_path(hreq *q, const char *url) {
  q->api = API_OPENAI;
  if (strcmp(url, "/v1/chat/completions") == 0) {
    return ROUTE_OAI_CHAT;
  }
  if (strcmp(url, "/v1/embeddings") == 0) {
    return ROUTE_OAI_EMBED;
  }
  if (strcmp(url, "/v1/models") == 0 || strcmp(url, "/v1/models/") == 0) {
    return ROUTE_OAI_MODELS;
  }
  if (strncmp(url, "/v1/models/", 11) == 0 && strchr(url + 11, ':') == NULL &&
      strlen(url + 11) < sizeof q->model) {
    snprintf(q->model, sizeof q->model, "%s", url + 11);
    return ROUTE_OAI_MODEL;
  }
  q->api = API_GEMINI;
  return ROUTE_NONE;
}

static int parse_path(hreq *q, const char *url) {
  const char *p;
  int route = parse_openai_path(q, url);
  if (route != ROUTE_NONE) {
    return route;
  }
  if (strncmp(url, "/v1beta/", 8) == 0) {
    p = url + 8;
  } else if (strncmp(url, "/v1/", 4) == 0) {
    p = url + 4;
  } else {
    return ROUTE_NONE;
  }
  if (strcmp(p, "models") == 0 || strcmp(p, "models/") == 0) {
    return ROUTE_MODELS;
  }
  if (strncmp(p, "models/", 7) != 0) {
    return ROUTE_NONE;
  }
  p += 7;
  const char *colon = strchr(p, ':');
  size_t mlen = colon != NULL ? (size_t)(colon - p) : strlen(p);
  if (mlen == 0 || mlen >= sizeof q->model || strchr(p, '/') != NULL) {
    return ROUTE_NONE;
  }
  memcpy(q->model, p, mlen);
  q->model[mlen] = '\0';
  if (gkp__gemini_model_path(q->model) == NULL) {
    return ROUTE_NONE;
  }
  if (colon == NULL) {
    return ROUTE_MODEL;
  }
  if (strlen(colon + 1) >= sizeof q->action) {
    return ROUTE_NONE;
  }
  snprintf(q->action, sizeof q->action, "%s", colon + 1);
  return ROUTE_ACTION;
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

/* Declared body length over the limit: 413 before reading any of it. */
static int body_too_large(hreq *q) {
  const char *cl = header(q, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl != NULL && strtoull(cl, NULL, 10) > q->f->opts.max_body) {
    return reply_error(q, 413, 0, "the request body is larger than the limit of %zu bytes",
                       q->f->opts.max_body);
  }
  return 0;
}

int routes_begin(hreq *q, const char *method, const char *url) {
  int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
  q->route = parse_path(q, url);
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
    return body_too_large(q);
  }
  if (!is_post) {
    return reply_error(q, 405, 0, "use POST for %.200s", url);
  }
  if (!action_known(q->action)) {
    return reply_error(q, 404, 0, "unknown method models.%s", q->action);
  }
  if (!gkp_model_known(q->f->pool, q->model) || !callers_allows(q->cl, q->model)) {
    return reply_error(q, 404, 0,
                       "models/%s is not found for API version v1beta, or is not supported for "
                       "%s (the pool serves the models of its configuration)",
                       q->model, q->action);
  }
  if (body_too_large(q)) {
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

static void sink_state(void *ud, gkp__job *job, const gkp__job_info *info) {
  (void)job;
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

void routes_submit(hreq *q) {
  gkp__raw_spec spec = {.model = q->model,
                        .action = q->action,
                        .body = gkp__dynbuf_ptr(&q->body),
                        .body_len = gkp__dynbuf_len(&q->body),
                        .pin_model = q->pin,
                        .max_wait_ms = -1};
  gkp__job_sink sink = {.on_state = sink_state, .on_done = sink_done, .on_raw = sink_raw};
  gkp_error err;
  atomic_fetch_add(&q->refs, 1); /* the job's, dropped by sink_done */
  pthread_mutex_lock(&q->mu);
  gkp__job *job = gkp__runner_submit_raw(q->f->runner, &spec, &sink, q, &err);
  /* Under q->mu: sink_done, which clears q->job, waits for it. */
  q->job = job;
  if (job == NULL) {
    int code = err.code == -ENOENT ? 404 : 400;
    q->status = code;
    q->reply = error_body(q, code, err.msg, 0, &q->reply_len);
    q->finished = 1;
    q->ready = 1;
  }
  pthread_mutex_unlock(&q->mu);
  if (job == NULL) {
    leave_waiting(q);
    front_wake(q);
    front_req_unref(q);
  }
}

/* Turns an OpenAI request into the Gemini one it stands for.  Returns 0,
 * or 1 after replying with an error. */
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
    return reply_error(q, rc, 0, "%s", msg);
  }
  snprintf(q->model, sizeof q->model, "%s", o.model);
  if (!gkp_model_known(q->f->pool, q->model) || !callers_allows(q->cl, q->model) ||
      gkp__gemini_model_path(q->model) == NULL) {
    free(o.gbody);
    return reply_error(q, 404, 0, "The model '%s' does not exist or you do not have access to it",
                       q->model);
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
  cJSON *doc = cJSON_ParseWithLength(gkp__dynbuf_ptr(&q->body), gkp__dynbuf_len(&q->body));
  int ok = cJSON_IsObject(doc);
  cJSON_Delete(doc);
  if (!ok) {
    reply_error(q, 400, 0,
                "Invalid JSON payload received: the request body must be one JSON object");
    return;
  }
  if (q->api == API_OPENAI && translate_openai(q)) {
    return;
  }
  if (q->cl != NULL) {
    int64_t wait_s = callers_admit(f, q->cl);
    if (wait_s < 0) {
      reply_error(q, 503, 1, "the pool's state could not count client %s's request; retry",
                  q->cl->cfg->id);
      return;
    }
    pthread_mutex_lock(&f->mu);
    int hold = wait_s == 0 && q->cl->waiting > 0;
    if (hold) { /* its earlier request still waits: take turns with other callers */
      q->held = 1;
      if (q->cl->held_tail != NULL) {
        q->cl->held_tail->held_next = q;
      } else {
        q->cl->held_head = q;
      }
      q->cl->held_tail = q;
    } else if (wait_s == 0) {
      q->waiting = 1;
      q->cl->waiting++;
    }
    pthread_mutex_unlock(&f->mu);
    if (wait_s > 0) {
      reply_error(q, 429, wait_s,
                  "client %s is over its own limit (rpm %lld, rpd %lld); retry in %lld s",
                  q->cl->cfg->id, (long long)q->cl->cfg->rpm, (long long)q->cl->cfg->rpd,
                  (long long)wait_s);
      return;
    }
    if (hold) {
      front_suspend(q);
      return;
    }
  }
  routes_submit(q);
  front_suspend(q);
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
