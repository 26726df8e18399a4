"""Server-Sent Events for Starlette and FastAPI."""

from sse_starlette._shutdown import drain, undrain
from sse_starlette.event import JSONServerSentEvent, ServerSentEvent
from sse_starlette.sse import EventSourceResponse

__all__ = ["EventSourceResponse", "JSONServerSentEvent", "ServerSentEvent", "drain", "undrain"]
__version__ = "0.1.0"
