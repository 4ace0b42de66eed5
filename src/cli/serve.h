/*
 * serve.h - starting the HTTP front from a command (serve, mount --listen).
 */
#ifndef GKP_CLI_SERVE_H
#define GKP_CLI_SERVE_H

#include "http/front.h"
#include "runner/runner.h"

/* Starts the front over a pool and its runner and says where it listens
 * (stderr).  Returns NULL after printing why it could not. */
gkp__front *cli_front_start(gkp_pool *pool, gkp__runner *runner, const gkp__front_opts *fo);

#endif
