/*
 * status.h - the pool's status as text for people (status/pool, `gemini-pool
 * status`).  The JSON document is gkp_status_json in gkp.h.
 */
#ifndef GKP_ENGINE_STATUS_H
#define GKP_ENGINE_STATUS_H

#include "gkp.h"

/* Renders the status document `json` (from gkp_status_json) as a table: one
 * row per key and model with activity, then the next daily reset.  `now_ms`
 * is used for "in 5m12s" hints.  Returns a malloc'd string, NULL on bad
 * input or no memory. */
char *gkp__status_table(const char *json, int64_t now_ms);

#endif
