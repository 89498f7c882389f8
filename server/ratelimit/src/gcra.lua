-- Haven rate limiter: GCRA, a line-by-line transcription of src/gcra.rs (keep them in step).
--
-- KEYS[1]  "<prefix>:<key>"; its value is the TAT, integer microseconds of Redis' own clock
-- ARGV[1]  interval_us   (>= 1)
-- ARGV[2]  limit_us      (= interval_us * max)
-- ARGV[3]  "1" = hit (consume on success), "0" = peek (never writes)
-- ARGV[4]  optional "now" in microseconds, used only by the crate's tests to cross-check this
--          script against gcra.rs; the crate never sends it in production
-- returns  { allowed (1 or 0), remaining, retry_after_us }
--
-- All times stay far below 2^53, so Lua's doubles hold them exactly. They are written back with
-- string.format('%.0f') because tostring() would round them to 14 significant digits.

-- Redis < 5 must be told to replicate effects (TIME is non-deterministic); a no-op since 7.0.
if redis.replicate_commands then redis.replicate_commands() end

local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local consume = ARGV[3] == '1'

local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Absent (false) or unparsable values count as a fresh key.
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end

if not consume then
  local ahead = tat - now
  local next = ahead + interval
  if next > limit then
    return { 0, 0, next - limit }
  end
  return { 1, math.floor((limit - ahead) / interval), 0 }
end

local new_tat = tat + interval
local ahead = new_tat - now
if ahead > limit then
  return { 0, 0, ahead - limit }
end
-- The state equals "absent" once now >= new_tat, so it expires then (rounded up to whole ms).
local ttl_ms = math.ceil(ahead / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return { 1, math.floor((limit - ahead) / interval), 0 }
