package online

import "github.com/redis/go-redis/v9"

// Key layout, under the prefix P (every variable part is last or followed
// by a fixed suffix, so that no two ids give the same key):
//
//	P f:<fid>:alive  string  the frontend's incarnation token, expiring
//	P f:<fid>:s      hash    session id -> uid, the frontend's bound sessions
//	P f:<fid>:c      hash    uid -> number of its sessions on the frontend
//	P u:<uid>        set     frontend ids holding sessions of uid
//	P own:<uid>      string  the owner token of uid's login (single session)
//	P fronts         set     frontend ids that have state to reap
//
// An owner token is "<incarnation>:<sid>:<fid>". Entries of a frontend
// whose alive key has expired are ignored by readers and deleted by the
// reaper. The scripts compute keys from the prefix, so they need a single
// Redis (standalone or a Sentinel-managed primary), not Redis Cluster.

// syncScript applies a frontend's session changes: ARGV = P, fid,
// incarnation, then triples (op "a" add or "d" delete, sid, uid). Both ops
// are idempotent, so a batch may be sent again after an error.
var syncScript = redis.NewScript(`
local P, fid, inc = ARGV[1], ARGV[2], ARGV[3]
local skey, ckey = P .. 'f:' .. fid .. ':s', P .. 'f:' .. fid .. ':c'
for i = 4, #ARGV, 3 do
  local op, sid, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'a' then
    if redis.call('HSETNX', skey, sid, uid) == 1 then
      if redis.call('HINCRBY', ckey, uid, 1) == 1 then
        redis.call('SADD', P .. 'u:' .. uid, fid)
      end
    end
  else
    local u = redis.call('HGET', skey, sid)
    if u then
      redis.call('HDEL', skey, sid)
      if redis.call('HINCRBY', ckey, u, -1) <= 0 then
        redis.call('HDEL', ckey, u)
        redis.call('SREM', P .. 'u:' .. u, fid)
      end
      local own = P .. 'own:' .. u
      if redis.call('GET', own) == inc .. ':' .. sid .. ':' .. fid then
        redis.call('DEL', own)
      end
    end
  end
end
return 1
`)

// heartbeatScript keeps a frontend alive: KEYS = alive key, fronts;
// ARGV = incarnation, ttl ms, fid. It returns 1 when the key was still
// this incarnation's, 0 when it had expired (the frontend's entries may
// have been reaped), -1 when another incarnation held it.
var heartbeatScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if cur then return -1 end
return 0
`)

// locateScript returns uid, fid pairs for the uids' sessions on live
// frontends: ARGV = P, uids...
var locateScript = redis.NewScript(`
local P = ARGV[1]
local alive, out = {}, {}
for i = 2, #ARGV do
  local uid = ARGV[i]
  for _, fid in ipairs(redis.call('SMEMBERS', P .. 'u:' .. uid)) do
    local a = alive[fid]
    if a == nil then
      a = redis.call('EXISTS', P .. 'f:' .. fid .. ':alive') == 1
      alive[fid] = a
    end
    if a then
      out[#out + 1] = uid
      out[#out + 1] = fid
    end
  end
end
return out
`)

// reapBatchScript removes a dead frontend from the online sets of some of
// its uids: ARGV = P, fid, force ("1" even if alive), uids... It returns 0,
// changing nothing, when the frontend is alive again.
var reapBatchScript = redis.NewScript(`
local P, fid = ARGV[1], ARGV[2]
if ARGV[3] ~= '1' and redis.call('EXISTS', P .. 'f:' .. fid .. ':alive') == 1 then
  return 0
end
local ckey = P .. 'f:' .. fid .. ':c'
for i = 4, #ARGV do
  redis.call('SREM', P .. 'u:' .. ARGV[i], fid)
  redis.call('HDEL', ckey, ARGV[i])
end
return 1
`)

// reapFinishScript deletes what is left of a dead frontend: ARGV = P, fid,
// force.
var reapFinishScript = redis.NewScript(`
local P, fid = ARGV[1], ARGV[2]
if ARGV[3] ~= '1' and redis.call('EXISTS', P .. 'f:' .. fid .. ':alive') == 1 then
  return 0
end
redis.call('DEL', P .. 'f:' .. fid .. ':s', P .. 'f:' .. fid .. ':c')
redis.call('SREM', P .. 'fronts', fid)
return 1
`)

// loginScript claims uid's login for a session: KEYS = own key, the
// session frontend's alive key; ARGV = P, mode ("reject" or "kick"), sid,
// fid. It returns {status, token, previous owner, previous owner live}
// with status "ok" (claimed), "same" (already this session's) or "busy"
// (reject mode: a live owner holds it).
var loginScript = redis.NewScript(`
local P, mode, sid, fid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local inc = redis.call('GET', KEYS[2])
if not inc then
  return redis.error_reply('OFFLINE frontend ' .. fid .. ' is not attached to online status')
end
local tok = inc .. ':' .. sid .. ':' .. fid
local cur = redis.call('GET', KEYS[1])
if cur == tok then
  return {'same', tok, cur, 1}
end
local live = 0
if cur then
  local cinc, csid, cfid = string.match(cur, '^([^:]*):([^:]*):(.*)$')
  if cfid and redis.call('GET', P .. 'f:' .. cfid .. ':alive') == cinc then
    live = 1
  end
end
if mode == 'reject' and live == 1 then
  return {'busy', tok, cur, 1}
end
redis.call('SET', KEYS[1], tok)
return {'ok', tok, cur or '', live}
`)

// casScript replaces KEYS[1] by ARGV[2] when it holds ARGV[1] (deletes it
// when ARGV[2] is empty); it returns 1 when it did.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
`)
