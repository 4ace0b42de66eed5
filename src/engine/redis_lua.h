/*
 * redis_lua.h - the text of the Redis backend's Lua scripts (redis_lua.c
 * describes the records they keep).
 */
#ifndef GKP_ENGINE_REDIS_LUA_H
#define GKP_ENGINE_REDIS_LUA_H

#include "engine/redis_conn.h"

/* Ids in one page of the LRU order (the reserve script reads one page). */
#define GKP__REDIS_PAGE 32
#define GKP__REDIS_PAGE_S "32"

/* The text of one of enum gkp__rscript, or NULL. */
const char *gkp__redis_script_text(int script);

#endif
