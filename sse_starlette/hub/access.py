"""One structured access log line per request, without its query string (tokens travel
there) and with every client-sent text quoted (a CR or LF forges no line)."""

from __future__ import annotations

import json
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog"]

logger = logging.getLogger("sse_starlette.hub.access")


class AccessLog:
    """ASGI middleware: logs `{"method", "path", "status", "ms", "client"}` as JSON when a
    response starts (for an event stream: when it opens; its end is the stream's own line)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        client = scope.get("client")

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                line = {
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": message["status"],
                    "ms": round((time.monotonic() - started) * 1000, 1),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                }
                # json.dumps escapes CR, LF and every control character.
                logger.info(json.dumps(line, ensure_ascii=True))
            await send(message)

        await self.app(scope, receive, logging_send)
