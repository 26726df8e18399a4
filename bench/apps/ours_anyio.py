"""`ours` on its fallback path: anyio's own cancel scopes where `TaskScope` would serve.

That is the path of Python 3.10 (no `Task.uncancel()`), and of any Python should anyio's private
task-state names move (sse_starlette/_scopes.py); measured so that a change of path shows in
the numbers. Same app as ours_upstream.py.
"""

from __future__ import annotations

import sse_starlette
from sse_starlette import EventSourceResponse, _scopes

from .common import HELLO, TICK, count
from .queue_app import queue_app

_scopes.TASK_SCOPES = False  # read as each stream opens a scope: set before any stream

SERVED_BY = f"sse_starlette {sse_starlette.__version__} ({sse_starlette.__file__}), anyio scopes"

app = queue_app(SERVED_BY, EventSourceResponse, {"data": HELLO}, {"data": TICK}, count)
