-- wrk script for bench/run.sh: GET with an OCI Accept header, and one machine-readable
-- summary line at the end (latencies in microseconds) so run.sh does not parse wrk's prose.
wrk.method = "GET"
wrk.headers["Accept"] = os.getenv("BENCH_ACCEPT") or "application/vnd.oci.image.manifest.v1+json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCHSTATS requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d max_us=%d " ..
    "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
