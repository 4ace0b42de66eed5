/*
 * gemini.c - asynchronous Gemini API calls on the I/O loop.
 *
 * A call wraps one HTTP request (a models.list one per page).  The response
 * is routed by status: a 2xx streamed answer goes through the SSE parser
 * into gkp__gemini_parse; a 2xx whole answer is collected (capped) and
 * parsed at the end; anything else is collected (capped) for gkp_classify.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/gemini.h"
#include "client/sse.h"
#include "common/dynbuf.h"
#include "common/err.h"
#include "common/timeutil.h"
#include "common/util.h"

#define MODELS_PAGE_SIZE 1000
#define MODELS_MAX_PAGES 100
#define MODEL_ID_MAX 128

enum { MODE_GENERATE, MODE_COUNT, MODE_MODELS };

struct gkp__gemini_call {
  gkp__loop *loop;
  uint64_t id;
  int mode;
  int stream;
  gkp__http_req *req; /* the request in flight */
  gkp__gemini_callbacks cb;
  gkp__gemini_count_fn count_done;
  gkp__gemini_models_fn models_done;
  void *ud;
  gkp__gemini_endpoint ep; /* numbers only; strings below */
  char *base;
  char *key; /* models.list only (several pages); wiped */
  int64_t start_mono;
  int cancelled;

  /* The current response. */
  int status;
  gkp__sse sse;
  gkp__dynbuf body;
  int body_truncated;
  gkp__gemini_state st;
  int fail; /* an outcome decided while receiving (0: none) */
  char msg[GKP_MSG_MAX];
  gkp__dynbuf err_json; /* the error envelope seen after a 2xx */

  /* models.list */
  gkp__gemini_model *models;
  size_t nmodels, amodels;
  char *page_token;
  int pages;
};

const char *gkp__gemini_status_name(int status) {
  static const char *const names[] = {"ok",        "http_error", "stream_error", "transport",
                                      "malformed", "content",    "cancelled",    "aborted"};
  if (status < 0 || (size_t)status >= sizeof names / sizeof names[0]) {
    return "unknown";
  }
  return names[status];
}

const char *gkp__gemini_model_path(const char *model) {
  if (model == NULL) {
    return NULL;
  }
  if (strncmp(model, "models/", 7) == 0) {
    model += 7;
  }
  size_t n = strlen(model);
  if (n == 0 || n >= MODEL_ID_MAX) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    char c = model[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '-' || c == '_';
    if (!ok) {
      return NULL;
    }
  }
  return model;
}

/* ---- life of a call ---------------------------------------------------------- */

static void models_free(gkp__gemini_call *c) {
  for (size_t i = 0; i < c->nmodels; i++) {
    free((char *)c->models[i].id);
    free((char *)c->models[i].display_name);
  }
  free(c->models);
  c->models = NULL;
  c->nmodels = c->amodels = 0;
}

static void call_free(gkp__gemini_call *c) {
  gkp__sse_free(&c->sse);
  gkp__dynbuf_reset(&c->body);
  gkp__dynbuf_reset(&c->err_json);
  if (c->key != NULL) {
    explicit_bzero(c->key, strlen(c->key));
    free(c->key);
  }
  free(c->base);
  free(c->page_token);
  models_free(c);
  free(c);
}

/* Resets the per-response fields before a (next) request. */
static void response_reset(gkp__gemini_call *c) {
  c->status = 0;
  c->body_truncated = 0;
  c->fail = 0;
  c->msg[0] = '\0';
  gkp__dynbuf_reset(&c->body);
  gkp__dynbuf_reset(&c->err_json);
  gkp__gemini_state_init(&c->st);
}

/* Records an outcome decided while receiving (the first one wins). */
static void set_fail(gkp__gemini_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_fail(gkp__gemini_call *c, int status, const char *fmt, ...) {
  if (c->fail != 0) {
    return;
  }
  c->fail = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->msg, sizeof c->msg, fmt, ap);
  va_end(ap);
}

/* ---- receiving ------------------------------------------------------------- */

static int sink_text(void *ud, const char *text, size_t len, int is_thought) {
  gkp__gemini_call *c = ud;
  if (c->cb.on_text == NULL) {
    return 0;
  }
  int rc = c->cb.on_text(c->ud, text, len, is_thought);
  if (rc != 0) {
    set_fail(c, GKP__GEMINI_ABORTED, "aborted by the text receiver (%d)", rc);
  }
  return rc;
}

static int sink_image(void *ud, const char *mime, const void *data, size_t len, int is_thought) {
  gkp__gemini_call *c = ud;
  if (c->cb.on_image == NULL) {
    return 0;
  }
  int rc = c->cb.on_image(c->ud, mime, data, len, is_thought);
  if (rc != 0) {
    set_fail(c, GKP__GEMINI_ABORTED, "aborted by the image receiver (%d)", rc);
  }
  return rc;
}

static const gkp__gemini_sink call_sink = {sink_text, sink_image};

/* Notes an error envelope found in a 2xx answer. */
static void note_stream_error(gkp__gemini_call *c, const char *json, size_t len) {
  gkp__dynbuf_reset(&c->err_json);
  size_t n = len < GKP__GEMINI_MAX_ERROR_BODY ? len : GKP__GEMINI_MAX_ERROR_BODY;
  gkp__dynbuf_add(&c->err_json, json, n);
  set_fail(c, GKP__GEMINI_STREAM_ERROR, "error after HTTP %d: %d %s: %s", c->status,
           c->st.error_code, c->st.error_status[0] ? c->st.error_status : "UNKNOWN",
           c->st.error_message);
}

/*
 * Parses one JSON text of a 2xx answer (an SSE event, a bare value, or the
 * whole body) and delivers its content.  Returns 0 to go on, non-zero to
 * stop (c->fail says why).
 */
static int handle_json(gkp__gemini_call *c, const char *json, size_t len) {
  uint64_t usage_updates = c->st.usage_updates;
  gkp_error e = {0};
  int rc = gkp__gemini_parse(json, len, &call_sink, c, &c->st, &e);
  if (rc == -EBADMSG) {
    set_fail(c, GKP__GEMINI_MALFORMED, "malformed answer: %s", e.msg);
    return rc;
  }
  if (rc != 0) {
    set_fail(c, GKP__GEMINI_ABORTED, "%s", e.msg[0] ? e.msg : "aborted");
    return rc;
  }
  if (c->st.is_error) {
    note_stream_error(c, json, len);
    return -ECANCELED;
  }
  if (c->st.usage_updates != usage_updates && c->cb.on_usage != NULL) {
    c->cb.on_usage(c->ud, &c->st.usage);
  }
  return 0;
}

static int sse_event(void *ud, const char *data, size_t len) {
  return handle_json(ud, data, len);
}

static void http_status(void *ud, int status) {
  gkp__gemini_call *c = ud;
  c->status = status;
  int ok = status >= 200 && status < 300;
  size_t cap;
  if (!ok) {
    cap = c->ep.max_error_bytes ? c->ep.max_error_bytes : GKP__GEMINI_MAX_ERROR_BODY;
  } else {
    cap = c->ep.max_body_bytes ? c->ep.max_body_bytes : GKP__GEMINI_MAX_BODY;
  }
  gkp__dynbuf_init(&c->body, cap);
}

static int http_data(void *ud, const char *bytes, size_t len) {
  gkp__gemini_call *c = ud;
  int ok = c->status >= 200 && c->status < 300;
  if (!ok) {
    size_t room = gkp__dynbuf_room(&c->body);
    if (len > room) {
      c->body_truncated = 1;
      len = room;
    }
    gkp__dynbuf_add(&c->body, bytes, len); /* beyond the cap: dropped */
    return 0;
  }
  if (c->mode == MODE_GENERATE && c->stream) {
    int rc = gkp__sse_feed(&c->sse, bytes, len);
    if (rc == -EFBIG) {
      size_t cap = c->ep.max_event_bytes ? c->ep.max_event_bytes : GKP__SSE_MAX_EVENT;
      set_fail(c, GKP__GEMINI_MALFORMED, "malformed answer: a stream event exceeded %zu MiB",
               cap >> 20);
    } else if (rc != 0) {
      set_fail(c, GKP__GEMINI_MALFORMED, "malformed answer: the stream could not be parsed");
    }
    return rc;
  }
  int rc = gkp__dynbuf_add(&c->body, bytes, len);
  if (rc < 0) {
    set_fail(c, GKP__GEMINI_MALFORMED, "malformed answer: the answer exceeded %zu MiB",
             c->body.cap >> 20);
    return rc;
  }
  return 0;
}

/* ---- finishing ------------------------------------------------------------- */

/* Calls the user's completion callback for the mode, then frees the call. */
static void finish(gkp__gemini_call *c, gkp__gemini_outcome *o, int64_t count) {
  o->state = &c->st;
  o->elapsed_ms = gkp__mono_ms() - c->start_mono;
  if (o->message == NULL) {
    o->message = "";
  }
  gkp__loop_handle_del(c->loop, c->id);
  c->req = NULL;
  switch (c->mode) {
  case MODE_GENERATE:
    c->cb.on_done(c->ud, o);
    break;
  case MODE_COUNT:
    c->count_done(c->ud, o, count);
    break;
  default:
    if (o->status == GKP__GEMINI_OK) {
      c->models_done(c->ud, o, c->models, c->nmodels);
    } else {
      c->models_done(c->ud, o, NULL, 0);
    }
    break;
  }
  call_free(c);
}

/* The message of a non-2xx answer: "HTTP 429 RESOURCE_EXHAUSTED: ...". */
static void describe_http_error(gkp__gemini_call *c, const gkp__http_result *r) {
  gkp__gemini_state st;
  gkp__gemini_state_init(&st);
  gkp__gemini_parse(gkp__dynbuf_ptr(&c->body), gkp__dynbuf_len(&c->body), NULL, NULL, &st, NULL);
  int n;
  if (st.is_error && st.error_message[0] != '\0') {
    n = snprintf(c->msg, sizeof c->msg, "HTTP %d %s: %s", c->status, st.error_status,
                 st.error_message);
  } else {
    n = snprintf(c->msg, sizeof c->msg, "HTTP %d", c->status);
  }
  if (r->curl_code != CURLE_OK && n >= 0 && (size_t)n < sizeof c->msg) {
    snprintf(c->msg + n, sizeof c->msg - (size_t)n, " (body incomplete: %s)", r->error);
  }
}

/*
 * Decides the outcome common to every mode from the transfer's end.
 * Returns 1 if it is final (filled into *o), 0 if the 2xx body is complete
 * and the mode's parsing decides.
 */
static int transfer_outcome(gkp__gemini_call *c, const gkp__http_result *r,
                            gkp__gemini_outcome *o) {
  o->http_status = c->status ? c->status : r->http_status;
  o->curl_code = r->curl_code;
  if (c->fail != 0) {
    o->status = c->fail;
    o->message = c->msg;
    if (c->fail == GKP__GEMINI_STREAM_ERROR) {
      o->body = gkp__dynbuf_ptr(&c->err_json);
      o->body_len = gkp__dynbuf_len(&c->err_json);
    }
    return 1;
  }
  if (r->cancelled) {
    o->status = GKP__GEMINI_CANCELLED;
    o->message = "cancelled";
    return 1;
  }
  if (c->status != 0 && (c->status < 200 || c->status >= 300)) {
    o->status = GKP__GEMINI_HTTP_ERROR;
    o->body = gkp__dynbuf_ptr(&c->body);
    o->body_len = gkp__dynbuf_len(&c->body);
    o->body_truncated = c->body_truncated;
    describe_http_error(c, r);
    o->message = c->msg;
    return 1;
  }
  if (r->curl_code != CURLE_OK) {
    o->status = GKP__GEMINI_TRANSPORT;
    o->message = r->error;
    o->unsent = r->unsent;
    return 1;
  }
  if (c->status == 0) {
    o->status = GKP__GEMINI_MALFORMED;
    o->message = "malformed answer: no HTTP status";
    return 1;
  }
  return 0;
}

/* The end of a complete 2xx generation answer. */
static void generate_outcome(gkp__gemini_call *c, gkp__gemini_outcome *o) {
  if (c->stream) {
    int rc = gkp__sse_finish(&c->sse);
    if (rc != 0) {
      set_fail(c, GKP__GEMINI_MALFORMED,
               "malformed answer: the stream ended mid-event (truncated)");
    }
  } else if (handle_json(c, gkp__dynbuf_ptr(&c->body), gkp__dynbuf_len(&c->body)) != 0 &&
             c->fail == 0) {
    set_fail(c, GKP__GEMINI_MALFORMED, "malformed answer");
  }
  if (c->fail != 0) {
    o->status = c->fail;
    o->message = c->msg;
    if (c->fail == GKP__GEMINI_STREAM_ERROR) {
      o->body = gkp__dynbuf_ptr(&c->err_json);
      o->body_len = gkp__dynbuf_len(&c->err_json);
    }
    return;
  }
  int j = gkp__gemini_judge(&c->st, c->msg, sizeof c->msg);
  o->message = c->msg;
  if (j == GKP__JUDGE_OK) {
    o->status = GKP__GEMINI_OK;
  } else if (j == GKP__JUDGE_CONTENT) {
    o->status = GKP__GEMINI_CONTENT;
  } else {
    o->status = GKP__GEMINI_MALFORMED;
  }
}

/* Parses {"totalTokens":N}.  Returns N, or -1 with the outcome set. */
static int64_t count_outcome(gkp__gemini_call *c, gkp__gemini_outcome *o) {
  cJSON *root = cJSON_ParseWithLength(gkp__dynbuf_ptr(&c->body), gkp__dynbuf_len(&c->body));
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "totalTokens");
  int64_t n = -1;
  if (cJSON_IsNumber(t) && t->valuedouble >= 0) {
    n = (int64_t)t->valuedouble;
    o->status = GKP__GEMINI_OK;
  } else if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "error"))) {
    o->status = GKP__GEMINI_STREAM_ERROR;
    o->body = gkp__dynbuf_ptr(&c->body);
    o->body_len = gkp__dynbuf_len(&c->body);
    o->message = "error envelope in a 2xx countTokens answer";
  } else {
    o->status = GKP__GEMINI_MALFORMED;
    o->message = "malformed answer: no totalTokens in the countTokens answer";
  }
  cJSON_Delete(root);
  return n;
}

static void http_done(void *ud, const gkp__http_result *r);
static int start_request(gkp__gemini_call *c, const char *method, const char *url, const char *key,
                         const char *body, size_t body_len, gkp_error *err);

/* Appends one page's models.  Returns 0, -EBADMSG or -ENOMEM. */
static int models_add_page(gkp__gemini_call *c, const cJSON *root) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "models");
  const cJSON *m;
  cJSON_ArrayForEach(m, list) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
    if (!cJSON_IsString(name) || name->valuestring == NULL) {
      return -EBADMSG;
    }
    gkp__gemini_model *p = gkp__grow(c->models, &c->amodels, c->nmodels + 1, sizeof *p, 64);
    if (p == NULL) {
      return -ENOMEM;
    }
    c->models = p;
    const char *id = name->valuestring;
    if (strncmp(id, "models/", 7) == 0) {
      id += 7;
    }
    const cJSON *dn = cJSON_GetObjectItemCaseSensitive(m, "displayName");
    gkp__gemini_model *out = &c->models[c->nmodels];
    memset(out, 0, sizeof *out);
    out->id = strdup(id);
    out->display_name = strdup(cJSON_IsString(dn) && dn->valuestring ? dn->valuestring : "");
    if (out->id == NULL || out->display_name == NULL) {
      free((char *)out->id);
      free((char *)out->display_name);
      return -ENOMEM;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "inputTokenLimit");
    out->input_token_limit = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
    v = cJSON_GetObjectItemCaseSensitive(m, "outputTokenLimit");
    out->output_token_limit = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
    out->thinking = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "thinking"));
    const cJSON *meth;
    cJSON_ArrayForEach(meth, cJSON_GetObjectItemCaseSensitive(m, "supportedGenerationMethods")) {
      if (cJSON_IsString(meth) && strcmp(meth->valuestring, "generateContent") == 0) {
        out->generate_content = 1;
      }
    }
    c->nmodels++;
  }
  return 0;
}

/* Percent-encodes s for a query string into b. */
static int url_encode(gkp__dynbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_' || *p == '.' || *p == '~';
    char enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
    int rc = plain ? gkp__dynbuf_add(b, p, 1) : gkp__dynbuf_add(b, enc, 3);
    if (rc < 0) {
      return rc;
    }
  }
  return 0;
}

/* Starts the request of the next models.list page. */
static int models_request(gkp__gemini_call *c, gkp_error *err) {
  gkp__dynbuf url;
  gkp__dynbuf_init(&url, 16384);
  int rc = gkp__dynbuf_printf(&url, "%s/v1beta/models?pageSize=%d", c->base, MODELS_PAGE_SIZE);
  if (rc == 0 && c->page_token != NULL) {
    rc = gkp__dynbuf_adds(&url, "&pageToken=");
    if (rc == 0) {
      rc = url_encode(&url, c->page_token);
    }
  }
  if (rc < 0) {
    gkp__dynbuf_reset(&url);
    return gkp__err(err, -ENOMEM, "out of memory building the models.list URL");
  }
  c->pages++;
  response_reset(c);
  rc = start_request(c, "GET", gkp__dynbuf_ptr(&url), c->key, NULL, 0, err);
  gkp__dynbuf_reset(&url);
  return rc;
}

/*
 * The end of a 2xx models.list page: collects its models and either starts
 * the next page (returns 1) or fills the final outcome (returns 0).
 */
static int models_outcome(gkp__gemini_call *c, gkp__gemini_outcome *o) {
  cJSON *root = cJSON_ParseWithLength(gkp__dynbuf_ptr(&c->body), gkp__dynbuf_len(&c->body));
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    o->status = GKP__GEMINI_MALFORMED;
    o->message = "malformed answer: the models.list page is not a JSON object";
    return 0;
  }
  int rc = models_add_page(c, root);
  const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "nextPageToken");
  char *next = NULL;
  if (rc == 0 && cJSON_IsString(tok) && tok->valuestring != NULL && tok->valuestring[0] != '\0') {
    next = strdup(tok->valuestring);
    rc = next == NULL ? -ENOMEM : 0;
  }
  cJSON_Delete(root);
  if (rc < 0) {
    free(next);
    o->status = GKP__GEMINI_MALFORMED;
    o->message = rc == -ENOMEM ? "out of memory reading models.list"
                               : "malformed answer: a model without a name in models.list";
    return 0;
  }
  if (next == NULL) {
    o->status = GKP__GEMINI_OK;
    return 0;
  }
  if ((c->page_token != NULL && strcmp(next, c->page_token) == 0) || c->pages >= MODELS_MAX_PAGES) {
    free(next);
    o->status = GKP__GEMINI_MALFORMED;
    o->message = "malformed answer: models.list keeps returning pages (nextPageToken loop)";
    return 0;
  }
  if (c->cancelled) {
    free(next);
    o->status = GKP__GEMINI_CANCELLED;
    o->message = "cancelled";
    return 0;
  }
  free(c->page_token);
  c->page_token = next;
  gkp_error e = {0};
  rc = models_request(c, &e);
  if (rc == 0) {
    return 1;
  }
  o->status = rc == -ESHUTDOWN ? GKP__GEMINI_CANCELLED : GKP__GEMINI_TRANSPORT;
  snprintf(c->msg, sizeof c->msg, "%s", e.msg);
  o->message = c->msg;
  return 0;
}

static void http_done(void *ud, const gkp__http_result *r) {
  gkp__gemini_call *c = ud;
  gkp__gemini_outcome o = {0};
  int64_t count = -1;
  c->req = NULL;
  if (!transfer_outcome(c, r, &o)) {
    switch (c->mode) {
    case MODE_GENERATE:
      generate_outcome(c, &o);
      break;
    case MODE_COUNT:
      count = count_outcome(c, &o);
      break;
    default:
      if (models_outcome(c, &o)) {
        return; /* the next page is on its way */
      }
      break;
    }
  }
  finish(c, &o, count);
}

/* ---- starting -------------------------------------------------------------- */

/* Starts c's HTTP request with the API key header.  Returns 0 or an error. */
static int start_request(gkp__gemini_call *c, const char *method, const char *url, const char *key,
                         const char *body, size_t body_len, gkp_error *err) {
  static const char prefix[] = "x-goog-api-key: ";
  size_t klen = strlen(key);
  char *kh = malloc(sizeof prefix + klen);
  if (kh == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory starting a Gemini request");
  }
  memcpy(kh, prefix, sizeof prefix - 1);
  memcpy(kh + sizeof prefix - 1, key, klen + 1);
  const char *headers[] = {kh, "Content-Type: application/json", NULL};
  gkp__http_opts ho = {
      .method = method,
      .url = url,
      .headers = headers,
      .user_agent = GKP__GEMINI_USER_AGENT,
      .body = body,
      .body_len = body_len,
      .connect_timeout_ms = c->ep.connect_timeout_ms,
      .low_speed_time_s = c->ep.low_speed_time_s,
      .timeout_ms = c->ep.timeout_ms,
  };
  gkp__http_callbacks hc = {http_status, http_data, http_done};
  int rc = gkp__http_start(c->loop, &ho, &hc, c, &c->req, err);
  explicit_bzero(kh, sizeof prefix + klen);
  free(kh);
  return rc;
}

/* Validates the endpoint and creates a call (not started). */
static int call_new(gkp__loop *loop, const gkp__gemini_endpoint *ep, int mode,
                    gkp__gemini_call **out, gkp_error *err) {
  *out = NULL;
  if (ep == NULL || ep->api_key == NULL || ep->api_key[0] == '\0') {
    return gkp__err(err, -EINVAL, "no API key for the Gemini request");
  }
  if (strpbrk(ep->api_key, "\r\n") != NULL) {
    return gkp__err(err, -EINVAL, "the API key contains a line break");
  }
  if (!gkp__loop_in_thread(loop)) {
    return gkp__err(err, -EINVAL, "Gemini calls must be started on the I/O loop thread");
  }
  const char *base =
      ep->base_url != NULL && ep->base_url[0] != '\0' ? ep->base_url : GKP__GEMINI_DEFAULT_BASE;
  gkp__gemini_call *c = calloc(1, sizeof *c);
  if (c == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory starting a Gemini request");
  }
  c->loop = loop;
  c->mode = mode;
  c->ep = *ep;
  c->ep.base_url = NULL;
  c->ep.api_key = NULL;
  c->start_mono = gkp__mono_ms();
  gkp__dynbuf_init(&c->body, GKP__GEMINI_MAX_ERROR_BODY);
  gkp__dynbuf_init(&c->err_json, GKP__GEMINI_MAX_ERROR_BODY);
  gkp__gemini_state_init(&c->st);
  c->base = strdup(base);
  if (c->base == NULL) {
    call_free(c);
    return gkp__err(err, -ENOMEM, "out of memory starting a Gemini request");
  }
  size_t n = strlen(c->base);
  while (n > 0 && c->base[n - 1] == '/') {
    c->base[--n] = '\0';
  }
  c->id = gkp__loop_handle_add(loop, GKP__HANDLE_GEMINI, c);
  if (c->id == 0) {
    call_free(c);
    return gkp__err(err, -ENOMEM, "out of memory starting a Gemini request");
  }
  *out = c;
  return 0;
}

/* Undoes call_new after a failed start. */
static void call_abandon(gkp__gemini_call *c) {
  gkp__loop_handle_del(c->loop, c->id);
  call_free(c);
}

/* Builds "{base}/v1beta/models/{model}:{method}{suffix}" into b. */
static int model_url(gkp__dynbuf *b, const gkp__gemini_call *c, const char *model,
                     const char *method, const char *suffix, gkp_error *err) {
  gkp__dynbuf_init(b, 16384);
  const char *m = gkp__gemini_model_path(model);
  if (m == NULL) {
    return gkp__err(err, -EINVAL,
                    "invalid model name \"%.80s\" (letters, digits, '.', '-' and '_' only)",
                    model ? model : "");
  }
  if (gkp__dynbuf_printf(b, "%s/v1beta/models/%s:%s%s", c->base, m, method, suffix) < 0) {
    return gkp__err(err, -ENOMEM, "out of memory building the URL");
  }
  return 0;
}

/* POSTs `body` to {base}/v1beta/models/{model}:{action}{query} for a new
 * call c.  Returns 0 with *out (if given) set to c, or a negative errno
 * after abandoning c (no callback will come). */
static int post_model(gkp__gemini_call *c, const gkp__gemini_endpoint *ep, const char *model,
                      const char *action, const char *query, const char *body, size_t body_len,
                      gkp__gemini_call **out, gkp_error *err) {
  gkp__dynbuf url;
  int rc = model_url(&url, c, model, action, query, err);
  if (rc == 0) {
    rc = start_request(c, "POST", gkp__dynbuf_ptr(&url), ep->api_key, body, body_len, err);
  }
  gkp__dynbuf_reset(&url);
  if (rc < 0) {
    call_abandon(c);
    return rc;
  }
  if (out != NULL) {
    *out = c;
  }
  return 0;
}

int gkp__gemini_call_start(gkp__loop *loop, const gkp__gemini_endpoint *ep, const char *model,
                           const char *body, size_t body_len, int stream,
                           const gkp__gemini_callbacks *cb, void *ud, gkp__gemini_call **out,
                           gkp_error *err) {
  if (out != NULL) {
    *out = NULL;
  }
  if (cb == NULL || cb->on_done == NULL || body == NULL) {
    return gkp__err(err, -EINVAL, "Gemini call without a body or a completion callback");
  }
  gkp__gemini_call *c;
  int rc = call_new(loop, ep, MODE_GENERATE, &c, err);
  if (rc < 0) {
    return rc;
  }
  c->cb = *cb;
  c->ud = ud;
  c->stream = stream != 0;
  gkp__sse_init(&c->sse, ep->max_event_bytes, sse_event, sse_event, c);
  return post_model(c, ep, model, stream ? "streamGenerateContent" : "generateContent",
                    stream ? "?alt=sse" : "", body, body_len, out, err);
}

int gkp__gemini_count_start(gkp__loop *loop, const gkp__gemini_endpoint *ep, const char *model,
                            const char *body, size_t body_len, gkp__gemini_count_fn done, void *ud,
                            gkp__gemini_call **out, gkp_error *err) {
  if (out != NULL) {
    *out = NULL;
  }
  if (done == NULL || body == NULL) {
    return gkp__err(err, -EINVAL, "countTokens call without a body or a completion callback");
  }
  gkp__gemini_call *c;
  int rc = call_new(loop, ep, MODE_COUNT, &c, err);
  if (rc < 0) {
    return rc;
  }
  c->count_done = done;
  c->ud = ud;
  return post_model(c, ep, model, "countTokens", "", body, body_len, out, err);
}

int gkp__gemini_models_start(gkp__loop *loop, const gkp__gemini_endpoint *ep,
                             gkp__gemini_models_fn done, void *ud, gkp__gemini_call **out,
                             gkp_error *err) {
  if (out != NULL) {
    *out = NULL;
  }
  if (done == NULL) {
    return gkp__err(err, -EINVAL, "models.list call without a completion callback");
  }
  gkp__gemini_call *c;
  int rc = call_new(loop, ep, MODE_MODELS, &c, err);
  if (rc < 0) {
    return rc;
  }
  c->models_done = done;
  c->ud = ud;
  c->key = strdup(ep->api_key);
  if (c->key == NULL) {
    call_abandon(c);
    return gkp__err(err, -ENOMEM, "out of memory starting models.list");
  }
  rc = models_request(c, err);
  if (rc < 0) {
    call_abandon(c);
    return rc;
  }
  if (out != NULL) {
    *out = c;
  }
  return 0;
}

/* ---- cancelling ------------------------------------------------------------ */

void gkp__gemini_call_cancel(gkp__gemini_call *call) {
  call->cancelled = 1;
  if (call->req != NULL) {
    gkp__http_cancel(call->req);
  }
}

uint64_t gkp__gemini_call_id(const gkp__gemini_call *call) {
  return call->id;
}

static void cancel_by_handle(void *ptr) {
  gkp__gemini_call_cancel(ptr);
}

int gkp__gemini_call_cancel_async(gkp__loop *loop, uint64_t id) {
  return gkp__loop_post_handle(loop, id, GKP__HANDLE_GEMINI, cancel_by_handle);
}
