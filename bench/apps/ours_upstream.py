"""`EventSourceResponse` with the per-client queue pattern of the published package's examples.

The same module serves this project (run by .venv/bin/python) and the published
sse-starlette 3.7.1 (run by .venv-upstream/bin/python): the interpreter's virtualenv decides
which `sse_starlette` is imported, so both run exactly the same application code.

    GET /stream?n=N   N events, then the end of the response (throughput)
    GET /stream       one event, then whatever /_broadcast sends, until the client leaves
    GET /_broadcast   one event to every open stream; answers how many streams got it
    GET /_stats       {"tasks": ..., "streams": ..., "served_by": ...}
"""

from __future__ import annotations

import sse_starlette
from sse_starlette import EventSourceResponse

from .common import HELLO, TICK, count
from .queue_app import queue_app

SERVED_BY = f"sse_starlette {sse_starlette.__version__} ({sse_starlette.__file__})"


app = queue_app(SERVED_BY, EventSourceResponse, {"data": HELLO}, {"data": TICK}, count)
