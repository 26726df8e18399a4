"""`ours` without keep-alive pings (`ping=0`): no ping timer per stream. Beside `ours` and
`floor`, it measures what the ping timer costs an idle stream and a connection, one of the
features `floor` lacks (bench/README.md, "What bounds the figures"). Same app otherwise.
"""

from __future__ import annotations

import functools

import sse_starlette
from sse_starlette import EventSourceResponse

from .common import HELLO, TICK, count
from .queue_app import queue_app

SERVED_BY = f"sse_starlette {sse_starlette.__version__} ({sse_starlette.__file__}), ping=0"

app = queue_app(
    SERVED_BY,
    functools.partial(EventSourceResponse, ping=0),
    {"data": HELLO},
    {"data": TICK},
    count,
)
