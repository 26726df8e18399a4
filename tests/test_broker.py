"""The broker's behaviour, the same tests on the memory backend and on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from sse_starlette import ServerSentEvent
from sse_starlette.broker import (
    Broker,
    BrokerEvent,
    BrokerUnavailableError,
    PublishOutcomeUnknownError,
    Subscription,
)
from tests.asgi import StuckClient, asgi_call, http_scope
from tests.redis_proxy import RedisProxy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


# redis-py is asyncio-only: the Redis backend runs on asyncio, the memory one on both.
@pytest.fixture(
    params=[("memory", "asyncio"), ("memory", "trio"), ("redis", "asyncio")],
    ids=["memory-asyncio", "memory-trio", "redis-asyncio"],
)
def backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(backends: tuple[str, str]) -> str:
    return backends[1]


@pytest.fixture
def make_broker(request: pytest.FixtureRequest, backends: tuple[str, str]) -> Any:
    """A factory of brokers of one backend; Redis ones get a fresh key prefix per test."""
    if backends[0] == "memory":
        return lambda **options: Broker("memory://", **options)
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    return lambda **options: Broker(server.url, prefix=prefix, **options)


@pytest.fixture
async def broker(make_broker: Any) -> AsyncIterator[Broker]:
    async with make_broker() as broker:
        yield broker


async def take(subscription: Subscription, n: int, timeout: float = 5) -> list[BrokerEvent]:
    events = []
    with anyio.fail_after(timeout):
        async for event in subscription:
            events.append(event)
            if len(events) == n:
                break
    return events


async def publish_all(broker: Broker, topic: str, items: list[Any]) -> list[str]:
    return [await broker.publish(topic, item) for item in items]


def reset_reason(event: BrokerEvent) -> str:
    assert event.event == "reset", event
    return str(json.loads(event.data or "")["reason"])


# --- publish and deliver ------------------------------------------------------------------


async def test_subscribers_get_every_event_in_order_with_the_published_ids(broker: Broker) -> None:
    results: dict[str, list[BrokerEvent]] = {}

    async def read(name: str, subscription: Subscription) -> None:
        results[name] = await take(subscription, 5)

    async with (
        broker.subscribe("news") as first,
        broker.subscribe("news") as second,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(read, "first", first)
        tg.start_soon(read, "second", second)
        # A subscription attaches at its first read: publish once both have.
        await wait_subscribers(broker, 2)
        ids = await publish_all(broker, "news", [f"n{i}" for i in range(5)])
    for events in results.values():
        assert [(e.id, e.data) for e in events] == [(id, f"n{i}") for i, id in enumerate(ids)]
    assert sorted(ids, key=id_key) == ids and len(set(ids)) == 5


async def test_every_subscriber_is_handed_the_same_bytes(broker: Broker) -> None:
    async with broker.subscribe("t") as a, broker.subscribe("t") as b:
        await start(a)
        await start(b)
        id = await broker.publish("t", ServerSentEvent("x", event="e", retry=5, comment="c"))
        (ea,), (eb,) = await take(a, 1), await take(b, 1)
    assert ea.encode() is eb.encode()
    assert ea.encode() == f": c\r\nid: {id}\r\nevent: e\r\ndata: x\r\nretry: 5\r\n\r\n".encode()
    assert (ea.topics, ea.data, ea.event, ea.retry, ea.comment) == (("t",), "x", "e", 5, "c")


@pytest.mark.parametrize(
    ("item", "data"),
    [("text", "text"), ({"data": "a\nb", "event": "e"}, "a\nb"), ({"k": [1]}, None)],
)
async def test_publish_takes_what_an_event_source_response_takes(
    broker: Broker, item: Any, data: str | None
) -> None:
    async with broker.subscribe("t") as subscription:
        await start(subscription)
        if data is None:  # a dict of non-field keys is refused, as EventSourceResponse does
            with pytest.raises(TypeError, match="'k'"):
                await broker.publish("t", item)
            return
        await broker.publish("t", item)
        (event,) = await take(subscription, 1)
    assert event.data == data


async def test_a_dicts_sep_is_accepted_and_the_brokers_own_is_used(broker: Broker) -> None:
    async with broker.subscribe("t") as subscription:
        await start(subscription)
        id = await broker.publish("t", {"data": "a\nb", "sep": "\n"})
        (event,) = await take(subscription, 1)
    assert event.encode() == f"id: {id}\r\ndata: a\r\ndata: b\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("item", "error", "field"),
    [
        ({"data": "x", "id": ""}, ValueError, "must not be empty"),
        ({"data": "x", "id": "a\nb"}, ValueError, "'id'"),
        ({"data": "x", "id": "a\ud800"}, ValueError, "'id'"),
        ({"data": "x", "event": "a\nb"}, ValueError, "'event'"),
        ({"data": "a\ud800"}, ValueError, "'data'"),
        ({"data": "x", "retry": -1}, ValueError, "'retry'"),
    ],
)
async def test_an_invalid_event_raises_naming_the_field_and_nothing_is_stored(
    broker: Broker, item: Any, error: type[Exception], field: str
) -> None:
    first = await broker.publish("t", "before")
    with pytest.raises(error, match=field):
        await broker.publish("t", item)
    after = await broker.publish("t", "after")
    async with broker.subscribe("t", last_event_id=first) as subscription:
        assert [e.data for e in await take(subscription, 1)] == ["after"]
    assert after


async def test_ids_are_ordered_per_topic(broker: Broker) -> None:
    ids = [await broker.publish("a" if i % 2 else "b", str(i)) for i in range(10)]
    for topic_ids in (ids[::2], ids[1::2]):
        assert sorted(topic_ids, key=id_key) == topic_ids


# --- resume ---------------------------------------------------------------------------------


async def test_resume_gets_exactly_the_missed_events_then_live_ones(broker: Broker) -> None:
    ids = await publish_all(broker, "t", [f"e{i}" for i in range(6)])
    subscription = broker.subscribe("t", last_event_id=ids[2])
    # Published after the client reconnected but before its stream started to read.
    late = await broker.publish("t", "late")
    async with subscription:
        missed = await take(subscription, 4)
        live = await broker.publish("t", "live")
        (after,) = await take(subscription, 1)
    assert [(e.id, e.data) for e in missed] == [
        (ids[3], "e3"), (ids[4], "e4"), (ids[5], "e5"), (late, "late")
    ]  # fmt: skip
    assert (after.id, after.data) == (live, "live")


async def test_resume_from_the_last_event_gets_only_live_ones(broker: Broker) -> None:
    ids = await publish_all(broker, "t", ["a", "b"])
    async with broker.subscribe("t", last_event_id=ids[-1]) as subscription:
        await start(subscription)
        await broker.publish("t", "c")
        assert [e.data for e in await take(subscription, 1)] == ["c"]


async def test_a_stream_of_several_topics_resumes_exactly_in_publish_order(broker: Broker) -> None:
    async with broker.subscribe(["b", "a"]) as subscription:
        await start(subscription)
        ids = [await broker.publish("a", "a1"), await broker.publish("b", "b1")]
        seen = await take(subscription, 2)
    assert [(e.id, e.data) for e in seen] == list(zip(ids, ["a1", "b1"], strict=True))
    await broker.publish("b", "b2")
    await broker.publish("c", "not subscribed")
    await broker.publish("a", "a2")
    async with broker.subscribe(["a", "b"], last_event_id=seen[-1].id) as subscription:
        resumed = await take(subscription, 2)
        await broker.publish("a", "a3")
        resumed += await take(subscription, 1)
    # One log: the order across topics is the order of publishing, on Redis too.
    assert [e.data for e in resumed] == ["b2", "a2", "a3"]
    assert all(e.event is None for e in resumed)


async def test_an_id_is_the_same_size_whatever_the_number_of_topics(broker: Broker) -> None:
    topics = [f"https://example.com/books/{i}" for i in range(2000)]
    async with broker.subscribe(topics) as many, broker.subscribe("x") as one:
        await start(many)
        await start(one)
        id = await broker.publish([topics[-1], "x"], "both")
        (event,) = await take(many, 1)
        (same,) = await take(one, 1)
    assert event.id == same.id == id and len(id) < 48  # "<ms>-<seq>", not a list of positions
    assert event is same  # one event object, one encoding, for every subscriber


# --- patterns and events of several topics ---------------------------------------------------


async def test_patterns_match_a_prefix_or_every_topic(broker: Broker) -> None:
    async with (
        broker.subscribe("chat.*") as chat,
        broker.subscribe("*") as every,
        broker.subscribe("chat.room") as room,
    ):
        for subscription in (chat, every, room):
            await start(subscription)
        await publish_all(broker, "chat.room", ["r"])
        await publish_all(broker, "chatter", ["no dot"])  # not under `chat.`
        await publish_all(broker, "chat.other.deep", ["d"])
        await publish_all(broker, "news", ["n"])
        await publish_all(broker, "chat.room", ["end"])
        assert [e.data for e in await take(chat, 3)] == ["r", "d", "end"]
        assert [e.data for e in await take(every, 5)] == ["r", "no dot", "d", "n", "end"]
        assert [e.data for e in await take(room, 2)] == ["r", "end"]


async def test_an_event_of_several_topics_comes_once_to_a_subscriber_of_several(
    broker: Broker,
) -> None:
    async with (
        broker.subscribe(["a", "b", "a.*", "*"]) as all_of_them,
        broker.subscribe("b") as b_only,
    ):
        await start(all_of_them)
        await start(b_only)
        id = await broker.publish(["a", "b", "a.x"], "one")
        await broker.publish("b", "two")
        events = await take(all_of_them, 2)
        (seen_by_b, _) = await take(b_only, 2)
    assert [e.data for e in events] == ["one", "two"]
    assert events[0].topics == ("a", "b", "a.x") and events[0].id == seen_by_b.id == id
    assert broker.metrics.delivered == 4


async def test_a_resume_with_patterns_and_events_of_several_topics_is_exact(
    make_broker: Any,
) -> None:
    async with make_broker(buffer=3) as broker:
        first = await broker.publish("x", "start")
        published = [
            await broker.publish(topics, data)
            for topics, data in [
                ("chat.a", "1"), ("news", "-"), (["news", "chat.b"], "2"), ("chat.a", "3"),
                (["chat.a", "chat.b"], "4"), ("other", "-"), ("chat.c", "5"),
            ]
        ]  # fmt: skip
        async with broker.subscribe(["chat.*", "chat.a"], last_event_id=first) as subscription:
            resumed = await take(subscription, 5)
    assert [e.data for e in resumed] == ["1", "2", "3", "4", "5"]
    assert [e.id for e in resumed] == [published[i] for i in (0, 2, 3, 4, 6)]


@pytest.mark.parametrize(
    ("topics", "error", "message"),
    [
        ([], ValueError, "at least one topic"),
        ("", ValueError, "must not be empty"),
        ("a\ud800", ValueError, "valid Unicode"),
        ([b"t"], TypeError, "must be a str"),
    ],
)
async def test_a_topic_that_cannot_be_stored_exactly_is_refused(
    broker: Broker, topics: Any, error: type[Exception], message: str
) -> None:
    async with broker.subscribe("*") as subscription:
        await start(subscription)
        with pytest.raises(error, match=message):
            await broker.publish(topics, "x")
        await broker.publish("t", "after")
        assert [e.data for e in await take(subscription, 1)] == ["after"]  # nothing stored


@pytest.mark.parametrize("selectors", [[], [""], ["a\udc00"]])
def test_a_selector_that_matches_nothing_exactly_is_refused(selectors: list[str]) -> None:
    with pytest.raises(ValueError):
        Broker().subscribe(selectors)


# --- events' own ids, private events, earliest, matchers ----------------------------------------


async def test_an_event_published_with_its_own_id_is_sent_and_resumed_by_it(
    make_broker: Any,
) -> None:
    async with make_broker(history=3) as broker, broker.subscribe("t") as live:
        await start(live)
        own = await broker.publish("t", {"data": "a", "id": "urn:uuid:1"})
        plain = await broker.publish("t", "b")
        assert own == "urn:uuid:1" and plain != own
        assert [(e.id, e.data) for e in await take(live, 2)] == [(own, "a"), (plain, "b")]
        assert live.stream_id == plain  # a position: where the stream stands in the log
        async with broker.subscribe("t", last_event_id="urn:uuid:1") as resumed:
            await resumed.start()
            assert resumed.resume == "exact"
            assert [e.data for e in await take(resumed, 1)] == ["b"]
        await publish_all(broker, "t", ["c", "d", "e"])  # urn:uuid:1 trimmed: forgotten too
        assert await broker.backend.find(own) is None
        async with broker.subscribe("t", last_event_id="urn:uuid:1") as resumed:
            await resumed.start()
            assert resumed.resume == "malformed"  # neither an own id kept nor a position


async def test_earliest_resumes_from_the_oldest_event_kept(make_broker: Any) -> None:
    async with make_broker(history=2) as broker:
        await publish_all(broker, "t", ["a", "b", "c"])
        async with broker.subscribe("t", last_event_id="earliest") as subscription:
            await subscription.start()
            assert subscription.resume == "exact"
            assert [e.data for e in await take(subscription, 2)] == ["b", "c"]


async def test_a_private_event_reaches_only_the_subscribers_authorized_for_a_topic(
    broker: Broker,
) -> None:
    async with (
        broker.subscribe("books.*") as anonymous,
        broker.subscribe("books.*", private=["users.7.*"]) as seven,
        broker.subscribe("books.1", private=["*"]) as admin,
    ):
        for subscription in (anonymous, seven, admin):
            await start(subscription)
        first = await broker.publish(["books.1", "users.7.books"], "for 7", private=True)
        await broker.publish("books.1", "public")
        assert [e.data for e in await take(anonymous, 1)] == ["public"]
        assert [e.data for e in await take(seven, 2)] == ["for 7", "public"]
        assert [e.data for e in await take(admin, 2)] == ["for 7", "public"]
    async with broker.subscribe("books.*", last_event_id="earliest") as resumed:
        assert [e.data for e in await take(resumed, 1)] == ["public"]  # and on resume
    async with broker.subscribe("books.*", first, private=["users.7.*"]) as resumed:
        assert [e.data for e in await take(resumed, 1)] == ["public"]  # after its own id


class EndsWith:
    """A matcher of topics (as the hub's URI templates are)."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def match(self, topic: str) -> bool:
        return topic.endswith(self.suffix)

    def __hash__(self) -> int:
        return hash(self.suffix)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndsWith) and other.suffix == self.suffix


async def test_a_matcher_selects_topics_live_and_on_resume(broker: Broker) -> None:
    first = await broker.publish("x", "start")
    async with broker.subscribe([EndsWith(".json"), "plain"]) as live:
        await start(live)
        await publish_all(broker, "a.json", ["1"])
        await publish_all(broker, "a.xml", ["no"])
        await publish_all(broker, "plain", ["2"])
        assert [e.data for e in await take(live, 2)] == ["1", "2"]
    async with broker.subscribe(EndsWith(".json"), last_event_id=first) as resumed:
        assert [e.data for e in await take(resumed, 1)] == ["1"]


async def test_leaving_the_broker_ends_a_stream_of_matchers_only(make_broker: Any) -> None:
    broker = make_broker()
    async with broker:
        subscription = broker.subscribe(EndsWith(".json"))
        await start(subscription)
    assert await take(subscription, 1) == []  # ended, not waiting for ever


async def test_without_a_reset_event_a_stream_goes_on_live_and_says_why(make_broker: Any) -> None:
    async with make_broker(history=1, reset_event=None) as broker:
        ids = await publish_all(broker, "t", ["a", "b", "c"])
        async with broker.subscribe("t", last_event_id=ids[0]) as subscription:
            await subscription.start()
            assert subscription.resume == "too-old"
            await broker.publish("t", "live")
            assert [e.data for e in await take(subscription, 1)] == ["live"]


# --- resume reads the history a page at a time: memory per subscriber bounded by `buffer` ----


class PageSizes:
    """Wraps `backend.history`: records the size of every page a resume reads."""

    def __init__(self, broker: Broker) -> None:
        self.sizes: list[int] = []
        self.history = broker.backend.history
        broker.backend.history = self  # type: ignore[method-assign]

    async def __call__(self, after: str, upto: str, limit: int) -> list[BrokerEvent]:
        page = await self.history(after, upto, limit)
        self.sizes.append(len(page))
        return page


async def test_a_long_resume_is_read_a_page_of_at_most_buffer_at_a_time(make_broker: Any) -> None:
    async with make_broker(history=1000, buffer=16) as broker:
        ids = await publish_all(broker, "t", [f"e{i}" for i in range(999)])
        pages = PageSizes(broker)
        async with broker.subscribe("t", last_event_id=ids[0]) as subscription:
            await start(subscription)
            held = [len(subscription._replay.page)]
            missed = []
            for _ in range(998):
                missed += await take(subscription, 1)
                replay = subscription._replay
                held.append(0 if replay is None else len(replay.page))
            live = await broker.publish("t", "live")
            (after,) = await take(subscription, 1)
    assert [e.id for e in missed] == ids[1:]
    assert (after.id, after.data) == (live, "live")
    assert max(pages.sizes) == 16 and sum(pages.sizes) == 998
    assert max(held) <= 16  # never more than one page of history held


async def test_a_several_topics_resume_over_many_pages_is_in_publish_order(
    make_broker: Any,
) -> None:
    async with make_broker(buffer=4) as broker:
        async with broker.subscribe(["a", "b"]) as subscription:
            await start(subscription)
            await broker.publish("a", "a0")
            (first,) = await take(subscription, 1)
        published = [
            (await broker.publish(t, f"{t}{i}"), f"{t}{i}") for i in range(1, 12) for t in "ba"
        ]
        pages = PageSizes(broker)
        async with broker.subscribe(["a", "b"], last_event_id=first.id) as subscription:
            resumed = await take(subscription, len(published))
    assert max(pages.sizes) <= 4  # pages of the log, of at most `buffer` events
    assert [(e.id, e.data) for e in resumed] == published


def redis_broker(server: RedisServer, **options: Any) -> Broker:
    """A broker on `server` with a key prefix of its own: tests that share a redis-server
    never see each other's events."""
    return Broker(server.url, prefix=f"t-{uuid.uuid4().hex[:8]}:", **options)


def count_xrange(broker: Broker) -> list[int]:
    """From now on, the number of entries of every XRANGE the Redis broker sends."""
    read: list[int] = []
    redis: Any = broker.backend.redis  # type: ignore[attr-defined]
    xrange = redis.xrange

    async def counting_xrange(*args: Any, **kwargs: Any) -> Any:
        entries = await xrange(*args, **kwargs)
        read.append(len(entries))
        return entries

    redis.xrange = counting_xrange
    return read


@asyncio_only
async def test_an_id_far_behind_reads_one_page_to_find_it_too_old(
    redis_server: RedisServer,
) -> None:
    async with redis_broker(redis_server, history=500, buffer=8) as broker:
        await publish_all(broker, "t", [f"e{i}" for i in range(600)])  # 100 trimmed
        read = count_xrange(broker)
        async with broker.subscribe("t", last_event_id="1-0") as subscription:
            (reset,) = await take(subscription, 1)
    assert reset_reason(reset) == "too-old"
    assert read == [8]  # one page, not the 500 entries kept


@asyncio_only
async def test_subscribers_resuming_from_the_same_id_share_the_pages(
    redis_server: RedisServer,
) -> None:
    async with redis_broker(redis_server, buffer=8) as broker:
        ids = await publish_all(broker, "t", [f"e{i}" for i in range(40)])
        streams = [broker.subscribe("t", last_event_id=ids[0]) for _ in range(5)]
        got: list[list[BrokerEvent]] = [[] for _ in streams]

        async def read(n: int) -> None:
            got[n] = await take(streams[n], 39)

        async with anyio.create_task_group() as tg:
            for n in range(len(streams)):
                tg.start_soon(read, n)
        for stream in streams:
            await stream.aclose()
    assert all([e.id for e in events] == ids[1:] for events in got)
    # The same event objects, so the same encoded bytes, held once for all five.
    assert all(a is b for events in got[1:] for a, b in zip(got[0], events, strict=True))


@asyncio_only
async def test_a_later_resume_from_the_same_id_reads_no_page_again(
    redis_server: RedisServer,
) -> None:
    async with redis_broker(redis_server, buffer=8) as broker:
        ids = await publish_all(broker, "t", [f"e{i}" for i in range(20)])  # 8 + 8 + 3
        read = count_xrange(broker)
        for _ in range(3):  # one after the other, as a storm's stragglers come
            async with broker.subscribe("t", last_event_id=ids[0]) as subscription:
                assert [e.id for e in await take(subscription, 19)] == ids[1:]
    assert read == [8, 8, 3]  # the short last page too is read once for all


async def test_an_id_older_than_the_history_gets_one_reset_then_live_events(
    make_broker: Any,
) -> None:
    async with make_broker(history=3) as broker:
        ids = await publish_all(broker, "t", [str(i) for i in range(6)])
        async with broker.subscribe("t", last_event_id=ids[1]) as subscription:
            (reset,) = await take(subscription, 1)
            await broker.publish("t", "live")
            (live,) = await take(subscription, 1)
    assert reset_reason(reset) == "too-old"
    assert reset.id == ids[-1]  # resuming from the reset continues from here
    assert live.data == "live"
    assert broker.metrics.resets == 1


async def test_the_oldest_id_still_covered_by_history_resumes_exactly(make_broker: Any) -> None:
    async with make_broker(history=3) as broker:
        ids = await publish_all(broker, "t", [str(i) for i in range(6)])
        async with broker.subscribe("t", last_event_id=ids[2]) as subscription:
            assert [e.data for e in await take(subscription, 3)] == ["3", "4", "5"]


async def test_an_id_older_than_max_age_gets_a_reset(make_broker: Any) -> None:
    async with make_broker(max_age=0.5) as broker:
        first = await broker.publish("t", "old")
        second = await broker.publish("t", "old too")
        async with broker.subscribe("t", last_event_id=first) as subscription:
            assert [e.id for e in await take(subscription, 1)] == [second]  # still kept
        # The age is measured on the backend's clock: poll until a publish (which trims
        # what is older than max_age) has dropped it, with a deadline.
        with anyio.fail_after(5):
            while True:
                await broker.publish("t", "new")
                async with broker.subscribe("t", last_event_id=first) as subscription:
                    (event,) = await take(subscription, 1)
                if event.event == "reset":
                    break
                await anyio.sleep(0.01)
    assert reset_reason(event) == "too-old"


@pytest.mark.parametrize(
    "last_event_id",
    [
        "nonsense",
        "",
        "1-2-3",
        "-1",
        " 1-0",
        "1-0\n",
        "\u0661-\u0660",  # Arabic-Indic digits: int() reads them, Redis does not
        "\uff11-\uff10",  # fullwidth digits
        f"{2**64}-0",  # past what a Redis stream id holds
        f"1-{2**64}",
    ],
)
async def test_a_malformed_id_gets_a_reset(broker: Broker, last_event_id: str) -> None:
    await broker.publish("t", "x")
    async with broker.subscribe("t", last_event_id=last_event_id) as subscription:
        (reset,) = await take(subscription, 1)
    assert reset_reason(reset) == "malformed"


async def test_a_real_id_written_in_other_digits_is_not_that_id(broker: Broker) -> None:
    first = await broker.publish("t", "x")
    await broker.publish("t", "y")
    other_digits = first.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    async with broker.subscribe("t", last_event_id=other_digits) as subscription:
        (reset,) = await take(subscription, 1)
    assert reset_reason(reset) == "malformed"


async def test_an_id_never_issued_gets_a_reset(broker: Broker) -> None:
    id = await broker.publish("t", "x")
    ms, seq = id_key(id)
    async with broker.subscribe("t", last_event_id=f"{ms + 10**6}-{seq}") as subscription:
        (reset,) = await take(subscription, 1)
    assert reset_reason(reset) == "unknown"


async def test_an_id_from_before_a_memory_broker_restarted_gets_a_reset() -> None:
    async with Broker() as broker:
        id = await broker.publish("t", "x")
    # A restarted broker is told apart by its start time in milliseconds: wait for the next.
    with anyio.fail_after(1):
        while time.time() * 1000 < id_key(id)[0] + 1:
            await anyio.sleep(0.001)
    async with Broker() as broker:
        await broker.publish("t", "y")
        async with broker.subscribe("t", last_event_id=id) as subscription:
            (reset,) = await take(subscription, 1)
    assert reset_reason(reset) == "unknown"


async def test_an_id_resumes_any_set_of_topics_and_patterns_exactly(broker: Broker) -> None:
    async with broker.subscribe(["a", "b"]) as subscription:
        await start(subscription)
        await broker.publish("a", "x")
        (event,) = await take(subscription, 1)
    await broker.publish("b", "b1")
    await broker.publish("c.1", "c1")
    await broker.publish(["a", "c.2"], "ac")
    # A hub-wide cursor: the same id resumes another selection, with nothing of `b`.
    async with broker.subscribe(["a", "c.*"], last_event_id=event.id) as subscription:
        resumed = await take(subscription, 2)
    assert [e.data for e in resumed] == ["c1", "ac"]


async def test_a_burst_from_one_publishing_loop_is_no_slow_consumer(make_broker: Any) -> None:
    async with make_broker(buffer=4) as broker, broker.subscribe("t") as subscription:
        await start(subscription)
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_all, broker, "t", [str(i) for i in range(40)])
            got = await take(subscription, 40)
    assert [e.data for e in got] == [str(i) for i in range(40)]
    assert broker.metrics.slow_consumer_disconnects == 0
    assert broker.metrics.delivered == 40


async def test_publish_from_another_thread(broker: Broker) -> None:
    async with broker.subscribe("t") as subscription:
        await start(subscription)
        id = await anyio.to_thread.run_sync(
            lambda: anyio.from_thread.run(broker.publish, "t", "from a thread")
        )
        (event,) = await take(subscription, 1)
    assert (event.id, event.data) == (id, "from a thread")


# --- slow consumers -------------------------------------------------------------------------


async def test_a_slow_consumer_is_disconnected_and_resumes_without_loss(make_broker: Any) -> None:
    async with make_broker(buffer=4) as broker:
        async with broker.subscribe("t") as subscription:
            (first,) = await read_after_publish(broker, subscription, "first")
            ids = await publish_all(broker, "t", [str(i) for i in range(20)])
            await wait_for(lambda: broker.metrics.slow_consumer_disconnects == 1)
            assert len(subscription._buffer) == 0  # its memory is released at once
            assert await take(subscription, 1) == []  # the stream ends cleanly
        async with broker.subscribe("t", last_event_id=first.id) as subscription:
            resumed = await take(subscription, 20)
    assert [e.id for e in resumed] == ids


async def test_a_slow_consumer_that_never_reads_again_loses_its_connection(
    make_broker: Any,
) -> None:
    # The client stops reading: the stream is blocked in a send for as long as it does not
    # read, with no send_timeout. Disconnected as a slow consumer, its response ends anyway.
    client = StuckClient()
    async with make_broker(buffer=2) as broker:
        app = app_for(broker)
        done = anyio.Event()

        async def serve() -> None:
            await app(http_scope(path="/events"), client.receive, client.send)
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await wait_subscribers(broker, 1)
            await publish_all(broker, "t", [str(i) for i in range(6)])
            with anyio.fail_after(5):
                await done.wait()
    assert broker.metrics.slow_consumer_disconnects == 1
    assert broker.metrics.subscribers == 0
    (blocked,) = client.blocked  # the one send it never read
    assert b"data: 0\r\n" in blocked["body"]


async def test_drop_oldest_sends_a_reset_then_the_newest_events(make_broker: Any) -> None:
    broker = make_broker(buffer=3, slow_consumer="drop_oldest")
    async with broker, broker.subscribe("t") as subscription:
        await read_after_publish(broker, subscription, "first")
        await publish_all(broker, "t", [str(i) for i in range(10)])
        await wait_for(lambda: broker.metrics.slow_consumer_drops == 7)
        assert len(subscription._buffer) == 3
        reset, *rest = await take(subscription, 4)
    assert reset_reason(reset) == "slow-consumer"
    assert [e.data for e in rest] == ["7", "8", "9"]


# --- the response one-liner and the lifespan -------------------------------------------------


def app_for(broker: Broker) -> Starlette:
    async def events(request: Request) -> Any:
        return broker.response(request, "t", ping=0)

    return Starlette(routes=[Route("/events", events)], lifespan=broker.lifespan)


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"last-event-id": 0}, "", ["2", "3"]),
        ({}, "lastEventId={0}", ["2", "3"]),
        ({"last-event-id": 1}, "lastEventId={0}", ["3"]),  # the browser's newer header wins
    ],
)
async def test_response_resumes_from_the_header_or_the_query(
    broker: Broker, headers: dict[str, int], query: str, expected: list[str]
) -> None:
    ids = await publish_all(broker, "t", ["1", "2", "3"])
    raw_headers = [(k.encode(), ids[v].encode()) for k, v in headers.items()]
    app = Starlette(routes=[Route("/events", lambda r: broker.response(r, "t", ping=0))])
    scope = {"query_string": query.format(*ids).encode()}
    async with asgi_call(app, path="/events", headers=raw_headers, extra_scope=scope) as call:
        await call.wait_until(lambda c: c.body.count(b"\r\n\r\n") == len(expected))
    assert [line for line in call.body.split(b"\r\n") if line.startswith(b"data")] == [
        f"data: {x}".encode() for x in expected
    ]


async def test_a_response_reads_a_last_event_id_that_is_not_ascii_as_utf8(broker: Broker) -> None:
    await broker.publish("t", {"data": "a", "id": "urn:révision-1"})
    await broker.publish("t", "b")
    app = Starlette(routes=[Route("/events", lambda r: broker.response(r, "t", ping=0))])
    headers = [(b"last-event-id", "urn:révision-1".encode())]  # as a browser sends it
    async with asgi_call(app, path="/events", headers=headers) as call:
        await call.wait_until(lambda c: b"data: b" in c.body)
    assert b"data: a" not in call.body and b"event: reset" not in call.body


async def test_response_stream_closes_its_subscription_when_the_client_leaves(
    broker: Broker,
) -> None:
    app = Starlette(routes=[Route("/events", lambda r: broker.response(r, "t", ping=0))])
    async with asgi_call(app, path="/events") as call:
        await wait_subscribers(broker, 1)
        await broker.publish("t", "x")
        await call.wait_until(lambda c: b"data: x" in c.body)
    assert broker.metrics.subscribers == 0
    assert not broker._routes and broker._watching is None


async def test_lifespan_starts_and_stops_the_broker_and_ends_open_streams(
    make_broker: Any,
) -> None:
    broker = make_broker()
    app = app_for(broker)
    subscription = broker.subscribe("t")
    async with anyio.create_task_group() as tg, app.router.lifespan_context(app):
        tg.start_soon(take, subscription, 10)
        await wait_subscribers(broker, 1)
        # leaving the lifespan ended every subscription: the reader above returns
    assert subscription._closed


async def test_a_stream_of_a_stopped_broker_ends_and_of_a_new_one_raises(make_broker: Any) -> None:
    broker = make_broker()
    with pytest.raises(RuntimeError, match="not started"):
        await take(broker.subscribe("t"), 1)
    async with broker:
        pass
    assert await take(broker.subscribe("t"), 1) == []  # ends: never added to stopped routes
    assert not broker._routes


async def test_an_idempotency_key_names_one_publish_to_its_topics(broker: Broker) -> None:
    first = await broker.publish("a", "x", idempotency_key="k")
    other = await broker.publish("b", "y", idempotency_key="k")  # another topic: stored
    assert other != first
    assert await broker.publish("a", "x", idempotency_key="k") == first


@pytest.mark.parametrize("max_age", [0, -1, float("nan")])
def test_a_max_age_that_keeps_nothing_is_refused(max_age: float) -> None:
    with pytest.raises(ValueError, match="max_age"):
        Broker(max_age=max_age)


@pytest.mark.parametrize("prefix", ["", "{x}", "a}"])
def test_a_redis_prefix_that_is_no_hash_tag_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Broker("redis://127.0.0.1:1/0", prefix=prefix)


@asyncio_only
async def test_publish_before_start_raises() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await Broker().publish("t", "x")


@pytest.mark.parametrize("url", ["http://x", "postgres://x", "memory:/"])
def test_an_unsupported_url_raises(url: str) -> None:
    with pytest.raises(ValueError, match=r"memory://, redis:// or redis\+cluster://"):
        Broker(url)


# --- Redis only -------------------------------------------------------------------------------


@asyncio_only
@pytest.mark.parametrize("max_age", [1e10, float("inf")])
async def test_a_max_age_past_the_epoch_keeps_everything(
    redis_server: RedisServer, max_age: float
) -> None:
    async with redis_broker(redis_server, max_age=max_age) as broker:
        ids = await publish_all(broker, "t", ["a", "b"])  # neither raises
        async with broker.subscribe("t", last_event_id=ids[0]) as subscription:
            assert [e.data for e in await take(subscription, 1)] == ["b"]


@asyncio_only
async def test_a_resume_past_this_process_reader_with_drop_oldest_skips_silently(
    redis_server: RedisServer,
) -> None:
    broker = redis_broker(redis_server, buffer=2, slow_consumer="drop_oldest")
    async with broker:
        backend: Any = broker.backend
        # This process's reader lags: it holds what it read until released.
        release, xread = anyio.Event(), backend.redis.xread

        async def lagging_xread(*args: Any, **kwargs: Any) -> Any:
            reply = await xread(*args, **kwargs)
            await release.wait()
            return reply

        backend.redis.xread = lagging_xread
        async with broker.subscribe("other") as watching:
            await start(watching)
            ids = await publish_all(broker, "t", [f"e{i}" for i in range(6)])  # seen elsewhere
            async with broker.subscribe("t", last_event_id=ids[-1]) as resumed:
                await start(resumed)
                assert resumed._skip is not None  # this process's reader has not read them
                release.set()
                await wait_for(lambda: broker._cursor == ids[-1])
                live = await broker.publish("t", "live")
                (event,) = await take(resumed, 1)
    # No reset for events the client had: they were never due here.
    assert (event.id, event.data) == (live, "live")


@asyncio_only
async def test_redis_broker_on_trio_raises_a_clear_error(redis_server: RedisServer) -> None:
    async def main() -> None:
        async with Broker(redis_server.url):
            pass

    with pytest.raises(RuntimeError, match="asyncio only"):
        await anyio.to_thread.run_sync(lambda: anyio.run(main, backend="trio"))


@asyncio_only
@pytest.mark.parametrize("last_event_id", [f"{2**64}-0", "1-99999999999999999999"])
async def test_an_id_redis_cannot_hold_is_a_reset_over_http_not_a_500(
    redis_server: RedisServer, last_event_id: str
) -> None:
    async with redis_broker(redis_server) as broker:
        await broker.publish("t", "x")

        async def events(request: Request) -> Any:
            return broker.response(request, "t", ping=0)

        app = Starlette(routes=[Route("/events", events)])
        headers = [(b"last-event-id", last_event_id.encode())]
        async with asgi_call(app, path="/events", headers=headers) as call:
            await call.wait_chunks(1)
    assert call.exception is None
    assert b"event: reset" in call.body and b'"reason":"malformed"' in call.body


@asyncio_only
async def test_a_backend_error_on_subscribe_ends_the_stream_cleanly(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The log's key holds a string, not a stream: Redis answers WRONGTYPE.
    async with redis_broker(redis_server) as broker:
        backend: Any = broker.backend
        await backend.redis.set(backend.log, "a string")

        async def events(request: Request) -> Any:
            return broker.response(request, "t", ping=0)

        app = Starlette(routes=[Route("/events", events)])
        async with asgi_call(app, path="/events") as call:
            await call.wait_until(lambda c: c.complete)
    assert call.exception is None
    assert call.start["status"] == 200
    assert "could not start" in caplog.text


@asyncio_only
async def test_publish_while_redis_is_down_raises_and_claims_nothing(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    async with Broker(server.url, socket_connect_timeout=1) as broker:
        await broker.publish("t", "stored")
        server.kill()
        # A connection Redis closed an instant ago may not have said so yet: the event was
        # sent, and whether it was stored is unknown. Either way it is a BrokerUnavailableError.
        with pytest.raises(BrokerUnavailableError):
            await broker.publish("t", "lost")
        # Redis down for good: nothing can be sent, so nothing was stored.
        with pytest.raises(BrokerUnavailableError, match="not stored") as info:
            await broker.publish("t", "lost")
    assert info.value.stored is False
    assert type(info.value) is BrokerUnavailableError
    assert broker.metrics.published == 1


async def xlen(server: RedisServer, key: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.from_url(server.url)
    try:
        return int(await client.xlen(key))
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def behind_a_proxy(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[RedisProxy, Broker, Subscription, str]]:
    """A broker that reaches Redis through a proxy that can lose replies, and a subscriber
    on a broker that reaches it directly; and the key prefix of both."""
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    async with (
        RedisProxy(redis_server.port) as proxy,
        Broker(proxy.url, prefix=prefix) as broker,
        Broker(redis_server.url, prefix=prefix) as direct,
        direct.subscribe("t") as subscription,
    ):
        await start(subscription)
        yield proxy, broker, subscription, prefix


@asyncio_only
async def test_a_reply_lost_to_a_dropped_connection_is_retried_without_a_duplicate(
    redis_server: RedisServer,
) -> None:
    async with behind_a_proxy(redis_server) as (proxy, broker, subscription, prefix):
        proxy.lose_reply_to(b"EVALSHA")
        id = await broker.publish("t", "once")  # stored, its reply lost, tried again: same id
        await broker.publish("t", "next")
        events = await take(subscription, 2)
    assert proxy.lost  # a reply really was thrown away
    assert (events[0].id, events[0].data) == (id, "once")
    assert [e.data for e in events] == ["once", "next"]
    assert await xlen(redis_server, "{" + prefix + "}log") == 2


@asyncio_only
async def test_redis_gone_between_the_write_and_the_reply_is_an_unknown_outcome(
    redis_server: RedisServer,
) -> None:
    # Redis stores the event, then "dies" before answering, and stays down for the retry.
    async with behind_a_proxy(redis_server) as (proxy, broker, subscription, prefix):
        proxy.lose_reply_to(b"EVALSHA", then_refuse=True)  # the retry finds Redis down
        with pytest.raises(PublishOutcomeUnknownError, match="may have been stored") as info:
            await broker.publish("t", "maybe", idempotency_key="order-17")
        assert info.value.stored is None
        assert isinstance(info.value, BrokerUnavailableError)  # a 503 handler catches it
        (delivered,) = await take(subscription, 1)  # it was stored, and delivered
        # The publisher retries with its key once Redis is back: stored once, same id.
        proxy.refuse = False
        again = await broker.publish("t", "maybe", idempotency_key="order-17")
        await broker.publish("t", "after")
        events = await take(subscription, 1)
    assert again == delivered.id
    assert [e.data for e in events] == ["after"]
    assert await xlen(redis_server, "{" + prefix + "}log") == 2


async def test_an_idempotency_key_stores_an_event_once(broker: Broker) -> None:
    async with broker.subscribe("t") as subscription:
        await start(subscription)
        first = await broker.publish("t", "a", idempotency_key="k1")
        again = await broker.publish("t", "a", idempotency_key="k1")
        other = await broker.publish("t", "b", idempotency_key="k2")
        events = await take(subscription, 2)
    assert first == again != other
    assert [(e.id, e.data) for e in events] == [(first, "a"), (other, "b")]


@asyncio_only
async def test_redis_killed_and_restarted_mid_stream_loses_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        broker, publisher = Broker(server.url), Broker(server.url)
        async with broker, publisher, broker.subscribe("t") as subscription:
            await start(subscription)
            before = await publish_all(publisher, "t", ["1", "2"])
            got = await take(subscription, 2)
            server.kill()
            server.start()  # same port, same append-only file
            after = await publish_all(publisher, "t", ["3", "4"])
            got += await take(subscription, 2, timeout=15)
        assert [e.id for e in got] == before + after
    finally:
        server.kill()


# --- helpers ----------------------------------------------------------------------------------


def id_key(id: str) -> tuple[int, int]:
    ms, seq = id.split("-")
    return int(ms), int(seq)


async def start(subscription: Subscription) -> None:
    """Attach the subscription now (it otherwise attaches at its first read)."""
    if not subscription._started:
        await subscription._start()


async def read_after_publish(
    broker: Broker, subscription: Subscription, data: str
) -> list[BrokerEvent]:
    await start(subscription)
    await broker.publish(subscription.topics[0], data)
    return await take(subscription, 1)


async def wait_for(condition: Any, timeout: float = 5) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)  # polls in-process state with a deadline


async def wait_subscribers(broker: Broker, n: int) -> None:
    await wait_for(lambda: broker.metrics.subscribers == n and (
        broker._watching is None or broker._watching.is_set()
    ))  # fmt: skip


async def test_a_backend_object_can_be_given(backends: tuple[str, str]) -> None:
    from sse_starlette.broker.memory import MemoryBackend

    if backends[0] != "memory":
        pytest.skip("one backend object is enough")
    backend = MemoryBackend(history=2, max_age=None, sep="\n")
    async with Broker(backend=backend) as broker:
        assert broker.backend is backend
        ids = await publish_all(broker, "t", ["a", "b", "c", "d"])
        assert await broker.backend.health() is None
        async with broker.subscribe("t", last_event_id=ids[0]) as subscription:
            (reset,) = await take(subscription, 1)  # history=2 of the object, not 1000
    assert reset_reason(reset) == "too-old"


@asyncio_only
async def test_health_says_what_is_wrong(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    async with Broker(server.url, socket_connect_timeout=1) as broker:
        assert await broker.backend.health() is None
        server.kill()
        problem = await broker.backend.health()
    assert problem is not None and problem.startswith("Redis:")


# --- found by review: closing mid-resume, stale shared pages, key names, refusals, zeros -----


@pytest.mark.parametrize("history", [1000, 3], ids=["pages", "too-old"])
async def test_a_subscription_closed_while_it_reads_history_just_ends(
    make_broker: Any, history: int
) -> None:
    async with make_broker(buffer=4, history=history) as broker:
        ids = await publish_all(broker, "t", [f"e{i}" for i in range(10)])
        reading, release = anyio.Event(), anyio.Event()
        read_history = broker.backend.history

        async def slow_history(*args: Any) -> list[BrokerEvent]:
            reading.set()
            await release.wait()
            return await read_history(*args)  # type: ignore[no-any-return]

        broker.backend.history = slow_history
        subscription = broker.subscribe("t", last_event_id=ids[0])
        got: list[BrokerEvent] = []

        async def read() -> None:
            got.extend(await take(subscription, 9))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await reading.wait()
            await subscription.aclose()  # as the broker's shutdown or a drop does
            release.set()
    assert got == []  # no reset, no history: the iteration ended


@asyncio_only
async def test_a_stale_short_page_of_another_subscriber_is_read_again(
    redis_server: RedisServer,
) -> None:
    async with redis_broker(redis_server) as broker:
        ids = await publish_all(broker, "t", ["e0", "e1", "e2"])
        backend: Any = broker.backend
        # Another subscriber's read of this page, made before e2 was stored.
        stale = asyncio.get_running_loop().create_future()
        stale.set_result((await backend._page(ids[0], 8))[1][:1])
        backend.pages[(ids[0], 8)] = stale
        page = await backend.history(ids[0], ids[2], 8)
    assert [e.data for e in page] == ["e1", "e2"]


@asyncio_only
async def test_idempotency_keys_of_different_topics_never_meet(redis_server: RedisServer) -> None:
    async with redis_broker(redis_server) as broker:
        await broker.publish("a\nb", "x", idempotency_key="k")
        await broker.publish("a", "y", idempotency_key="b\nk")  # a name "a\nb" + "k" made
        await broker.publish("idempotency:a", "z", idempotency_key="k")
        await broker.publish(["a", "b"], "w", idempotency_key="k")
        await broker.publish(["a,b"], "v", idempotency_key="k")
    assert await xlen(redis_server, broker.backend.log) == 5  # type: ignore[attr-defined]


@asyncio_only
async def test_a_write_redis_refuses_is_not_stored(tmp_path: Path) -> None:
    import redis.asyncio as aioredis

    server = RedisServer(tmp_path)
    server.start()
    try:
        async with Broker(server.url) as broker:
            await broker.publish("t", "before")
            admin = aioredis.from_url(server.url)
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")
            with pytest.raises(BrokerUnavailableError, match="refused") as info:
                await broker.publish("t", "x" * 1000)
            await admin.config_set("maxmemory", "0")
            await admin.aclose()
        assert info.value.stored is False
        assert await xlen(server, "{sse:}log") == 1
    finally:
        server.kill()


async def test_an_id_with_leading_zeros_resumes_as_that_id(broker: Broker) -> None:
    ids = await publish_all(broker, "t", ["a", "b"])
    ms, seq = ids[0].split("-")
    async with broker.subscribe("t", last_event_id=f"0{ms}-000{seq}") as subscription:
        (event,) = await take(subscription, 1)
    assert (event.id, event.data) == (ids[1], "b")


async def test_drop_oldest_during_a_replay_resets_after_the_history(make_broker: Any) -> None:
    broker = make_broker(buffer=4, slow_consumer="drop_oldest")
    async with broker:
        ids = await publish_all(broker, "t", [f"h{i}" for i in range(20)])
        async with broker.subscribe("t", last_event_id=ids[0]) as subscription:
            (first,) = await take(subscription, 1)  # replaying now
            await publish_all(broker, "t", [f"l{i}" for i in range(6)])  # 2 live dropped
            events = [first, *await take(subscription, 18 + 1 + 4)]
    data = [e.data if e.event != "reset" else "RESET" for e in events]
    assert data == [f"h{i}" for i in range(1, 20)] + ["RESET", "l2", "l3", "l4", "l5"]
    positions = [id_key(e.id) for e in events]
    assert positions == sorted(positions)  # ids never go back


@asyncio_only
async def test_redis_with_an_acl_user_and_a_password(tmp_path: Path) -> None:
    # A user allowed what the broker needs, and no default user: every connection the broker
    # opens (reader, publish, resume) authenticates from the URL.
    server = RedisServer(
        tmp_path, "--user", "default", "off", "--user", "sse", "on", ">s3cret", "~*", "+@all"
    )
    server.start()
    url = f"redis://sse:s3cret@127.0.0.1:{server.port}/0"
    try:
        async with Broker(url) as broker, broker.subscribe("t") as subscription:
            await start(subscription)
            ids = await publish_all(broker, "t", ["a", "b"])
            assert [e.id for e in await take(subscription, 2)] == ids
            async with broker.subscribe("t", last_event_id=ids[0]) as resumed:
                assert [e.data for e in await take(resumed, 1)] == ["b"]
        with pytest.raises(BrokerUnavailableError, match="not stored"):
            async with Broker(f"redis://sse:wrong@127.0.0.1:{server.port}/0") as broker:
                await broker.publish("t", "x")
    finally:
        server.kill()
