/**
 * Lua loaded by the gateway's HAProxy (`lua-load-per-thread`): ClientHello reassembly across TLS
 * records. HAProxy 2.6's `req.ssl_sni` and `req.ssl_hello_type` read the handshake as if it were
 * contiguous after the first record header, so a hello fragmented over several records (legal,
 * and increasingly common with post-quantum key shares and anti-ossification clients) either
 * yields no name or a name read across a record header. These fetches walk the records instead:
 *
 * - `lua.portcullis_hello_need`: how many request bytes a complete hello needs (so the config
 *   can wait with `req.len,sub(txn.hello_need) ge 0`, which keeps HAProxy's "may change" wait
 *   semantics of `req.len`); 0 when the bytes are not a TLS handshake at all (nothing to wait for).
 * - `lua.portcullis_sni`: the server_name of the reassembled ClientHello, or `""` (a Lua fetch
 *   returning nil would yield the boolean false, which reads as `"0"`). Parsed strictly: a hello
 *   with two host names, two server_name extensions or lengths that disagree yields
 *   `?malformed-client-hello`, and bytes outside `[A-Za-z0-9.-:[]]` read as `?`, so that both fail
 *   the name check (an upstream re-reading the hello must not find another name than this one).
 *
 * Pure Lua 5.3 over a copy of the request buffer; bounded (at most 64 KiB of handshake).
 */

/** Relative path of the Lua file inside the gateway layout. */
export const CLIENT_HELLO_LUA_FILE = 'lua/client-hello.lua';

export const CLIENT_HELLO_LUA = `-- Rendered by portcullis: ClientHello reassembly across TLS records (see proxy/haproxy/render-lua.ts).
local MAX_HANDSHAKE = 65536

-- Returns (handshake, need): the reassembled ClientHello handshake bytes once complete, and
-- the number of request bytes needed; need is 0 when the data is not a TLS handshake.
local function reassemble(data)
  local parts, have, want, pos = {}, 0, nil, 1
  while true do
    if #data < pos + 4 then return nil, pos + 4 end
    if data:byte(pos) ~= 0x16 then return nil, 0 end
    local len = data:byte(pos + 3) * 256 + data:byte(pos + 4)
    if len == 0 then return nil, 0 end
    local stop = pos + 4 + len
    if #data < stop then return nil, stop end
    parts[#parts + 1] = data:sub(pos + 5, stop)
    have = have + len
    if want == nil and have >= 4 then
      local head = table.concat(parts)
      if head:byte(1) ~= 1 then return nil, 0 end
      want = 4 + head:byte(2) * 65536 + head:byte(3) * 256 + head:byte(4)
      if want > MAX_HANDSHAKE then return nil, 0 end
    end
    -- Returned whole: bytes after the message in its last record make the hello malformed.
    if want ~= nil and have >= want then return table.concat(parts), stop end
    pos = stop + 1
  end
end

local function u16(s, i)
  local a, b = s:byte(i, i + 1)
  if b == nil then return nil end
  return a * 256 + b
end

-- What a name that cannot be trusted reads as: no DNS name can contain "?", so the gateway
-- refuses it as an invalid server name (and logs it so).
local MALFORMED = "?malformed-client-hello"

-- Bytes outside [A-Za-z0-9.-:[]] (NUL, CR/LF, controls, spaces, non-ASCII) become "?": the name
-- then fails the DNS syntax check instead of being cut short or read differently downstream
-- (":", "[" and "]" stay, so that IPv6 literals are refused as IP literals).
local function printable(name)
  return (name:gsub("[^A-Za-z0-9%.%-:%[%]]", "?"))
end

-- The host_name of the server_name extension (RFC 6066): "" when the hello has none, MALFORMED
-- when the hello is not strictly well-formed. Strict on purpose: the upstream re-reads this same
-- hello and must not find another name than the one checked here (two host names, two
-- server_name extensions, lengths that disagree, bytes after the list).
local function server_name(hs)
  local pos = 5 + 2 + 32
  local sid = hs:byte(pos)
  if sid == nil or sid > 32 then return MALFORMED end
  pos = pos + 1 + sid
  local suites = u16(hs, pos)
  if suites == nil then return MALFORMED end
  pos = pos + 2 + suites
  local methods = hs:byte(pos)
  if methods == nil then return MALFORMED end
  pos = pos + 1 + methods
  if pos == #hs + 1 then return "" end
  local ext_total = u16(hs, pos)
  if ext_total == nil or pos + 1 + ext_total ~= #hs then return MALFORMED end
  pos = pos + 2
  local name = nil
  while pos <= #hs do
    local ext_type, ext_len = u16(hs, pos), u16(hs, pos + 2)
    if ext_len == nil or pos + 3 + ext_len > #hs then return MALFORMED end
    if ext_type == 0 then
      if name ~= nil then return MALFORMED end
      -- server_name_list: exactly one entry, of type host_name, filling the extension.
      local list_len, name_type, name_len = u16(hs, pos + 4), hs:byte(pos + 6), u16(hs, pos + 7)
      if list_len == nil or list_len + 2 ~= ext_len or name_type ~= 0 or name_len == nil
        or name_len + 3 ~= list_len then
        return MALFORMED
      end
      name = hs:sub(pos + 9, pos + 8 + name_len)
    end
    pos = pos + 4 + ext_len
  end
  if name == nil then return "" end
  return printable(name)
end

core.register_fetches("portcullis_hello_need", function(txn)
  local data = txn.req:dup() or ""
  local _, need = reassemble(data)
  return need
end)

core.register_fetches("portcullis_sni", function(txn)
  local data = txn.req:dup() or ""
  local hs = reassemble(data)
  if hs == nil then return "" end
  return server_name(hs)
end)
`;
