/*
 * gkp.h - the public C API of gemini-key-pool.
 *
 * A pool is opened from a keys.json configuration and a state file.  The
 * state file is shared by every thread and every process that opens the same
 * path: reservations, counts, cooldowns and disabled keys are atomic across
 * all of them.
 *
 * Conventions:
 * - Every function that can fail returns 0 (or a non-negative count) on
 *   success and a negative errno value on failure.  When an error is
 *   returned and the caller passed a gkp_error, its `msg` holds one line a
 *   person can act on.  The library never prints and never exits; warnings go
 *   to the log callback given in gkp_options (or nowhere).
 * - Strings passed in are borrowed for the duration of the call.  Strings
 *   returned by pointer are owned by the pool and stay valid until
 *   gkp_pool_close(), across reloads.
 * - A pool belongs to the process that opened it: after fork(), calls in
 *   the child fail with -ECHILD (open another pool there); gkp_pool_close
 *   in the child only frees memory.
 * - Times are milliseconds since the Unix epoch (int64_t) unless named *_s.
 * - API keys never appear in any message, log line or status document the
 *   library produces; a key is named by its id.
 */
#ifndef GKP_H
#define GKP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GKP_VERSION "0.3.0"

/* Marks the functions libgkp exports; everything else in the library is
 * hidden (it is built with -fvisibility=hidden). */
#if defined(__GNUC__) || defined(__clang__)
#define GKP_API __attribute__((visibility("default")))
#else
#define GKP_API
#endif

/* Sizes of fixed buffers that appear in the API. */
#define GKP_ID_MAX 64      /* key ids, project ids and model ids, with NUL */
#define GKP_MSG_MAX 512    /* error messages, with NUL */
#define GKP_REASON_MAX 160 /* stored reasons and last errors, with NUL */

/* An error: a negative errno-style code and one line of text. */
typedef struct gkp_error {
  int code;
  char msg[GKP_MSG_MAX];
} gkp_error;

/* Log levels for the optional log callback. */
enum gkp_log_level { GKP_LOG_DEBUG = 0, GKP_LOG_INFO = 1, GKP_LOG_WARN = 2, GKP_LOG_ERROR = 3 };

/* Returns the current time in ms since the epoch; injected for tests. */
typedef int64_t (*gkp_clock_fn)(void *ud);
/* Receives warnings and notices (one line, no trailing newline). */
typedef void (*gkp_log_fn)(void *ud, int level, const char *line);

typedef struct gkp_options {
  /* keys.json to read; NULL: $GEMINI_POOL_CONFIG, ./keys.json,
   * $XDG_CONFIG_HOME/gemini-pool/keys.json (first that exists). */
  const char *config_path;
  /* State file; NULL: $GEMINI_POOL_STATE, else
   * $XDG_STATE_HOME/gemini-pool/state.db (~/.local/state when unset).
   * The directory is created 0700 and the file 0600. */
  const char *state_path;
  gkp_clock_fn clock; /* NULL: the real clock */
  void *clock_ud;
  gkp_log_fn log; /* NULL: warnings are dropped */
  void *log_ud;
} gkp_options;

typedef struct gkp_pool gkp_pool;

/*
 * Opens a pool: loads and validates the configuration, opens (or creates)
 * the state file and attaches every configured key to it.  On failure *out is
 * NULL, nothing is left open, and err says which file, where, and the fix.
 */
GKP_API int gkp_pool_open(gkp_pool **out, const gkp_options *opts, gkp_error *err);

/* Like gkp_pool_open, with the configuration given as JSON text.  `dir` is
 * where a .env file is looked for (NULL: none); `name` is used in messages. */
GKP_API int gkp_pool_open_text(gkp_pool **out, const char *json, size_t len, const char *name,
                               const char *dir, const gkp_options *opts, gkp_error *err);

/* Releases the leases this pool still holds and closes it.  NULL is a no-op. */
GKP_API void gkp_pool_close(gkp_pool *pool);

/* Re-reads the configuration file.  On error the running configuration is
 * kept and err says why.  Disabled keys are enabled again by a reload. */
GKP_API int gkp_pool_reload(gkp_pool *pool, gkp_error *err);

/* The path of the state file and of the configuration file in use. */
GKP_API const char *gkp_pool_state_path(const gkp_pool *pool);
GKP_API const char *gkp_pool_config_path(const gkp_pool *pool);

/* How the configuration in use was found.  A file from the current
 * directory is used only if the user owns it, nobody else can write it, and
 * it sends no key from the environment to a host other than Google's or
 * loopback; a program may want to say which file it uses when it is not
 * the XDG one. */
enum gkp_config_origin {
  GKP_CONFIG_GIVEN = 0, /* gkp_options.config_path */
  GKP_CONFIG_ENV,       /* $GEMINI_POOL_CONFIG */
  GKP_CONFIG_CWD,       /* ./keys.json */
  GKP_CONFIG_XDG,       /* $XDG_CONFIG_HOME/gemini-pool/keys.json */
  GKP_CONFIG_TEXT,      /* gkp_pool_open_text */
};
GKP_API int gkp_pool_config_origin(const gkp_pool *pool);

/* The current time according to the pool's clock. */
GKP_API int64_t gkp_pool_now(const gkp_pool *pool);

/* Replaces, in the NUL-terminated `text`, every stretch that holds a run of
 * 8 or more characters of any configured key by "…" (in place: the text
 * never grows).  For text that came from outside (an upstream's error
 * message may echo a key, whole or altered) before it is stored or shown;
 * the library does it for everything it stores.  Returns how many
 * stretches were replaced. */
GKP_API size_t gkp_redact(gkp_pool *pool, char *text);

/* ---- Models ------------------------------------------------------------ */

/* A limit that is not known: not counted ahead, only 429s teach it. */
#define GKP_LIMIT_UNKNOWN (-1)

typedef struct gkp_limits {
  int64_t rpm; /* requests per minute; 0 = not on the free tier */
  int64_t tpm; /* input tokens per minute */
  int64_t rpd; /* requests per day (midnight Pacific to midnight Pacific) */
} gkp_limits;

/* Whether the pool knows a model (built-in table or "models" in the config). */
GKP_API int gkp_model_known(const gkp_pool *pool, const char *model);

/* The model to try after `model`, or NULL at the end of the chain. */
GKP_API const char *gkp_model_fallback(const gkp_pool *pool, const char *model);

/* The configured limits of a model (not the learned ones). */
GKP_API int gkp_model_limits(const gkp_pool *pool, const char *model, gkp_limits *out);

/* The effective limits for the project of `key_id` on `model`: a limit
 * learned from a 429's quotaValue replaces the configured one until the next
 * midnight Pacific after it was learned (or a gkp_reset). */
GKP_API int gkp_effective_limits(gkp_pool *pool, const char *key_id, const char *model,
                                 gkp_limits *out, gkp_error *err);

/* ---- Reservations ------------------------------------------------------ */

/* A reservation of one key for one request on one model.  Filled by
 * gkp_reserve; the caller keeps it until gkp_release.  Opaque to the state
 * backend's storage: it names the lease by its id and the key by its id. */
typedef struct gkp_lease {
  uint64_t id; /* unique within the state */
  int64_t started_ms;
  int64_t est_tokens;
  char key_id[GKP_ID_MAX];
  char project[GKP_ID_MAX];
  char model[GKP_ID_MAX];
} gkp_lease;

/* Why no key could be reserved right now. */
enum gkp_wait_reason {
  GKP_WAIT_NONE = 0,
  GKP_WAIT_BUSY,        /* every eligible key has max_inflight requests in flight */
  GKP_WAIT_COOLDOWN,    /* keys are cooling down */
  GKP_WAIT_QUOTA,       /* RPM, TPM or RPD budget used up */
  GKP_WAIT_NEVER,       /* nothing will free up by itself (disabled, no free tier,
                           prompt larger than the TPM limit) */
  GKP_WAIT_UNREACHABLE, /* the shared state's server cannot be reached: nothing is sent */
};

typedef struct gkp_wait {
  int reason;                   /* enum gkp_wait_reason: the reason for the soonest key */
  int64_t next_ms;              /* earliest time a key may become eligible; INT64_MAX if never */
  char next_key_id[GKP_ID_MAX]; /* the key that frees up first ("" if none) */
} gkp_wait;

/* Lease lifetime.  A lease not renewed within this time is reclaimed, and
 * so is one whose holder is known to be gone (same machine boot, same pid
 * namespace, and its pid free or reused); a holder in another pid namespace
 * or container is never judged by its pid, its lease simply expires.  A
 * request that runs longer must be kept alive with gkp_lease_renew (the
 * runner behind gkp_run_task and the filesystem does so every
 * GKP_LEASE_RENEW_MS). */
#define GKP_LEASE_TTL_MS (60 * 1000)
#define GKP_LEASE_RENEW_MS (20 * 1000)

/*
 * Reserves the least recently used eligible key for one request on `model`
 * whose prompt is estimated at `est_tokens` input tokens, and counts the
 * request (RPM, TPM, RPD) before it is sent.
 * Returns 0 and fills *lease; -ENOENT for an unknown model; -EAGAIN when no
 * key is eligible now, with *wait (if given) saying when one may be and why;
 * other negative errno values for state file trouble.
 */
GKP_API int gkp_reserve(gkp_pool *pool, const char *model, int64_t est_tokens, gkp_lease *lease,
                        gkp_wait *wait, gkp_error *err);

/* Extends a lease by GKP_LEASE_TTL_MS from now; call it at least every
 * GKP_LEASE_RENEW_MS while the request runs.  -ESTALE if it was reclaimed
 * (the key may be serving someone else: the request should be abandoned). */
GKP_API int gkp_lease_renew(gkp_pool *pool, const gkp_lease *lease, gkp_error *err);

/* Ends a reservation.  If the request was never sent (`sent` == 0), the counts
 * taken by gkp_reserve (RPM, TPM, RPD, totals) and the key's last use are
 * given back.  Releasing twice is harmless. */
GKP_API int gkp_release(gkp_pool *pool, const gkp_lease *lease, int sent, gkp_error *err);

/*
 * Ends a reservation whose request never reached the server (the name did
 * not resolve, the connection or the TLS handshake failed: nothing was
 * written).  Gives its counts back as gkp_release(.., 0) does, penalises no
 * key, and notes the endpoint `url` as unreachable for `reason` (e.g.
 * "connection refused") since the first such failure; gkp_status_json shows
 * it until an answer from the server (gkp_record_usage, or an error report
 * with an HTTP status) notes the endpoint reachable again.
 */
GKP_API int gkp_release_unreached(gkp_pool *pool, const gkp_lease *lease, const char *url,
                                  const char *reason, gkp_error *err);

/* When the endpoint was first seen unreachable in the current outage (0: it
 * was reachable at the last contact), with the reason in buf (if given). */
GKP_API int64_t gkp_endpoint_down_since(gkp_pool *pool, char *buf, size_t len);

/* Copies the secret API key of `key_id` into buf (NUL-terminated).
 * -ENOENT for an unknown id, -ERANGE if buf is too small. */
GKP_API int gkp_key_secret(const gkp_pool *pool, const char *key_id, char *buf, size_t len,
                           gkp_error *err);

/* What a successful request used, from usageMetadata. */
typedef struct gkp_usage {
  int64_t prompt_tokens;     /* promptTokenCount, -1 if unknown */
  int64_t candidates_tokens; /* candidatesTokenCount, -1 if unknown */
  int64_t thoughts_tokens;   /* thoughtsTokenCount, -1 if unknown */
} gkp_usage;

/* Records a successful (2xx) answer for a lease: corrects the TPM window
 * with the real prompt token count, proves the project has access to the
 * model, and ends an unknown-429 or server-error streak. */
GKP_API int gkp_record_usage(gkp_pool *pool, const gkp_lease *lease, const gkp_usage *usage,
                             gkp_error *err);

/* ---- Errors ------------------------------------------------------------ */

/* What an error response means (SPEC: error rules). */
enum gkp_kind {
  GKP_KIND_NONE = 0,
  GKP_KIND_RPM,             /* per-minute requests */
  GKP_KIND_TPM,             /* per-minute input tokens */
  GKP_KIND_RPD,             /* per-day requests */
  GKP_KIND_NO_FREE_TIER,    /* model not on the free tier for this project */
  GKP_KIND_BILLING,         /* prepay credits depleted, billing needed */
  GKP_KIND_UNKNOWN_429,     /* 429 with nothing to go on */
  GKP_KIND_INVALID_KEY,     /* key invalid or refused */
  GKP_KIND_MODEL_NOT_FOUND, /* 404 */
  GKP_KIND_BAD_REQUEST,     /* the request itself is wrong */
  GKP_KIND_SERVER,          /* 5xx, timeouts, resets, malformed bodies */
  GKP_KIND_UNREACHABLE,     /* nothing reached the server (resolve, connect, TLS):
                               never a key's fault, never counted */
  GKP_KIND_COUNT
};

/* What the caller should do with the job after an error. */
enum gkp_action {
  GKP_ACT_RETRY = 0, /* retry on another key (possibly after waiting) */
  GKP_ACT_FALLBACK,  /* move to the fallback model */
  GKP_ACT_FAIL,      /* fail the job with the message */
};

/* The result of classifying one error response. */
typedef struct gkp_verdict {
  int kind;                     /* enum gkp_kind */
  int action;                   /* enum gkp_action */
  int http_status;              /* the status the error carried (the body's code mid-stream) */
  int64_t retry_ms;             /* precise retry hint, -1 if none */
  int64_t learned_limit;        /* quotaValue, -1 if none */
  int learned_metric;           /* GKP_KIND_RPM, GKP_KIND_TPM or GKP_KIND_RPD for learned_limit */
  int key_wide;                 /* the rule applies to the whole key, not (project, model) */
  int64_t cooldown_until_ms;    /* set by gkp_report_error: when the cooldown ends (0: none) */
  char message[GKP_REASON_MAX]; /* Google's message, shortened, never a secret */
} gkp_verdict;

/* The name of a kind ("rpm", "tpm", "rpd", "no_free_tier", "billing",
 * "unknown_429", "invalid_key", "model_not_found", "bad_request", "server",
 * "unreachable"),
 * "none" for GKP_KIND_NONE. */
GKP_API const char *gkp_kind_name(int kind);

/*
 * Classifies an error response from its HTTP status and raw body (any framing:
 * plain, array-framed, SSE "data:" line, pretty-printed or not, possibly
 * truncated).  `http_status` 0 means a transport failure.  A 200 status with
 * an error envelope (an error mid-stream) is classified by the envelope.
 * Pure: applies nothing.  Always fills *out.
 */
GKP_API void gkp_classify(int http_status, const char *body, size_t len, gkp_verdict *out);

/*
 * Classifies an error response received with `lease` and applies its rule:
 * cooldowns for (project, model) or the key, learned limits, disabling keys.
 * Fills *out (if given) with the verdict and the cooldown end.  Does not
 * release the lease.
 */
GKP_API int gkp_report_error(gkp_pool *pool, const gkp_lease *lease, int http_status,
                             const char *body, size_t len, gkp_verdict *out, gkp_error *err);

/* Applies an already classified verdict for `lease` (as gkp_report_error). */
GKP_API int gkp_apply_verdict(gkp_pool *pool, const gkp_lease *lease, gkp_verdict *v,
                              gkp_error *err);

/*
 * Classifies an error response met outside a reservation (a request the
 * caller sent itself with the key of `key_id`) and applies its rule to
 * (project of key_id, model) as gkp_report_error does for a lease.  `body`
 * may be Google's JSON error or its plain text.  -ENOENT for an unknown key
 * id or model.
 */
GKP_API int gkp_report_key_error(gkp_pool *pool, const char *key_id, const char *model,
                                 int http_status, const char *body, size_t len, gkp_verdict *out,
                                 gkp_error *err);

/* ---- Administration ---------------------------------------------------- */

/*
 * Sets a cooldown explicitly: for (project of key_id, model), or for the whole
 * key when model is NULL.  `kind` is recorded as the cooldown's kind.  Replaces
 * any cooldown in place (an explicit override may shorten one).
 */
GKP_API int gkp_set_cooldown(gkp_pool *pool, const char *key_id, const char *model,
                             int64_t until_ms, int kind, gkp_error *err);

/* Disables a key with a reason; only gkp_reset or a reload enables it again. */
GKP_API int gkp_disable_key(gkp_pool *pool, const char *key_id, const char *reason, gkp_error *err);

/* Clears cooldowns, streaks, learned limits and the disabled flag of one key
 * and its project (or all when key_id is NULL or "all").  Counts are kept:
 * quota used is quota used. */
GKP_API int gkp_reset(gkp_pool *pool, const char *key_id, gkp_error *err);

/* Number of keys eligible for `model` right now for a small request
 * (negative errno on failure, -ENOENT for an unknown model). */
GKP_API int gkp_count_available(gkp_pool *pool, const char *model, gkp_error *err);

/* Removes cooldowns and leases that have expired; returns how many. */
GKP_API int gkp_clear_expired(gkp_pool *pool, gkp_error *err);

/* Number of configured keys, and the id of the i-th (config order). */
GKP_API size_t gkp_key_count(const gkp_pool *pool);
GKP_API const char *gkp_key_id(const gkp_pool *pool, size_t i);

/* The next midnight in America/Los_Angeles strictly after `now_ms`, and the
 * last one at or before it (DST-aware). */
GKP_API int64_t gkp_next_pacific_midnight(int64_t now_ms);
GKP_API int64_t gkp_last_pacific_midnight(int64_t now_ms);

/* ---- Callers of a front -------------------------------------------------- */

/* What one caller (a client of the HTTP front, named by its id) used, as
 * kept with the shared state: every process on the state counts against
 * the same figures, and they outlive the process. */
typedef struct gkp_client_usage {
  int64_t minute;   /* requests admitted in the last 60 s */
  int64_t today;    /* requests admitted since midnight Pacific */
  int64_t requests; /* admitted, ever */
  int64_t rejected; /* refused for the caller's own rpm or rpd */
  int64_t errors;   /* answered with an error */
} gkp_client_usage;

/* Counts a request of caller `id` unless it is over `rpm` requests in the
 * last minute or `rpd` since midnight Pacific (0: no limit).  Returns 0
 * (admitted), the seconds until it may send again (refused, counted as
 * rejected), or a negative errno. */
GKP_API int64_t gkp_client_admit(gkp_pool *pool, const char *id, int64_t rpm, int64_t rpd,
                                 gkp_error *err);

/* Counts an error answered to caller `id`. */
GKP_API int gkp_client_error(gkp_pool *pool, const char *id, gkp_error *err);

/* Reads caller `id`'s usage (zeros for a caller never seen). */
GKP_API int gkp_client_get_usage(gkp_pool *pool, const char *id, gkp_client_usage *out,
                                 gkp_error *err);

/*
 * The whole pool as a JSON document (the status/pool.json schema), read from
 * the state file under its lock.  *out is malloc'd; the caller frees it.
 */
GKP_API int gkp_status_json(gkp_pool *pool, char **out, gkp_error *err);

/* ---- Running a whole task ---------------------------------------------- */

/* One generation task.  Pointers are borrowed for the duration of the call.
 * With neither a profile nor a model (or either of them "auto", or a
 * profile whose config says "route": "auto") the pool chooses the model:
 * see gkp_route; the decision is in gkp_task_result.route. */
typedef struct gkp_task {
  const char *profile; /* a profile (directory) name, "auto", or NULL */
  const char *model;   /* overrides the profile's model; "auto" or NULL: routed */
  const char *prompt;  /* the task text, NUL-terminated */
  const char *context; /* extra text sent after the task, or NULL */
  const char *system;  /* system instruction, or NULL for the profile's */
  const void *image;   /* one input image or PDF (bytes), or NULL */
  size_t image_len;
  const char *thinking; /* "minimal" | "low" | "medium" | "high" | NULL */
  int capture_thinking; /* keep thought summaries (gkp_task_result.thoughts) */
  int64_t max_wait_ms;  /* how long to wait for a key per model; < 0: the profile's */
  int64_t timeout_ms;   /* the whole task; <= 0: no limit (a stalled request still fails) */
  /* Called (from another thread) with answer text as it streams in.  If a
   * retry produced a different answer than what was streamed, on_restart is
   * called first: throw away what on_text delivered.  Both may be NULL. */
  void (*on_text)(void *ud, const char *text, size_t len);
  void (*on_restart)(void *ud);
  void *ud;
  /* The quality level: "draft" | "standard" | "production" | "research", or
   * NULL.  It sets the thinking level (minimal, medium, high, high) unless
   * `thinking` is given and adds a one-line quality note to the prompt; a
   * routed task without one infers it from the task's complexity. */
  const char *quality;
  /* Turn on google_search / code_execution / url_context as the task's words
   * call for them (as `gemini-pool ask --enable-tools`). */
  int enable_tools;
} gkp_task;

/* An image the task generated. */
typedef struct gkp_image {
  char mime[48];
  void *data;
  size_t len;
} gkp_image;

/* The outcome of gkp_run_task; free with gkp_task_result_free. */
typedef struct gkp_task_result {
  int ok;                      /* 1: done; 0: failed (see error) */
  char model_used[GKP_ID_MAX]; /* "" if nothing was answered */
  char key_id[GKP_ID_MAX];
  int attempts;                  /* requests sent */
  int64_t tokens_in, tokens_out; /* -1 unknown */
  int64_t latency_ms;
  char *text; /* the answer (NUL-terminated, malloc'd) */
  size_t text_len;
  char *thoughts; /* thought summaries, "" unless captured */
  gkp_image *images;
  size_t nimages;
  char error[GKP_MSG_MAX]; /* why it failed, "" on success */
  /* The routing decision as one JSON object (the document gkp_route
   * returns), malloc'd; NULL when the task named its model. */
  char *route;
} gkp_task_result;

/*
 * Runs a task with retries on other keys, waiting for quota and falling back
 * along the model chain, and blocks until it is done.  Returns 0 when the
 * task ran (res->ok says whether it succeeded), or a negative errno when it
 * could not start (unknown profile or model, bad image, empty prompt).
 * Safe to call from several threads at once on one pool.
 */
GKP_API int gkp_run_task(gkp_pool *pool, const gkp_task *task, gkp_task_result *res,
                         gkp_error *err);

/* Frees what gkp_run_task put in *res.  Safe on a zeroed result. */
GKP_API void gkp_task_result_free(gkp_task_result *res);

/* ---- Routing: the pool chooses the model ------------------------------- */

/*
 * What the `auto` profile would do with `task` (its text; `has_image`: an
 * image or PDF is attached) at `quality` ("draft" | "standard" |
 * "production" | "research", or NULL: inferred from the task's complexity),
 * given the quota left right now.  Sends nothing.  *json_out (free with
 * gkp_free) is one JSON object:
 *
 *   {"task_type": "general" | "micro" | "intent" | "image" | "embedding" |
 *                 "current_research" | "tool_use" | a type from the config,
 *    "complexity": "low" | "medium" | "high" | "research",
 *    "quality": "draft" | "standard" | "production" | "research",
 *    "quality_given": true | false,
 *    "scored": true | false,      (candidates ordered by rate scores)
 *    "candidates": [{"model": ID, "thinking": "minimal"|"low"|"medium"|"high"|null,
 *                    "tools": ["google_search", ...]}, ...],   (in the order tried)
 *    "skipped": [{"model": ID, "reason": "rpd_exhausted" | "no_free_tier" |
 *                 "keys_disabled" | "unknown_model", "detail": TEXT}, ...]}
 *
 * Rules come from the built-in defaults and "routing" in keys.json.  The
 * quota is read from a per-model summary refreshed at most every second,
 * so a decision costs the same on a pool of any size.  -EINVAL for an
 * empty task or an unknown quality.
 */
GKP_API int gkp_route(gkp_pool *pool, const char *task, const char *quality, int has_image,
                      char **json_out, gkp_error *err);

/* Frees memory the library returned (gkp_route's document).  NULL is a no-op. */
GKP_API void gkp_free(void *p);

/*
 * Records a score (1 to 5) for how well `model` did on a task of
 * `task_type` and `complexity` (as named in a route document; for a task run
 * with an explicit model, take them from gkp_route of its text).  Scores are
 * kept in the state backend and shared by every process of the pool; once a
 * (task type, complexity) pair has 5 scores or more, routing orders its
 * candidates by average score (a model without scores counts as 3), among
 * those with quota.  -EINVAL for a score out of range, an unknown
 * complexity or an unknown model.
 */
GKP_API int gkp_rate(gkp_pool *pool, const char *task_type, const char *complexity,
                     const char *model, int score, gkp_error *err);

#ifdef __cplusplus
}
#endif
#endif /* GKP_H */
