-- wrk script for the recommendation service, driven by bench/load.py:
--   wrk -t2 -c32 -d30s -s bench/mixed.lua http://127.0.0.1:8000 -- <data file> <mode>
--   wrk ... -- <data file> mixed <think ms>: each connection waits a random think time (exponential,
--   that mean) before each request, like a shopper reading a page: a paced load, not a closed loop.
-- mode: mixed (70 % home for known and new users, 15 % similar products, 10 % search,
-- 5 % POST /interactions), mixed_reads (the same with similar products instead of the POSTs), or
-- one of home | home_known | home_new | similar | search | search_unseen |
-- post | health.
-- The data file has sections "#users", "#products" and "#queries" (URL-encoded), one per line.

local known, products, queries = {}, {}, {}
local mode = "mixed"

function init(args)
  local section
  for line in io.lines(args[1]) do
    if line:sub(1, 1) == "#" then
      section = line:sub(2)
    elseif section == "users" then
      known[#known + 1] = line
    elseif section == "products" then
      products[#products + 1] = line
    elseif section == "queries" then
      queries[#queries + 1] = line
    end
  end
  mode = args[2] or "mixed"
  local think = tonumber(args[3] or "0")
  if think > 0 then
    function delay()
      return -math.log(1 - math.random()) * think
    end
  end
  -- Each wrk thread gets its own sequence.
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local function pick(list)
  return list[math.random(#list)]
end

local function kind_of_request()
  if mode ~= "mixed" and mode ~= "mixed_reads" then
    return mode
  end
  local r = math.random()
  if r < 0.70 then return "home" end
  if r < 0.85 then return "similar" end
  if r < 0.95 then return "search" end
  if mode == "mixed_reads" then return "similar" end  -- no click: no ranking to compute after it
  return "post"
end

function request()
  local kind = kind_of_request()
  if kind == "home" then
    local user = pick(known)
    if math.random() < 0.5 then
      user = "new_" .. math.random(1, 1000000000)  -- never seen: the new-user feed
    end
    return wrk.format("GET", "/recommendations/home?limit=20&user_id=" .. user)
  elseif kind == "similar" then
    return wrk.format("GET", "/recommendations/product/" .. pick(products) .. "?limit=20")
  elseif kind == "search_unseen" then
    -- A query no training embedded and no cache holds: the encoder runs for every request.
    local q = pick(queries) .. "+" .. math.random(1, 1000000000)
    return wrk.format("GET", "/recommendations/search?limit=20&q=" .. q)
  elseif kind == "home_new" then
    return wrk.format("GET", "/recommendations/home?limit=20&user_id=new_" .. math.random(1, 1000000000))
  elseif kind == "home_known" then
    return wrk.format("GET", "/recommendations/home?limit=20&user_id=" .. pick(known))
  elseif kind == "search" then
    local path = "/recommendations/search?limit=20&q=" .. pick(queries)
    if math.random() < 0.5 then
      path = path .. "&user_id=" .. pick(known)
    end
    return wrk.format("GET", path)
  elseif kind == "post" then
    local body = '{"user_id":"' .. pick(known) .. '","event_type":"product_click","product_id":"'
      .. pick(products) .. '"}'
    return wrk.format("POST", "/interactions", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", "/health")
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f,'
      .. ' "max_ms": %.3f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors.status, errors.connect + errors.read + errors.write + errors.timeout
  ))
end
