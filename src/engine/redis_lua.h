/*
 * redis_lua.h - the text of the Redis backend's Lua scripts (redis_lua.c
 * describes the records they keep).
 */
#ifndef GKP_ENGINE_REDIS_LUA_H
#define GKP_ENGINE_REDIS_LUA_H

#include "engine/redis_conn.h"

/* The text of one of enum gkp__rscript, or NULL. */
const char *gkp__redis_script_text(int script);

#endif
