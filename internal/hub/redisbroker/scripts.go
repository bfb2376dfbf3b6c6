package redisbroker

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs atomically in Redis, is sent once and then
// called by its SHA (go-redis sends EVALSHA and falls back to EVAL, which
// loads it again, on NOSCRIPT). Every key a script touches carries the
// room's hash tag, so a script stays within one Redis Cluster slot.
//
// Time is Redis's own (TIME), not the nodes': ids, retention and presence
// expiry are decided on one clock. Since Redis 7 scripts are replicated
// by their effects, so reading TIME in a script that writes is allowed.

// luaCommon is prepended to every script.
const luaCommon = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function field(s)
  return #s .. ':' .. s
end

-- A stream that expired (no message for the whole retention time) lost
-- every message: the highest id dropped is then the last id added. It
-- returns whether the stream exists: reads of one that does not can stop
-- here.
local function sync_expired(stream, meta)
  if redis.call('EXISTS', stream) == 0 then
    local l = redis.call('HGET', meta, 'l')
    if l then redis.call('HSET', meta, 'd', l) end
    return false
  end
  return true
end

-- trim_age drops messages older than the retention time and records the
-- highest id dropped, which answers whether a recovery is complete.
local function trim_age(stream, meta, now, ttl)
  local cutoff = now - ttl
  if cutoff <= 0 then return end
  local old = redis.call('XREVRANGE', stream, '(' .. cutoff .. '-0', '-', 'COUNT', 1)
  if #old > 0 then
    redis.call('HSET', meta, 'd', old[1][1])
    redis.call('XTRIM', stream, 'MINID', cutoff)
  end
end
`

// publishScript stores a message and publishes it in one step, so that
// the stream's order, the ids' order and the delivery order are the same
// on every node.
//
// A client message id is remembered for the retention time, whatever
// the count trimming does to its message: the cid key holds the original's
// id and ts ("<id> <ts>"; a key written before the ts was added holds the
// id alone, whose milliseconds are the ts) and expires with the retention
// time. A retry is answered with the original, from the stream while it
// is retained, else with the retry's own fields and the original's id and
// ts.
//
// KEYS: stream, meta, cid key. ARGV: publish command (PUBLISH or
// SPUBLISH), channel, history size, retention ms, from, name, text, cid.
// Returns {duplicate, id, from, name, text, cid, ts}.
var publishScript = redis.NewScript(luaCommon + `
local stream, meta, cidkey = KEYS[1], KEYS[2], KEYS[3]
local size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local from, name, text, cid = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local now = now_ms()
sync_expired(stream, meta)
trim_age(stream, meta, now, ttl)

if cid ~= '' then
  local prev = redis.call('GET', cidkey)
  if prev then
    local pid, pts = string.match(prev, '^(%d+-%d+) (%d+)$')
    if not pid then
      pid = prev
      pts = string.match(prev, '^(%d+)-') or '0'
    end
    local r = redis.call('XRANGE', stream, pid, pid)
    if #r > 0 then
      local f, m = r[1][2], {}
      for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
      return {1, pid, m.f or '', m.n or '', m.t or '', m.c or '', pts}
    end
    return {1, pid, from, name, text, cid, pts}
  end
end

-- Ids only grow, even when the stream expired and Redis's clock is
-- behind the last id given.
local idarg = '*'
if redis.call('EXISTS', stream) == 0 then
  local l = redis.call('HGET', meta, 'l')
  if l then
    local lms, lseq = string.match(l, '^(%d+)-(%d+)$')
    if lms and tonumber(lms) >= now then idarg = lms .. '-' .. (tonumber(lseq) + 1) end
  end
end
local id = redis.call('XADD', stream, idarg, 'f', from, 'n', name, 't', text, 'c', cid)
-- The floor: the first id of the room's history as this Redis knows it.
-- Without a record of the room (a new room, or a Redis that lost its data:
-- restarted without persistence, flushed, evicted) nothing says what came
-- before, so a recovery from below the floor is not complete. It lives in
-- the metadata, which outlives the stream: once the stream expires, 'd'
-- takes over (sync_expired).
redis.call('HSETNX', meta, 'f', id)

local len = redis.call('XLEN', stream)
if len > size then
  local drop = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - size)
  redis.call('HSET', meta, 'd', drop[#drop][1])
  redis.call('XTRIM', stream, 'MAXLEN', size)
end
redis.call('HSET', meta, 'l', id)
redis.call('PEXPIRE', stream, ttl)
-- The metadata outlives the stream, so that a recovery after the
-- stream expired still learns that messages were dropped.
redis.call('PEXPIRE', meta, 2 * ttl + 86400000)
local ts = string.match(id, '^(%d+)-')
if cid ~= '' then redis.call('SET', cidkey, id .. ' ' .. ts, 'PX', ttl) end

redis.call(ARGV[1], ARGV[2], 'm' .. field(id) .. field(from) .. field(name) .. field(text) .. field(cid))
return {0, id, from, name, text, cid, ts}
`)

// luaReads are the history reads, shared by their own scripts and
// joinScript.
const luaReads = `
-- history pages back through the retained messages: up to limit+1
-- entries before before ('' for the newest), newest first.
local function history(stream, meta, now, ttl, before, limit)
  if not sync_expired(stream, meta) then return {} end
  trim_age(stream, meta, now, ttl)
  local hi = '+'
  if before ~= '' then hi = '(' .. before end
  return redis.call('XREVRANGE', stream, hi, '-', 'COUNT', limit + 1)
end

-- since is what a recovery needs: {highest id dropped, entries after
-- since, oldest first, floor ('' when the room has no record)}.
local function since(stream, meta, now, ttl, after)
  local entries = {}
  if sync_expired(stream, meta) then
    trim_age(stream, meta, now, ttl)
    entries = redis.call('XRANGE', stream, '(' .. after, '+')
  end
  local d = redis.call('HGET', meta, 'd') or '0-0'
  local f = redis.call('HGET', meta, 'f') or ''
  return {d, entries, f}
end
`

// historyScript pages back through the retained messages.
//
// KEYS: stream, meta. ARGV: retention ms, before ("" for the newest),
// limit. Returns up to limit+1 entries, newest first.
var historyScript = redis.NewScript(luaCommon + luaReads + `
return history(KEYS[1], KEYS[2], now_ms(), tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]))
`)

// sinceScript returns what a recovery needs.
//
// KEYS: stream, meta. ARGV: retention ms, since. Returns {highest id
// dropped, entries after since, oldest first, floor ("" when the room has
// no record)}.
var sinceScript = redis.NewScript(luaCommon + luaReads + `
return since(KEYS[1], KEYS[2], now_ms(), tonumber(ARGV[1]), ARGV[2])
`)

// Presence. A room's presence is a sorted set of users scored by the
// latest expiry of their entries, and a hash of each user's entry: their
// name and, per node with a connection of theirs in the room, when that
// node's claim expires. Nodes renew their claims every heartbeat; the
// claims of a node that died expire, and the user stops counting.

const luaPresence = `
-- load returns a user's entry with expired claims removed, and the latest
-- expiry left (0 when none is).
local function load(entries, user, now)
  local raw = redis.call('HGET', entries, user)
  if not raw then return nil, 0 end
  local e = cjson.decode(raw)
  local top = 0
  for node, x in pairs(e.e) do
    if x > now then
      if x > top then top = x end
    else
      e.e[node] = nil
    end
  end
  return e, top
end

-- store writes a user's entry back, or drops it when no claim is left.
-- Only a claim extends the keys' life: a drop leaves nothing that needs
-- it, and the other users' claims are renewed by their nodes.
local function store(presence, entries, user, e, top, ttl)
  if top == 0 then
    redis.call('HDEL', entries, user)
    redis.call('ZREM', presence, user)
    return
  end
  redis.call('HSET', entries, user, cjson.encode(e))
  redis.call('ZADD', presence, top, user)
  redis.call('PEXPIRE', presence, 4 * ttl)
  redis.call('PEXPIRE', entries, 4 * ttl)
end

-- claim claims user's presence for node, and publishes the join event
-- (pub: command, channel, event; nil for none) when the user is first.
-- It returns 1 when no node had a live claim for the user before.
local function claim(presence, entries, now, user, name, node, ttl, pub, channel, event)
  local e, top = load(entries, user, now)
  local first = 0
  if not e or top == 0 then
    first = 1
    e = {e = {}}
  end
  e.n = name
  e.e[node] = now + ttl
  if now + ttl > top then top = now + ttl end
  store(presence, entries, user, e, top, ttl)
  if first == 1 and pub then redis.call(pub, channel, event) end
  return first
end

-- members lists the users with a live claim: user, name pairs.
local function members(presence, entries, now)
  local out = {}
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', presence, '(' .. now, '+inf')) do
    local raw = redis.call('HGET', entries, user)
    local name = user
    if raw then
      local e = cjson.decode(raw)
      if e.n then name = e.n end
    end
    table.insert(out, user)
    table.insert(out, name)
  end
  return out
end
`

// addMemberScript claims a user's presence for a node.
//
// KEYS: presence, entries. ARGV: user, name, node, ttl ms, and optionally
// a publish command (PUBLISH or SPUBLISH), the room's channel and the join
// event, published when the user is first. Returns 1 when no node had a
// live claim for the user before.
var addMemberScript = redis.NewScript(luaCommon + luaPresence + `
return claim(KEYS[1], KEYS[2], now_ms(), ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7])
`)

// removeMemberScript drops a node's claim.
//
// KEYS: presence, entries. ARGV: user, node, ttl ms, and optionally a
// publish command, the room's channel and the leave event, published when
// no live claim is left. Returns 1 when the user was present and no live
// claim is left.
var removeMemberScript = redis.NewScript(luaCommon + luaPresence + `
local e, top = load(KEYS[2], ARGV[1], now_ms())
if not e then return 0 end
e.e[ARGV[2]] = nil
-- load left only live claims: the latest of the others is the expiry.
top = 0
for _, x in pairs(e.e) do
  if x > top then top = x end
end
store(KEYS[1], KEYS[2], ARGV[1], e, top, tonumber(ARGV[3]))
if top == 0 then
  if ARGV[4] then redis.call(ARGV[4], ARGV[5], ARGV[6]) end
  return 1
end
return 0
`)

// refreshScript renews a node's claims in a room (claiming again the
// users Redis no longer holds) and sweeps the users whose every claim has
// expired (their nodes died).
//
// KEYS: presence, entries. ARGV: node, ttl ms, then user, name pairs.
// Returns {swept, back}, each a list of user, name pairs: the swept users,
// whose leave whoever runs the sweep announces (only one node can sweep a
// user), and the users given who had no live claim before, whose join the
// node announces (only one call can find a user absent).
var refreshScript = redis.NewScript(luaCommon + luaPresence + `
local now, ttl = now_ms(), tonumber(ARGV[2])
local back = {}
for i = 3, #ARGV, 2 do
  local user = ARGV[i]
  local e, top = load(KEYS[2], user, now)
  if not e or top == 0 then
    table.insert(back, user)
    table.insert(back, ARGV[i + 1])
  end
  if not e then e = {e = {}} end
  e.n = ARGV[i + 1]
  e.e[ARGV[1]] = now + ttl
  if now + ttl > top then top = now + ttl end
  store(KEYS[1], KEYS[2], user, e, top, ttl)
end
local left = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local e, top = load(KEYS[2], user, now)
  local name = user
  if e and e.n then name = e.n end
  store(KEYS[1], KEYS[2], user, e, top, ttl)
  if top == 0 then
    table.insert(left, user)
    table.insert(left, name)
  end
end
return {left, back}
`)

// membersScript lists the users with a live claim.
//
// KEYS: presence, entries. Returns user, name pairs.
var membersScript = redis.NewScript(luaCommon + luaPresence + `
return members(KEYS[1], KEYS[2], now_ms())
`)

// joinScript is a join's reads in one call: the presence claim (as
// addMemberScript, when a claim is given), then the history read (as
// historyScript or sinceScript, when one is asked for), then the members
// (as membersScript). One call instead of three saves Redis most of the
// cost of a join, which is in running scripts, not in their commands.
//
// KEYS: presence, entries, stream, meta. ARGV: read ("h" history, "s"
// since, "" none), retention ms, limit (h) or since (s), then the claim's
// arguments when there is a claim: user, name, node, ttl ms, and
// optionally the publish command, channel and join event. Returns
// {members, history or since reply (when asked for)}.
var joinScript = redis.NewScript(luaCommon + luaReads + luaPresence + `
local now = now_ms()
if ARGV[4] then
  claim(KEYS[1], KEYS[2], now, ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10])
end
local read
if ARGV[1] == 'h' then
  read = history(KEYS[3], KEYS[4], now, tonumber(ARGV[2]), '', tonumber(ARGV[3]))
elseif ARGV[1] == 's' then
  read = since(KEYS[3], KEYS[4], now, tonumber(ARGV[2]), ARGV[3])
end
return {members(KEYS[1], KEYS[2], now), read}
`)
