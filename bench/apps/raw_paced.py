"""raw.py with something done before each `send`, for bench/granian_pacing.py, which asks why
3.7.1's one stream outruns raw ASGI under granian. Not contenders (`--impl` only).

    in_scope   each send inside an `anyio.CancelScope()`, as the published package wraps its
               sends (in `anyio.move_on_after(send_timeout)`)
    spin       600 turns of an empty loop before each send: work that does nothing but take
               time
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from .raw import SERVED_BY, Message, Receive, Scope, Send
from .raw import app as raw_app

SPIN = 600


def _paced(wrap: Callable[[Send], Send]) -> Callable[[Scope, Receive, Send], object]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await raw_app(scope, receive, wrap(send) if scope["type"] == "http" else send)

    return app


def _in_scope(send: Send) -> Send:
    async def in_scope(message: Message) -> None:
        with anyio.CancelScope():
            await send(message)

    return in_scope


def _spin(send: Send) -> Send:
    async def spin(message: Message) -> None:
        for _ in range(SPIN):
            pass
        await send(message)

    return spin


in_scope = _paced(_in_scope)
spin = _paced(_spin)

__all__ = ["SERVED_BY", "in_scope", "spin"]
