/*
 * front.h - the HTTP front: the Gemini REST API (passed through) served
 * from the pool, on libmicrohttpd.
 *
 * Module map:
 *   server.c   the daemon: listening, connections, bodies, suspend/resume,
 *              streaming, the watchdog (disconnects, slow headers), the
 *              body workers, the memory ceiling, the log
 *   routes.c   what a request means: routing, tokens, the runner's jobs,
 *              Gemini-format answers and errors
 *   paths.c    the parsers of what comes before a body: routes, Host,
 *              Origin, Content-Type; the bound on what parsing a body takes
 *   openai.c   the OpenAI API translated to and from Gemini's
 *   callers.c  the callers of `clients`: tokens, per-client limits, usage
 *   front.h    this interface; front_impl.h the parts' shared structures
 *
 * The front depends on the runner's interface (runner/runner.h), the public
 * library (gkp.h) and the configuration reader, never on the engine's
 * internals.  One internal polling thread (epoll) serves every connection;
 * a request waiting for a key or for answer bytes is a suspended
 * connection, not a thread.  Bodies are parsed and translated by a few
 * body workers (server.c), never on the polling thread.
 */
#ifndef GKP_HTTP_FRONT_H
#define GKP_HTTP_FRONT_H

#include <stddef.h>

#include "gkp.h"
#include "runner/runner.h"

typedef struct gkp__front gkp__front;

/* Receives one line for the daemon's log (no secret, no prompt). */
typedef void (*gkp__front_log_fn)(void *ud, const char *line);

typedef struct gkp__front_opts {
  const char *listen;        /* "127.0.0.1:8787", "[::1]:8787", "unix:/path" */
  size_t max_body;           /* request body limit; 0: 32 MiB */
  unsigned idle_timeout_s;   /* a connection silent this long is closed; 0: 60 */
  unsigned header_timeout_s; /* a new connection must complete its first request's
                                headers within this; 0: the idle timeout */
  unsigned connection_limit; /* 0: 16384 */
  size_t max_memory;         /* request bodies held and being parsed, all requests
                                together; past it a request gets 503; 0: 1 GiB */
  gkp__front_log_fn log;     /* NULL: stderr */
  void *log_ud;
} gkp__front_opts;

/*
 * Starts serving `pool` through `runner` (both must outlive the front).
 * Reads `clients` from the pool's configuration file; without any, refuses
 * to listen anywhere but loopback or a unix socket, and logs that it serves
 * without tokens.  Returns 0 or a negative errno with err set (bad address,
 * address in use, bad clients).
 */
int gkp__front_start(gkp_pool *pool, gkp__runner *runner, const gkp__front_opts *opts,
                     gkp__front **out, gkp_error *err);

/* Cancels every request, closes every connection and frees the front.
 * NULL is a no-op.  Call before freeing the runner. */
void gkp__front_stop(gkp__front *f);

/* The address actually listened on ("127.0.0.1:PORT" after port 0). */
const char *gkp__front_address(const gkp__front *f);

/* Per-client usage as a JSON object {"clients":[{"id":..,"requests":..,
 * "rpm":..,"rpd":..,"minute":..,"today":..,"rejected":..,"errors":..,
 * "waiting":..}],"updated_ms":..}, read from the pool's state (shared by
 * every front on it); "waiting" counts this front's requests.  malloc'd,
 * NULL on failure.  Any thread. */
char *gkp__front_clients_json(gkp__front *f);

/* The same for the `clients` of the pool's configuration without a front
 * (no "waiting"), for `gemini-pool status`; NULL when there are none. */
char *gkp__front_usage_json(gkp_pool *pool);

#endif
