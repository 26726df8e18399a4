"""One contract, two implementations: `_scopes.TaskScope` and anyio's own cancel scope.

Every stream runs in `_scopes.move_on_after()`: a `TaskScope` on asyncio (3.11+), anyio's
scope on trio, on Python 3.10 and wherever anyio's private names have moved. Each contract
test below runs against both (anyio's on asyncio and on trio), so that the fallback is held
to what docs/shutdown.md promises as much as the fast path. `HelperTasks` is plain tasks on
asyncio and an anyio task group on trio: its tests run on both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sse_starlette import EventSourceResponse, _scopes
from sse_starlette._scopes import HelperTasks, TaskScope
from sse_starlette.sse import AppStatus
from tests.asgi import asgi_call

MakeScope = Callable[[float | None], Any]


@pytest.fixture(params=["TaskScope", "anyio"])
def make_scope(request: pytest.FixtureRequest, anyio_backend: str) -> MakeScope:
    """`move_on_after(seconds)` of one implementation (TaskScope: asyncio only)."""
    if request.param == "anyio":
        return anyio.move_on_after
    if anyio_backend != "asyncio" or not _scopes.TASK_SCOPES:
        pytest.skip("TaskScope runs on asyncio 3.11+ only")

    def task_scope(seconds: float | None) -> Any:
        scope = _scopes.move_on_after(seconds)
        assert isinstance(scope, TaskScope)
        return scope

    return task_scope


@contextlib.asynccontextmanager
async def cancelled_soon(make_scope: MakeScope) -> AsyncIterator[Any]:
    """A scope with no deadline that another task cancels once the body first awaits."""

    async def cancel(scope: Any) -> None:
        await anyio.lowlevel.checkpoint()
        scope.cancel()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            with make_scope(None) as scope:
                tg.start_soon(cancel, scope)
                yield scope


# --- cancel scopes -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_from_another_task_ends_the_scope_and_is_caught(make_scope: MakeScope) -> None:
    async with cancelled_soon(make_scope) as scope:
        await anyio.sleep_forever()
    assert scope.cancel_called and scope.cancelled_caught


@pytest.mark.anyio
async def test_a_deadline_ends_the_scope(make_scope: MakeScope) -> None:
    with anyio.fail_after(5), make_scope(0.01) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_a_scope_left_normally_caught_nothing(make_scope: MakeScope) -> None:
    with make_scope(5) as scope:
        await anyio.lowlevel.checkpoint()
    assert not scope.cancel_called and not scope.cancelled_caught


@pytest.mark.anyio
async def test_cancel_before_entering_cancels_the_first_await(make_scope: MakeScope) -> None:
    scope = make_scope(None)
    scope.cancel()
    with anyio.fail_after(5), scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_moving_the_deadline_earlier_takes_effect(make_scope: MakeScope) -> None:
    with anyio.fail_after(5), make_scope(None) as scope:
        scope.deadline = anyio.current_time() + 0.01
        await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_an_await_in_a_finally_is_cancelled_too(make_scope: MakeScope) -> None:
    # Level-triggered: a generator's clean-up that awaits cannot hold the stream open.
    finally_ran = []
    async with cancelled_soon(make_scope) as scope:
        try:
            await anyio.sleep_forever()
        finally:
            finally_ran.append("start")
            await anyio.sleep_forever()
    assert finally_ran == ["start"]
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_swallowing_one_cancellation_does_not_keep_the_scope_open(
    make_scope: MakeScope,
) -> None:
    swallowed = 0
    async with cancelled_soon(make_scope) as scope:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            swallowed += 1
        await anyio.sleep_forever()  # cancelled again
    assert swallowed == 1
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_a_shielded_section_inside_runs_to_its_end_first(make_scope: MakeScope) -> None:
    steps = []
    async with cancelled_soon(make_scope) as scope:
        with anyio.CancelScope(shield=True):
            for _ in range(5):  # several loop cycles, the cancel pending
                await anyio.lowlevel.checkpoint()
            steps.append("shielded part done")
        await anyio.sleep_forever()
    assert steps == ["shielded part done"]
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_an_outer_scope_cancelled_at_the_same_time_still_ends(make_scope: MakeScope) -> None:
    # The stream's scope and an enclosing one (a test's fail_after, a middleware's scope)
    # cancelled in the same cycle: the enclosing one's cancellation is not lost; it arrives
    # at the next await at the latest.
    reached = []
    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            with make_scope(None) as inner:
                inner.cancel()
                outer.cancel()
                await anyio.sleep_forever()
            await anyio.lowlevel.checkpoint()
            reached.append("after the inner scope")
    assert outer.cancelled_caught
    assert reached == []


@pytest.mark.anyio
async def test_the_servers_own_cancellation_propagates_through(
    make_scope: MakeScope, anyio_backend: str
) -> None:
    # The server cancels its task (asyncio: Task.cancel) while the scope is cancelled too.
    if anyio_backend != "asyncio":
        pytest.skip("a bare Task.cancel() is asyncio's")
    import asyncio

    reached = []

    async def stream() -> None:
        with make_scope(None) as scope:
            scope.cancel()
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await anyio.sleep_forever()
        reached.append("after the scope")

    task = asyncio.get_running_loop().create_task(stream())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached == []


# --- helper tasks ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("from_outside", [False, True], ids=["block ends", "cancelled outside"])
async def test_helpers_are_cancelled_and_waited_for_when_the_block_ends(
    from_outside: bool,
) -> None:
    # Cancelled from outside, by an anyio scope that cancels again on every loop cycle: the
    # helper's clean-up of several cycles still ends before the block does.
    order: list[str] = []
    started = anyio.Event()

    async def helper() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for _ in range(5):  # a clean-up of several loop cycles
                    await anyio.lowlevel.checkpoint()
            order.append("helper cleaned up")

    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            async with HelperTasks() as helpers:
                helpers.start(helper())
                await started.wait()
                if from_outside:
                    outer.cancel()
        order.append("block ended")
    assert order == ["helper cleaned up", "block ended"]


@pytest.mark.anyio
async def test_every_runs_again_after_the_delay_it_returns_until_zero() -> None:
    runs: list[float] = []
    done = anyio.Event()

    async def work(arg: str) -> float:
        assert arg == "the argument"
        runs.append(anyio.current_time())
        if len(runs) == 3:
            done.set()
            return 0
        return 0.01

    with anyio.fail_after(5):
        async with HelperTasks() as helpers:
            helpers.every(0.01, work, "the argument")
            await done.wait()
            for _ in range(20):  # a fourth run would come after 0.01 s: none does
                await anyio.lowlevel.checkpoint()
    assert len(runs) == 3


# --- the stream on either implementation ------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["TaskScope", "anyio scopes"])
def task_scopes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Streams run with `TaskScope`, or with anyio's scopes as on Python 3.10."""
    if request.param and not _scopes.TASK_SCOPES:
        pytest.skip("TaskScope needs Python 3.11+")
    monkeypatch.setattr(_scopes, "TASK_SCOPES", request.param)
    return bool(request.param)


@pytest.mark.anyio
@pytest.mark.parametrize("ending", ["disconnect", "drain"])
async def test_a_stream_ends_cleanly_on_either_implementation(
    task_scopes: bool, ending: str
) -> None:
    finalized = anyio.Event()

    async def events() -> Any:
        try:
            yield "x"
            await anyio.sleep_forever()
        finally:
            finalized.set()
            await anyio.sleep_forever()  # an await in clean-up: cancelled, never a hang

    async with asgi_call(EventSourceResponse(events(), ping=0)) as call:
        await call.wait_chunks(1)
        if ending == "drain":
            AppStatus.should_exit = True
            await call.wait_until(lambda c: c.complete)
        else:
            call.disconnect()
        with anyio.fail_after(5):
            await finalized.wait()
            await call.done.wait()
    assert call.exception is None
    assert call.complete == (ending == "drain")
