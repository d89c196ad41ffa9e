package globalchannel

import "github.com/redis/go-redis/v9"

// addScript: KEYS = fronts, members, by-frontend, alive key of the
// frontend; ARGV = name, uid, fid.
var addScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[4]) == 0 then
  return redis.error_reply('OFFLINE frontend ' .. ARGV[3] .. ' is not alive in online status')
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
`)

// leaveScript: KEYS = fronts, members, by-frontend; ARGV = name, uid, fid.
var leaveScript = redis.NewScript(`
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[3])
  redis.call('SREM', KEYS[3], ARGV[1])
end
return 1
`)

// membersScript returns fid, {uids} pairs for the live frontends of a
// channel: KEYS = fronts; ARGV = channel key base, alive key prefix and
// suffix.
var membersScript = redis.NewScript(`
local out = {}
for _, fid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[2] .. fid .. ARGV[3]) == 1 then
    out[#out + 1] = fid
    out[#out + 1] = redis.call('SMEMBERS', ARGV[1] .. 'f:' .. fid)
  end
end
return out
`)

// destroyScript: KEYS = fronts; ARGV = channel key base, by-frontend key
// prefix, name.
var destroyScript = redis.NewScript(`
for _, fid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('DEL', ARGV[1] .. 'f:' .. fid)
  redis.call('SREM', ARGV[2] .. fid, ARGV[3])
end
redis.call('DEL', KEYS[1])
return 1
`)

// reapScript deletes a dead frontend's memberships of some channels: KEYS =
// the frontend's alive key, its by-frontend key; ARGV = fid, force, the
// channel key prefix, names... It returns 0, changing nothing, when the
// frontend is alive again (and force is not "1").
var reapScript = redis.NewScript(`
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local fid = ARGV[1]
for i = 4, #ARGV do
  local name = ARGV[i]
  local base = ARGV[3] .. string.len(name) .. ':' .. name .. ':'
  redis.call('DEL', base .. 'f:' .. fid)
  redis.call('SREM', base .. 'fronts', fid)
  redis.call('SREM', KEYS[2], name)
end
return 1
`)
