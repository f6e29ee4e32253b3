-- Tally's REST wire-format adapter, around Envoy's gRPC-JSON transcoder.
--
-- Requests (this filter runs before the transcoder):
--   * marks the request as REST (x-tally-rest), so servicers add the REST-only hints below;
--   * routes `Accept: text/csv` meter queries to the CSV method, keeping OpenMeter's single path.
-- Responses (this filter runs after the transcoder):
--   * x-http-code: a servicer's non-200 success status (201, 202, 204; 204 bodies are emptied);
--   * x-tally-problem / x-tally-status: a servicer's RFC 7807 body and HTTP status for an error;
--   * x-tally-shape: array: unwraps {"items":[...]} into the bare array OpenMeter returns;
--   * any other error (transcoder rejections, an unreachable upstream) becomes problem+json too.
-- gRPC and gRPC-web calls (the grpc_web filter has turned the latter into gRPC before this one) are
-- not REST: they pass both ways untouched, as they would on the gRPC port.

local HINTS = { "x-tally-rest", "x-tally-problem", "x-tally-status", "x-tally-shape", "x-http-code" }

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
  local accept = headers:get("accept")
  if accept ~= nil and string.find(accept, "text/csv", 1, true) then
    local path = headers:get(":path")
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

  local shape = headers:get("x-tally-shape")
  if shape ~= nil then
    headers:remove("x-tally-shape")
    if shape == "array" then
      local body = handle:body(true)
      local text = body:getBytes(0, body:length())
      local items = string.match(text, '^{"items":(.*)}$')
      if items == nil then
        items = "[]"
      end
      body:setBytes(items)
    end
  end

  local code = tonumber(status)
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
