"""`sse_starlette.parser` against the independent reading of the spec in tests/whatwg.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_starlette import parser as parser_module
from sse_starlette.event import ServerSentEvent
from sse_starlette.parser import Event, EventStreamParser, EventTooLargeError, SSEError
from tests import whatwg
from tests.test_event import SEPS, Fields, cut, event_fields, expected_stream


def parse(chunks: list[bytes], **options: int | None) -> tuple[list[Event], int | None]:
    parser = EventStreamParser(**options)  # type: ignore[arg-type]
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser.retry


def as_oracle(events: list[Event]) -> list[whatwg.Event]:
    return [whatwg.Event(e.event, e.data, e.id) for e in events]


# Tokens that exercise every rule: line ends of each kind, BOMs, NUL, colons, spaces, field
# names, a multi-byte character and an invalid byte.
_TOKENS = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\0", b":", b" ", b"  ", b"data", b"event", b"id",
     b"retry", b"DATA", b"x", b"7", b"\xc3\xa9", b"\xff", b"\xd9\xa3", b"data: a\n\n"]
)  # fmt: skip
streams = st.lists(_TOKENS, max_size=40).map(b"".join)
cuts = st.lists(st.integers(0, 10**6), max_size=12)


@settings(max_examples=500, deadline=None)
@given(payload=streams, cuts=cuts)
def test_parser_agrees_with_the_reference_on_any_bytes_cut_anywhere(
    payload: bytes, cuts: list[int]
) -> None:
    events, retry = parse(cut(payload, cuts), max_event_size=None)
    assert whatwg.Stream(as_oracle(events), retry) == whatwg.parse([payload])


@pytest.mark.parametrize("sep", SEPS)
@settings(max_examples=200, deadline=None)
@given(items=st.lists(event_fields, max_size=6), cuts=cuts)
def test_parser_reads_back_what_the_encoder_wrote(
    sep: str, items: list[Fields], cuts: list[int]
) -> None:
    payload = b"".join(item.encode(sep) for item in items)
    events, retry = parse(cut(payload, cuts), max_event_size=None)
    assert whatwg.Stream(as_oracle(events), retry) == expected_stream(items)


def test_events_carry_type_id_and_retry() -> None:
    payload = b"retry: 50\nid: 7\nevent: tick\ndata: a\ndata: b\n\ndata: c\n\n"
    assert parse([payload])[0] == [Event("a\nb", "tick", "7", 50), Event("c", "message", "7", 50)]


def test_a_chunk_returns_only_the_events_it_completes() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\ndata: b") == [Event("a")]
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\n\r\n") == [Event("b")]


def test_last_event_id_starts_from_the_given_one_and_follows_the_stream() -> None:
    parser = EventStreamParser(last_event_id="41")
    assert parser.feed(b"data: a\n\n") == [Event("a", id="41")]
    parser.feed(b"id: 42\n\n")  # an id-only block sets it without dispatching
    assert parser.last_event_id == "42"
    assert parser.feed(b"id\ndata: b\n\n") == [Event("b", id="")]


def test_json_parses_the_data() -> None:
    assert Event('{"a": [1, "é"]}').json() == {"a": [1, "é"]}


def test_a_line_longer_than_the_limit_raises_before_it_ends() -> None:
    parser = EventStreamParser(max_event_size=100)
    parser.feed(b"data: " + b"x" * 90)
    with pytest.raises(EventTooLargeError, match="max_event_size=100"):
        parser.feed(b"x" * 20)


def test_an_event_of_many_short_lines_past_the_limit_raises() -> None:
    parser = EventStreamParser(max_event_size=100)
    with pytest.raises(EventTooLargeError, match="max_event_size=100"):
        parser.feed(b"data: xxxxxxxxx\n" * 20)


def test_events_within_the_limit_pass_one_after_another() -> None:
    parser = EventStreamParser(max_event_size=100)
    block = ServerSentEvent("x" * 90).encode()
    assert len([e for _ in range(50) for e in parser.feed(block)]) == 50


def test_a_cr_inside_a_chunk_does_not_swallow_the_lf_opening_the_next() -> None:
    # Found by hypothesis: only a CR that ends a chunk may pair with a LF in the next one.
    assert parse([b"\r\r\rdata: a", b"\n\n"])[0] == [Event("a")]


def test_an_empty_read_between_a_cr_and_its_lf_keeps_them_one_line_end() -> None:
    assert parse([b"data: a\r", b"", b"\n", b"data: b\n\n"])[0] == [Event("a\nb")]


def test_a_bom_split_over_reads_is_removed() -> None:
    assert parse([b"\xef", b"\xbb", b"\xbfdata: a\n\n"])[0] == [Event("a")]
    assert parse([b"\xef\xbb", b"data: a\n\n"])[0] == []  # not a BOM: a field named "\ufffddata"


# --- limits: in bytes, and never at the cost of the events before ---------------------------


def test_events_completed_before_an_oversized_line_are_delivered_with_the_error() -> None:
    # One network read: a valid 900-byte event, then a line past max_event_size=1000.
    parser = EventStreamParser(max_event_size=1000)
    valid = b"data: " + b"v" * 900 + b"\n\n"
    with pytest.raises(EventTooLargeError, match="max_event_size=1000") as info:
        parser.feed(valid + b"data: " + b"x" * 1500)
    assert info.value.events == [Event("v" * 900)]
    with pytest.raises(EventTooLargeError) as again:  # the parser stays failed
        parser.feed(b"\n\n")
    assert again.value.events == []


def test_events_completed_before_an_oversized_event_are_delivered_with_the_error() -> None:
    parser = EventStreamParser(max_event_size=100)
    with pytest.raises(EventTooLargeError) as info:
        parser.feed(b"data: a\n\ndata: b\n\n" + b"data: xxxxxxxxx\n" * 20)
    assert info.value.events == [Event("a"), Event("b")]


def test_max_event_size_counts_bytes_of_utf8_not_characters() -> None:
    parser = EventStreamParser(max_event_size=1000)
    with pytest.raises(EventTooLargeError):  # 600 characters, 1,200 bytes
        parser.feed(ServerSentEvent("é" * 600).encode())
    # 997 bytes: "data: " and 497 of them make a line of exactly 1,000 bytes.
    assert EventStreamParser(max_event_size=1000).feed(ServerSentEvent("é" * 497).encode())


def test_the_errors_are_sse_errors_and_value_errors() -> None:
    assert issubclass(EventTooLargeError, SSEError)
    assert issubclass(EventTooLargeError, ValueError)


# --- the work is linear in the input, whatever the read sizes --------------------------------


class CountingSplitter:
    """Stands in for the parser's line splitter; counts the bytes handed to it to scan."""

    def __init__(self, split: Callable[[bytes], list[bytes]]) -> None:
        self.split = split
        self.scanned = 0

    def __call__(self, data: bytes) -> list[bytes]:
        self.scanned += len(data)
        return self.split(data)


@pytest.mark.parametrize(
    ("payload", "read_size"),
    [
        (b"data: " + b"x" * 500_000, 256),  # a line that never ends, in small reads
        (b"data: " + b"y" * 1_000_000 + b"\n\n", 512),  # a valid 1 MB event
        (b"data: z\n" * 100_000 + b"\n", 7),  # many short lines
    ],
)
def test_each_byte_is_handed_to_the_splitter_once_whatever_the_read_size(
    payload: bytes, read_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingSplitter(parser_module._split_lines)
    monkeypatch.setattr(parser_module, "_split_lines", counting)
    parser = EventStreamParser(max_event_size=None)
    for start in range(0, len(payload), read_size):
        parser.feed(payload[start : start + read_size])
    assert counting.scanned == len(payload)


def test_whether_the_limit_is_passed_does_not_depend_on_the_reads() -> None:
    # The same bytes in one read or cut anywhere: the same answer.
    for payload, limit, passes in [
        (b"data: abcd\n\n", 10, True),  # a 10-byte line
        (b"data: abcde\n\n", 10, False),  # an 11-byte line
        (b": " + b"c" * 2_000_000 + b"\n", 1_000_000, False),  # a comment line is a line too
    ]:
        for read in (len(payload), 7, 65_536):
            parser = EventStreamParser(max_event_size=limit)
            try:
                for start in range(0, len(payload), read):
                    parser.feed(payload[start : start + read])
            except EventTooLargeError:
                assert not passes, (payload[:20], read)
            else:
                assert passes, (payload[:20], read)


def test_data_of_exactly_max_event_size_bytes_passes() -> None:
    # Two lines of 5 bytes of data and the LF between them: 11 bytes of data.
    parser = EventStreamParser(max_event_size=11)
    assert parser.feed(b"data:abcde\ndata:fghij\n\n") == [Event("abcde\nfghij")]
    with pytest.raises(EventTooLargeError, match="data of one event"):
        EventStreamParser(max_event_size=10).feed(b"data:abcde\ndata:fghij\n\n")


def test_a_retry_of_more_than_19_digits_is_ignored() -> None:
    parser = EventStreamParser()
    parser.feed(b"retry: " + b"9" * 19 + b"\n")
    assert parser.retry == int("9" * 19)
    parser.feed(b"retry: " + b"9" * 5000 + b"\n\n")  # int() alone would refuse 5,000 digits
    assert parser.retry == int("9" * 19)


def test_memory_held_for_one_event_is_about_its_bytes() -> None:
    # Many one-byte data lines: held as bytes, not as a str per line.
    import tracemalloc

    parser = EventStreamParser(max_event_size=1 << 20)
    tracemalloc.start()
    try:
        parser.feed(b"data:\xff\n" * 100_000)  # 100,000 lines, 200,000 bytes of data
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 2 * 200_000
