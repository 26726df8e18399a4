"""`POST /.well-known/mercure`: a form-encoded update, checked before anything is published.

Fields (draft-07 §Publication): `topic` (one or more: the first is canonical, the others
alternates; subscribers of any get the update), `data`, `private` (present: private), `id`
(honoured; else the hub makes a `urn:uuid:`), `type` (the SSE event type), `retry`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from sse_starlette.hub.auth import Rejected
from sse_starlette.hub.settings import HubSettings

__all__ = ["Update", "parse_update", "read_body"]

_FORM = "application/x-www-form-urlencoded"


@dataclass
class Update:
    """One update, as the broker publishes it."""

    topics: list[str]
    fields: dict[str, Any]  # the event: data, event, id, retry
    private: bool


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it exceeds `limit` bytes."""
    too_large = Rejected(413, "too-large", f"the body exceeds the limit of {limit} bytes")
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise too_large  # refused before reading a byte of it
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_update(content_type: str, body: bytes, settings: HubSettings) -> Update:
    """The update a publish request's body describes; `Rejected` (400) naming what is wrong."""
    if content_type.partition(";")[0].strip().lower() != _FORM:
        raise Rejected(400, "bad-request", f"the body must be {_FORM}")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            errors="strict",  # a percent-encoded byte that is not UTF-8 is refused, not replaced
            max_num_fields=settings.max_topics + 8,
        )
    except UnicodeDecodeError:
        raise Rejected(400, "bad-request", "the body is not valid UTF-8") from None
    except ValueError as exc:  # too many fields
        raise Rejected(400, "too-many-topics", f"the body has too many fields: {exc}") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    topics = form.pop("topic", [])
    if not topics or not all(topics):
        raise Rejected(400, "bad-request", "missing topic: name at least one non-empty 'topic'")
    if len(topics) > settings.max_topics:
        message = f"an update has at most {settings.max_topics} topics"
        raise Rejected(400, "too-many-topics", message)
    # Always a data field, if empty: a browser dispatches no event that has none.
    fields: dict[str, Any] = {"data": ""}
    for name, field in (("data", "data"), ("type", "event"), ("id", "id")):
        values = form.get(name)
        if values:
            fields[field] = values[0]
    if "id" in fields and fields["id"].startswith("#"):
        raise Rejected(400, "bad-request", "an update's id must not start with '#'")
    if fields.get("id") == "earliest":
        raise Rejected(400, "bad-request", "'earliest' is reserved: it is no update's id")
    if "id" in fields and any(c < " " or c == "\x7f" for c in fields["id"]):
        # An id goes back in a Last-Event-ID response header: no control characters.
        raise Rejected(400, "bad-request", "an update's id must hold no control characters")
    if "id" not in fields or not fields["id"]:
        fields["id"] = f"urn:uuid:{uuid.uuid4()}"
    retry = form.get("retry")
    if retry:
        if not retry[0].isascii() or not retry[0].isdigit() or len(retry[0]) > 10:
            raise Rejected(400, "bad-request", "'retry' must be a number of milliseconds")
        fields["retry"] = int(retry[0])
    return Update(topics, fields, private="private" in form)
