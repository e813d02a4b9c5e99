"""The bench's FastAPI app behind RedisLimitMiddleware (redislimit.py): the
stack the assignment recommends, each instance counting in one central
Redis, at ANYSTACK_REDIS (default redis://127.0.0.1:6379/0), with the
tiers and keys of ANYSTACK_TIERS (default config/tiers.json).

    ANYSTACK_REDIS=redis://127.0.0.1:6379/0 ANYSTACK_TIERS=config/tiers.json \\
      /usr/bin/python3 -m uvicorn --app-dir bench/fastapi with_redis:app --port 8000
"""

from __future__ import annotations

import os

from app import make_app
from redislimit import RedisLimitMiddleware

app = make_app()
app.add_middleware(
    RedisLimitMiddleware,
    url=os.environ.get("ANYSTACK_REDIS", "redis://127.0.0.1:6379/0"),
    tiers_file=os.environ.get("ANYSTACK_TIERS", "config/tiers.json"),
)
