"""An independent reading of a `text/event-stream`, as a browser's `EventSource` does it.

Written from the WHATWG HTML Living Standard, §9.2.5 "Parsing an event stream" and §9.2.6
"Interpreting an event stream", not from our encoder, so that tests can check what a client
really receives. Deliberately simple: one character at a time, no shortcuts.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Event", "Stream", "parse"]

_ASCII_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class Event:
    """One dispatched `MessageEvent`: its `type`, `data` and `lastEventId`."""

    type: str
    data: str
    last_event_id: str


class Stream(NamedTuple):
    """What a client saw: the dispatched events, and the reconnection time last set by `retry`."""

    events: list[Event]
    retry: int | None


def _only_ascii_digits(value: str) -> bool:
    # str.isdigit() would also accept e.g. "٣" or "²". An empty value is no number: browsers
    # ignore `retry:` without digits.
    return value != "" and all(c in _ASCII_DIGITS for c in value)


class _Interpreter:
    """The state of §9.2.6: data, event type and last event ID buffers."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.retry: int | None = None
        self.data = ""
        self.event_type = ""
        self.last_event_id_buffer = ""
        self.last_event_id = ""

    def line(self, line: str) -> None:
        if line == "":
            self.dispatch()
        elif line.startswith(":"):
            pass  # a comment
        elif ":" in line:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]  # exactly one space, never more
            self.field(name, value)
        else:
            self.field(line, "")

    def field(self, name: str, value: str) -> None:
        # Field names are compared case-sensitively; unknown fields are ignored.
        if name == "event":
            self.event_type = value
        elif name == "data":
            self.data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                self.last_event_id_buffer = value
        elif name == "retry" and _only_ascii_digits(value) and len(value) <= 19:
            # The spec takes any length; sse_starlette ignores more than 19 digits, a bound
            # docs/client.md lists among its deliberate differences.
            self.retry = int(value, 10)

    def dispatch(self) -> None:
        # Step 1 comes before the empty-data check: an id-only event still sets the last event ID.
        self.last_event_id = self.last_event_id_buffer
        if self.data == "":
            self.data = ""
            self.event_type = ""
            return
        data = self.data[:-1] if self.data.endswith("\n") else self.data
        self.events.append(Event(self.event_type or "message", data, self.last_event_id))
        self.data = ""
        self.event_type = ""


def parse(chunks: Iterable[bytes]) -> Stream:
    """Read a whole event stream delivered as `chunks`, split at any byte.

    The stream is UTF-8 decoded (one leading BOM stripped, invalid bytes replaced by U+FFFD);
    lines end at CRLF, lone LF or lone CR, also when a CRLF is split between two chunks. An
    event not ended by a blank line before the end of the stream is discarded.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    interpreter = _Interpreter()
    line: list[str] = []
    at_start = True
    after_cr = False

    def feed(text: str) -> None:
        nonlocal at_start, after_cr
        if at_start and text:
            at_start = False
            if text[0] == "\ufeff":
                text = text[1:]  # only the very first character of the stream
        for char in text:
            if after_cr:
                after_cr = False
                if char == "\n":
                    continue  # the LF of a CRLF whose CR already ended the line
            if char == "\r":
                after_cr = True
                interpreter.line("".join(line))
                line.clear()
            elif char == "\n":
                interpreter.line("".join(line))
                line.clear()
            else:
                line.append(char)

    for chunk in chunks:
        feed(decoder.decode(chunk))
    feed(decoder.decode(b"", final=True))
    # Whatever is left (an unterminated line, an event without its blank line) is discarded.
    return Stream(interpreter.events, interpreter.retry)
