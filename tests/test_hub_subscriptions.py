"""Active subscriptions (draft-07): subscription events and the subscriptions API, in one
process and across processes on one Redis."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote_plus

import pytest

from sse_starlette.broker import Broker
from tests.redis_server import RedisServer
from tests.test_hub import (
    BOOKS,
    PUBLISHER,
    bearer,
    call,
    datas,
    redis_server,  # noqa: F401 (a fixture)
    running_hub,
    subscribe,
    subscriber,
    token,
)

pytestmark = pytest.mark.anyio

BASE = "/.well-known/mercure/subscriptions"
WATCHER = subscriber(BASE + "{/topic}{/subscriber}", BASE, BASE + "{/topic}")


async def api(app: Any, path: str = BASE, auth: str | None = WATCHER) -> Any:
    return await call(app, path=path, headers=bearer(auth) if auth else {})


async def test_a_stream_is_announced_when_it_opens_and_when_it_closes() -> None:
    watching = BASE + "{/topic}{/subscriber}"
    async with (
        running_hub(subscriptions=True) as app,
        subscribe(app, watching, headers=bearer(WATCHER)) as w,
    ):
        # The watcher's own subscription is announced first: it matches its selector.
        (own,) = [json.loads(d) for d in datas(await w.take(1))]
        payload_token = token({"subscribe": ["nothing"], "payload": {"user": "ada"}})
        async with subscribe(app, BOOKS, headers=bearer(payload_token)):
            opened = json.loads(datas(await w.take(2))[1])
        closed = json.loads(datas(await w.take(3))[2])
    assert own["topic"] == watching
    subscriber_id = opened["subscriber"]
    assert subscriber_id.startswith("urn:uuid:")
    assert opened == {
        "@context": "https://mercure.rocks/",
        "id": f"{BASE}/{quote_plus(BOOKS, safe='')}/{quote_plus(subscriber_id, safe='')}",
        "type": "Subscription",
        "subscriber": subscriber_id,
        "topic": BOOKS,
        "active": True,
        "payload": {"user": "ada"},
    }
    assert closed == {**opened, "active": False}


async def test_subscription_events_are_private() -> None:
    form = {"content-type": "application/x-www-form-urlencoded", **bearer(PUBLISHER)}
    async with (
        running_hub(subscriptions=True) as app,
        subscribe(app, "*") as anonymous,
        subscribe(app, "t"),
    ):
        reply = await call(app, "POST", body=b"topic=t&data=x", headers=form)
        assert reply.status == 200
        assert datas(await anonymous.take(1)) == ["x"]  # not the subscription event before


async def test_the_api_lists_the_active_subscriptions_of_all_or_one_selector_or_one() -> None:
    async with running_hub(subscriptions=True) as app:
        assert (await api(app)).status == 200
        async with subscribe(app, BOOKS, "t"):
            everything = json.loads((await api(app)).body)
            assert everything["type"] == "Subscriptions" and everything["id"] == BASE
            assert sorted(s["topic"] for s in everything["subscriptions"]) == [BOOKS, "t"]
            assert everything["lastEventID"] != "earliest"  # the open announced itself
            of_books = await api(app, f"{BASE}/{quote_plus(BOOKS, safe='')}")
            assert of_books.headers["content-type"] == "application/ld+json"
            (one,) = json.loads(of_books.body)["subscriptions"]
            single = await api(app, one["id"])
            assert json.loads(single.body) == {
                "@context": "https://mercure.rocks/", **one,
                "lastEventID": json.loads(single.body)["lastEventID"],
            }  # fmt: skip
            missing = f"{BASE}/{quote_plus(BOOKS, safe='')}/urn%3Auuid%3Anobody"
            assert (await api(app, missing)).status == 404
        assert json.loads((await api(app)).body)["subscriptions"] == []  # closed: gone


@pytest.mark.parametrize(("auth", "status"), [(None, 401), (subscriber("other"), 403)])
async def test_the_api_needs_a_token_that_allows_its_url(auth: str | None, status: int) -> None:
    async with running_hub(subscriptions=True) as app:
        assert (await api(app, auth=auth)).status == status


async def test_without_the_setting_there_is_no_api() -> None:
    async with running_hub() as app:
        assert (await api(app)).status == 404


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_processes_on_one_redis_list_each_others_subscriptions(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    async with (
        running_hub(Broker(redis_server.url, prefix=prefix), subscriptions=True) as one,
        running_hub(Broker(redis_server.url, prefix=prefix), subscriptions=True) as other,
        subscribe(one, BOOKS),
    ):
        (listed,) = json.loads((await api(other)).body)["subscriptions"]
        assert listed["topic"] == BOOKS
        # The first process dies without a word: once its liveness key is gone, so are its
        # subscriptions, from every process's list.
        presence: Any = one.state.hub.presence
        await presence.redis.delete(presence.alive + presence.process)
        assert json.loads((await api(other)).body)["subscriptions"] == []
