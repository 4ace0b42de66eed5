/*
 * store_v1.h - what a format 1 state file holds, read for the upgrade.
 */
#ifndef GKP_ENGINE_STORE_V1_H
#define GKP_ENGINE_STORE_V1_H

#include <stddef.h>
#include <stdint.h>

#include "engine/quota.h"
#include "gkp.h"

typedef struct gkp__v1_key {
  char id[GKP_ID_MAX];
  char project[GKP_ID_MAX];
  gkp__key_counts c;
} gkp__v1_key;

typedef struct gkp__v1_pm {
  char project[GKP_ID_MAX];
  char model[GKP_ID_MAX];
  gkp__pm_counts c;
} gkp__v1_pm;

typedef struct gkp__v1_contents {
  int64_t created_ms;
  gkp__v1_key *keys;
  size_t nkeys;
  gkp__v1_pm *pms;
  size_t npm;
} gkp__v1_contents;

/* The size of a format 1 file. */
size_t gkp__store_v1_size(void);

/* Reads the used records of a mapped format 1 file (its leases are dropped:
 * they named their owners by a bare pid).  Returns 0, 1 if it is not a
 * sane format 1 file, or a negative errno. */
int gkp__store_v1_read(const void *map, size_t size, gkp__v1_contents *out, gkp_error *err);

void gkp__store_v1_free(gkp__v1_contents *c);

#endif
