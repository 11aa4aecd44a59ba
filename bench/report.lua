-- report.lua is wrk's done hook for bench/run.sh. It prints one line with
-- wrk's exact counters and latency percentiles in microseconds, so run.sh
-- never parses wrk's rounded, human-readable report. summary.errors.status
-- counts responses with a status of 400 or more (wrk's "Non-2xx or 3xx").
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
