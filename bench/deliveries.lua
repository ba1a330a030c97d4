-- wrk script: POST pre-signed, unique deliveries and count what is not 2xx.
--
-- Usage: wrk -t T -s bench/deliveries.lua URL -- <deliveries file> <T>
-- The file holds one "<hex signature> <json body>" per line. Thread k of
-- T sends lines k, k+T, k+2T... so no delivery is sent twice; a thread
-- that runs out stops and says so (the run is then not valid). At the
-- end one line "BENCH_RESULT {...}" gives the counts and latencies.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("thread_index", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   local thread_count = tonumber(args[2]) or 1
   lines = {}
   local position = 0
   for line in io.lines(path) do
      if position % thread_count == thread_index then
         table.insert(lines, line)
      end
      position = position + 1
   end
   cursor = 0
   sent = 0
   answers_2xx = 0
   answers_200 = 0
   non_2xx = 0
   exhausted = 0
   statuses = {}
end

function request()
   cursor = cursor + 1
   if cursor > #lines then
      exhausted = 1
      cursor = 1
   end
   local line = lines[cursor]
   local space = string.find(line, " ", 1, true)
   local signature = string.sub(line, 1, space - 1)
   local body = string.sub(line, space + 1)
   sent = sent + 1
   return wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["X-Integration-Signature"] = signature,
   }, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      answers_2xx = answers_2xx + 1
      if status == 200 then
         answers_200 = answers_200 + 1
      end
   else
      non_2xx = non_2xx + 1
      local key = tostring(status)
      statuses[key] = (statuses[key] or 0) + 1
   end
   if exhausted == 1 then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local total_2xx, total_200, total_non_2xx, total_exhausted = 0, 0, 0, 0
   local codes = {}
   for _, thread in ipairs(threads) do
      total_2xx = total_2xx + thread:get("answers_2xx")
      total_200 = total_200 + thread:get("answers_200")
      total_non_2xx = total_non_2xx + thread:get("non_2xx")
      total_exhausted = total_exhausted + thread:get("exhausted")
      for code, count in pairs(thread:get("statuses")) do
         codes[code] = (codes[code] or 0) + count
      end
   end
   local parts = {}
   for code, count in pairs(codes) do
      table.insert(parts, string.format('"%s": %d', code, count))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d,'
         .. ' "answers_2xx": %d, "answers_200": %d, "non_2xx": %d,'
         .. ' "non_2xx_statuses": {%s}, "exhausted_threads": %d,'
         .. ' "socket_errors": {"connect": %d, "read": %d, "write": %d,'
         .. ' "timeout": %d}, "latency_us": {"mean": %.1f, "max": %d,'
         .. ' "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      total_2xx, total_200, total_non_2xx, table.concat(parts, ", "),
      total_exhausted, errors.connect, errors.read, errors.write,
      errors.timeout, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
