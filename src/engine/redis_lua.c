/*
 * redis_lua.c - the Lua scripts of the Redis backend.  Each is one atomic
 * step on the server; every key a script names belongs to one Google
 * project and carries its {project} hash tag, so a script touches one slot.
 *
 * Records (P = the project's hash tag):
 *   gkp:{P}:k:KEY    hash: dis dreason cdu cdk lu rt      (the key)
 *   gkp:{P}:l:KEY    zset: lease id -> expiry (ms)        (its leases)
 *   gkp:{P}:m:MODEL  hash: cdu cdk prv s429 ssrv ds dc lr lt ld lra lta lda rt tin tout
 *                    eN le  (lX: a learned limit, lXa: when, applying that Pacific day)
 *   gkp:{P}:w:MODEL  hash: rSEC / tSEC -> requests / tokens of second SEC
 *   gkp:{P}:seq      counter of lease ids
 *   gkp:client:{ID}  string: a caller's counts (client_counts.h's text)
 * The arithmetic mirrors quota.c: a bucket of second S counts until
 * (S + 61) s + 250 ms; the day count is kept against the Pacific midnight
 * it started from (ds), which the client computes and the script checks
 * against the server's own TIME.
 *
 * Times are the server's (TIME) unless the first argument gives one (a
 * pool opened with a test clock).
 */
#include "engine/redis_lua.h"

/* A script is one string; Redis has no limit a C99 compiler would. */
#pragma GCC diagnostic ignored "-Woverlength-strings"

#define PRELUDE                                                                                    \
  "local function num(x, d) local v = tonumber(x); if v == nil then return d end; return v end\n"  \
  "local function clock(o) if o ~= nil and o ~= '' then return tonumber(o) end;"                   \
  " local t = redis.call('TIME'); return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / "     \
  "1000) end\n"                                                                                    \
  "local function adjust(h, f, d) local v = redis.call('HGET', h, f);"                             \
  " if v then local n = tonumber(v) + d; if n < 0 then n = 0 end;"                                 \
  " redis.call('HSET', h, f, n); return true end; return false end\n"

/* Offers candidate keys and leases the first that can take the request.
 * KEYS: k l m w seq of each candidate (5 per candidate, in one slot each),
 * then, on a single server, the LRU set.  ARGV: now est rpm tpm rpd
 * day_start next_midnight ttl probe lru_mode n, then n max_inflights, then
 * n key ids, then (lru_mode 2) a count s and s ids to pass over.
 * lru_mode 0: no LRU set (cluster); 1: offer in the order given and bump
 * the winner; 2: offer in the order of the LRU set's first page as it is
 * now (read here, in the same step), bumping the winner, and answer "stale"
 * if that page holds an id that is neither a candidate nor one to pass
 * over.  Returns {1, id, 0, now, i, 0} (candidate i leased), {2, 0, 0, now,
 * i, 0} (probe: eligible), {0, reason, ready (-1: never), now, i, full}
 * (none can: i is the one that frees up first; full: mode 2 read a whole
 * page, more may follow), {-1, 0, 0, now, 0, 0} when `now` is outside the
 * day the client computed, or {-2, 0, 0, now, 0, 0} (stale).  On a cluster
 * the client offers one candidate per call. */
static const char reserve_lua[] = PRELUDE
    "local now = clock(ARGV[1])\n"
    "local est = tonumber(ARGV[2])\n"
    "local rpm0, tpm0, rpd0 = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local ds, nm, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local probe, mode, n = ARGV[9] == '1', ARGV[10], tonumber(ARGV[11])\n"
    "if now < ds or now >= nm then return {-1, 0, 0, now, 0, 0} end\n"
    "local NEVER = 4\n"
    "local dead = math.floor((now - 61250) / 1000)\n"
    "local function offer(kk, kl, km, kw, kseq, maxin)\n"
    "  local rpm, tpm, rpd = rpm0, tpm0, rpd0\n"
    "  local ready, reason = now, 0\n"
    "  local function hold(when, why)\n"
    "    if reason == 0 or when > ready then ready = when; reason = why end\n"
    "  end\n"
    "  local k = redis.call('HMGET', kk, 'dis', 'cdu')\n"
    "  if k[1] == '1' then return 0, NEVER, -1 end\n"
    "  if num(k[2], 0) > now then hold(num(k[2], 0), 2) end\n"
    "  local m = redis.call('HMGET', km, 'cdu', 'prv', 'ds', 'dc', 'lr', 'lt', 'ld', 'lra', "
    "'lta', 'lda')\n"
    "  if num(m[1], 0) > now then hold(num(m[1], 0), 2) end\n"
    /* A learned limit applies until the Pacific midnight after it was
     * learned: while it was learned today (at or after ds). */
    "  if num(m[5], -1) >= 0 and num(m[8], 0) >= ds then rpm = num(m[5], -1) end\n"
    "  if num(m[6], -1) >= 0 and num(m[9], 0) >= ds then tpm = num(m[6], -1) end\n"
    "  if num(m[7], -1) >= 0 and num(m[10], 0) >= ds then rpd = num(m[7], -1) end\n"
    "  local dc = 0\n"
    "  if num(m[3], 0) == ds then dc = num(m[4], 0) end\n"
    "  local function window_ready(live, total, use_t, allowed)\n"
    "    for _, b in ipairs(live) do\n"
    "      if use_t then total = total - b[3] else total = total - b[2] end\n"
    "      if total <= allowed then return (b[1] + 61) * 1000 + 250 end\n"
    "    end\n"
    "    return now\n"
    "  end\n"
    "  local function quota()\n"
    "    if (rpm == 0 or tpm == 0 or rpd == 0) and m[2] ~= '1' then return true, NEVER end\n"
    "    if tpm > 0 and est > tpm then return true, NEVER end\n"
    "    if rpd > 0 and dc + 1 > rpd then return nm, 3 end\n"
    "    if rpm <= 0 and tpm <= 0 then return nil end\n"
    "    local all = redis.call('HGETALL', kw)\n"
    "    local by, stale, live = {}, {}, {}\n"
    "    local reqs, toks = 0, 0\n"
    "    for i = 1, #all, 2 do\n"
    "      local f = all[i]\n"
    "      local sec = tonumber(string.sub(f, 2))\n"
    "      if sec == nil or sec <= dead then table.insert(stale, f) else\n"
    "        local b = by[sec]\n"
    "        if b == nil then b = {sec, 0, 0}; by[sec] = b; table.insert(live, b) end\n"
    "        local v = tonumber(all[i + 1])\n"
    "        if string.sub(f, 1, 1) == 'r' then b[2] = v; reqs = reqs + v\n"
    "        else b[3] = v; toks = toks + v end\n"
    "      end\n"
    "    end\n"
    "    if #stale > 0 then redis.call('HDEL', kw, unpack(stale)) end\n"
    "    table.sort(live, function(a, b) return a[1] < b[1] end)\n"
    "    local r, fits = now, true\n"
    "    if rpm > 0 and reqs + 1 > rpm then\n"
    "      r = math.max(r, window_ready(live, reqs, false, rpm - 1)); fits = false\n"
    "    end\n"
    "    if tpm > 0 and toks + est > tpm then\n"
    "      r = math.max(r, window_ready(live, toks, true, tpm - est)); fits = false\n"
    "    end\n"
    "    if fits then return nil end\n"
    "    return r, 3\n"
    "  end\n"
    "  local qwhen, qwhy = quota()\n"
    "  if qwhy == NEVER then return 0, NEVER, -1 end\n"
    "  if qwhen ~= nil then hold(qwhen, qwhy) end\n"
    "  redis.call('ZREMRANGEBYSCORE', kl, '-inf', now)\n"
    "  if redis.call('ZCARD', kl) >= maxin and reason == 0 then\n"
    "    local s = redis.call('ZRANGE', kl, 0, 0, 'WITHSCORES')\n"
    "    ready = tonumber(s[2]); reason = 1\n"
    "  end\n"
    "  if reason ~= 0 then return 0, reason, ready end\n"
    "  if probe then return 2, 0, 0 end\n"
    "  local id = redis.call('INCR', kseq)\n"
    "  redis.call('ZADD', kl, now + ttl, id)\n"
    "  local sec = math.floor(now / 1000)\n"
    "  redis.call('HINCRBY', kw, 'r' .. sec, 1)\n"
    "  if est > 0 then redis.call('HINCRBY', kw, 't' .. sec, est) end\n"
    "  if num(m[3], 0) ~= ds then redis.call('HSET', km, 'ds', ds, 'dc', 1)\n"
    "  else redis.call('HINCRBY', km, 'dc', 1) end\n"
    "  redis.call('HINCRBY', km, 'rt', 1)\n"
    "  local plu = num(redis.call('HGET', kk, 'lu'), 0)\n"
    "  redis.call('HSET', kk, 'lu', now)\n"
    "  redis.call('HINCRBY', kk, 'rt', 1)\n"
    "  return 1, id, plu\n"
    "end\n"
    "local br, bready, bi = 0, 0, 0\n"
    "local function try(i)\n"
    "  local b = (i - 1) * 5\n"
    "  local st, a, ready = offer(KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + "
    "5],\n"
    "                            tonumber(ARGV[11 + i]))\n"
    "  if st == 1 then\n"
    "    if mode ~= '0' then redis.call('ZADD', KEYS[5 * n + 1], 'XX', now, ARGV[11 + n + i]) end\n"
    "    return {1, a, ready, now, i, 0}\n"
    "  end\n"
    "  if st == 2 then return {2, 0, 0, now, i, 0} end\n"
    "  if bi == 0 or (ready ~= -1 and (bready == -1 or ready < bready)) then\n"
    "    br, bready, bi = a, ready, i\n"
    "  end\n"
    "  return nil\n"
    "end\n"
    "local full = 0\n"
    "if mode == '2' then\n"
    "  local pos, pass = {}, {}\n"
    "  for i = 1, n do pos[ARGV[11 + n + i]] = i end\n"
    "  for j = 1, tonumber(ARGV[12 + 2 * n]) do pass[ARGV[12 + 2 * n + j]] = true end\n"
    "  local page = redis.call('ZRANGE', KEYS[5 * n + 1], 0, " GKP__REDIS_PAGE_S " - 1)\n"
    "  for _, id in ipairs(page) do\n"
    "    local i = pos[id]\n"
    "    if i ~= nil then\n"
    "      local res = try(i)\n"
    "      if res ~= nil then return res end\n"
    "    elseif not pass[id] then return {-2, 0, 0, now, 0, 0} end\n"
    "  end\n"
    "  if #page >= " GKP__REDIS_PAGE_S " then full = 1 end\n"
    "else\n"
    "  for i = 1, n do\n"
    "    local res = try(i)\n"
    "    if res ~= nil then return res end\n"
    "  end\n"
    "end\n"
    "return {0, br, bready, now, bi, full}\n";

/* KEYS: l.  ARGV: now id ttl.  Returns {1|0, now}. */
static const char renew_lua[] =
    PRELUDE "local now = clock(ARGV[1])\n"
            "local s = redis.call('ZSCORE', KEYS[1], ARGV[2])\n"
            "if not s then return {0, now} end\n"
            "if tonumber(s) <= now then redis.call('ZREM', KEYS[1], ARGV[2]); return {0, now} end\n"
            "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])\n"
            "return {1, now}\n";

/* KEYS: the lease sets of n leases (one slot: a single server, or one
 * project on a cluster).  ARGV: now ttl, then the n lease ids.  Returns {now,
 * r1 .. rn}: 1 where the lease was still there and is extended, else 0. */
static const char renew_many_lua[] =
    PRELUDE "local now = clock(ARGV[1])\n"
            "local ttl = tonumber(ARGV[2])\n"
            "local out = {now}\n"
            "for i = 1, #KEYS do\n"
            "  local s = redis.call('ZSCORE', KEYS[i], ARGV[i + 2])\n"
            "  if not s then out[i + 1] = 0\n"
            "  elseif tonumber(s) <= now then redis.call('ZREM', KEYS[i], ARGV[i + 2]); out[i + 1] = 0\n"
            "  else redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 2]); out[i + 1] = 1 end\n"
            "end\n"
            "return out\n";

/* The end of n requests in one step.  KEYS: k l m w of each lease, then
 * (on a single server, when any is counted) the endpoint.  ARGV: n, then
 * for each lease: id sent started_ms est started_day_start last_used_before
 * counted prompt out_tokens.  For each: the usage of a 2xx answer (counted
 * == '1', as usage_lua; the endpoint, when named, marked reachable), then
 * the release (as release_lua).  Returns for each 1 if its lease was still
 * there. */
static const char finish_lua[] = PRELUDE
    "local n = tonumber(ARGV[1])\n"
    "local ep = KEYS[4 * n + 1]\n"
    "local out = {}\n"
    "for i = 0, n - 1 do\n"
    "  local k, l, m, w = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]\n"
    "  local o = 1 + 9 * i\n"
    "  local id, sent, st, est = ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4]\n"
    "  if ARGV[o + 7] == '1' then\n"
    "    redis.call('HSET', m, 'prv', 1, 's429', 0, 'ssrv', 0, 'le', '')\n"
    "    if ep then redis.call('HSET', ep, 'since', '0') end\n"
    "    local p = tonumber(ARGV[o + 8])\n"
    "    if p >= 0 then\n"
    "      local sec = math.floor(tonumber(st) / 1000)\n"
    "      if redis.call('HEXISTS', w, 'r' .. sec) == 1 then\n"
    "        local v = num(redis.call('HGET', w, 't' .. sec), 0) + p - tonumber(est)\n"
    "        if v < 0 then v = 0 end\n"
    "        redis.call('HSET', w, 't' .. sec, v)\n"
    "      end\n"
    "      redis.call('HINCRBY', m, 'tin', p)\n"
    "    end\n"
    "    if tonumber(ARGV[o + 9]) > 0 then redis.call('HINCRBY', m, 'tout', ARGV[o + 9]) end\n"
    "  end\n"
    "  local gone = redis.call('ZREM', l, id)\n"
    "  if gone == 1 and sent == '0' then\n"
    "    local sec = math.floor(tonumber(st) / 1000)\n"
    "    adjust(w, 'r' .. sec, -1)\n"
    "    if tonumber(est) > 0 then adjust(w, 't' .. sec, -tonumber(est)) end\n"
    "    local h = redis.call('HMGET', m, 'ds', 'dc', 'rt')\n"
    "    if num(h[1], 0) == tonumber(ARGV[o + 5]) and num(h[2], 0) > 0 then\n"
    "      redis.call('HINCRBY', m, 'dc', -1) end\n"
    "    if num(h[3], 0) > 0 then redis.call('HINCRBY', m, 'rt', -1) end\n"
    "    if num(redis.call('HGET', k, 'rt'), 0) > 0 then redis.call('HINCRBY', k, 'rt', -1) end\n"
    "    if ARGV[o + 6] ~= '' and redis.call('HGET', k, 'lu') == st then\n"
    "      redis.call('HSET', k, 'lu', ARGV[o + 6]) end\n"
    "  end\n"
    "  out[i + 1] = gone\n"
    "end\n"
    "return out\n";

/* KEYS: k l m w.  ARGV: id sent started_ms est started_day_start last_used_before
 * ("": unknown; an unsent request gives the key its earlier last use back).
 * Returns 1 if the lease was still there. */
static const char release_lua[] = PRELUDE
    "local gone = redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "if gone == 1 and ARGV[2] == '0' then\n"
    "  local sec = math.floor(tonumber(ARGV[3]) / 1000)\n"
    "  local est = tonumber(ARGV[4])\n"
    "  adjust(KEYS[4], 'r' .. sec, -1)\n"
    "  if est > 0 then adjust(KEYS[4], 't' .. sec, -est) end\n"
    "  local m = redis.call('HMGET', KEYS[3], 'ds', 'dc', 'rt')\n"
    "  if num(m[1], 0) == tonumber(ARGV[5]) and num(m[2], 0) > 0 then\n"
    "    redis.call('HINCRBY', KEYS[3], 'dc', -1) end\n"
    "  if num(m[3], 0) > 0 then redis.call('HINCRBY', KEYS[3], 'rt', -1) end\n"
    "  if num(redis.call('HGET', KEYS[1], 'rt'), 0) > 0 then redis.call('HINCRBY', KEYS[1], 'rt', "
    "-1) end\n"
    "  if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'lu') == ARGV[3] then\n"
    "    redis.call('HSET', KEYS[1], 'lu', ARGV[6]) end\n"
    "end\n"
    "return gone\n";

/* KEYS: m w [endpoint].  ARGV: started_ms est prompt out_tokens.  A 2xx
 * answer; on a single server the endpoint record is named too and marked
 * reachable in the same step (on a cluster it lives in another slot). */
static const char usage_lua[] = PRELUDE
    "redis.call('HSET', KEYS[1], 'prv', 1, 's429', 0, 'ssrv', 0, 'le', '')\n"
    "if #KEYS >= 3 then redis.call('HSET', KEYS[3], 'since', '0') end\n"
    "local p = tonumber(ARGV[3])\n"
    "if p >= 0 then\n"
    "  local sec = math.floor(tonumber(ARGV[1]) / 1000)\n"
    "  if redis.call('HEXISTS', KEYS[2], 'r' .. sec) == 1 then\n"
    "    local v = num(redis.call('HGET', KEYS[2], 't' .. sec), 0) + p - tonumber(ARGV[2])\n"
    "    if v < 0 then v = 0 end\n"
    "    redis.call('HSET', KEYS[2], 't' .. sec, v)\n"
    "  end\n"
    "  redis.call('HINCRBY', KEYS[1], 'tin', p)\n"
    "end\n"
    "if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'tout', ARGV[4]) end\n"
    "return 1\n";

/* KEYS: k m.  ARGV: 3 old key fields (dis cdu cdk), 8 old pair fields
 * (cdu cdk prv s429 ssrv lr lt ld lra lta lda), then the same 14 new values, then
 * dreason, the error kind and the last error.  Writes only if nothing
 * changed since the client read them (returns 1; else 0). */
static const char verdict_lua[] =
    "local kf = {'dis', 'cdu', 'cdk'}\n"
    "local mf = {'cdu', 'cdk', 'prv', 's429', 'ssrv', 'lr', 'lt', 'ld', 'lra', 'lta', 'lda'}\n"
    "local nk, nm = #kf, #mf\n"
    "local k = redis.call('HMGET', KEYS[1], unpack(kf))\n"
    "local m = redis.call('HMGET', KEYS[2], unpack(mf))\n"
    "for i = 1, nk do if (k[i] or '') ~= ARGV[i] then return 0 end end\n"
    "for i = 1, nm do if (m[i] or '') ~= ARGV[nk + i] then return 0 end end\n"
    "local o = nk + nm\n"
    "for i = 1, nk do redis.call('HSET', KEYS[1], kf[i], ARGV[o + i]) end\n"
    "for i = 1, nm do redis.call('HSET', KEYS[2], mf[i], ARGV[o + nk + i]) end\n"
    "o = 2 * o\n"
    "if ARGV[o - nm - nk + 1] == '1' then redis.call('HSET', KEYS[1], 'dreason', ARGV[o + 1]) end\n"
    "if tonumber(ARGV[o + 2]) > 0 then redis.call('HINCRBY', KEYS[2], 'e' .. ARGV[o + 2], 1) end\n"
    "redis.call('HSET', KEYS[2], 'le', ARGV[o + 3])\n"
    "return 1\n";

/* KEYS: k m1 m2 ...  Clears the key's disabled flag and cooldowns and its
 * pairs' cooldowns, streaks, last error and learned limits. */
static const char reset_lua[] =
    "redis.call('HSET', KEYS[1], 'dis', 0, 'dreason', '', 'cdu', 0, 'cdk', 0)\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('EXISTS', KEYS[i]) == 1 then\n"
    "    redis.call('HSET', KEYS[i], 'cdu', 0, 'cdk', 0, 's429', 0, 'ssrv', 0, 'le', '')\n"
    "    redis.call('HDEL', KEYS[i], 'lr', 'lt', 'ld', 'lra', 'lta', 'lda')\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* KEYS: k l m1 m2 ...  ARGV: now.  Removes expired leases and cooldowns;
 * returns how many. */
static const char gc_lua[] =
    PRELUDE "local now = clock(ARGV[1])\n"
            "local n = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"
            "for i = 1, #KEYS do\n"
            "  if i ~= 2 then\n"
            "    local c = redis.call('HMGET', KEYS[i], 'cdk', 'cdu')\n"
            "    if num(c[1], 0) ~= 0 and num(c[2], 0) <= now then\n"
            "      redis.call('HSET', KEYS[i], 'cdk', 0, 'cdu', 0); n = n + 1\n"
            "    end\n"
            "  end\n"
            "end\n"
            "return n\n";

/* Sets a string only if it still holds what the client read ("": absent).
 * KEYS: the string.  ARGV: old new.  Returns 1, or 0 if it changed. */
static const char cas_lua[] =
    "local v = redis.call('GET', KEYS[1]) or ''\n"
    "if v ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "return 1\n";

const char *gkp__redis_script_text(int script) {
  switch (script) {
  case GKP__RS_RESERVE:
    return reserve_lua;
  case GKP__RS_RENEW:
    return renew_lua;
  case GKP__RS_RELEASE:
    return release_lua;
  case GKP__RS_USAGE:
    return usage_lua;
  case GKP__RS_VERDICT:
    return verdict_lua;
  case GKP__RS_RESET:
    return reset_lua;
  case GKP__RS_GC:
    return gc_lua;
  case GKP__RS_CAS:
    return cas_lua;
  case GKP__RS_RENEW_MANY:
    return renew_many_lua;
  case GKP__RS_FINISH:
    return finish_lua;
  default:
    return NULL;
  }
}
