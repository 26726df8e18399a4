"""Call an ASGI app in-process and watch its messages as they are sent (no buffering)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Scope


class ASGICall:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.exception: BaseException | None = None
        self.done = anyio.Event()
        self._disconnect = anyio.Event()
        self._changed = anyio.Event()
        self._request_sent = False

    async def receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def disconnect(self) -> None:
        self._disconnect.set()

    @property
    def start(self) -> Message:
        return self.messages[0]

    @property
    def chunks(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"].endswith("http.response.body")]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def complete(self) -> bool:
        """The response ended with its final `more_body: False` message."""
        last = self.messages[-1] if self.messages else {}
        return last.get("type", "").endswith("http.response.body") and not last.get("more_body")

    async def wait_until(self, predicate: Callable[[ASGICall], bool], timeout: float = 5) -> None:
        with anyio.fail_after(timeout):
            while not predicate(self):
                if self.done.is_set():
                    raise AssertionError(f"app finished first; messages: {self.messages}")
                await self._changed.wait()  # also set when the app returns

    async def wait_chunks(self, n: int, timeout: float = 5) -> list[bytes]:
        await self.wait_until(lambda c: len(c.chunks) >= n, timeout)
        return self.chunks


def http_scope(
    *,
    method: str = "GET",
    path: str = "/",
    http_version: str = "1.1",
    scope_type: str = "http",
    headers: list[tuple[bytes, bytes]] | None = None,
    extra_scope: dict[str, Any] | None = None,
) -> Scope:
    """The scope of one request, as a server would pass it."""
    return {
        "type": scope_type,
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        **(extra_scope or {}),
    }


@contextlib.asynccontextmanager
async def asgi_call(app: ASGIApp, **scope: Any) -> AsyncIterator[ASGICall]:
    """Run `app` for one request (`scope`: `http_scope`'s arguments); on exit, disconnect
    the client and wait for the app to end."""
    call = ASGICall()

    async def run() -> None:
        try:
            await app(http_scope(**scope), call.receive, call.send)
        except BaseException as exc:  # recorded for the test to assert on
            call.exception = exc
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
        finally:
            call.done.set()
            call._notify()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        yield call
        call.disconnect()
        with anyio.fail_after(5):
            await call.done.wait()


class StuckClient:
    """Stays connected but stops reading: every body send blocks forever."""

    def __init__(self) -> None:
        self.blocked: list[Message] = []
        self._request_sent = False

    async def receive(self) -> Message:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.blocked.append(message)
            await anyio.sleep_forever()
