"""Broadcasting: a message POSTed once reaches every connected client.

Each client that opens `GET /events` gets its own bounded queue (an anyio memory stream);
`POST /messages` puts the message in every queue. Leaving (closing the tab) unsubscribes.

    python examples/02_message_broadcasting.py [--port N]    # --port 0 picks a free port

then open the printed address in two browser tabs and send a message from one of them, or:

    curl -N http://127.0.0.1:8000/events
    curl -X POST http://127.0.0.1:8000/messages -H 'Content-Type: application/json' \\
         -d '{"text": "hello"}'
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from sse_starlette import EventSourceResponse, JSONServerSentEvent, ServerSentEvent

QUEUE_SIZE = 32
RETRY_MS = 2000

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>sse_starlette broadcast</title>
<h1>Broadcast</h1>
<p>Open this page in a second tab; a message sent from either tab appears in both.</p>
<p id="state">connecting…</p>
<form id="form">
  <input id="text" autocomplete="off" autofocus required>
  <button>Send</button>
</form>
<ul id="messages"></ul>
<script>
const state = document.getElementById("state");
const list = document.getElementById("messages");
const source = new EventSource("/events");
source.onopen = () => { state.textContent = "connected"; };
source.onerror = () => { state.textContent = "reconnecting…"; };
source.addEventListener("message", (event) => {
  const item = document.createElement("li");
  item.textContent = `#${event.lastEventId} ${JSON.parse(event.data).text}`;
  list.append(item);
});
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  await fetch("/messages", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({text: input.value}),
  });
  input.value = "";
});
</script>
"""


class Message(BaseModel):
    text: str


class Broadcast:
    """The connected clients, each with its own bounded queue of encoded events."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._queues: set[MemoryObjectSendStream[bytes]] = set()
        self._ids = itertools.count(1)

    @property
    def subscriber_count(self) -> int:
        return len(self._queues)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[bytes]]:
        send, receive = anyio.create_memory_object_stream[bytes](self._queue_size)
        self._queues.add(send)
        try:
            with send, receive:
                yield receive
        finally:
            self._queues.discard(send)

    def publish(self, message: Message) -> int:
        """Queue `message` for every client; return how many clients it was queued for."""
        event = JSONServerSentEvent(message.model_dump(), event="message", id=str(next(self._ids)))
        # Encoded once here rather than once per client: bytes are sent as they are.
        data = event.encode()
        delivered = 0
        for queue in self._queues:
            try:
                queue.send_nowait(data)
                delivered += 1
            except anyio.WouldBlock:
                # A client that stopped reading must not hold up the others: it misses this
                # message (a gap in the ids shows it) instead of blocking every POST.
                pass
        return delivered


async def message_stream(broadcast: Broadcast) -> AsyncIterator[bytes | ServerSentEvent]:
    with broadcast.subscribe() as queue:
        # Sent once subscribed, so a client knows from the first event on that no message
        # will be missed; `retry` sets how soon a browser reconnects after a drop.
        yield ServerSentEvent(comment="subscribed", retry=RETRY_MS)
        async for data in queue:
            yield data


broadcast = Broadcast()
app = FastAPI(title="Broadcast over Server-Sent Events")


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE


@app.get("/events")
async def events() -> EventSourceResponse:
    return EventSourceResponse(message_stream(broadcast))


@app.post("/messages")
async def post_message(message: Message) -> dict[str, int]:
    return {"delivered": broadcast.publish(message)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks one")
    args = parser.parse_args()
    # Bound before the address is printed: it already accepts connections when printed,
    # and with --port 0 it is the port the OS picked.
    sock = socket.create_server(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"Open http://127.0.0.1:{port}/ in two browser tabs (Ctrl+C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app)).run(sockets=[sock])


if __name__ == "__main__":
    main()
