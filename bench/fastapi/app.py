"""The FastAPI app that bench/anystack.sh puts behind each limiter: one
endpoint, GET /test, answering a small JSON as bench/floor's GET /test
does, so that bench/loadgen drives it as it drives a node.

bare.py serves it as it is, with_tierlimit.py behind TierLimitMiddleware
(the node beside it), with_redis.py behind RedisLimitMiddleware (one
central Redis). All three build it here, so they differ only in the
middleware.

Profiling: with ANYSTACK_CPROFILE=<file> in the environment, the process
profiles itself with cProfile between SIGUSR1 (start) and SIGUSR2 (stop and
write the stats to <file>), so that the bench profiles a measured stretch
of load and nothing else, and the process costs nothing extra until then.
It is bench code, not part of the product.
"""

from __future__ import annotations

import cProfile
import os
import signal
from typing import Any, Dict, Optional

from fastapi import FastAPI

NODE_NAME = os.environ.get("ANYSTACK_NAME", "app")


def make_app() -> FastAPI:
    """Returns the bench's FastAPI app: GET /test and GET /readyz."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/test")
    async def test() -> Dict[str, Any]:
        return {"ok": True, "node": NODE_NAME}

    @app.get("/readyz")
    async def readyz() -> Dict[str, str]:
        return {"status": "ready"}

    _install_profiler(os.environ.get("ANYSTACK_CPROFILE", ""))
    return app


_profile: Optional[cProfile.Profile] = None


def _install_profiler(path: str) -> None:
    """With a path, SIGUSR1 starts a cProfile of this (single-threaded,
    event-loop) process and SIGUSR2 stops it and writes its stats to path."""
    if not path:
        return

    def start(signum: int, frame: Any) -> None:
        global _profile
        if _profile is None:
            _profile = cProfile.Profile()
            _profile.enable()

    def stop(signum: int, frame: Any) -> None:
        global _profile
        if _profile is not None:
            _profile.disable()
            _profile.dump_stats(path)
            _profile = None

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
