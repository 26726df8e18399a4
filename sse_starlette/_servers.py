"""Hooks into each server's own shutdown path, so that its open streams end as it starts to stop.

Every hook ends the streams of the stopping server's event loop only (`_shutdown.drain_loop`),
never the whole process, and is installed once per process, as soon as both sse_starlette and
the server's module have been imported, in either order.

- uvicorn (CLI, `run()`, `--workers`, `--reload`, gunicorn's `UvicornWorker`): its
  `Server.handle_exit` (woken by its SIGINT/SIGTERM handler) and `Server.shutdown` (the end of
  its main loop: `should_exit` set by code, max requests).
- hypercorn, asyncio and trio workers: the worker's `context.terminated` event, which it sets
  after its signal handler or its master's shutdown event.
- granian (worker processes): the worker's loop signal handlers, which set the Rust
  `WorkerSignal` its server stops on.
- daphne: `Server.kill_all_applications`, Twisted's before-shutdown trigger, fired by
  Twisted's signal handler.

A hook is a guest: it first looks up everything it patches, and only then patches. Should a
server release have moved any of it, the hook logs one warning naming the server and its
version and leaves that server untouched (its streams then end on `AppStatus.should_exit` /
`drain()` only). `SSE_STARLETTE_NO_SERVER_HOOKS` (read once, before any patching) turns hooks
off: `1` for every server, or a comma-separated list of names (`uvicorn,daphne`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib.abc
import importlib.machinery
import importlib.metadata
import inspect
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NamedTuple

from sse_starlette import _shutdown

__all__ = ["OPT_OUT", "install"]

logger = logging.getLogger("sse_starlette")

#: The environment variable that turns server hooks off: "1" (all) or server names.
OPT_OUT = "SSE_STARLETTE_NO_SERVER_HOOKS"

_installed: set[str] = set()
_warned: set[str] = set()
_modules_seen = 0


def install() -> None:
    """Hook every server module imported and not hooked yet, and any imported later.

    Called on import and by every response: servers imported later are hooked by an import
    hook, which finds modules as `sys.path` does (zip archives included); this catches one
    loaded by another finder (an editable install's, say) once its first stream starts. It
    looks only when modules were imported since the last look.
    """
    global _modules_seen
    if len(sys.modules) == _modules_seen or len(_installed) == len(_HOOKS):
        return
    _modules_seen = len(sys.modules)
    for module in _HOOKS:
        if module in sys.modules:
            _hook(module)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def _automatic() -> bool:
    """Whether a stopping server's hook ends its streams (published: on unless disabled)."""
    return _shutdown.AppStatus.enable_automatic_graceful_drain


def _hook(module: str) -> None:
    if module in _installed:
        return
    _installed.add(module)
    hook = _HOOKS[module]
    try:
        hook.install()
    except Exception as exc:
        # The hook looks everything up before it patches: nothing of the server was changed.
        # Never raise: this runs inside the server's own `import`.
        if hook.server not in _warned:
            _warned.add(hook.server)
            logger.warning(
                "sse_starlette: cannot hook %s %s (%s: %s); its streams end on server shutdown "
                "only through AppStatus.should_exit or sse_starlette.drain(). Set %s=%s to "
                "silence this.",
                hook.server,
                _version(hook.server),
                type(exc).__name__,
                exc,
                OPT_OUT,
                hook.server,
            )


def _version(server: str) -> str:
    module = sys.modules.get(server)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(server)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _opted_out(value: str) -> frozenset[str]:
    """The servers `SSE_STARLETTE_NO_SERVER_HOOKS` names; "*" for all."""
    value = value.strip().lower()
    if value in ("", "0", "false", "no", "off", "none"):
        return frozenset()
    if value in ("1", "true", "yes", "on", "all", "*"):
        return frozenset({"*"})
    return frozenset(name for name in re.split(r"[\s,;]+", value) if name)


def _require_call(function: Any, *args: Any, **kwargs: Any) -> None:
    """Raise `TypeError` unless `function` accepts the call the hook makes of it."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{function.__qualname__}{inspect.signature(function)}: {exc}") from None


class _HookOnImport(importlib.abc.MetaPathFinder):
    # Hooking a server imported after sse_starlette when its first stream starts would be too
    # late for a server that has already made what its hook patches (hypercorn's worker
    # context, made before the first connection): hook it the moment its module has run.
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _HOOKS or fullname in _installed:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookAfterRun(spec.loader, fullname)
        return spec


class _HookAfterRun(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, module: str) -> None:
        self._loader = loader
        self._module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _hook(self._module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... for tracebacks
        return getattr(self._loader, name)


_FINDER = _HookOnImport()


# --- uvicorn ------------------------------------------------------------------------------------


def _hook_uvicorn() -> None:
    from uvicorn.server import Server

    original_exit = Server.handle_exit
    original_shutdown = Server.shutdown
    _require_call(original_exit, "self", "sig", "frame")
    _require_call(original_shutdown, "self", sockets=None)

    def handle_exit(self: Server, sig: int, frame: Any) -> None:
        # Runs in the main thread, between two bytecodes of the loop it interrupted: the
        # server's own loop when uvicorn serves in the main thread (the only case in which it
        # installs signal handlers). Elsewhere shutdown() below does the drain.
        loop = asyncio._get_running_loop()
        if loop is not None and _automatic():
            _shutdown.drain_loop(loop, _uvicorn_grace(self))
        original_exit(self, sig, frame)

    async def shutdown(self: Server, sockets: Any = None) -> None:
        loop = asyncio.get_running_loop()
        if _automatic():
            _shutdown.drain_loop(loop, _uvicorn_grace(self))
        try:
            await original_shutdown(self, sockets=sockets)
        finally:
            _shutdown.end_loop_drain(loop)

    Server.handle_exit = handle_exit  # type: ignore[method-assign]
    Server.shutdown = shutdown  # type: ignore[method-assign]
    if _shutdown.AppStatus.original_handler is None:  # where the published package kept it
        _shutdown.AppStatus.original_handler = original_exit
    # uvicorn installs its signal handlers before it imports the app (`uvicorn app:app`),
    # bound to the unpatched method: bind them again so that they go through the hook.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            server = getattr(handler, "__self__", None)
            if isinstance(server, Server) and handler != server.handle_exit:
                signal.signal(sig, server.handle_exit)


def _uvicorn_grace(server: Any) -> float | None:
    return getattr(getattr(server, "config", None), "timeout_graceful_shutdown", None)


# --- hypercorn ----------------------------------------------------------------------------------

# The config of the hypercorn worker being set up, for the grace of its streams.
_hypercorn_config: contextvars.ContextVar[Any] = contextvars.ContextVar("hypercorn_config")


class _DrainOnSet:
    """Hypercorn's `context.terminated` event, which it sets as the worker starts to stop."""

    def __init__(self, event: Any, graceful_timeout: float | None) -> None:
        self._event = event
        self._graceful_timeout = graceful_timeout

    async def set(self) -> None:
        key = _shutdown.current_loop_key()
        if key is not None and _automatic():
            _shutdown.drain_loop(key, self._graceful_timeout)
        await self._event.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


def _hook_hypercorn(flavour: str) -> None:
    # The worker imports the app before it calls `worker_serve`, which creates the context.
    run: Any = sys.modules[f"hypercorn.{flavour}.run"]
    package: Any = sys.modules[f"hypercorn.{flavour}"]

    context: type = run.WorkerContext
    original = run.worker_serve
    _require_call(original, "app", "config")

    class WorkerContext(context):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            terminated = vars(self).get("terminated")
            # Only an event whose `set` is awaited, as the hook's is: else left as it is.
            if inspect.iscoroutinefunction(getattr(terminated, "set", None)):
                timeout = getattr(_hypercorn_config.get(None), "graceful_timeout", None)
                self.terminated = _DrainOnSet(terminated, timeout)

    # `hypercorn.<flavour>.serve()` calls the name its package imported, the CLI workers the
    # one in `run`: wrap both. While the package is still being imported (it imports `run`
    # first), it has no name yet and takes the wrapped one from `run`.
    wrapped = _wrap_worker_serve(original)
    run.WorkerContext = WorkerContext
    run.worker_serve = wrapped
    if getattr(package, "worker_serve", original) is original:
        package.worker_serve = wrapped


def _wrap_worker_serve(original: Any) -> Any:
    @functools.wraps(original)
    async def worker_serve(app: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        token = _hypercorn_config.set(config)
        try:
            await original(app, config, *args, **kwargs)
        finally:
            _hypercorn_config.reset(token)
            key = _shutdown.current_loop_key()
            if key is not None:
                _shutdown.end_loop_drain(key)

    return worker_serve


# --- granian ------------------------------------------------------------------------------------


def _hook_granian() -> None:
    # A granian worker imports the app, then asks `set_loop_signals` for the signal its Rust
    # server stops on (imported at call time, so the patch applies); the handlers it installs
    # only set that signal. Callbacks added to it run only once every connection has closed,
    # too late: install handlers that end the streams first, then set the signal as granian's
    # own handlers do.
    _signals: Any = sys.modules["granian._signals"]
    original = _signals.set_loop_signals
    _require_call(original, "loop")
    get_signals = _signals._get_signals

    def set_loop_signals(loop: Any) -> Any:
        worker_signal = original(loop)

        def stopping(*args: Any) -> None:
            if _automatic():
                _shutdown.drain_loop(loop)
            worker_signal.set()

        for sig in get_signals():
            try:
                loop.add_signal_handler(sig, stopping)
            except NotImplementedError:  # as granian does
                signal.signal(sig, stopping)
        return worker_signal

    _signals.set_loop_signals = set_loop_signals


# --- daphne -------------------------------------------------------------------------------------


def _hook_daphne() -> None:
    Server: Any = sys.modules["daphne.server"].Server
    from twisted.internet import defer

    original = Server.kill_all_applications
    _require_call(original, "self")

    def kill_all_applications(self: Any) -> Any:
        # Twisted's before-shutdown trigger, on the reactor's asyncio loop. daphne cancels
        # every application here, which cuts streams without their final chunk: end ours
        # first, wait (up to daphne's own application_close_timeout) until each has sent its
        # final chunk, then let daphne cancel whatever is left, as it always does.
        if not _automatic():
            return original(self)
        loop = asyncio.get_event_loop()
        timeout = getattr(self, "application_close_timeout", None)
        _shutdown.drain_loop(loop, timeout)
        ended = loop.create_future()

        def streams_ended() -> None:
            if not ended.done():
                ended.set_result(None)

        _shutdown.when_streams_ended(loop, streams_ended)
        if ended.done():
            return original(self)

        async def wait() -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ended, timeout)

        waited = defer.Deferred.fromFuture(loop.create_task(wait()))
        waited.addCallback(lambda _: original(self))
        return waited

    Server.kill_all_applications = kill_all_applications


class _Hook(NamedTuple):
    server: str  # the distribution: named in the warning and in the opt-out
    install: Callable[[], None]


# module whose import means the server may run -> its hook
_HOOKS: dict[str, _Hook] = {
    "uvicorn.server": _Hook("uvicorn", _hook_uvicorn),
    "hypercorn.asyncio.run": _Hook("hypercorn", functools.partial(_hook_hypercorn, "asyncio")),
    "hypercorn.trio.run": _Hook("hypercorn", functools.partial(_hook_hypercorn, "trio")),
    "granian._signals": _Hook("granian", _hook_granian),
    "daphne.server": _Hook("daphne", _hook_daphne),
}

# Read once, before any patching: a server opted out of is never hooked, nor looked for.
_OPTED_OUT = _opted_out(os.environ.get(OPT_OUT, ""))
if _OPTED_OUT - {"*"} - {hook.server for hook in _HOOKS.values()}:
    logger.warning(
        "sse_starlette: %s=%r names no server it knows (1, or a comma-separated list of "
        "uvicorn, hypercorn, granian, daphne): the unknown names are ignored",
        OPT_OUT,
        os.environ.get(OPT_OUT, ""),
    )
_installed.update(module for module, hook in _HOOKS.items() if {"*", hook.server} & _OPTED_OUT)
