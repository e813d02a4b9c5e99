"""A speech-to-text API stand-in, rate-limited by the tierlimit node beside it.

    TIERLIMIT_NODE=http://127.0.0.1:8080 INSTANCE=a \\
        PYTHONPATH=python /usr/bin/python3 -m uvicorn --app-dir examples/fastapi app:app --port 8000
    curl -X POST -H 'X-API-Key: free-demo-1' -H 'Content-Type: audio/wav' \\
        --data-binary @clip.wav localhost:8000/v1/transcribe

POST /v1/transcribe takes the audio as the raw request body (no multipart)
and answers {"text": ..., "bytes": N, "instance": INSTANCE}; a real service
would run the model here. GET /healthz is not rate limited: point the
orchestrator's probes at it, and at the node's /readyz.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request

from tierlimit import TierLimitMiddleware

INSTANCE = os.environ.get("INSTANCE", "")

app = FastAPI(title="transcribe (tierlimit demo)")
app.add_middleware(
    TierLimitMiddleware,
    node=os.environ.get("TIERLIMIT_NODE", "http://127.0.0.1:8080"),
    exclude=("/healthz",),
)


@app.post("/v1/transcribe")
async def transcribe(request: Request) -> dict:
    audio = await request.body()
    return {
        "text": f"(transcript of {len(audio)} bytes of {request.headers.get('content-type', 'audio')})",
        "bytes": len(audio),
        "instance": INSTANCE,
    }


@app.get("/healthz")
async def healthz() -> dict:
    return {"ok": True, "instance": INSTANCE}
