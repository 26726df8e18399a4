"""Mercure discovery for the app that publishes: the `Link: <hub>; rel="mercure"` header.

    app.add_middleware(MercureDiscovery, hub="https://example.com/.well-known/mercure")

or, on one response, `response.headers.append("Link", mercure_link(hub))`. A subscriber reads
the hub's URL (and the resource's last event id, if given) from the resource itself
(draft-07 §Discovery).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MercureDiscovery", "mercure_link"]


def _quoted(value: str) -> str:
    if any(c in value for c in '"\\\r\n'):
        raise ValueError(f"a Link parameter cannot hold {value!r}")
    return f'"{value}"'


def mercure_link(
    hub: str, *, last_event_id: str | None = None, content_type: str | None = None
) -> str:
    """The `Link` header value advertising `hub`; `last_event_id` lets a subscriber get the
    updates made between this response and its subscription (it passes it as `lastEventID`)."""
    if any(c in hub for c in "<>\r\n "):
        raise ValueError(f"not a URL for a Link header: {hub!r}")
    value = f'<{hub}>; rel="mercure"'
    if last_event_id is not None:
        value += f"; last-event-id={_quoted(last_event_id)}"
    if content_type is not None:
        value += f"; content-type={_quoted(content_type)}"
    return value


class MercureDiscovery:
    """ASGI middleware: every HTTP response of the app advertises the hub."""

    def __init__(self, app: ASGIApp, hub: str) -> None:
        self.app = app
        self.link = mercure_link(hub)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_link(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Link", self.link)
            await send(message)

        await self.app(scope, receive, send_with_link)
