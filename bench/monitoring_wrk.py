"""A small `wrk` runner for bench/monitoring.py: POST one body for a while, return req/s and
latency percentiles (wrk's own, from its Lua `done` hook)."""
from __future__ import annotations

import subprocess
from pathlib import Path

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%(auth)s"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_run(url: str, body: bytes, *, auth: str, connections: int, duration: float,
            workdir: Path) -> dict:
    body_file = workdir / f"wrk-body-{len(body)}.json"
    body_file.write_bytes(body)
    script = workdir / "wrk-post.lua"
    script.write_text(_SCRIPT % {"auth": auth, "body": body_file})
    threads = 1 if connections == 1 else 2
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                           "-s", str(script), url], capture_output=True, text=True, check=True)
    line = next(line for line in done.stderr.splitlines() if line.startswith("RESULT"))
    requests, duration_us, errors, p50, p95, p99 = map(int, line.split()[1:])
    return {"requests": requests, "errors": errors, "req_per_s": requests / (duration_us / 1e6),
            "p50_ms": p50 / 1000, "p95_ms": p95 / 1000, "p99_ms": p99 / 1000}
