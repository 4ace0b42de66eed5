/*
 * redis_backend.h - the backend verbs over Redis (redis_backend.c).
 */
#ifndef GKP_ENGINE_REDIS_BACKEND_H
#define GKP_ENGINE_REDIS_BACKEND_H

#include "engine/backend.h"

/*
 * Opens the pool state at a Redis URL (redis://[user:password@]host:port[/db]
 * or unix:///path/redis.sock); a password `env:NAME` is looked up in the
 * environment, then in the .env in `env_dir` (may be NULL).  `clock` NULL:
 * the server's clock (TIME); else that clock, for tests.  Connects once:
 * an unreachable server, a refused password or a peer that is not Redis is
 * an error here; later, an unreachable server makes reservations wait.
 */
int gkp__redis_backend_open(const char *url, const char *env_dir, gkp_clock_fn clock,
                            void *clock_ud, gkp_log_fn log, void *log_ud, gkp__backend **out,
                            gkp_error *err);

#endif
