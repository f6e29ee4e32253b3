-- Tally's REST wire-format adapter, around Envoy's gRPC-JSON transcoder.
--
-- Requests (this filter runs before the transcoder):
--   * marks the request as REST (x-tally-rest), so servicers add the REST-only hints below;
--   * routes `Accept: text/csv` meter queries to the CSV method, keeping OpenMeter's single path;
--   * rewrites OpenMeter's deepObject `keyVersion[<key>]=<version>` to `keyVersion=<key>:<version>`,
--     a repeated string the transcoder can bind (it drops parameters it cannot map).
-- Responses (this filter runs after the transcoder):
--   * x-http-code: a servicer's non-200 success status (201, 202, 204; 204 bodies are emptied);
--   * x-tally-problem / x-tally-status: a servicer's RFC 7807 body and HTTP status for an error;
--   * x-tally-nulls: prints required-but-nullable fields the transcoder left out as null;
--   * x-tally-fill: the same for rows that all miss the same keys (a meter query's), in one pass;
--   * x-tally-shape: array: unwraps {"items":[...]} into the bare array OpenMeter returns;
--   * any other error (transcoder rejections, an unreachable upstream) becomes problem+json too.
-- gRPC and gRPC-web calls (the grpc_web filter has turned the latter into gRPC before this one) are
-- not REST: they pass both ways untouched, as they would on the gRPC port.

local HINTS = { "x-tally-rest", "x-tally-problem", "x-tally-status", "x-tally-shape", "x-http-code",
  "x-tally-json-body-bin", "x-tally-nulls", "x-tally-fill" }
-- JSON bodies up to this size are forwarded to Tally in x-tally-json-body-bin (server/json_fields.py,
-- JSON_BODY_LIMIT), which refuses fields the transcoder would otherwise drop without a word.
local JSON_BODY_LIMIT = 16384

local function is_grpc(headers)
  local content_type = headers:get("content-type")
  return content_type ~= nil and string.sub(content_type, 1, 16) == "application/grpc"
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

local TITLES = {
  ["400"] = "Bad Request", ["401"] = "Unauthorized", ["403"] = "Forbidden", ["404"] = "Not Found",
  ["405"] = "Method Not Allowed", ["409"] = "Conflict", ["412"] = "Precondition Failed",
  ["413"] = "Payload Too Large", ["415"] = "Unsupported Media Type", ["429"] = "Too Many Requests",
  ["500"] = "Internal Server Error", ["501"] = "Not Implemented", ["502"] = "Bad Gateway",
  ["503"] = "Service Unavailable", ["504"] = "Gateway Timeout",
}

-- keyVersion[plan_key]=2 (brackets plain or %-encoded) -> keyVersion=plan_key%3A2; other parameters
-- stay as they are.
local function key_version_parameters(path)
  local base, query = string.match(path, "^([^?]*)%?(.*)$")
  if base == nil then
    return path
  end
  local parts = {}
  for pair in string.gmatch(query, "[^&]+") do
    local key, version = string.match(pair, "^keyVersion%[(.-)%]=(.*)$")
    if key == nil then
      key, version = string.match(pair, "^keyVersion%%5[Bb](.-)%%5[Dd]=(.*)$")
    end
    if key ~= nil then
      pair = "keyVersion=" .. key .. "%3A" .. version
    end
    parts[#parts + 1] = pair
  end
  return base .. "?" .. table.concat(parts, "&")
end

function envoy_on_request(handle)
  local headers = handle:headers()
  -- Hints are Tally's own; a client must not be able to forge them.
  for _, name in ipairs(HINTS) do
    headers:remove(name)
  end
  if is_grpc(headers) then
    -- Remembered for the response: a REST request's error also comes back from the transcoder as
    -- application/grpc (trailers-only), and must still become problem+json.
    handle:streamInfo():dynamicMetadata():set("tally", "grpc", "1")
    return
  end
  headers:add("x-tally-rest", "1")
  local method = headers:get(":method")
  -- For explaining Envoy's own errors on the way back (an unknown path, a malformed parameter).
  handle:streamInfo():dynamicMetadata():set("tally", "request", method .. " " .. (headers:get(":path") or ""))
  local content_type = headers:get("content-type") or ""
  local length = tonumber(headers:get("content-length") or "")
  if (method == "POST" or method == "PUT" or method == "PATCH") and string.sub(content_type, 1, 16) == "application/json"
      and length ~= nil and length > 0 and length <= JSON_BODY_LIMIT then
    local body = handle:body()
    -- Waiting for the body invalidates the header object taken before: take it again.
    headers = handle:headers()
    if body ~= nil then
      -- A -bin header: gRPC carries it base64-encoded and hands Tally the bytes.
      headers:add("x-tally-json-body-bin", handle:base64Escape(body:getBytes(0, body:length())))
    end
  end
  local path = headers:get(":path") or ""
  if string.find(path, "keyVersion", 1, true) then
    path = key_version_parameters(path)
    headers:replace(":path", path)
  end
  -- OpenMeter reads Accept with Go's mime.ParseMediaType: CSV when the header is text/csv (any case,
  -- parameters aside); a list of types does not parse there and is answered as JSON.
  local accept = headers:get("accept")
  local media = accept and string.lower(string.match(string.match(accept, "^[^;]*"), "^%s*(.-)%s*$"))
  if media == "text/csv" then
    local base, rest = string.match(path, "^(/api/v1/meters/[^/?]+/query)(.*)$")
    if base == nil then
      base, rest = string.match(path, "^(/api/v1/portal/meters/[^/?]+/query)(.*)$")
    end
    if base ~= nil and (rest == "" or string.sub(rest, 1, 1) == "?") then
      headers:replace(":path", base .. ":csv" .. rest)
    end
  end
end

-- gRPC transport headers mean nothing to a REST client.
local GRPC_HEADERS = { "grpc-status", "grpc-message", "grpc-status-details-bin", "grpc-accept-encoding",
  "grpc-encoding", "x-envoy-upstream-service-time" }

-- Query parameters that are google.protobuf.Timestamp fields of some request (JSON names);
-- tests/unit/test_envoy_lua.py checks this list against the protos.
local TIME_PARAMETERS = { ["at"] = true, ["from"] = true, ["ingestedAtFrom"] = true, ["ingestedAtTo"] = true,
  ["time"] = true, ["to"] = true }

local function url_decode(s)
  s = string.gsub(s, "+", " ")
  return (string.gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function is_rfc3339(v)
  return string.match(v, "^%d%d%d%d%-%d%d%-%d%d[Tt]%d%d:%d%d:%d%d") ~= nil
    and (string.match(v, "[Zz]$") ~= nil or string.match(v, "[+-]%d%d:%d%d$") ~= nil)
end

-- The transcoder's own 400 for an unparsable time names neither the parameter nor the format.
local function bad_times(query)
  local found = {}
  for pair in string.gmatch(query or "", "[^&]+") do
    local key, value = string.match(pair, "^([^=]*)=?(.*)$")
    key = url_decode(key)
    value = url_decode(value)
    if TIME_PARAMETERS[key] and not is_rfc3339(value) then
      found[#found + 1] = { key, value }
    end
  end
  return found
end

local function problem(handle, status, title, detail, instance, extensions)
  local headers = handle:headers()
  headers:replace(":status", status)
  headers:replace("content-type", "application/problem+json")
  local text = '{"type":"about:blank","title":' .. json_string(title) .. ',"status":' .. status ..
    ',"detail":' .. json_string(detail)
  if instance ~= nil then
    text = text .. ',"instance":' .. json_string(instance)
  end
  if extensions ~= nil then
    text = text .. ',"extensions":' .. extensions
  end
  handle:body(true):setBytes(text .. "}")
end

-- Rewrites Envoy's own terse errors into ones that say what to fix; true when it did.
local function explain_envoy_error(handle, status)
  local tally = handle:streamInfo():dynamicMetadata():get("tally")
  local request = tally and tally["request"]
  if request == nil or (status ~= "400" and status ~= "404" and status ~= "405") then
    return false
  end
  local body = handle:body(true)
  local text = body:getBytes(0, body:length())
  local method, path = string.match(request, "^(%S+) (.*)$")
  local route, query = string.match(path, "^([^?]*)%??(.*)$")
  if status == "400" and string.find(text, "Timestamp", 1, true) then
    local bad = bad_times(query)
    if #bad > 0 then
      local parts, violations = {}, {}
      for _, item in ipairs(bad) do
        local message = "not a valid time: " .. item[2] .. "; expected RFC 3339, e.g. 2025-01-31T00:00:00Z"
        parts[#parts + 1] = "query parameter " .. item[1] .. " is " .. message
        violations[#violations + 1] = '{"field":' .. json_string(item[1]) .. ',"message":' .. json_string(message) ..
          ',"code":"invalid_time","severity":"critical"}'
      end
      problem(handle, status, "Bad Request", table.concat(parts, "; "), route,
        '{"validationErrors":[' .. table.concat(violations, ",") .. "]}")
      return true
    end
  end
  if (status == "404" or status == "405") and string.find(text, "Could not resolve", 1, true) then
    problem(handle, "404", "Not Found", "no API operation at " .. method .. " " .. route ..
      " (the API is described at /api/v1/openapi.yaml)", route, nil)
    return true
  end
  return false
end

-- x-tally-nulls (server/rest.py, null_paths): "path:key,key;path:key", a path being JSON names from
-- the body's root joined by dots, "*" for every element of an array. Parsed once per distinct value.
local null_trees = {}

local function null_tree(spec)
  local tree = null_trees[spec]
  if tree ~= nil then
    return tree
  end
  tree = {}
  for entry in string.gmatch(spec, "[^;]+") do
    local path, keys = string.match(entry, "^([^:]*):(.+)$")
    local node = tree
    for step in string.gmatch(path, "[^.]+") do
      node.children = node.children or {}
      node.children[step] = node.children[step] or {}
      node = node.children[step]
    end
    node.nulls = node.nulls or {}
    for key in string.gmatch(keys, "[^,]+") do
      node.nulls[#node.nulls + 1] = key
    end
  end
  null_trees[spec] = tree
  return tree
end

local function skip_space(text, i)
  return string.find(text, "[^ \t\r\n]", i)
end

-- The index just past the JSON string that starts (with its quote) at i.
local function string_end(text, i)
  local j = i + 1
  while true do
    local q = string.find(text, '["\\]', j)
    if string.byte(text, q) == 92 then
      j = q + 2
    else
      return q + 1
    end
  end
end

-- Walks the JSON value at i along `node` of a null tree, recording where each object that misses
-- one of its node's keys closes (and what to insert there); returns the index past the value.
local function walk_nulls(text, i, node, inserts)
  i = skip_space(text, i)
  local c = string.byte(text, i)
  if c == 123 then -- {
    local children = node and node.children
    local seen = {}
    local j = skip_space(text, i + 1)
    local empty = string.byte(text, j) == 125
    while string.byte(text, j) ~= 125 do
      local key_end = string_end(text, j)
      local key = string.sub(text, j + 1, key_end - 2)
      seen[key] = true
      j = skip_space(text, key_end) -- the colon
      j = skip_space(text, walk_nulls(text, j + 1, children and children[key], inserts))
      if string.byte(text, j) == 44 then
        j = skip_space(text, j + 1)
      end
    end
    if node ~= nil and node.nulls ~= nil then
      local missing = {}
      for _, key in ipairs(node.nulls) do
        if not seen[key] then
          missing[#missing + 1] = '"' .. key .. '":null'
        end
      end
      if #missing > 0 then
        inserts[#inserts + 1] = { j, (empty and "" or ",") .. table.concat(missing, ",") }
      end
    end
    return j + 1
  elseif c == 91 then -- [
    local element = node and node.children and node.children["*"]
    local j = skip_space(text, i + 1)
    while string.byte(text, j) ~= 93 do
      j = skip_space(text, walk_nulls(text, j, element, inserts))
      if string.byte(text, j) == 44 then
        j = skip_space(text, j + 1)
      end
    end
    return j + 1
  elseif c == 34 then
    return string_end(text, i)
  end
  return string.find(text, "[,}%] \t\r\n]", i) or (#text + 1)
end

-- The body with a null for every nullable key its objects leave out.
local function with_nulls(text, spec)
  local inserts = {}
  walk_nulls(text, 1, null_tree(spec), inserts)
  if #inserts == 0 then
    return text
  end
  -- Objects close in order, so the insertion points ascend.
  local parts, from = {}, 1
  for _, insert in ipairs(inserts) do
    parts[#parts + 1] = string.sub(text, from, insert[1] - 1)
    parts[#parts + 1] = insert[2]
    from = insert[1]
  end
  parts[#parts + 1] = string.sub(text, from)
  return table.concat(parts)
end

-- x-tally-fill (server/rest.py, rest_hints row_fill): "anchor|json", json being what every row misses
-- ('"subject":null'), inserted after each row's anchor key and its string value. Inside
-- a JSON string every quote is escaped, so the pattern only finds the key itself.
local function with_fill(text, fill)
  local anchor, insert = string.match(fill, "^(%w+)|(.+)$")
  if anchor == nil then
    return text
  end
  local escaped = string.gsub(insert, "%%", "%%%%")
  return (string.gsub(text, '("' .. anchor .. '":"[^"\\]*")', "%1," .. escaped))
end

function envoy_on_response(handle)
  local headers = handle:headers()
  -- A gRPC answer keeps its status headers and trailers (a trailers-only error carries grpc-status
  -- in these headers), and its body is never buffered, so server streams keep streaming.
  local tally = handle:streamInfo():dynamicMetadata():get("tally")
  if tally ~= nil and tally["grpc"] == "1" then
    return
  end
  local status = headers:get(":status") or "200"
  for _, name in ipairs(GRPC_HEADERS) do
    headers:remove(name)
  end

  local problem = headers:get("x-tally-problem")
  if problem ~= nil then
    local code = headers:get("x-tally-status") or status
    headers:remove("x-tally-problem")
    headers:remove("x-tally-status")
    headers:replace(":status", code)
    headers:replace("content-type", "application/problem+json")
    handle:body(true):setBytes(problem)
    return
  end

  local http_code = headers:get("x-http-code")
  if http_code ~= nil then
    headers:remove("x-http-code")
    headers:replace(":status", http_code)
    status = http_code
    if http_code == "204" then
      headers:remove("content-type")
      handle:body(true):setBytes("")
      return
    end
  end

  -- The hints are read before the body is buffered (waiting for it invalidates `headers`).
  local nulls = headers:get("x-tally-nulls")
  local fill = headers:get("x-tally-fill")
  local shape = headers:get("x-tally-shape")
  headers:remove("x-tally-nulls")
  headers:remove("x-tally-fill")
  headers:remove("x-tally-shape")
  local code = tonumber(status)
  nulls = code ~= nil and code < 300 and nulls or nil
  fill = code ~= nil and code < 300 and fill or nil
  if nulls ~= nil or fill ~= nil or shape == "array" then
    -- One buffered body for both: nulls first (their paths start at the response message's root).
    local body = handle:body(true)
    local text = body:getBytes(0, body:length())
    if nulls ~= nil then
      local ok, filled = pcall(with_nulls, text, nulls)
      if ok then
        text = filled
      else
        handle:logErr("x-tally-nulls: body left as the transcoder printed it: " .. tostring(filled))
      end
    end
    if fill ~= nil then
      text = with_fill(text, fill)
    end
    if shape == "array" then
      text = string.match(text, '^{"items":(.*)}$') or "[]"
    end
    body:setBytes(text)
  end

  if explain_envoy_error(handle, status) then
    return
  end
  if code ~= nil and code >= 400 then
    local content_type = headers:get("content-type") or ""
    if string.find(content_type, "problem+json", 1, true) == nil then
      local body = handle:body(true)
      local text = body:getBytes(0, body:length())
      local title = TITLES[status] or "Error"
      -- The transcoder renders gRPC errors as {"code":N,"message":"...","details":[]}; its message
      -- is already JSON-escaped. Anything else (plain text from Envoy) is escaped here.
      local message = string.match(text, '"message":"(.-)","details"')
      local detail
      if message ~= nil then
        detail = '"' .. message .. '"'
      elseif text ~= "" then
        detail = json_string(text)
      else
        detail = json_string(title)
      end
      headers:replace("content-type", "application/problem+json")
      body:setBytes('{"type":"about:blank","title":' .. json_string(title) .. ',"status":' .. status ..
        ',"detail":' .. detail .. '}')
    end
  end
end
