"""The bench's FastAPI app with no limiter: the floor of the FastAPI stacks.

    /usr/bin/python3 -m uvicorn --app-dir bench/fastapi bare:app --port 8000
"""

from __future__ import annotations

from app import make_app

app = make_app()
