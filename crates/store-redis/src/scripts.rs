//! The Lua scripts that make an append atomic across nodes: numbering, the id checks, the
//! stream entries and retention happen in one script call, so two nodes never interleave.

use std::sync::LazyLock;

use redis::Script;

/// How far numbering jumps when a node finds the log's numbering below the seqs it has seen
/// (Redis lost its data): it continues at the highest seq it saw plus this, so no seq a client
/// may hold is handed out again, even where another node had read a little further.
pub const LOSS_JUMP: u64 = 1 << 20;

/// Shared by the scripts: ids made from (time, seq), and numbers written as integers (Lua 5.1
/// would write a large one as `1.7e+12`).
const HELPERS: &str = r#"
local ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
local function b32(n, width)
  local out = {}
  for i = width, 1, -1 do
    local d = n % 32
    out[i] = string.sub(ALPHABET, d + 1, d + 1)
    n = (n - d) / 32
  end
  return table.concat(out)
end
local function int(n) return string.format('%d', n) end
"#;

/// Appends pushes, each all or nothing.
///
/// KEYS: 1 the stream, 2 the id index (hash id -> seq), 3 meta (hash: `seq`, the last seq
/// handed out; `ms`, the last time used; `bytes`, the bytes counted), 4 the recipient sets
/// (hash: the first seq of the push -> the list).
/// ARGV: 1 known (the highest seq the caller saw), 2 max events, 3 max age in ms (0: none),
/// 4 max bytes (0: none), 5 the number of pushes; then per push its recipients (`*` everyone,
/// `=` + list for one event, `@` + list shared by its events) and its number of events, then
/// per event: id (`''`: assign one), type, retry in ms, data.
/// Returns `{lost, answers}`: lost is 1 when the numbering was below `known`; an answer is
/// `{0, first_seq, id...}` or `{1, index, id}` for a reused id.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r#"
local log, ids, meta, sets = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local known = tonumber(ARGV[1])
local max_events, max_age, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local seq = tonumber(redis.call('HGET', meta, 'seq') or '0')
local lost = 0
if seq < known then
  seq = known + JUMP
  lost = 1
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ms = math.max(now, tonumber(redis.call('HGET', meta, 'ms') or '0'))
local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
local answers = {}
local at = 6
local appended = 0
for p = 1, tonumber(ARGV[5]) do
  local recipients, n = ARGV[at], tonumber(ARGV[at + 1])
  at = at + 2
  local reused = nil
  local own = {}
  for e = 0, n - 1 do
    local id = ARGV[at + 4 * e]
    if id ~= '' then
      if own[id] or redis.call('HEXISTS', ids, id) == 1 then
        reused = {1, e, id}
        break
      end
      own[id] = true
    end
  end
  if reused then
    table.insert(answers, reused)
  else
    local to = recipients
    if string.sub(recipients, 1, 1) == '@' then
      redis.call('HSET', sets, int(seq + 1), string.sub(recipients, 2))
      to = '@' .. int(seq + 1)
    end
    local answer = {0, seq + 1}
    for e = 0, n - 1 do
      seq = seq + 1
      local id, kind, retry, data = ARGV[at + 4 * e], ARGV[at + 4 * e + 1], ARGV[at + 4 * e + 2], ARGV[at + 4 * e + 3]
      if id == '' then id = b32(ms, 10) .. b32(seq, 16) end
      local fields = {'i', id, 'd', data, 't', int(ms), 'w', to}
      if kind ~= '' then table.insert(fields, 'e'); table.insert(fields, kind) end
      if retry ~= '' then table.insert(fields, 'r'); table.insert(fields, retry) end
      redis.call('XADD', log, int(seq) .. '-0', unpack(fields))
      redis.call('HSET', ids, id, int(seq))
      bytes = bytes + #id + #data + #kind + #retry + #to + 32
      table.insert(answer, id)
      appended = appended + 1
    end
    table.insert(answers, answer)
  end
  at = at + 4 * n
end
-- Retention: the oldest go while over a limit, the newest always stays; at most `budget`
-- entries a call (at least twice what this call added, so trimming keeps up).
local count = redis.call('XLEN', log)
local budget = math.max(256, 2 * appended)
local cursor = '-'
local last = nil
local dropped_sets = {}
local done = false
while not done and budget > 0 and count > 1 do
  local entries = redis.call('XRANGE', log, cursor, '+', 'COUNT', math.min(budget, 128))
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    if count <= 1 or budget <= 0 then done = true; break end
    local f = {}
    local kv = entry[2]
    for k = 1, #kv, 2 do f[kv[k]] = kv[k + 1] end
    local over = count > max_events
      or (max_bytes > 0 and bytes > max_bytes)
      or (max_age > 0 and tonumber(f.t or '0') < now - max_age)
    if not over then done = true; break end
    local s = tonumber(string.match(entry[1], '^(%d+)'))
    local id = f.i or ''
    if redis.call('HGET', ids, id) == int(s) then redis.call('HDEL', ids, id) end
    local to = f.w or '*'
    if string.sub(to, 1, 1) == '@' then dropped_sets[string.sub(to, 2)] = true end
    bytes = bytes - (#id + #(f.d or '') + #(f.e or '') + #(f.r or '') + #to + 32)
    count = count - 1
    budget = budget - 1
    last = s
  end
  cursor = '(' .. entries[#entries][1]
end
if last then
  redis.call('XTRIM', log, 'MINID', int(last + 1) .. '-0')
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  local keep = nil
  if first[1] then
    local kv = first[1][2]
    for k = 1, #kv, 2 do if kv[k] == 'w' then keep = kv[k + 1] end end
  end
  for key, _ in pairs(dropped_sets) do
    if keep ~= '@' .. key then redis.call('HDEL', sets, key) end
  end
end
redis.call('HSET', meta, 'seq', int(seq), 'ms', int(ms), 'bytes', int(math.max(bytes, 0)))
return {lost, answers}
"#
        .replace("JUMP", &LOSS_JUMP.to_string())
    ))
});

/// Makes sure numbering continues above `known` (ARGV 1) when the log is below it (its data was
/// lost): KEYS 1 meta. Returns 1 if it had to.
static FLOOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{HELPERS}{}",
        r#"
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local known = tonumber(ARGV[1])
if seq < known then
  redis.call('HSET', KEYS[1], 'seq', int(known + JUMP))
  return 1
end
return 0
"#
        .replace("JUMP", &LOSS_JUMP.to_string())
    ))
});

pub(crate) fn append() -> &'static Script {
    &APPEND
}

pub(crate) fn floor() -> &'static Script {
    &FLOOR
}
