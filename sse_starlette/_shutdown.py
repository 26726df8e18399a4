"""Server shutdown -> every open stream ends, without polling and without a task per stream.

Each open stream registers itself with a callback and a way to run code on its own event loop
(asyncio or trio). Starting the drain, from a signal handler, another thread or the loop itself,
schedules one call per event loop that runs the callbacks of that loop's streams: so a stream
is only ever touched from its own loop, and streams in several loops and threads end alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Hashable
from typing import NamedTuple, Protocol

logger = logging.getLogger("sse_starlette")

__all__ = [
    "Drainable",
    "LoopHandle",
    "drain",
    "is_draining",
    "loop_handle",
    "register",
    "reset",
    "unregister",
]

RunOnLoop = Callable[[Callable[[], None]], None]


class Drainable(Protocol):
    """What `drain()` needs of an open stream."""

    loop: LoopHandle

    def on_drain(self) -> None:
        """Called on the stream's own event loop when the drain starts."""


_draining = False
_streams: set[Drainable] = set()


class LoopHandle(NamedTuple):
    key: Hashable
    run_soon: RunOnLoop  # thread- and signal-safe
    clock: Callable[[], float]  # the loop's own clock, usable outside a task (anyio's is not)


def loop_handle() -> LoopHandle:
    """The current event loop, a thread- and signal-safe way to run a callback on it, its clock."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is None:
            raise RuntimeError("sse_starlette needs a running asyncio or trio event loop") from None
        token = trio.lowlevel.current_trio_token()
        return LoopHandle(token, token.run_sync_soon, trio.current_time)

    def run_soon(callback: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(callback)

    return LoopHandle(loop, run_soon, loop.time)


def register(stream: Drainable) -> None:
    _streams.add(stream)


def unregister(stream: Drainable) -> None:
    _streams.discard(stream)


def is_draining() -> bool:
    return _draining


def drain() -> None:
    """End every open stream now, and every stream that starts until `reset()`."""
    global _draining
    _draining = True
    by_loop: dict[Hashable, list[Drainable]] = {}
    # list() copies the set in one C call, safe against other threads adding or removing.
    for stream in list(_streams):
        by_loop.setdefault(stream.loop.key, []).append(stream)
    for streams in by_loop.values():
        # RuntimeError: that loop is closed, and its streams are gone with it.
        with contextlib.suppress(RuntimeError):
            streams[0].loop.run_soon(lambda streams=streams: _run(streams))  # type: ignore[misc]


def _run(streams: list[Drainable]) -> None:
    for stream in streams:
        if stream in _streams:
            try:
                stream.on_drain()
            except Exception:  # one stream's failure must not keep the others open
                logger.exception("sse_starlette: ending a stream on shutdown failed")


def reset() -> None:
    """Let new streams run again (the process is not exiting after all, or a test is over)."""
    global _draining
    _draining = False
