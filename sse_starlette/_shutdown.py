"""Server shutdown -> every open stream ends, without polling and without a task per stream.

Each open stream registers itself with a callback and a way to run code on its own event loop
(asyncio or trio). Starting a drain, from a signal handler, another thread or the loop itself,
schedules one call per event loop that runs the callbacks of that loop's streams: so a stream
is only ever touched from its own loop, and streams in several loops and threads end alike.

A drain has one of two reaches:

- the process (`drain()`, `AppStatus.should_exit = True`): every stream, on every loop, until
  `undrain()`;
- one event loop (a server hook, `drain_loop()`): the streams of the server that is stopping,
  until that server has stopped (`end_loop_drain()`). Another server running in the same
  process on another loop keeps its streams, and a server started afterwards on a new loop
  starts clean: nothing of the old server's shutdown leaks into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Protocol

logger = logging.getLogger("sse_starlette")

__all__ = [
    "SERVER_GRACE_FALLBACK",
    "AppStatus",
    "Drainable",
    "LoopHandle",
    "current_loop_key",
    "drain",
    "drain_loop",
    "end_loop_drain",
    "is_draining",
    "loop_handle",
    "register",
    "server_grace",
    "undrain",
    "unregister",
    "when_streams_ended",
]

#: Seconds a `shutdown_grace_period="server"` stream gets when its server has no
#: graceful-shutdown timeout (uvicorn's default waits forever) or none that can be read.
SERVER_GRACE_FALLBACK = 5.0

RunOnLoop = Callable[[Callable[[], None]], object]


class Drainable(Protocol):
    """What a drain needs of an open stream."""

    @property
    def loop(self) -> LoopHandle: ...

    def on_drain(self, server_grace: float | None) -> None:
        """Called on the stream's own event loop when the drain reaches it.

        `server_grace` is the stopping server's graceful-shutdown timeout, if it has one.
        """


class LoopHandle(NamedTuple):
    key: Hashable
    run_soon: RunOnLoop  # thread- and signal-safe
    clock: Callable[[], float]  # the loop's own clock, usable outside a task (anyio's is not)


class _NotDraining:
    pass


_NOT_DRAINING = _NotDraining()
# The process-wide drain: _NOT_DRAINING, or None (draining; no server grace to go by).
_process: _NotDraining | None = _NOT_DRAINING
# Loops whose server is stopping -> that server's grace. Weak: a finished loop drops out,
# and a new loop (the next server) is a new key.
_loops: weakref.WeakKeyDictionary[Any, float | None] = weakref.WeakKeyDictionary()
# Open streams by loop key; a loop without open streams has no entry.
_streams: dict[Hashable, set[Drainable]] = {}
# Callbacks waiting for a loop's last open stream to end.
_when_ended: dict[Hashable, list[Callable[[], None]]] = {}


# The last handle made in each thread: every stream asks for one, mostly on the same loop.
# Dropped when the loop's last stream ends, so that a finished loop is not kept alive.
_last = threading.local()


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
    handle: LoopHandle | None = getattr(_last, "handle", None)
    if handle is None or handle.key is not loop:
        handle = _last.handle = LoopHandle(loop, loop.call_soon_threadsafe, loop.time)
    return handle


def current_loop_key() -> Hashable | None:
    """The key `loop_handle()` would give in this thread, or None outside an event loop."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop
    trio = sys.modules.get("trio")
    if trio is not None:
        with contextlib.suppress(RuntimeError):
            return trio.lowlevel.current_trio_token()  # type: ignore[no-any-return]
    return None


def register(stream: Drainable) -> None:
    """Track an open stream; call from its own loop. A drain already under way reaches it now."""
    key = stream.loop.key
    streams = _streams.get(key)
    if streams is None:
        streams = _streams[key] = set()
    streams.add(stream)
    grace = _grace_for(key)
    if not isinstance(grace, _NotDraining):
        stream.on_drain(grace)


def unregister(stream: Drainable) -> None:
    """The stream has ended; call from its own loop, once per `register`."""
    key = stream.loop.key
    streams = _streams[key]
    streams.discard(stream)
    if not streams:
        del _streams[key]
        if getattr(_last, "handle", None) is stream.loop:
            _last.handle = None
        for callback in _when_ended.pop(key, ()):
            callback()


def when_streams_ended(key: Hashable, callback: Callable[[], None]) -> None:
    """Call `callback` (on loop `key`, from there) once no stream is open on that loop."""
    if key in _streams:
        _when_ended.setdefault(key, []).append(callback)
    else:
        callback()


def is_draining(key: Hashable | None = None) -> bool:
    """Whether streams on loop `key` (default: the current loop, if any) are being ended."""
    if key is None:
        key = current_loop_key()
    return not isinstance(_grace_for(key), _NotDraining)


def _grace_for(key: Hashable | None) -> float | _NotDraining | None:
    if key is not None and _loops:  # a weak dictionary lookup costs more than this
        with contextlib.suppress(KeyError, TypeError):
            return _loops[key]
    return _process


def drain(*, this_loop: bool = False) -> None:
    """End every open `EventSourceResponse`, and every one started until `undrain()`.

    Safe to call from anywhere: a signal handler, any thread, any event loop (asyncio or trio).
    It returns at once; each stream ends on its own loop soon after: a stream with a
    `shutdown_event` gets its `shutdown_grace_period` to send farewell events, then it is
    cancelled; every stream ends its response cleanly (the final empty chunk). Call it where
    a server without a built-in hook starts shutting down, or from a test.

    With `this_loop=True`, call it on an event loop: only the streams of that loop end (a
    server run in-process on its own loop, a test), until `undrain(this_loop=True)` there or
    until the loop is gone.
    """
    global _process
    if this_loop:
        drain_loop(_require_loop())
        return
    _process = None
    _schedule(None, None)


def undrain(*, this_loop: bool = False) -> None:
    """Undo `drain()`: streams started from now on run normally (a test is over, say)."""
    global _process
    if this_loop:
        end_loop_drain(_require_loop())
        return
    _process = _NOT_DRAINING


def _require_loop() -> Hashable:
    key = current_loop_key()
    if key is None:
        raise RuntimeError("this_loop=True needs a running asyncio or trio event loop")
    return key


def drain_loop(key: Hashable, server_grace: float | None = None) -> None:
    """A server running on loop `key` is stopping: end the streams on that loop.

    Streams started on that loop are ended too, until `end_loop_drain(key)`. `server_grace` is
    the server's graceful-shutdown timeout, where it has one. Signal- and thread-safe.
    """
    # TypeError: not weak-referenceable; then only the streams open now can be reached.
    with contextlib.suppress(TypeError):
        _loops[key] = server_grace
    _schedule(key, server_grace)


def end_loop_drain(key: Hashable) -> None:
    """The server on loop `key` has stopped: a server started next on that loop starts clean."""
    with contextlib.suppress(KeyError, TypeError):
        del _loops[key]


def server_grace(timeout: float | None) -> float:
    """The grace a `shutdown_grace_period="server"` stream gets, given the server's timeout.

    A little less than the server's own timeout, so that the generator is cancelled and the
    response ended by us, cleanly, before the server gives up and cuts the connection.
    """
    if timeout is None:
        return SERVER_GRACE_FALLBACK
    return max(0.0, timeout - min(0.5, timeout / 2))


def _schedule(key: Hashable | None, grace: float | None) -> None:
    # list() copies in one C call, safe against other threads (the loops) adding or removing.
    groups = list(_streams.values()) if key is None else [_streams.get(key, set())]
    for group in groups:
        streams = list(group)
        if streams:
            # RuntimeError: that loop is closed, and its streams are gone with it.
            with contextlib.suppress(RuntimeError):
                streams[0].loop.run_soon(functools.partial(_run, streams, grace))


def _run(streams: list[Drainable], grace: float | None) -> None:
    still_open = _streams.get(streams[0].loop.key, set())
    for stream in streams:
        if stream in still_open:
            try:
                stream.on_drain(grace)
            except Exception:  # one stream's failure must not keep the others open
                logger.exception("sse_starlette: ending a stream on shutdown failed")


# --- the published package's interface to the same state --------------------------------


class _AppStatusMeta(type):
    # A property on the metaclass, so that `AppStatus.should_exit = True` (the published
    # package's documented way to stop streams) takes effect at once instead of being polled.
    @property
    def should_exit(cls) -> bool:
        return is_draining()

    @should_exit.setter
    def should_exit(cls, value: bool) -> None:
        if value:
            drain()
        else:
            undrain()

    @should_exit.deleter
    def should_exit(cls) -> None:
        # monkeypatch / mock.patch restore a class attribute they did not find in the class
        # __dict__ by deleting it: that must leave the published default, False.
        undrain()


class AppStatus(metaclass=_AppStatusMeta):
    """Shutdown state, kept where the published package has it.

    Setting `AppStatus.should_exit = True` (like `sse_starlette.drain()`) ends every open
    stream in the process and every stream started afterwards; setting it back to False
    (`sse_starlette.undrain()`) lets new streams run. Reading it says whether streams on the
    current event loop are being ended: by that, or because their server is shutting down.

    Servers are hooked one by one (uvicorn, hypercorn, granian, daphne; see docs/shutdown.md):
    on SIGTERM/SIGINT a server ends its own streams only, and once it has stopped nothing of
    its shutdown remains for the next server, unless `disable_automatic_graceful_drain()`
    was called.
    """

    enable_automatic_graceful_drain: bool = True
    original_handler: Callable[..., Any] | None = None

    @classmethod
    def disable_automatic_graceful_drain(cls) -> None:
        """Keep streams open on server shutdown until `AppStatus.should_exit = True` is set.

        When disabled you must set `AppStatus.should_exit = True` yourself during shutdown,
        or the server waits for the streams (until its own graceful-shutdown timeout).
        """
        cls.enable_automatic_graceful_drain = False

    @classmethod
    def enable_automatic_graceful_drain_mode(cls) -> None:
        """Undo `disable_automatic_graceful_drain()`: server shutdown ends streams again."""
        cls.enable_automatic_graceful_drain = True

    @staticmethod
    def handle_exit(*args: Any, **kwargs: Any) -> None:
        """Drain every stream in the process, then call `original_handler` with the arguments.

        The published package installed this as uvicorn's `Server.handle_exit`; uvicorn is now
        hooked per server, and this stays for code that installs or calls it itself.
        """
        if AppStatus.enable_automatic_graceful_drain:
            AppStatus.should_exit = True
        if AppStatus.original_handler is not None:
            AppStatus.original_handler(*args, **kwargs)
