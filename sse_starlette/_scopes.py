"""Cancel scopes and helper tasks for one stream: anyio's contract, at a fraction of its cost.

`move_on_after()` and `HelperTasks` are what `EventSourceResponse` runs each stream in. On
asyncio (3.11+) they are `TaskScope` and plain tasks, which cost each stream a few µs where
anyio's scope and task group cost tens (see `TaskScope`); on trio, on Python 3.10, or should
anyio's private task-state names move, they are anyio's own. `tests/test_scopes.py` runs one
contract suite against both.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from sse_starlette import _timers

__all__ = ["TASK_SCOPES", "HelperTasks", "Periodic", "TaskScope", "move_on_after"]

# Called with one argument; returns the seconds until the next run.
Periodic = Callable[[Any], Coroutine[Any, Any, float]]

try:
    # anyio's record of each asyncio task's innermost cancel scope, which `TaskScope` reads
    # to honour anyio shields. Private: should it move, anyio's own scopes are used instead.
    from anyio._backends._asyncio import CancelScope as _AnyioScope
    from anyio._backends._asyncio import TaskState as _AnyioTaskState
    from anyio._backends._asyncio import _task_states as _anyio_task_states

    _ANYIO_READABLE = all(
        hasattr(cls, name)
        for cls, name in (
            (_AnyioScope, "_parent_scope"),
            (_AnyioScope, "shield"),
            (_AnyioTaskState, "cancel_scope"),
        )
    )
except ImportError:
    _ANYIO_READABLE = False


# `Task.uncancel()`, which `TaskScope` needs, came with 3.11.
TASK_SCOPES = _ANYIO_READABLE and sys.version_info >= (3, 11)


_SHIELD_POLL = 0.01  # seconds between looks whether a shielded section has ended


def _anyio_scope(task: asyncio.Task[Any]) -> Any:
    state = _anyio_task_states.get(task)
    return None if state is None else state.cancel_scope


def move_on_after(seconds: float | None = None) -> TaskScope | anyio.CancelScope:
    """`anyio.move_on_after(seconds)`; None: no deadline, a scope to `cancel()`."""
    loop = asyncio._get_running_loop()
    if not TASK_SCOPES or loop is None:  # trio has no asyncio task
        return anyio.move_on_after(seconds)
    return TaskScope(math.inf if seconds is None else loop.time() + seconds)


class TaskScope:
    """A cancel scope for the one asyncio task that enters it: the part of anyio's
    `CancelScope` the stream uses (`cancel()`, `deadline`, `cancelled_caught`).

    anyio's costs each stream about 20 µs of a 100 µs life (its task-state bookkeeping, and
    in `cancel()` the repr of the current task); this is `Task.cancel()` and
    `Task.uncancel()` (3.11+), as `asyncio.timeout` does, at a few µs. It keeps what the
    docs promise of anyio's (docs/shutdown.md): unlike `asyncio.timeout`, it cancels again on
    every loop cycle until the task has left the scope, so neither an `await` in the
    generator's `finally` nor a generator that swallows one `CancelledError` keeps a stream
    open; and it waits while the task is inside an anyio scope with `shield=True` entered
    within this one. Its own cancellations are taken back on exit: one from outside (the
    server, an outer scope) still propagates.
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_delivered",
        "_handle",
        "_outer",
        "_task",
        "cancel_called",
        "cancelled_caught",
    )

    def __init__(self, deadline: float = math.inf) -> None:
        self._deadline = deadline
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.Handle | None = None  # the timer, then the next re-delivery
        self._delivered = 0
        self.cancel_called = False
        self.cancelled_caught = False

    def __enter__(self) -> TaskScope:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a cancel scope needs an asyncio task")
        self._task = task
        self._outer = _anyio_scope(task)
        self._cancelling = 0
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        if self.cancel_called:
            self._deliver()
        elif self._deadline != math.inf:
            self._handle = task.get_loop().call_at(self._deadline, self.cancel)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> bool:
        task, self._task = self._task, None
        if self._handle is not None:
            self._handle.cancel()
        if sys.version_info < (3, 11) or not self._delivered or task is None:
            return False
        for _ in range(self._delivered):
            task.uncancel()
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            # Ours alone: swallowed. With one from outside pending too: it propagates. An
            # enclosing anyio scope cancelled in the same cycle, whose delivery ours
            # pre-empted, delivers its own at the task's next await.
            self.cancelled_caught = task.cancelling() <= self._cancelling
        return self.cancelled_caught

    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = value
        if self._task is not None and not self.cancel_called:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._task.get_loop().call_at(value, self.cancel)

    def cancel(self) -> None:
        if not self.cancel_called:
            self.cancel_called = True
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            if self._task is not None:
                self._deliver()

    def _deliver(self) -> None:
        task = self._task
        if task is None:
            return
        loop = task.get_loop()
        if task is asyncio.current_task():
            # The task that cancels itself is running: it is cancelled at its next await.
            self._handle = loop.call_soon(self._deliver)
        elif self._shielded(task):
            # Not every loop cycle: the loop would spin while the shielded work waits.
            self._handle = loop.call_later(_SHIELD_POLL, self._deliver)
        else:
            task.cancel()
            self._delivered += 1
            self._handle = loop.call_soon(self._deliver)

    def _shielded(self, task: asyncio.Task[Any]) -> bool:
        """Whether an anyio scope with `shield=True` lies between the task and this scope."""
        scope, shielded = _anyio_scope(task), False
        while scope is not self._outer:
            if scope is None:
                # This scope's anyio parent is not among the task's: anyio scopes were left
                # out of order (a generator holding one across a yield). Cancel rather than
                # heed a shield that may lie outside this scope.
                return False
            shielded = shielded or scope.shield
            scope = scope._parent_scope
        return shielded


class HelperTasks:
    """Helper tasks beside the body loop: cancelled, and waited for, once the body has ended.

    On asyncio they are plain tasks: an anyio task group costs each stream four cancel scopes,
    a task handle and, in `cancel()`, the repr of the current task (tens of µs in all). Trio
    starts tasks in a nursery only: there it is anyio's task group.
    """

    __slots__ = ("closing", "group", "periodic", "periodic_arg", "tasks", "timer")

    def __init__(self) -> None:
        # A tuple, not a list: the listener alone, mostly, and a list spares room for more.
        self.tasks: tuple[asyncio.Task[None], ...] = ()
        self.group: anyio.abc.TaskGroup | None = None
        self.timer: _timers.Timer | None = None
        self.periodic: Periodic
        self.periodic_arg: Any = None
        self.closing = False

    async def __aenter__(self) -> HelperTasks:
        if asyncio._get_running_loop() is None:
            self.group = anyio.create_task_group()
            await self.group.__aenter__()
        return self

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        if self.group is None:
            tasks = self.tasks
            if len(tasks) > 2:  # a long stream starts a ping task every interval
                tasks = tuple(task for task in tasks if not task.done())
            self.tasks = (*tasks, asyncio.get_running_loop().create_task(work))
        else:
            self.group.start_soon(_run, work)

    def every(self, delay: float, work: Periodic, arg: Any) -> None:
        """Run `work(arg)` after `delay` seconds, then again as many seconds after each run
        as it returns, until it returns 0 (one `work` per stream). A function and its
        argument, not a bound method: each idle stream would hold a method object.

        On asyncio, a timer starts a task for each run: a sleeping task per stream would
        cost each idle stream a task and its frames, and each stream a timeout set-up. The
        timers are `_timers`', which share one loop timer per delay among all streams.
        """
        if self.group is not None:
            self.group.start_soon(_every, delay, work, arg)
        else:
            self.periodic, self.periodic_arg = work, arg
            self.timer = _timers.call_later(delay, HelperTasks._due, self)

    def _due(self) -> None:
        self.start(self._run_and_rearm())

    async def _run_and_rearm(self) -> None:
        delay = await self.periodic(self.periodic_arg)
        # `closing`: a run that ended as the helpers were being cancelled (its send turned
        # the cancellation into an error, say) must not start a timer nobody cancels.
        if delay and not self.closing:
            self.timer = _timers.call_later(delay, HelperTasks._due, self)

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
        if self.group is not None:
            self.group.cancel_scope.cancel()
            return await self.group.__aexit__(*exc_info)
        running = [task for task in self.tasks if not task.done()]
        if running:
            for task in running:
                task.cancel()
            try:
                # A cancelled helper mostly ends in the loop cycle its cancellation reaches it
                # in: one bare yield sees it done, at a fraction of asyncio.wait's cost (a
                # drain ends every stream at once).
                await asyncio.sleep(0)
                running = [task for task in running if not task.done()]
                if running:
                    # asyncio.wait, not await: it never raises the tasks' cancellation as ours.
                    await asyncio.wait(running)
            except asyncio.CancelledError:
                # The server's task is being cancelled from outside, maybe by an anyio scope,
                # which cancels it again on every loop cycle: that would leave a helper whose
                # cleanup takes more than one cycle running after the response has ended.
                # Wait for it shielded, as a task group does.
                # (asyncio.wait returns at once for those done already.)
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(running)
                raise
        return None


async def _run(work: Awaitable[None]) -> None:
    await work


async def _every(delay: float, work: Periodic, arg: Any) -> None:
    while delay:
        await anyio.sleep(delay)
        delay = await work(arg)
