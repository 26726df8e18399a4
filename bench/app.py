"""The app both packages serve in the quick benchmark (run with cwd=bench/, so that
`import sse_starlette` finds whichever package the interpreter's virtualenv holds)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import sse_starlette
from sse_starlette import EventSourceResponse

print("sse_starlette from", sse_starlette.__file__, flush=True)


async def events(request: Request) -> EventSourceResponse:
    n = int(request.query_params.get("n", "0"))

    async def gen() -> AsyncIterator[Any]:
        if n:
            for i in range(n):
                yield {"data": "hello world", "id": str(i)}
        else:
            await asyncio.Event().wait()
            yield "never"

    return EventSourceResponse(gen())


async def tasks(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(asyncio.all_tasks())))


app = Starlette(routes=[Route("/events", events), Route("/tasks", tasks)])
