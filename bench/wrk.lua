-- wrk script of bench/serve.py and bench/access.py: the method, body and Authorization
-- header come from the environment (WRK_METHOD, WRK_BODY = a file, WRK_AUTHORIZATION), and
-- `done` prints one machine-readable line `BENCH-JSON {...}` with the latency percentiles
-- (µs), counts and errors.
local method = os.getenv("WRK_METHOD") or "GET"
local body_file = os.getenv("WRK_BODY")
local authorization = os.getenv("WRK_AUTHORIZATION")
wrk.method = method
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p10_us":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(10), latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
