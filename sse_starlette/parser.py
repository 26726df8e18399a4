"""The receiving side of the wire format: bytes of `text/event-stream` in, events out.

One incremental parser, following the WHATWG HTML standard §9.2.6 ("Interpreting an event
stream") to the letter, shared by `sse_starlette.client` and `sse_starlette.testing`.

It works on bytes and looks at each byte of the stream once, whatever the sizes of the reads
(a line that arrives in many small reads is never rescanned or copied again per read): CR and
LF never occur inside a UTF-8 sequence, so lines are cut on bytes and each field's value is
decoded once, when its line is complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventStreamParser", "EventTooLargeError", "SSEError"]

_LINE_END = re.compile(rb"\r\n?|\n")


def _split_lines(data: bytes) -> list[bytes]:
    """`data` cut at every CRLF, CR and LF; the last item is what follows the last line end.

    Each byte is scanned twice at most, in C: once for a CR, once to split.
    """
    if b"\r" in data:
        return _LINE_END.split(data)
    return data.split(b"\n")


_BOM = b"\xef\xbb\xbf"
_DEFAULT_MAX_EVENT_SIZE = 1 << 20  # bytes of UTF-8: 1 MiB
_LINE_TOO_LONG = "a line of the event stream exceeds max_event_size={} bytes"
# A longer `retry:` is ignored: 10^19 ms is 300 million years, and a longer one would only
# overflow the client's clock arithmetic (a deliberate difference, docs/client.md).
_RETRY_DIGITS = 19


class SSEError(Exception):
    """Base class of every error the client (and this parser) raises about a stream."""


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event, as a browser's `EventSource` would deliver it.

    `event` is the type (`"message"` when the stream gave none), `data` the data lines
    joined with LF, `id` the last event ID at dispatch (ids persist across events, as in a
    browser), `retry` the reconnection time in milliseconds the stream last set, if any.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


class EventTooLargeError(SSEError, ValueError):
    """A line or an event grew past the parser's `max_event_size` (bytes) before it ended.

    `events` holds the events the same `feed()` completed before the limit was passed: every
    complete event is delivered, the oversized one is not. The parser stays failed: a later
    `feed()` raises again, with no events.
    """

    def __init__(self, message: str, events: list[Event] | None = None) -> None:
        super().__init__(message)
        self.events: list[Event] = events or []


class EventStreamParser:
    """Feed it the body in chunks cut anywhere; it returns the events each chunk completes.

    - UTF-8, invalid bytes replaced by U+FFFD, one leading BOM removed;
    - lines end at CRLF, LF or CR, also when a CRLF or a character is split between chunks;
    - comments and unknown fields ignored; one space after the colon removed, no more;
    - an `id` containing U+0000 ignored; an empty `id` resets the last event ID;
    - `retry` taken only when it is all ASCII digits;
    - an event with no data is not dispatched; an unterminated event at the end is discarded.

    Memory is bounded: a line (its field name included), or the data of one event (its
    lines joined with LF), longer than `max_event_size` bytes of UTF-8 as they arrive raises
    `EventTooLargeError`, after the events completed before it, whatever the sizes of the
    reads (None: no bound). A `retry` of more than 19 digits is ignored. The work is linear
    in the bytes fed, whatever the sizes of the reads.
    """

    def __init__(
        self, last_event_id: str = "", max_event_size: int | None = _DEFAULT_MAX_EVENT_SIZE
    ) -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.max_event_size = max_event_size
        self._partial = bytearray()  # the line begun and not yet ended
        self._started = False  # past the place a BOM could be
        self._after_cr = False  # the last chunk ended in CR: a LF opening the next is its pair
        self._id_buffer = last_event_id
        self._event_type = ""
        self._data = bytearray()  # the data lines of the event being read, LF-joined
        self._data_lines = 0
        self._events: list[Event] = []
        self._error: EventTooLargeError | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next piece of the stream; return the events it completed, in order."""
        if self._error is not None:
            raise EventTooLargeError(str(self._error))
        data = bytes(chunk)
        if not self._started:
            data = self._skip_bom(data)
        if self._after_cr and data:
            self._after_cr = False
            if data[0] == 0x0A:  # LF: the second half of a CRLF split between reads
                data = data[1:]
        if not data:
            return []
        lines = _split_lines(data)
        partial = self._partial
        try:
            if len(lines) > 1:
                # A CR ending the read may be the first half of a CRLF.
                self._after_cr = data[-1] == 0x0D
                if partial:
                    partial += lines[0]
                    lines[0] = bytes(partial)
                    partial.clear()
                rest = lines.pop()
                self._lines(lines)
                partial += rest
            else:
                partial += data
            if self.max_event_size is not None and len(partial) > self.max_event_size:
                raise EventTooLargeError(
                    f"a line of the event stream exceeds max_event_size={self.max_event_size} bytes"
                )
        except EventTooLargeError as exc:
            # Every event completed before the limit was passed goes out with the error.
            partial.clear()
            self._error = exc
            exc.events, self._events = self._events, []
            raise
        events, self._events = self._events, []
        return events

    def _skip_bom(self, data: bytes) -> bytes:
        # A BOM may itself arrive split over reads: hold back what may still be one.
        head = bytes(self._partial) + data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._partial[:] = head
            return b""
        self._started = True
        self._partial.clear()
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _lines(self, lines: list[bytes]) -> None:
        """Interpret complete lines (§9.2.6); one call per read, the hot loop of the parser."""
        data, limit = self._data, self.max_event_size
        for line in lines:
            if not line:
                self._dispatch()
                continue
            if limit is not None and len(line) > limit:
                raise EventTooLargeError(_LINE_TOO_LONG.format(limit))
            name, _, value = line.partition(b":")
            if not name:
                continue  # a comment: the line starts with ":"
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                # Bytes, decoded once at dispatch: a str per line would cost many times the
                # bytes it holds. LF ends an invalid UTF-8 sequence as the end of a line does.
                if self._data_lines:
                    data += b"\n"
                data += value
                self._data_lines += 1
                if limit is not None and len(data) > limit:
                    raise EventTooLargeError(
                        f"the data of one event exceeds max_event_size={limit} bytes"
                    )
            elif name == b"event":
                self._event_type = value.decode("utf-8", "replace")
            elif name == b"id":
                if b"\0" not in value:
                    self._id_buffer = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit() and len(value) <= _RETRY_DIGITS:
                self.retry = int(value)  # bytes.isdigit(): ASCII digits only; b"" is not

    def _dispatch(self) -> None:
        # The last event ID is set even when no event is dispatched (an id-only block).
        self.last_event_id = self._id_buffer
        if self._data_lines:
            text = self._data.decode("utf-8", "replace")
            self._events.append(
                Event(text, self._event_type or "message", self.last_event_id, self.retry)
            )
            self._data.clear()  # in place: `_lines` holds it
            self._data_lines = 0
        self._event_type = ""
