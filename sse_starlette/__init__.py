"""Server-Sent Events for Starlette and FastAPI."""

from sse_starlette._shutdown import drain, undrain
from sse_starlette.event import JSONServerSentEvent, ServerSentEvent
from sse_starlette.sse import EventSourceResponse

__all__ = ["EventSourceResponse", "JSONServerSentEvent", "ServerSentEvent", "drain", "undrain"]
# Above the newest published 3.x (3.7.1), so that pip keeps it beside packages that require
# sse-starlette>=3 (mcp); CHANGELOG.md says what differs from 3.7.1.
__version__ = "3.8.0"
