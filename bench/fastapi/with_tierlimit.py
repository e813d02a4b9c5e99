"""The bench's FastAPI app behind TierLimitMiddleware (python/tierlimit),
asking the cmd/node beside it, at ANYSTACK_NODE (default
http://127.0.0.1:8080), with the middleware's defaults.

    ANYSTACK_NODE=http://127.0.0.1:8081 \\
      /usr/bin/python3 -m uvicorn --app-dir bench/fastapi with_tierlimit:app --port 8000
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The package from this checkout (python/), not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from app import make_app  # noqa: E402
from tierlimit import TierLimitMiddleware  # noqa: E402

app = make_app()
app.add_middleware(TierLimitMiddleware, node=os.environ.get("ANYSTACK_NODE", "http://127.0.0.1:8080"))
