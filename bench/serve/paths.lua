-- wrk script: each connection's requests cycle through the lines of a file (`path` or `path<TAB>authorization`),
-- starting at a random line; `done` prints the totals and latency percentiles (microseconds) as one JSON line.
-- Usage: wrk -s bench/serve/paths.lua URL -- PATHS_FILE
local requests = {}

function init(args)
  for line in io.lines(args[1]) do
    local path, auth = line:match('^([^\t]+)\t?(.*)$')
    local headers = {}
    if auth ~= '' then headers['Authorization'] = auth end
    requests[#requests + 1] = wrk.format('GET', path, headers)
  end
  position = math.random(#requests)
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
