"""Daemon threads for synchronous iterators: a `next()` that never returns holds nothing up.

anyio's worker threads are not daemon threads, and a `next()` blocked in one (a `queue.get()`,
a socket read) is abandoned when its stream is cancelled but still keeps the interpreter from
exiting after the server has stopped (hypercorn, granian and daphne exit normally, and wait
for such threads). These threads are daemons, reused while idle, and not capped in number:
each blocked `next()` holds one thread, as it would hold one of anyio's.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

import anyio

from sse_starlette import _shutdown

__all__ = ["iterate", "run_sync"]

T = TypeVar("T")

IDLE_SECONDS = 10.0

_idle: list[_Worker] = []
_lock = threading.Lock()


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="sse_starlette sync iterator", daemon=True)
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with _lock:
                    if self in _idle:
                        _idle.remove(self)
                        return
                continue  # taken from _idle just now: its job is on the way
            job()
            del job  # an idle worker must not hold the last job's event loop
            with _lock:
                _idle.append(self)


async def run_sync(func: Callable[[T], Any], arg: T) -> Any:
    """`func(arg)` in a daemon thread; on cancellation the call is abandoned, not awaited."""
    run_soon = _shutdown.loop_handle().run_soon
    done = anyio.Event()
    outcome: list[tuple[bool, Any]] = []

    def job() -> None:
        try:
            outcome.append((True, func(arg)))
        except BaseException as exc:
            outcome.append((False, exc))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            run_soon(done.set)

    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.start()
    worker.jobs.put(job)
    await done.wait()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class _Exhausted(Exception):
    pass


def _next(iterator: Iterator[T]) -> T:
    try:
        return next(iterator)
    except StopIteration:
        raise _Exhausted from None  # StopIteration cannot cross a coroutine boundary


async def iterate(content: Iterable[T]) -> AsyncIterator[T]:
    """Iterate `content` with each `next()` in a daemon thread, abandoned on cancellation."""
    iterator = iter(content)
    while True:
        try:
            item = await run_sync(_next, iterator)
        except _Exhausted:
            return
        yield item
