"""HTTP as a user for bench/monitoring.py: a browser-like client (keep-alive, cookies, the
login form), timed reads of the monitoring page and JSON, and how fresh they are."""
from __future__ import annotations

import http.client
import http.cookies
import json
import re
import time
import urllib.parse

from bench.queue import summary_ms

SLUG = "monbench"
REQUESTS_FIELD = re.compile(rb'data-field="traffic\.requests">(\d+)<')


class Client:
    """One keep-alive connection with a cookie jar, as a browser tab keeps."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # a dropped keep-alive connection: once more on a new one
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        seconds = time.perf_counter() - started
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = http.cookies.SimpleCookie(header)
            self.cookies.update({k: m.value for k, m in jar.items()})
        return response.status, data, seconds

    def login(self, username: str, password: str) -> None:
        status, page, _ = self.request("GET", "/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or token is None:
            raise SystemExit(f"login page answered {status}")
        body = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrfmiddlewaretoken": token.group(1).decode()}).encode()
        status, _, _ = self.request("POST", "/login/", body, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{self.port}/login/"})
        if status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"login refused ({status})")


def targets_list(windows: list[str]) -> list[tuple[str, str]]:
    """Page and JSON per window, and two floors: what this machine takes to answer a page
    (the login form) and a token's JSON (the model-version list) that read next to nothing."""
    return [*((kind, window) for window in windows for kind in ("page", "json")),
            ("floor", "page"), ("floor", "json")]


def target_path(kind: str, window: str) -> str:
    if kind == "floor":
        return "/login/" if window == "page" else f"/api/v1/projects/{SLUG}/models"
    if kind == "page":
        return f"/projects/{SLUG}/monitoring/?window={window}"
    return f"/api/v1/projects/{SLUG}/monitoring?window={window}"


def read_latency(client: Client, setup: dict, *, windows: list[str], rounds: int,
                 requests: int) -> dict:
    """Interleaved rounds of page and JSON reads per window; latencies per target."""
    monitor = {"Authorization": f"Token {setup['monitor_key']}"}
    floor = {"Authorization": f"Token {setup['predict_key']}"}  # model versions: predict scope

    def headers(kind: str, window: str) -> dict | None:
        return monitor if kind == "json" else floor if window == "json" else None

    times: dict[tuple[str, str], list[float]] = {t: [] for t in targets_list(windows)}
    sample = {}
    for kind, window in times:  # warm-up: imports, connections, caches of both workers
        for _ in range(3):
            status, body, _ = client.request("GET", target_path(kind, window),
                                             headers=headers(kind, window))
            if status != 200:
                raise SystemExit(f"{kind} {window} answered {status}: {body[:300]!r}")
        if kind == "json":
            sample[window] = json.loads(body)
    for _ in range(rounds):
        for kind, window in times:
            for _ in range(requests):
                status, _, seconds = client.request("GET", target_path(kind, window),
                                                    headers=headers(kind, window))
                assert status == 200, status
                times[(kind, window)].append(seconds)
    figures = {f"{kind}_{window}": summary_ms(values) for (kind, window), values in times.items()}
    return {"latency_ms": figures,
            "json_totals": {w: {"requests": s["traffic"]["requests"], "rows": s["traffic"]["rows"],
                                "live_accuracy_n": s["live_accuracy"]["n"],
                                "latency_p95_ms": s["latency_ms"]["p95"]}
                            for w, s in sample.items()}}


def freshness(client: Client, setup: dict, *, tries: int = 3, timeout: float = 120) -> dict:
    """Seconds from a prediction's answer until the JSON and the page count it."""
    auth = {"Authorization": f"Token {setup['monitor_key']}"}
    predict_headers = {"Authorization": f"Token {setup['predict_key']}",
                       "Content-Type": "application/json"}
    body = json.dumps({"instances": [{"pixels": setup["pixels"][0]}]}).encode()

    def counts() -> tuple[int, int]:
        _, data, _ = client.request("GET", target_path("json", "24h"), headers=auth)
        _, page, _ = client.request("GET", target_path("page", "24h"))
        return json.loads(data)["traffic"]["requests"], int(REQUESTS_FIELD.search(page).group(1))

    results = []
    for _ in range(tries):
        json_before, page_before = counts()
        status, answer, _ = client.request("POST", f"/api/v1/projects/{SLUG}/predict", body,
                                           predict_headers)
        if status != 200:
            raise SystemExit(f"predict answered {status}: {answer[:300]!r}")
        sent = time.perf_counter()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.perf_counter() - sent < timeout:
            time.sleep(0.1)
            json_now, page_now = counts()
            if "json" not in seen and json_now > json_before:
                seen["json"] = time.perf_counter() - sent
            if "page" not in seen and page_now > page_before:
                seen["page"] = time.perf_counter() - sent
        results.append({k: round(v, 2) for k, v in seen.items()})
    worst = {kind: max((r.get(kind, float("inf")) for r in results)) for kind in ("json", "page")}
    return {"tries": results, "worst_s": worst}
