/*
 * gemini.h - the Gemini REST API: request bodies, responses, and calls.
 *
 * Three parts (see shared/GEMINI_API.md for the wire facts):
 * - request.c: a gkp__gemini_request -> the generateContent JSON body, and a
 *   token estimate for it.  Pure functions, any thread.
 * - response.c: a GenerateContentResponse (one SSE event, a whole answer, an
 *   element of a JSON array, or an {"error":...} envelope) -> text, thought
 *   text, images, usage, finish/block reasons.  Pure, any thread.
 * - gemini.c: asynchronous calls on the I/O loop (generateContent and
 *   streamGenerateContent, countTokens, models.list).  Loop thread.
 *
 * The API key travels only in the `x-goog-api-key` header, never in a URL,
 * and is wiped from memory when the call ends.  Nothing here prints or logs.
 */
#ifndef GKP_CLIENT_GEMINI_H
#define GKP_CLIENT_GEMINI_H

#include <stddef.h>
#include <stdint.h>

#include "client/http.h"
#include "client/loop.h"
#include "gkp.h"

#define GKP__GEMINI_DEFAULT_BASE "https://generativelanguage.googleapis.com"
#define GKP__GEMINI_USER_AGENT "gemini-key-pool/" GKP_VERSION

/* ==== Requests (request.c) ================================================ */

#define GKP__GEMINI_MAX_IMAGE ((size_t)20 * 1024 * 1024) /* inline data limit */
#define GKP__GEMINI_TOKENS_PER_IMAGE 258

/* Tools, as a bit set. */
enum {
  GKP__TOOL_GOOGLE_SEARCH = 1 << 0,  /* {"googleSearch":{}} */
  GKP__TOOL_CODE_EXECUTION = 1 << 1, /* {"codeExecution":{}} */
  GKP__TOOL_URL_CONTEXT = 1 << 2,    /* {"urlContext":{}} */
};

/* How a model takes its thinking setting: the values of thinking_level in
 * gkp__model_cfg (config.h). */
enum {
  GKP__THINKING_STYLE_NONE = -1,  /* no thinkingConfig at all */
  GKP__THINKING_STYLE_BUDGET = 0, /* Gemini 2.5: thinkingBudget (int) */
  GKP__THINKING_STYLE_LEVEL = 1,  /* Gemini 3: thinkingLevel (enum) */
};

/* How much to think. */
enum {
  GKP__THINK_UNSET = 0, /* send no level/budget (the model's default) */
  GKP__THINK_MINIMAL,   /* level MINIMAL; budget 0 */
  GKP__THINK_LOW,       /* level LOW; budget 1024 */
  GKP__THINK_MEDIUM,    /* level MEDIUM; budget 8192 */
  GKP__THINK_HIGH,      /* level HIGH; budget 24576 */
};

/* An input file sent inline (an image or a PDF).  Its MIME type is taken
 * from its first bytes, never from a name. */
typedef struct gkp__gemini_image {
  const void *data;
  size_t len;
} gkp__gemini_image;

/* One generation request.  Strings are NUL-terminated UTF-8, borrowed. */
typedef struct gkp__gemini_request {
  const char *text;                /* required: the task, first text part */
  const char *context;             /* NULL or a second text part (e.g. a context file) */
  const gkp__gemini_image *images; /* inline files after the text parts */
  size_t nimages;
  const char *system;        /* NULL or systemInstruction text */
  unsigned tools;            /* GKP__TOOL_* bits */
  double temperature;        /* < 0: not sent */
  int64_t max_output_tokens; /* <= 0: not sent */
  int image_output;          /* responseModalities ["TEXT","IMAGE"] (image models) */
  int thinking_style;        /* GKP__THINKING_STYLE_*, from the model's config */
  int thinking;              /* GKP__THINK_* */
  int include_thoughts;      /* thinkingConfig.includeThoughts: thought summaries */
  size_t max_image_bytes;    /* per file; 0: GKP__GEMINI_MAX_IMAGE */
} gkp__gemini_request;

/*
 * Builds the JSON body of a generateContent / streamGenerateContent request,
 * in the shape and key order the official SDK sends:
 *   {"contents":[{"role":"user","parts":[{"text":T},{"text":CONTEXT},
 *      {"inlineData":{"mimeType":M,"data":B64}}...]}],
 *    "systemInstruction":{"parts":[{"text":S}],"role":"user"},
 *    "tools":[{"googleSearch":{}},{"codeExecution":{}},{"urlContext":{}}],
 *    "generationConfig":{"temperature":..,"maxOutputTokens":..,
 *      "responseModalities":["TEXT","IMAGE"],
 *      "thinkingConfig":{"thinkingLevel":"LOW"|"thinkingBudget":N,
 *                        "includeThoughts":true}}}
 * Absent parts are left out (no empty "tools" or "generationConfig").  The
 * thinking setting is sent as a level or as a budget according to
 * thinking_style, never both; with GKP__THINKING_STYLE_NONE no
 * thinkingConfig is sent at all.
 * Returns 0 with a malloc'd NUL-terminated body in *out (length in *out_len);
 * or -EINVAL (no text, text not valid UTF-8, bad settings), -ENOTSUP (a
 * file of an unsupported type), -EFBIG (a file over the size limit), -ENOMEM,
 * each with a message naming the part and the fix.
 */
int gkp__gemini_build_body(const gkp__gemini_request *req, char **out, size_t *out_len,
                           gkp_error *err);

/* The body of a countTokens request for the same contents:
 * {"contents":[...]} (system instruction and tools are not part of it). */
int gkp__gemini_build_count_body(const gkp__gemini_request *req, char **out, size_t *out_len,
                                 gkp_error *err);

/*
 * An estimate of the request's input tokens, made before sending:
 * ceil(UTF-8 bytes of text, context and system instruction / 4) + 258 per
 * inline file.  Only an estimate (PDF pages and large images cost more); the
 * engine corrects it from usageMetadata.promptTokenCount.
 */
int64_t gkp__gemini_estimate_tokens(const gkp__gemini_request *req);

/* The MIME type of a file from its magic bytes: "image/png", "image/jpeg",
 * "image/gif", "image/webp", "image/heic", "image/heif",
 * "application/pdf"; NULL if unknown. */
const char *gkp__gemini_detect_mime(const void *data, size_t len);

/* The thinkingBudget used for a GKP__THINK_* level with 2.5 models
 * (minimal 0, low 1024, medium 8192, high 24576); -1 for UNSET. */
int gkp__gemini_thinking_budget(int thinking);

/* "MINIMAL", "LOW", "MEDIUM", "HIGH"; NULL for UNSET or unknown. */
const char *gkp__gemini_thinking_level_name(int thinking);

/* Parses "minimal", "low", "medium", "high" (any case) -> GKP__THINK_*;
 * NULL or "" -> GKP__THINK_UNSET; -1 for anything else. */
int gkp__gemini_thinking_parse(const char *s);

/* ==== Responses (response.c) ============================================== */

/* usageMetadata; -1 where the field was absent. */
typedef struct gkp__gemini_usage {
  int64_t prompt;     /* promptTokenCount */
  int64_t candidates; /* candidatesTokenCount */
  int64_t thoughts;   /* thoughtsTokenCount */
  int64_t cached;     /* cachedContentTokenCount */
  int64_t tool_use;   /* toolUsePromptTokenCount */
  int64_t total;      /* totalTokenCount */
} gkp__gemini_usage;

/* Receivers of the content of a response, in order.  Any may be NULL.  A
 * non-zero return stops parsing and is returned by the parse function. */
typedef struct gkp__gemini_sink {
  /* A text part (is_thought: a thought summary, not answer text).  The
   * parts executableCode and codeExecutionResult arrive here too, rendered
   * as Markdown code blocks. */
  int (*on_text)(void *ud, const char *text, size_t len, int is_thought);
  /* An inlineData part, decoded. */
  int (*on_image)(void *ud, const char *mime, const void *data, size_t len, int is_thought);
} gkp__gemini_sink;

/* What the responses of one answer said so far; fields are updated by every
 * parsed response (the last finishReason / usage / ids win). */
typedef struct gkp__gemini_state {
  int has_usage;           /* some response carried usageMetadata */
  uint64_t usage_updates;  /* how many did */
  gkp__gemini_usage usage; /* the last one */
  char finish_reason[40];  /* candidates[0].finishReason, "" if none yet */
  char block_reason[40];   /* promptFeedback.blockReason, "" if none */
  char model_version[80];
  char response_id[80];
  uint64_t text_bytes;                /* answer text delivered */
  uint64_t thought_bytes;             /* thought text delivered */
  uint64_t images;                    /* answer images delivered */
  uint64_t responses;                 /* responses parsed */
  int is_error;                       /* an {"error":...} envelope was seen */
  int error_code;                     /* its "code" (0 if absent) */
  char error_status[40];              /* its "status" */
  char error_message[GKP_REASON_MAX]; /* its "message", shortened */
} gkp__gemini_state;

/* Initialises a state (usage fields -1, strings empty). */
void gkp__gemini_state_init(gkp__gemini_state *st);

/*
 * Parses one JSON text: a GenerateContentResponse object, a JSON array of
 * them (a non-SSE streamGenerateContent answer), or an {"error":...}
 * envelope (possibly inside an array).  Content goes to the sink in order;
 * the rest updates *st.  An error envelope sets st->is_error (and the error
 * fields) and stops: the caller hands the raw JSON to gkp_classify.
 * Returns 0 (also for an error envelope), -EBADMSG if the text is not JSON
 * or not a response (the message says what was wrong), -ENOMEM, or a sink's
 * non-zero return value.
 */
int gkp__gemini_parse(const char *json, size_t len, const gkp__gemini_sink *sink, void *ud,
                      gkp__gemini_state *st, gkp_error *err);

/*
 * Judges a complete answer from its state.  Returns 0 if it is a success
 * (finishReason STOP, MAX_TOKENS, FINISH_REASON_UNSPECIFIED); 1 if the answer
 * was refused for its content (blockReason, or finishReason SAFETY,
 * RECITATION, PROHIBITED_CONTENT, ...), with a sentence in msg such as "the
 * answer was blocked by Google's safety filter (finishReason SAFETY)" or
 * "the prompt was blocked (blockReason PROHIBITED_CONTENT)"; 2 if no
 * finishReason arrived at all (a truncated answer), with a sentence in msg.
 * For MAX_TOKENS, 0 is returned and msg holds a note that the answer was
 * cut at maxOutputTokens; otherwise msg is "" on success.
 */
int gkp__gemini_judge(const gkp__gemini_state *st, char *msg, size_t len);

/* The outcome of judging, for gkp__gemini_judge's return value. */
enum { GKP__JUDGE_OK = 0, GKP__JUDGE_CONTENT = 1, GKP__JUDGE_TRUNCATED = 2 };

/* ==== Calls (gemini.c; loop thread) ======================================= */

/* Where and how to call.  Strings are copied by the start functions. */
typedef struct gkp__gemini_endpoint {
  const char *base_url;    /* NULL: GKP__GEMINI_DEFAULT_BASE; "/v1beta/..." is appended */
  const char *api_key;     /* required; sent only as x-goog-api-key */
  long connect_timeout_ms; /* 0: the gkp__http defaults (10 s) */
  long low_speed_time_s;   /* 0: 60 s below 1 byte/s aborts; < 0: off */
  long timeout_ms;         /* 0: 600 s overall; < 0: none */
  size_t max_event_bytes;  /* one SSE event; 0: 32 MiB */
  size_t max_body_bytes;   /* a whole non-streamed answer; 0: 64 MiB */
  size_t max_error_bytes;  /* a non-2xx body kept for gkp_classify; 0: 64 KiB */
} gkp__gemini_endpoint;

#define GKP__GEMINI_MAX_BODY ((size_t)64 * 1024 * 1024)
#define GKP__GEMINI_MAX_ERROR_BODY ((size_t)64 * 1024)

/* How a call ended. */
enum gkp__gemini_status {
  GKP__GEMINI_OK = 0,       /* a complete answer (MAX_TOKENS included: see `message`) */
  GKP__GEMINI_HTTP_ERROR,   /* a non-2xx status: http_status + the raw body (capped) */
  GKP__GEMINI_STREAM_ERROR, /* an {"error":...} envelope after a 2xx status (mid-stream,
                               bare or as a data: event): http_status + that JSON */
  GKP__GEMINI_TRANSPORT,    /* refused, reset, timed out, ...: `message` says which */
  GKP__GEMINI_MALFORMED,    /* a 2xx answer that is truncated, not JSON, or too large:
                               server trouble; `message` says which */
  GKP__GEMINI_CONTENT,      /* refused for its content (safety, blocked prompt): not a
                               key problem; `message` says why */
  GKP__GEMINI_CANCELLED,    /* gkp__gemini_call_cancel, or the loop stopped */
  GKP__GEMINI_ABORTED,      /* a callback returned non-zero */
};

/* "ok", "http_error", "stream_error", "transport", "malformed", "content",
 * "cancelled", "aborted". */
const char *gkp__gemini_status_name(int status);

/*
 * Everything known at the end of a call; valid only during on_done.
 *
 * For the engine: HTTP_ERROR and STREAM_ERROR go to
 * gkp_classify(http_status, body, body_len) / gkp_report_error; TRANSPORT
 * and MALFORMED are server trouble: classify them as a transport failure,
 * gkp_classify(0, message, strlen(message)); CONTENT fails the job without
 * penalising the key; OK records usage.
 */
typedef struct gkp__gemini_outcome {
  int status;       /* enum gkp__gemini_status */
  int http_status;  /* the response status; 0 if none arrived */
  const char *body; /* HTTP_ERROR: the response body; STREAM_ERROR: the error JSON;
                       otherwise NULL.  Not NUL-guaranteed: use body_len. */
  size_t body_len;
  int body_truncated;  /* the body was longer than max_error_bytes */
  const char *message; /* one line: the reason for a failure, or a note on success
                          (MAX_TOKENS), or "" */
  CURLcode curl_code;
  int unsent;                     /* TRANSPORT: nothing reached the server (see gkp__http_result):
                                     not counted, no key's fault (gkp_release_unreached) */
  const gkp__gemini_state *state; /* usage, finish/block reasons, ids, byte counts */
  int64_t elapsed_ms;
} gkp__gemini_outcome;

/* Callbacks of a generation call, on the loop thread.  Only on_done is
 * required.  on_text/on_image returning non-zero abort the call
 * (GKP__GEMINI_ABORTED). */
typedef struct gkp__gemini_callbacks {
  int (*on_text)(void *ud, const char *text, size_t len, int is_thought);
  int (*on_image)(void *ud, const char *mime, const void *data, size_t len, int is_thought);
  /* usageMetadata of a response (running totals while streaming). */
  void (*on_usage)(void *ud, const gkp__gemini_usage *usage);
  /* Exactly once; the call is freed right after it returns. */
  void (*on_done)(void *ud, const gkp__gemini_outcome *o);
} gkp__gemini_callbacks;

typedef struct gkp__gemini_call gkp__gemini_call;

/*
 * Starts a generation: POST {base}/v1beta/models/{model}:streamGenerateContent
 * ?alt=sse when `stream`, else :generateContent, with the headers
 * x-goog-api-key, Content-Type: application/json and User-Agent
 * gemini-key-pool/VERSION, and `body` (copied; usually from
 * gkp__gemini_build_body).  `model` may carry a "models/" prefix; it must
 * otherwise consist of letters, digits, '.', '-' and '_'.
 * Text and images are delivered as they arrive when streaming, after the
 * whole answer otherwise.  A non-2xx body is collected (capped) and never
 * parsed as a stream.
 * Loop thread.  Returns 0 and *out (if out is non-NULL: a handle valid until
 * on_done returns), or a negative errno with a message and no callback:
 * -EINVAL (bad model name, no key, not on the loop thread), -ENOMEM,
 * -ESHUTDOWN.
 */
int gkp__gemini_call_start(gkp__loop *loop, const gkp__gemini_endpoint *ep, const char *model,
                           const char *body, size_t body_len, int stream,
                           const gkp__gemini_callbacks *cb, void *ud, gkp__gemini_call **out,
                           gkp_error *err);

/*
 * Cancels any call of this module (generation, countTokens, models.list).
 * Its on_done follows later with GKP__GEMINI_CANCELLED (unless it had
 * already ended: then with its real outcome).  Harmless twice; must not be
 * called once on_done has run.  Loop thread, from any callback.
 */
void gkp__gemini_call_cancel(gkp__gemini_call *call);

/* The call's id: never 0, stable for the whole call (all pages of a
 * models.list), for gkp__gemini_call_cancel_async. */
uint64_t gkp__gemini_call_id(const gkp__gemini_call *call);

/* Thread-safe cancellation by id (a call already gone is no error).  Returns
 * 0, -ESHUTDOWN or -ENOMEM.  Any thread. */
int gkp__gemini_call_cancel_async(gkp__loop *loop, uint64_t id);

/* ---- countTokens ---------------------------------------------------------- */

/*
 * The outcome of a countTokens call: status OK (total_tokens set),
 * HTTP_ERROR (body), TRANSPORT, MALFORMED, CANCELLED.  Valid during the call.
 */
typedef void (*gkp__gemini_count_fn)(void *ud, const gkp__gemini_outcome *o, int64_t total_tokens);

/* POST {base}/v1beta/models/{model}:countTokens with `body` (from
 * gkp__gemini_build_count_body).  As gkp__gemini_call_start. */
int gkp__gemini_count_start(gkp__loop *loop, const gkp__gemini_endpoint *ep, const char *model,
                            const char *body, size_t body_len, gkp__gemini_count_fn done, void *ud,
                            gkp__gemini_call **out, gkp_error *err);

/* ---- models.list ---------------------------------------------------------- */

/* One model of a models.list answer. */
typedef struct gkp__gemini_model {
  const char *id;             /* "gemini-2.5-flash" ("models/" removed) */
  const char *display_name;   /* "" if absent */
  int64_t input_token_limit;  /* -1 if absent */
  int64_t output_token_limit; /* -1 if absent */
  int generate_content;       /* supportedGenerationMethods has generateContent */
  int thinking;               /* "thinking": true */
} gkp__gemini_model;

/*
 * The outcome of a models.list: status OK with every page's models, or
 * HTTP_ERROR (the failing page's body: an invalid key shows up here),
 * TRANSPORT, MALFORMED, CANCELLED with n = 0.  Valid during the call.
 */
typedef void (*gkp__gemini_models_fn)(void *ud, const gkp__gemini_outcome *o,
                                      const gkp__gemini_model *models, size_t n);

/* GET {base}/v1beta/models?pageSize=1000, following nextPageToken (at most
 * 100 pages; a repeated token is malformed).  As gkp__gemini_call_start. */
int gkp__gemini_models_start(gkp__loop *loop, const gkp__gemini_endpoint *ep,
                             gkp__gemini_models_fn done, void *ud, gkp__gemini_call **out,
                             gkp_error *err);

/* Checks a model id for use in a URL ("models/" prefix allowed).  Returns
 * the id without the prefix, or NULL if it has other characters than
 * letters, digits, '.', '-', '_' or is empty/too long. */
const char *gkp__gemini_model_path(const char *model);

#endif
