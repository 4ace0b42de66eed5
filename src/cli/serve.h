/*
 * serve.h - starting the HTTP front from a command (serve, mount --listen).
 */
#ifndef GKP_CLI_SERVE_H
#define GKP_CLI_SERVE_H

#include <stdio.h>

#include "engine/status.h"
#include "http/front.h"
#include "runner/runner.h"

/* Starts the front over a pool and its runner and says where it listens
 * (stderr).  Returns NULL after printing why it could not. */
gkp__front *cli_front_start(gkp_pool *pool, gkp__runner *runner, const gkp__front_opts *fo);

/* gemini-pool status: the HTTP front's usage per client (from the file a
 * running front keeps beside the state file), added to the JSON document as
 * "http_clients" / printed as a few lines.  Nothing when there is none.
 * cli_status_json renders the snapshot `st` so (malloc'd; NULL: no memory). */
char *cli_status_json(gkp_pool *pool, const gkp__status *st);

/* The front's callers in the Prometheus text format (for the mount's
 * status/metrics); malloc'd, NULL when there are none. */
char *cli_front_metrics(gkp__front *front);
void cli_status_print_clients(gkp_pool *pool, FILE *out);

#endif
