"""Every stream's ping timer on an asyncio event loop, as one loop timer per interval.

A loop timer per stream cost each idle stream 0.6 KiB (uvloop's timer handle and its libuv
timer, a context, a bound method) and each connection the arming and cancelling of it. Timers
of one delay fall due in the order they were set (the loop's clock only goes forward), so a
queue per delay needs one loop timer, for its head, and costs a stream a small entry.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Timer", "call_later"]

# libuv's timers have millisecond resolution: uvloop may wake a timer that long before it is
# due, and that timer's entries would otherwise wait for another loop timer of ~0 s.
_EARLY = 0.001
# Cancelled entries stay queued until their due time unless there are more of them than this
# and than live ones: then the queue is rebuilt, so memory follows the open streams, not the
# rate at which clients come and go.
_COMPACT_AFTER = 64


class Timer:
    """One call of `callback(arg)` when `due`; `cancel()` it."""

    __slots__ = ("_queue", "arg", "callback", "due")

    def __init__(
        self, queue: _Queue, due: float, callback: Callable[[Any], object], arg: Any
    ) -> None:
        self._queue = queue
        self.due = due
        self.callback: Callable[[Any], object] | None = callback
        self.arg = arg

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = self.arg = None
            self._queue.cancelled()


class _Queue:
    """The timers of one delay on one loop, in the order they fall due."""

    __slots__ = ("delay", "handle", "loop", "stale", "timers")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.timers: deque[Timer] = deque()
        self.stale = 0  # cancelled timers still queued
        self.handle: asyncio.TimerHandle | None = None

    def add(self, callback: Callable[[Any], object], arg: Any) -> Timer:
        timer = Timer(self, self.loop.time() + self.delay, callback, arg)
        self.timers.append(timer)
        if self.handle is None:
            self.handle = self.loop.call_at(timer.due, self._fire)
        return timer

    def cancelled(self) -> None:
        self.stale += 1
        live = len(self.timers) - self.stale
        if live == 0:
            self._close()
        elif self.stale > _COMPACT_AFTER and self.stale > live:
            self.timers = deque(timer for timer in self.timers if timer.callback is not None)
            self.stale = 0

    def _fire(self) -> None:
        self.handle = None
        now = self.loop.time() + _EARLY
        # `self.timers`, not a local: a callback may cancel timers, which may rebuild it.
        while self.timers:
            timer = self.timers[0]
            callback = timer.callback
            if callback is not None and timer.due > now:
                if self.handle is not None:  # a callback's new timer armed it: later than this
                    self.handle.cancel()
                self.handle = self.loop.call_at(timer.due, self._fire)
                return
            self.timers.popleft()
            if callback is None:
                self.stale -= 1
            else:
                arg, timer.callback, timer.arg = timer.arg, None, None  # a late cancel(): no-op
                callback(arg)
        self._close()

    def _close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.timers.clear()
        self.stale = 0
        if _queues.get((self.loop, self.delay)) is self:
            del _queues[self.loop, self.delay]


# Live queues only: the last timer of a queue to fire or be cancelled removes it, so a
# finished loop is not kept.
_queues: dict[tuple[asyncio.AbstractEventLoop, float], _Queue] = {}


def call_later(delay: float, callback: Callable[[Any], object], arg: Any) -> Timer:
    """`loop.call_later(delay, callback, arg)` on the running loop, sharing one loop timer
    with every other timer of the same delay. One argument, not a bound method: each
    stream's timer would hold a method object of its own."""
    loop = asyncio.get_running_loop()
    queue = _queues.get((loop, delay))
    if queue is None:
        queue = _queues[loop, delay] = _Queue(loop, delay)
    return queue.add(callback, arg)
