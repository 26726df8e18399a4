"""`_timers`: the ping timers of every stream on a loop, one loop timer per delay.

On real loops (asyncio's and uvloop's): timers of one delay fire in the order they were set, a
cancelled one never fires, and nothing is left behind. On a loop with a clock of the test's
own: every sequence of timers set, cancelled and fallen due (hypothesis) fires each timer
once, not before it is due, and holds no more entries than the live timers justify.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_starlette import EventSourceResponse, _timers
from tests.asgi import asgi_call

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    def run(main: Coroutine[Any, Any, None]) -> None:
        loop = LOOPS[request.param]()
        try:
            loop.run_until_complete(asyncio.wait_for(main, 10))
        finally:
            loop.close()

    return run


def test_timers_of_one_delay_fire_in_the_order_they_were_set(run: Any) -> None:
    fired: list[int] = []
    all_fired = asyncio.Event()

    def callback(i: int) -> None:
        fired.append(i)
        if len(fired) == 3:
            all_fired.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for i in range(3):
            _timers.call_later(0.02, callback, i)
            await asyncio.sleep(0)
        await all_fired.wait()
        assert loop.time() - began >= 0.02 - _timers._EARLY
        assert not _timers._queues  # the last timer to fire took its queue with it

    run(main())
    assert fired == [0, 1, 2]


def test_a_cancelled_timer_never_fires_and_the_last_cancel_stops_the_loop_timer(run: Any) -> None:
    fired: list[str] = []

    async def main() -> None:
        done = asyncio.Event()

        def kept(name: str) -> None:
            fired.append(name)
            done.set()

        cancelled = _timers.call_later(0.01, fired.append, "cancelled")
        _timers.call_later(0.01, kept, "kept")
        cancelled.cancel()
        await done.wait()
        lone = _timers.call_later(0.01, fired.append, "lone")
        queue = _timers._queues[asyncio.get_running_loop(), 0.01]
        assert queue.handle is not None
        lone.cancel()
        assert queue.handle is None and not _timers._queues
        # One set after it with the same delay falls due after it would have.
        after = asyncio.Event()
        _timers.call_later(0.01, lambda _: after.set(), None)
        await after.wait()

    run(main())
    assert fired == ["kept"]


def test_a_callback_may_set_and_cancel_timers_of_its_own_delay(run: Any) -> None:
    fired: list[str] = []
    done = asyncio.Event()

    async def main() -> None:
        later: list[_timers.Timer] = []

        def again(name: str) -> None:
            fired.append(name)
            done.set()

        def first(name: str) -> None:
            fired.append(name)
            later.append(_timers.call_later(0.01, again, "again"))
            doomed.cancel()

        _timers.call_later(0.01, first, "first")
        doomed = _timers.call_later(0.01, fired.append, "doomed")
        await done.wait()

    run(main())
    assert fired == ["first", "again"]


def test_loops_have_queues_of_their_own() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        _timers.call_later(5, print, None)
        assert len(_timers._queues) == len(loops)

    one, two = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        one.run_until_complete(main())
        two.run_until_complete(main())
        assert {loop for loop, _ in _timers._queues} == set(loops)
        for queue in list(_timers._queues.values()):
            for timer in list(queue.timers):
                timer.cancel()
        assert not _timers._queues
    finally:
        one.close()
        two.close()


@pytest.mark.anyio
async def test_no_queue_is_left_once_the_streams_have_ended(anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("trio pings from a task of its own")

    async def idle() -> Any:
        yield "x"
        await asyncio.Event().wait()

    async with (
        asgi_call(EventSourceResponse(idle(), ping=60)) as one,
        asgi_call(EventSourceResponse(idle(), ping=60)) as two,
    ):
        await one.wait_chunks(1)
        await two.wait_chunks(1)
        (queue,) = _timers._queues.values()
        assert len(queue.timers) == 2  # one loop timer for both
    assert not _timers._queues


# --- the queue on a clock of the test's own ------------------------------------------------------


class _Handle:
    def __init__(self, loop: _Clock, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False
        self.order = next(loop.order)

    def __lt__(self, other: _Handle) -> bool:
        return (self.when, self.order) < (other.when, other.order)

    def cancel(self) -> None:
        self.cancelled = True


class _Clock:
    """What `_Queue` needs of a loop: `time()` and `call_at()`, time moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[_Handle] = []
        self.order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(self, when, callback)
        heapq.heappush(self.handles, handle)
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock on, running every loop timer that falls due on the way."""
        end = self.now + seconds
        while self.handles and self.handles[0].when <= end:
            handle = heapq.heappop(self.handles)
            if not handle.cancelled:
                self.now = max(self.now, handle.when)
                handle.callback()
        self.now = end

    def pending(self) -> int:
        return sum(not handle.cancelled for handle in self.handles)


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 3)),  # how many timers to set
        # Which one: live, fired or cancelled already (a late cancel is a no-op).
        st.tuples(st.just("cancel"), st.integers(0, 10_000)),
        st.tuples(st.just("advance"), st.floats(0, 2.5)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_every_timer_fires_once_when_due_unless_cancelled(steps: list[tuple[str, Any]]) -> None:
    clock, delay = _Clock(), 1.0
    queue = _timers._Queue(clock, delay)  # type: ignore[arg-type]
    due: dict[int, float] = {}  # live timers: set, not fired or cancelled
    timers: dict[int, _timers.Timer] = {}
    fired: list[tuple[int, float]] = []
    names = itertools.count()

    def callback(name: int) -> None:
        fired.append((name, clock.now))

    for step, arg in steps:
        if step == "set":
            for _ in range(arg):
                name = next(names)
                timers[name] = queue.add(callback, name)
                due[name] = clock.now + delay
        elif step == "cancel" and timers:
            name = arg % len(timers)
            timers[name].cancel()
            due.pop(name, None)
        elif step == "advance":
            clock.advance(arg)
            for name, when in fired:
                assert name in due, "a cancelled timer fired, or one fired twice"
                assert when >= due.pop(name) - _timers._EARLY, "fired before it was due"
            assert all(when > clock.now for when in due.values()), "due, and not fired"
            fired.clear()
        # Entries are bounded by the live timers, not by how many came and went.
        assert len(queue.timers) <= max(2 * len(due), len(due) + _timers._COMPACT_AFTER + 1)
        assert clock.pending() <= 1
    clock.advance(delay + 1)
    assert {name for name, _ in fired} == set(due), "every live timer fires, once"
    assert len(fired) == len(due)
    assert clock.pending() == 0 and not queue.timers


def test_cancelled_timers_are_not_kept_until_they_fall_due() -> None:
    # Clients that come and go within the ping interval leave no entry per visit behind.
    clock = _Clock()
    queue = _timers._Queue(clock, 15.0)  # type: ignore[arg-type]
    kept = [queue.add(print, None) for _ in range(10)]
    for _ in range(10_000):
        queue.add(print, None).cancel()
    assert len(queue.timers) <= 2 * len(kept) + _timers._COMPACT_AFTER
    assert all(timer in queue.timers for timer in kept)
