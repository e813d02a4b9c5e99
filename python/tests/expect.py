"""Checks on answers, saying what came back and what was wanted."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit-policy", "ratelimit")


def _describe(r: Any) -> str:
    return f"{r.request.method} {r.request.url.path} = {r.status_code} {dict(r.headers)} {r.text!r}"


def admitted(r: Any, tier: str, limit: int, remaining: int, window: int = 60) -> None:
    """r is the app's 200 with the node's rate-limit headers for this decision."""
    assert r.status_code == 200, f"{_describe(r)}, want 200"
    h = r.headers
    for name in RATE_HEADERS:
        assert len(h.get_list(name)) == 1, f"{_describe(r)}: want one {name}"
    assert h["x-ratelimit-limit"] == str(limit), f"{_describe(r)}: want X-Ratelimit-Limit {limit}"
    assert h["x-ratelimit-remaining"] == str(remaining), f"{_describe(r)}: want X-Ratelimit-Remaining {remaining}"
    assert int(h["x-ratelimit-reset"]) >= int(time.time()), f"{_describe(r)}: X-Ratelimit-Reset in the past"
    assert h["ratelimit-policy"] == f'"{tier}";q={limit};w={window}', _describe(r)
    assert h["ratelimit"].startswith(f'"{tier}";r={remaining}'), _describe(r)
    assert "retry-after" not in h, f"{_describe(r)}: Retry-After on a 200"


def unchecked(r: Any) -> None:
    """r is the app's 200 with no rate-limit header: the check was skipped or failed open."""
    assert r.status_code == 200, f"{_describe(r)}, want 200"
    present = [n for n in RATE_HEADERS + ("retry-after",) if n in r.headers]
    assert not present, f"{_describe(r)}: want no rate-limit headers, got {present}"


def limited(r: Any, tier: str, limit: int, window: int = 60) -> None:
    """r is the node's 429: headers, Retry-After and the JSON body."""
    assert r.status_code == 429, f"{_describe(r)}, want 429"
    h = r.headers
    assert h["content-type"] == "application/json", _describe(r)
    assert h["cache-control"] == "no-store", _describe(r)
    assert h["x-ratelimit-limit"] == str(limit), _describe(r)
    assert h["x-ratelimit-remaining"] == "0", _describe(r)
    assert h["ratelimit-policy"] == f'"{tier}";q={limit};w={window}', _describe(r)
    retry = int(h["retry-after"])
    assert 1 <= retry <= 2 * window, f"{_describe(r)}: Retry-After {retry}"
    assert h["ratelimit"] == f'"{tier}";r=0;t={retry}', _describe(r)
    assert h["content-length"] == str(len(r.content)), _describe(r)
    body = json.loads(r.content)
    assert body == {"error": {
        "code": "rate_limited",
        "limit": "requests",
        "message": f"rate limit of {limit} requests per {window}s exceeded for tier {tier}",
        "retry_after_seconds": retry,
    }}, _describe(r)


def error(r: Any, status: int, code: str, message: str) -> None:
    """r is a JSON error answer, as the node writes them, and nothing else."""
    assert r.status_code == status, f"{_describe(r)}, want {status}"
    h = r.headers
    assert h["content-type"] == "application/json", _describe(r)
    assert h["cache-control"] == "no-store", _describe(r)
    want = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")) + "\n"
    assert r.text == want, f"{_describe(r)}, want body {want!r}"
    present = [n for n in RATE_HEADERS if n in h]
    assert not present, f"{_describe(r)}: want no rate-limit headers, got {present}"


def calls(counts: Mapping[str, int], **want: int) -> None:
    got = {k: counts.get(k, 0) for k in want}
    assert got == want, f"app handler calls = {got}, want {want}"
