"""The receiving side of the wire format: bytes of `text/event-stream` in, events out.

One incremental parser, following the WHATWG HTML standard §9.2.6 ("Interpreting an event
stream") to the letter, shared by `sse_starlette.client` and `sse_starlette.testing`.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventStreamParser", "EventTooLargeError"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_DEFAULT_MAX_EVENT_SIZE = 1 << 20  # characters; 1 MiB of ASCII


@dataclass(frozen=True)
class Event:
    """One dispatched event, as a browser's `EventSource` would deliver it.

    `event` is the type (`"message"` when the stream gave none), `data` the data lines
    joined with LF, `id` the last event ID at dispatch (ids persist across events, as in a
    browser), `retry` the reconnection time the stream last set, if any.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


class EventTooLargeError(ValueError):
    """A line or an event grew past the parser's `max_event_size` before it was complete."""


class EventStreamParser:
    """Feed it the body in chunks cut anywhere; it returns the events each chunk completes.

    - UTF-8, invalid bytes replaced by U+FFFD, one leading BOM removed;
    - lines end at CRLF, LF or CR, also when a CRLF or a character is split between chunks;
    - comments and unknown fields ignored; one space after the colon removed, no more;
    - an `id` containing U+0000 ignored; an empty `id` resets the last event ID;
    - `retry` taken only when it is all ASCII digits;
    - an event with no data is not dispatched; an unterminated event at the end is discarded.

    Memory is bounded: a line, or the data of one event, longer than `max_event_size`
    characters raises `EventTooLargeError` (None: no bound).
    """

    def __init__(
        self, last_event_id: str = "", max_event_size: int | None = _DEFAULT_MAX_EVENT_SIZE
    ) -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.max_event_size = max_event_size
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._after_cr = False  # the last chunk ended in CR: a LF opening the next is its pair
        self._id_buffer = last_event_id
        self._event_type = ""
        self._data: list[str] = []
        self._data_size = 0
        self._events: list[Event] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next piece of the stream; return the events it completed, in order."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr:
            self._after_cr = False
            if text.startswith("\n"):
                text = text[1:]
        buffer = self._buffer + text if self._buffer else text
        start = 0
        for match in _LINE_END.finditer(buffer):
            self._line(buffer[start : match.start()])
            start = match.end()
        if start == len(buffer) and buffer.endswith("\r"):
            self._after_cr = True  # only a CR ending the chunk may be the first half of a CRLF
        self._buffer = buffer[start:]
        if self.max_event_size is not None and len(self._buffer) > self.max_event_size:
            raise EventTooLargeError(
                f"a line of the event stream exceeds max_event_size={self.max_event_size}"
            )
        events, self._events = self._events, []
        return events

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch()
            return
        if line[0] == ":":
            return  # a comment
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self.max_event_size is not None and self._data_size > self.max_event_size:
                raise EventTooLargeError(
                    f"the data of one event exceeds max_event_size={self.max_event_size}"
                )
        elif name == "event":
            self._event_type = value
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():  # "".isdigit() is False
            self.retry = int(value)

    def _dispatch(self) -> None:
        # The last event ID is set even when no event is dispatched (an id-only block).
        self.last_event_id = self._id_buffer
        if self._data:
            self._events.append(
                Event(
                    "\n".join(self._data),
                    self._event_type or "message",
                    self.last_event_id,
                    self.retry,
                )
            )
        self._data = []
        self._data_size = 0
        self._event_type = ""
