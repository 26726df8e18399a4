"""Starlette's `StreamingResponse` yielding hand-formatted SSE: what users write without a library.

Same routes and queue pattern as ours_upstream.py; each event is formatted with an f-string
(a broadcast once, for every queue).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import starlette
from starlette.responses import StreamingResponse

from .common import HELLO, TICK, WORD
from .queue_app import queue_app

SERVED_BY = f"starlette {starlette.__version__} StreamingResponse"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def _count(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield f"data: {WORD}\r\n\r\n"


def _respond(content: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(content, media_type="text/event-stream", headers=HEADERS)


app = queue_app(SERVED_BY, _respond, f"data: {HELLO}\r\n\r\n", f"data: {TICK}\r\n\r\n", _count)
