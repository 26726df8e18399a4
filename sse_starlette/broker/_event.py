"""The event as the broker stores and delivers it, and the checks on what `publish()` takes."""

from __future__ import annotations

from typing import Any

from sse_starlette.event import ServerSentEvent, check_fields, data_text, encode_event

__all__ = ["BrokerEvent", "event_fields"]


class BrokerEvent(ServerSentEvent):
    """An event as the broker stores and delivers it: its topics, its id, its wire bytes.

    `id` is the event's own id if it was published with one, else its `position` in the
    broker's log. `private`: only subscribers authorized for one of its topics receive it.
    Encoded once in a process, when first sent; every subscriber is handed the same object
    and the same bytes. Treat it as read-only.
    """

    __slots__ = ("_wire", "position", "private", "topics")
    id: str  # always set

    def __init__(
        self,
        topics: tuple[str, ...],
        id: str,
        data: str | None = None,
        *,
        event: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
        sep: str = "\r\n",
        position: str | None = None,
        private: bool = False,
    ) -> None:
        super().__init__(data, event=event, id=id, retry=retry, comment=comment, sep=sep)
        self.topics = topics
        self.position = id if position is None else position
        self.private = private
        # Lazily: a process reads every event of the log, and most go to no one here.
        self._wire: bytes | None = None

    @property
    def topic(self) -> str:
        """The first of `topics` (the only one, unless it was published to several)."""
        return self.topics[0] if self.topics else ""

    def encode(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = encode_event(
                self.data, self.event, self.id, self.retry, self.comment, self._sep
            )
        return wire


def event_fields(item: Any, sep: str) -> dict[str, Any]:
    """The fields of something `publish()` was given, checked so that it encodes.

    Raises ValueError/TypeError naming the field, before anything is stored. A dict's `sep`
    is not a field: the broker's own separator is used. An `id` is the event's own.
    """
    if isinstance(item, ServerSentEvent):
        fields = {name: getattr(item, name) for name in ("data", "event", "id", "retry", "comment")}
    elif isinstance(item, dict):
        check_fields(item)
        fields = {name: item.get(name) for name in ("data", "event", "id", "retry", "comment")}
    else:
        fields = {"data": item}
    fields = {name: value for name, value in fields.items() if value is not None}
    if "id" in fields:
        fields["id"] = str(fields["id"])
        if not fields["id"]:
            raise ValueError("an event's own 'id' must not be empty (leave it out instead)")
        try:
            fields["id"].encode()
        except UnicodeEncodeError:
            raise ValueError("SSE field 'id' must be valid Unicode (no lone surrogates)") from None
    if "data" in fields:
        fields["data"] = data_text(fields["data"])
    for name in ("event", "comment"):
        if name in fields:
            fields[name] = str(fields[name])
    get = fields.get
    encode_event(get("data"), get("event"), get("id"), get("retry"), get("comment"), sep)
    return fields
