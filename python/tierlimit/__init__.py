"""tierlimit: rate-limit a Python ASGI app (FastAPI, Starlette) by API key,
with the tierlimit node beside each instance keeping the counts.

    from fastapi import FastAPI
    from tierlimit import TierLimitMiddleware

    app = FastAPI()
    app.add_middleware(TierLimitMiddleware, node="http://127.0.0.1:8080")

See TierLimitMiddleware for the parameters and what each answer does.
"""

from __future__ import annotations

from .middleware import TierLimitMiddleware

__all__ = ["TierLimitMiddleware"]
__version__ = "0.1.0"
