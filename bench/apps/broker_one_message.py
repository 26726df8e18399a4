"""apps/broker.py as it was before events ready together went out together: one ASGI
message per event (the storm scenario's baseline for that change)."""

from __future__ import annotations

import sse_starlette.sse

sse_starlette.sse._BATCH_BYTES = 0  # nothing is ever joined to the event being sent

from .broker import app  # noqa: E402

__all__ = ["app"]
