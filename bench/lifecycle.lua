-- wrk script: every connection is one virtual user, run with as many threads as
-- connections (wrk -t N -c N) so each thread drives one sequential lifecycle:
--   create (POST /api/payments, Idempotency-Key) -> process (POST /api/payments/process)
--   then, for every 2nd lifecycle, a status read, and for every 4th, a partial refund.
-- Environment: BENCH_TOKENS (a file, one bearer token a line; a thread takes its own),
-- BENCH_NONCE (makes idempotency keys unique to this run).
-- done() prints one line "BENCH_RESULT {json}" for bench/run.py.

local tokens = {}
local tokens_file = os.getenv("BENCH_TOKENS")
if tokens_file then
  for line in io.lines(tokens_file) do
    if #line > 0 then table.insert(tokens, line) end
  end
end
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  thread:set("token", tokens[((counter - 1) % math.max(#tokens, 1)) + 1] or "none")
  thread:set("nonce", nonce)
  table.insert(threads, thread)
end

-- Per-thread state (globals, so done() can read them with thread:get).
phase = "create"
payment_id = nil
seq = 0
lifecycles = 0
unexpected = 0
refunds = 0
statuses = 0
last_bad = ""

local payment_body = '{"amount":2500,"currency":"USD","payment_method":"credit_card",'
  .. '"details":{"number":"4242424242424242","exp_month":12,"exp_year":2035,"cvc":"123"}}'
local refund_body = '{"amount":1000,"reason":"requested_by_customer"}'
local auth = nil

function init(args)
  auth = "Bearer " .. token
end

local function key()
  seq = seq + 1
  return string.format("%s-%d-%d", nonce, thread_id, seq)
end

-- A fresh header table for every request: wrk.format writes Content-Length into the table
-- it is given, and a stale one on a GET would make the server read the next request as its
-- body.
local function post(path, body)
  local headers = {
    ["Authorization"] = auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = key(),
  }
  return wrk.format("POST", path, headers, body)
end

function request()
  if phase == "process" then
    return post("/api/payments/process", '{"payment_id":"' .. payment_id .. '"}')
  elseif phase == "status" then
    return wrk.format("GET", "/api/payments/" .. payment_id .. "/status", {["Authorization"] = auth})
  elseif phase == "refund" then
    return post("/api/payments/" .. payment_id .. "/refund", refund_body)
  end
  return post("/api/payments", payment_body)
end

local function bad(status)
  unexpected = unexpected + 1
  last_bad = phase .. ":" .. tostring(status)
  phase = "create"
end

function response(status, _headers, body)
  if phase == "create" then
    if status ~= 201 then return bad(status) end
    payment_id = string.match(body, '"id":"([^"]+)"')
    phase = "process"
  elseif phase == "process" then
    if status ~= 200 then return bad(status) end
    lifecycles = lifecycles + 1
    if lifecycles % 2 == 0 then phase = "status" else phase = "create" end
  elseif phase == "status" then
    if status ~= 200 then return bad(status) end
    statuses = statuses + 1
    if lifecycles % 4 == 0 then phase = "refund" else phase = "create" end
  elseif phase == "refund" then
    if status ~= 201 then return bad(status) end
    refunds = refunds + 1
    phase = "create"
  end
end

function done(summary, latency, _requests)
  local total = {lifecycles = 0, unexpected = 0, refunds = 0, statuses = 0}
  local bads = {}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(total) do
      total[name] = total[name] + (thread:get(name) or 0)
    end
    local last = thread:get("last_bad")
    if last and #last > 0 then table.insert(bads, '"' .. last .. '"') end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"lifecycles":%d,"refunds":%d,"statuses":%d,'
      .. '"unexpected":%d,"socket_errors":%d,"http_errors":%d,"p50_us":%d,"p99_us":%d,'
      .. '"p999_us":%d,"max_us":%d,"last_bad":[%s]}\n',
    summary.duration, summary.requests, total.lifecycles, total.refunds, total.statuses,
    total.unexpected, errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    table.concat(bads, ",")))
end
