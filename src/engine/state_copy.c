/*
 * state_copy.c - moving a pool's state from one backend to another
 * (gemini-pool state copy FROM TO).
 */
#include <errno.h>

#include "common/err.h"
#include "engine/engine.h"
#include "engine/pool_impl.h"

int gkp__state_copy(gkp_pool *from, gkp_pool *to, gkp_error *err) {
  gkp__snapshot *s = NULL;
  int rc;
  gkp__err_clear(err);
  if ((rc = gkp__pool_check_fork(from, err)) != 0 || (rc = gkp__pool_check_fork(to, err)) != 0) {
    return rc;
  }
  rc = from->be->ops->snapshot(from->be, &s, err);
  if (rc != 0) {
    return rc;
  }
  rc = to->be->ops->import(to->be, s, err);
  gkp__snapshot_free(s);
  return rc;
}
