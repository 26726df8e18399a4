"""Every Python snippet in the README and docs/ runs, and the apps it shows stream what it says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_starlette.testing import SSETestClient

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
# docs/<topic>.md too; a snippet that is a pytest test module (it imports pytest) is run by
# the tests of the module it documents instead.
DOC_SNIPPETS = [
    pytest.param(snippet, id=f"{page.name}:{n}")
    for page in sorted((ROOT / "docs").glob("*.md"))
    for n, snippet in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
    if "import pytest" not in snippet
]


def run(snippet: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(snippet, "README.md", "exec"), namespace)
    return namespace


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.split("\n", 1)[0][:40])
def test_snippet_runs(snippet: str) -> None:
    run(snippet)


@pytest.mark.parametrize("snippet", DOC_SNIPPETS)
def test_docs_snippet_runs(snippet: str) -> None:
    run(snippet)


@pytest.mark.anyio
async def test_quick_start_app_streams_numbered_events() -> None:
    quick_start = next(s for s in SNIPPETS if "Starlette(routes" in s)
    app = run(quick_start.replace("anyio.sleep(1)", "anyio.sleep(0)"))["app"]
    async with SSETestClient(app) as client, client.stream("/events") as stream:
        await stream.read_to_end()
    assert stream.complete
    assert stream.raw.startswith(b"id: 0\r\ndata: Event 0\r\n\r\nid: 1\r\ndata: Event 1\r\n\r\n")
    assert b"data: Event 9" in stream.raw


@pytest.mark.anyio
async def test_memory_channel_snippet_streams_every_item() -> None:
    snippet = next(s for s in SNIPPETS if "data_sender_callable" in s)
    endpoint = run(snippet)["channel_endpoint"]
    response = await endpoint(None)
    async with SSETestClient(response) as client, client.stream() as stream:
        await stream.read_to_end()
    assert stream.complete
    assert stream.raw == b"".join(f"data: Item {i}\r\n\r\n".encode() for i in range(10))


@pytest.mark.anyio
async def test_broker_snippet_streams_what_is_published() -> None:
    namespace = run(next(s for s in SNIPPETS if "broker.response" in s))
    app, broker = namespace["app"], namespace["broker"]
    async with SSETestClient(app) as client, client.stream("/events") as stream:
        with anyio.fail_after(5):
            while broker.metrics.subscribers != 1:  # attached: it gets what is published next
                await anyio.sleep(0.005)
        published = await client.request("POST", "/publish", content=b"hello")
        (event,) = await stream.take(1)
    assert (event.event, event.data, event.id) == ("headline", "hello", published.json()["id"])
