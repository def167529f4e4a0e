/**
 * Lua loaded by the gateway's HAProxy (`lua-load-per-thread`): ClientHello reassembly across TLS
 * records. HAProxy 2.6's `req.ssl_sni` and `req.ssl_hello_type` read the handshake as if it were
 * contiguous after the first record header, so a hello fragmented over several records (legal,
 * and increasingly common with post-quantum key shares and anti-ossification clients) either
 * yields no name or a name read across a record header; and `req.ssl_sni` is lenient (the first
 * host name of the first server_name extension, whatever follows). This converter walks the
 * records and parses strictly instead:
 *
 * `req.payload(0,0),hex,lua.portcullis_hello` → `"<need>/<name>"`:
 * - `<need>`: how many request bytes a complete hello needs (the config waits with
 *   `req.len,sub(txn.hello_need) ge 0`, which keeps HAProxy's "may change" wait semantics of
 *   `req.len`); 0 when the bytes are not a TLS handshake at all (nothing to wait for).
 * - `<name>`: the server_name of the reassembled ClientHello once complete, else empty. Parsed
 *   strictly: a hello with two host names, two server_name extensions or lengths that disagree
 *   yields `?malformed-client-hello`, and bytes outside `[A-Za-z0-9.-:[]]` read as `?`, so that
 *   both fail the name check (an upstream re-reading the hello must not find another name than
 *   this one). A name never contains `/`, so `field(2,/)` takes it whole.
 *
 * A converter, not a sample fetch: HAProxy builds a Lua `TXN` object (with its Fetches,
 * Converters and Channel objects) for every call of a Lua fetch and nothing for a converter,
 * which only receives the bytes; one call per rule pass instead of two fetches took the Lua
 * layer's user time from ≈ 35 to ≈ 23 µs per connection (bench/README.md). The bytes arrive in
 * hex because HAProxy's binary-to-string cast ends at the first NUL. `req.ssl_sni` alone is not
 * an option even for single-record hellos: it returns the first host name of the first
 * server_name extension whatever follows (two names, two extensions, trailing bytes, control
 * characters), which the adversarial tests refuse. Pure Lua 5.3; bounded (at most 64 KiB of
 * handshake).
 */

/** Relative path of the Lua file inside the gateway layout. */
export const CLIENT_HELLO_LUA_FILE = 'lua/client-hello.lua';

export const CLIENT_HELLO_LUA = `-- Rendered by portcullis: ClientHello reassembly across TLS records (see proxy/haproxy/render-lua.ts).
local MAX_HANDSHAKE = 65536

-- The input is the request buffer in upper-case hex (a Lua converter receives a string, and
-- HAProxy's binary-to-string cast stops at the first NUL): byte i of the bytes is characters
-- 2i-1 and 2i. Only the bytes the parser looks at are decoded.
local NIBBLE = {}
for i = 0, 9 do NIBBLE[48 + i] = i end
for i = 0, 5 do NIBBLE[65 + i] = 10 + i; NIBBLE[97 + i] = 10 + i end

local function byte(h, i)
  local a, b = h:byte(2 * i - 1, 2 * i)
  if b == nil then return nil end
  return NIBBLE[a] * 16 + NIBBLE[b]
end

local function size(h) return #h // 2 end

local function sub(h, i, j) return h:sub(2 * i - 1, 2 * j) end

-- The bytes at positions i..j (at most 255 of them: longer names are never valid anyway).
local function bytes(h, i, j)
  local out = {}
  for k = i, j do out[#out + 1] = byte(h, k) end
  return string.char(table.unpack(out))
end

-- Returns (handshake, need): the reassembled ClientHello handshake (hex) once complete, and
-- the number of request bytes needed; need is 0 when the data is not a TLS handshake.
local function reassemble(data)
  local parts, have, want, pos = {}, 0, nil, 1
  local total = size(data)
  while true do
    if total < pos + 4 then return nil, pos + 4 end
    if byte(data, pos) ~= 0x16 then return nil, 0 end
    local len = byte(data, pos + 3) * 256 + byte(data, pos + 4)
    if len == 0 then return nil, 0 end
    local stop = pos + 4 + len
    if total < stop then return nil, stop end
    parts[#parts + 1] = sub(data, pos + 5, stop)
    have = have + len
    if want == nil and have >= 4 then
      local head = #parts == 1 and parts[1] or table.concat(parts)
      if byte(head, 1) ~= 1 then return nil, 0 end
      want = 4 + byte(head, 2) * 65536 + byte(head, 3) * 256 + byte(head, 4)
      if want > MAX_HANDSHAKE then return nil, 0 end
    end
    -- Returned whole: bytes after the message in its last record make the hello malformed.
    if want ~= nil and have >= want then
      return #parts == 1 and parts[1] or table.concat(parts), stop
    end
    pos = stop + 1
  end
end

local function u16(h, i)
  local a, b = byte(h, i), byte(h, i + 1)
  if b == nil then return nil end
  return a * 256 + b
end

-- What a name that cannot be trusted reads as: no DNS name can contain "?", so the gateway
-- refuses it as an invalid server name (and logs it so).
local MALFORMED = "?malformed-client-hello"
-- A host name longer than any DNS name (253), refused the same way.
local TOO_LONG = "?server-name-too-long"

-- Bytes outside [A-Za-z0-9.-:[]] (NUL, CR/LF, controls, spaces, "/", non-ASCII) become "?": the
-- name then fails the DNS syntax check instead of being cut short or read differently downstream
-- (":", "[" and "]" stay, so that IPv6 literals are refused as IP literals).
local function printable(name)
  return (name:gsub("[^A-Za-z0-9%.%-:%[%]]", "?"))
end

-- The host_name of the server_name extension (RFC 6066): "" when the hello has none, MALFORMED
-- when the hello is not strictly well-formed. Strict on purpose: the upstream re-reads this same
-- hello and must not find another name than the one checked here (two host names, two
-- server_name extensions, lengths that disagree, bytes after the list).
local function server_name(hs)
  local last = size(hs)
  local pos = 5 + 2 + 32
  local sid = byte(hs, pos)
  if sid == nil or sid > 32 then return MALFORMED end
  pos = pos + 1 + sid
  local suites = u16(hs, pos)
  if suites == nil then return MALFORMED end
  pos = pos + 2 + suites
  local methods = byte(hs, pos)
  if methods == nil then return MALFORMED end
  pos = pos + 1 + methods
  if pos == last + 1 then return "" end
  local ext_total = u16(hs, pos)
  if ext_total == nil or pos + 1 + ext_total ~= last then return MALFORMED end
  pos = pos + 2
  local name = nil
  while pos <= last do
    local ext_type, ext_len = u16(hs, pos), u16(hs, pos + 2)
    if ext_len == nil or pos + 3 + ext_len > last then return MALFORMED end
    if ext_type == 0 then
      if name ~= nil then return MALFORMED end
      -- server_name_list: exactly one entry, of type host_name, filling the extension.
      local list_len, name_type, name_len = u16(hs, pos + 4), byte(hs, pos + 6), u16(hs, pos + 7)
      if list_len == nil or list_len + 2 ~= ext_len or name_type ~= 0 or name_len == nil
        or name_len + 3 ~= list_len then
        return MALFORMED
      end
      if name_len > 255 then return TOO_LONG end
      name = bytes(hs, pos + 9, pos + 8 + name_len)
    end
    pos = pos + 4 + ext_len
  end
  if name == nil then return "" end
  return printable(name)
end

-- "<need>/<name>" (see proxy/haproxy/render-lua.ts): one call per rule pass, no TXN object.
core.register_converters("portcullis_hello", function(data)
  local hs, need = reassemble(data or "")
  if hs == nil then return need .. "/" end
  return need .. "/" .. server_name(hs)
end)
`;
