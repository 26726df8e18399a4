"""The encoder: exact bytes, errors that name the field, and what a WHATWG client reads back."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_starlette.event import JSONServerSentEvent, ServerSentEvent, ensure_bytes
from sse_starlette.sse import EventSourceResponse
from tests.whatwg import Event, Stream, parse

SEPS = ("\r\n", "\n", "\r")
# Characters that str.splitlines() treats as line breaks but the SSE format does not.
NOT_LINE_BREAKS = ("\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e")


def message(data: str, last_event_id: str = "", type: str = "message") -> Event:
    return Event(type=type, data=data, last_event_id=last_event_id)


def read(*payloads: bytes) -> Stream:
    return parse(payloads)


def lf(text: str) -> str:
    """`text` as a client reads it back: the spec carries every CRLF, CR and LF as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def cut(payload: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({c % (len(payload) + 1) for c in cuts} | {0, len(payload)})
    return [payload[a:b] for a, b in itertools.pairwise(bounds)]


# --- the reference parser itself ---------------------------------------------------------------
# tests/whatwg.py is the oracle for everything below, so it is pinned to the spec first.


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"data: a\n\ndata: b\ndata:c\n\n"], [message("a"), message("b\nc")], id="lf"),
        pytest.param([b"data: a\r\rdata: b\r\n\r\n"], [message("a"), message("b")], id="cr-crlf"),
        pytest.param([b"data: a\r", b"\ndata: b\r\n\r\n"], [message("a\nb")], id="crlf-split"),
        pytest.param([b"data: a\r", b"\r\n"], [message("a")], id="cr-then-crlf"),
        pytest.param([b"\xef\xbb", b"\xbfdata: a\n\n"], [message("a")], id="bom-split"),
        pytest.param([b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n"], [], id="second-bom-kept"),
        pytest.param([b"data: \xc3", b"\xa9\xff\n\n"], [message("é\ufffd")], id="utf8-split"),
        pytest.param([b"data:a\ndata:  b\ndata\n\n"], [message("a\n b\n")], id="one-space"),
        pytest.param([b": c\nDATA: x\ndata : y\n\n"], [], id="comment-case"),
        pytest.param([b"id: 1\n\ndata: a\n\n"], [message("a", "1")], id="id-only-event"),
        pytest.param([b"id: 1\ndata: a\n\nid: a\0b\ndata: b\n\n"],
                     [message("a", "1"), message("b", "1")], id="id-nul"),
        pytest.param([b"id: 1\ndata: a\n\nid\ndata: b\n\n"], [message("a", "1"), message("b")],
                     id="id-reset"),
        pytest.param([b"event: e\n\ndata: a\n\n"], [message("a")], id="type-reset"),
        pytest.param([b"event:\ndata: a\n\n"], [message("a")], id="empty-type"),
        pytest.param([b"data: a\n\ndata: b\n"], [message("a")], id="unterminated"),
    ],
)  # fmt: skip
def test_reference_parser_follows_the_spec(chunks: list[bytes], expected: list[Event]) -> None:
    assert parse(chunks).events == expected


@pytest.mark.parametrize(
    ("retry_lines", "expected"),
    [
        (b"retry: 10\n", 10),
        (b"retry: 10\nretry: 007\n", 7),
        (b"retry: 10\nretry: -1\nretry: 1.5\nretry:  5\nretry: \xd9\xa3\nretry:\n", 10),
    ],
)
def test_reference_parser_honours_only_ascii_digit_retry(retry_lines: bytes, expected: int) -> None:
    assert parse([retry_lines + b"\n"]) == Stream([], expected)


# --- exact bytes ----------------------------------------------------------------------------------


def test_golden_bytes() -> None:
    encoded = ServerSentEvent("foo", event="bar", id="xyz", retry=1).encode()
    assert encoded == b"id: xyz\r\nevent: bar\r\ndata: foo\r\nretry: 1\r\n\r\n"


def test_field_order_is_comment_id_event_data_retry() -> None:
    encoded = ServerSentEvent("d", event="e", id="i", retry=5, comment="c").encode()
    assert encoded == b": c\r\nid: i\r\nevent: e\r\ndata: d\r\nretry: 5\r\n\r\n"


def test_multi_line_data_is_one_data_line_per_line() -> None:
    encoded = ServerSentEvent("a\nb\r\nc\rd").encode()
    assert encoded == b"data: a\r\ndata: b\r\ndata: c\r\ndata: d\r\n\r\n"
    assert read(encoded).events == [message("a\nb\nc\nd")]


def test_trailing_newline_in_data_adds_an_empty_data_line() -> None:
    encoded = ServerSentEvent("a\n").encode()
    assert encoded == b"data: a\r\ndata: \r\n\r\n"
    assert read(encoded).events == [message("a\n")]


def test_leading_space_in_data_keeps_the_separator_space() -> None:
    encoded = ServerSentEvent(" x").encode()
    assert encoded == b"data:  x\r\n\r\n"
    assert read(encoded).events == [message(" x")]


@pytest.mark.parametrize("sep", ["\n", "\r"])
def test_sep_ends_every_line(sep: str) -> None:
    encoded = ServerSentEvent("a\nb", event="e", comment="c", sep=sep).encode()
    assert encoded == f": c{sep}event: e{sep}data: a{sep}data: b{sep}{sep}".encode()
    assert read(encoded).events == [message("a\nb", type="e")]


def test_empty_comment_is_a_bare_colon_line() -> None:
    assert ServerSentEvent(comment="").encode() == b": \r\n\r\n"


def test_multi_line_comment_repeats_the_colon_on_every_line() -> None:
    encoded = ServerSentEvent(comment="a\nb\r\nc\rd", sep="\n").encode()
    assert encoded == b": a\n: b\n: c\n: d\n\n"
    assert read(encoded) == Stream([], None)


def test_empty_data_is_an_empty_data_line_and_dispatches() -> None:
    encoded = ServerSentEvent(data="").encode()
    assert encoded == b"data: \r\n\r\n"
    assert read(encoded).events == [message("")]


@pytest.mark.parametrize("sep", SEPS)
def test_event_without_fields_is_just_the_separator(sep: str) -> None:
    assert ServerSentEvent(sep=sep).encode() == sep.encode()


def test_nul_is_sent_as_is_in_data_event_and_comment() -> None:
    encoded = ServerSentEvent("a\0b", event="e\0", comment="\0").encode()
    assert encoded == b": \0\r\nevent: e\0\r\ndata: a\0b\r\n\r\n"
    assert read(encoded).events == [message("a\0b", type="e\0")]


def test_empty_id_resets_the_last_event_id() -> None:
    stream = read(ServerSentEvent("a", id="1").encode(), ServerSentEvent("b", id="").encode())
    assert stream.events == [message("a", "1"), message("b", "")]


def test_json_event_is_compact() -> None:
    encoded = JSONServerSentEvent({"a": 1, "b": [1, None, "x"]}).encode()
    assert encoded == b'data: {"a":1,"b":[1,null,"x"]}\r\n\r\n'


def test_json_event_sends_non_ascii_as_itself() -> None:
    encoded = JSONServerSentEvent({"k": "é☃𝄞\u2028"}, event="e").encode()
    assert encoded == 'event: e\r\ndata: {"k":"é☃𝄞\u2028"}\r\n\r\n'.encode()
    assert json.loads(read(encoded).events[0].data) == {"k": "é☃𝄞\u2028"}


def test_json_event_escapes_line_breaks_in_strings() -> None:
    assert JSONServerSentEvent("a\nb").encode() == b'data: "a\\nb"\r\n\r\n'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_json_event_rejects_nan_and_infinity(value: Any) -> None:
    with pytest.raises(ValueError):
        JSONServerSentEvent(value)


def test_json_event_with_data_none_sends_no_data_line() -> None:
    assert JSONServerSentEvent(None, event="e", id="1").encode() == b"id: 1\r\nevent: e\r\n\r\n"


# --- Pydantic models, dataclasses, bytes as data --------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    label: str


def test_dataclass_data_is_sent_as_json() -> None:
    expected = 'data: {"x":1,"label":"é"}\r\n\r\n'.encode()
    assert ServerSentEvent(Point(1, "é")).encode() == expected
    assert JSONServerSentEvent(Point(1, "é")).encode() == expected


def test_dataclass_item_is_sent_as_json() -> None:
    assert ensure_bytes(Point(1, "é"), "\n") == 'data: {"x":1,"label":"é"}\n\n'.encode()


def test_pydantic_model_data_is_sent_as_json() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        x: int
        label: str

    expected = 'data: {"x":1,"label":"é"}\r\n\r\n'.encode()
    assert ServerSentEvent(Item(x=1, label="é")).encode() == expected
    assert JSONServerSentEvent(Item(x=1, label="é")).encode() == expected
    assert ensure_bytes(Item(x=1, label="é"), "\n") == 'data: {"x":1,"label":"é"}\n\n'.encode()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_data_is_decoded_as_utf8(kind: Any) -> None:
    encoded = ServerSentEvent(kind("é\nx".encode())).encode()
    assert encoded == "data: é\r\ndata: x\r\n\r\n".encode()


def test_invalid_utf8_bytes_data_raises_naming_data() -> None:
    with pytest.raises(ValueError, match="'data'"):
        ServerSentEvent(b"ok\xff").encode()


# --- data is split only on CR, LF and CRLF --------------------------------------------------------


@pytest.mark.parametrize("char", NOT_LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_data_is_not_split_on_other_line_break_characters(char: str) -> None:
    encoded = ServerSentEvent(f"a{char}b").encode()
    assert encoded == f"data: a{char}b\r\n\r\n".encode()
    assert read(encoded).events == [message(f"a{char}b")]


@pytest.mark.parametrize("char", NOT_LINE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_comment_is_not_split_on_other_line_break_characters(char: str) -> None:
    assert ServerSentEvent(comment=f"a{char}b").encode() == f": a{char}b\r\n\r\n".encode()


# --- errors name the field ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event", "id"])
@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\r\nb", "\n", "a\r"])
def test_line_break_in_single_line_field_raises_naming_it(field: str, value: str) -> None:
    fields: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=f"'{field}'"):
        ServerSentEvent("x", **fields).encode()
    with pytest.raises(ValueError, match=f"'{field}'"):
        ensure_bytes({"data": "x", field: value}, "\n")


def test_nul_in_id_raises() -> None:
    with pytest.raises(ValueError, match="'id'"):
        ServerSentEvent("x", id="a\0b").encode()
    with pytest.raises(ValueError, match="'id'"):
        ensure_bytes({"id": "\0"}, "\n")


@pytest.mark.parametrize("retry", [True, False, "5", 1.0, 5.5])
def test_retry_that_is_not_an_int_raises_type_error(retry: Any) -> None:
    with pytest.raises(TypeError, match=r"^retry argument must be int$"):
        ServerSentEvent("x", retry=retry)
    with pytest.raises(TypeError, match=r"^retry argument must be int$"):
        ensure_bytes({"data": "x", "retry": retry}, "\n")


def test_retry_set_after_construction_is_checked_on_encode() -> None:
    event = ServerSentEvent("x")
    event.retry = True
    with pytest.raises(TypeError, match=r"^retry argument must be int$"):
        event.encode()


def test_negative_retry_raises_value_error() -> None:
    with pytest.raises(ValueError, match="'retry'"):
        ServerSentEvent("x", retry=-1)
    with pytest.raises(ValueError, match="'retry'"):
        ensure_bytes({"retry": -1}, "\n")


def test_zero_retry_is_sent() -> None:
    assert ServerSentEvent(retry=0).encode() == b"retry: 0\r\n\r\n"
    assert read(ServerSentEvent(retry=0).encode()).retry == 0


@pytest.mark.parametrize("sep", ["", " ", "\n\r", "\r\n\r\n", "\n\n", ";", "\u2028"])
def test_bad_sep_raises(sep: str) -> None:
    with pytest.raises(ValueError, match="sep"):
        ServerSentEvent("x", sep=sep)
    with pytest.raises(ValueError, match="sep"):
        EventSourceResponse(iter(()), sep=sep)


@pytest.mark.parametrize("field", ["data", "event", "id", "comment"])
def test_lone_surrogate_raises_naming_the_field(field: str) -> None:
    fields: dict[str, Any] = {"data": "ok", field: "a\ud800b"}
    with pytest.raises(ValueError, match=f"'{field}'"):
        ServerSentEvent(**fields).encode()
    with pytest.raises(ValueError, match=f"'{field}'"):
        ensure_bytes(fields, "\n")


@pytest.mark.parametrize("text", ["\udfff", "a\ud800", "a\ud800\nb"])
def test_lone_surrogate_in_str_item_raises_naming_data(text: str) -> None:
    with pytest.raises(ValueError, match="'data'"):
        ensure_bytes(text, "\n")


class _SurrogateText:
    def __str__(self) -> str:
        return "a\ud800"


def test_lone_surrogate_in_non_str_comment_raises_naming_comment() -> None:
    with pytest.raises(ValueError, match="'comment'"):
        ServerSentEvent(comment=_SurrogateText()).encode()  # type: ignore[arg-type]


def test_dict_with_unknown_key_raises_listing_it() -> None:
    with pytest.raises(TypeError, match="'evnt'") as info:
        ensure_bytes({"data": "x", "evnt": "e", "retry": 1}, "\n")
    assert "'retry'" not in str(info.value).split(";")[0]


def test_ensure_bytes_does_not_mutate_the_dict() -> None:
    item = {"data": "a\nb", "event": "e", "id": "1", "retry": 3, "comment": "c", "sep": "\r"}
    before = dict(item)
    ensure_bytes(item, "\n")
    ensure_bytes({"data": "x"}, "\n")
    assert item == before
    assert list(item) == list(before)


# --- ensure_bytes: one item of an EventSourceResponse ---------------------------------------------


@pytest.mark.parametrize("sep", SEPS)
def test_str_item_is_data_with_the_given_sep(sep: str) -> None:
    assert ensure_bytes("hi", sep) == f"data: hi{sep}{sep}".encode()
    assert ensure_bytes("a\nb", sep) == f"data: a{sep}data: b{sep}{sep}".encode()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_item_is_sent_as_is(kind: Any) -> None:
    payload = b"event: raw\r\n\xff not even UTF-8\n"
    sent = ensure_bytes(kind(payload), "\n")
    assert type(sent) is bytes
    assert sent == payload


@pytest.mark.parametrize("sep", SEPS)
def test_dict_item_uses_the_given_sep(sep: str) -> None:
    item = {"data": "a\nb", "id": "1", "event": "e", "retry": 2, "comment": "c"}
    expected = f": c{sep}id: 1{sep}event: e{sep}data: a{sep}data: b{sep}retry: 2{sep}{sep}"
    assert ensure_bytes(item, sep) == expected.encode()


@pytest.mark.parametrize("item_sep", ["\r", "\r\n", None, "not a separator"])
def test_dict_item_sep_key_is_ignored_the_response_sep_wins(item_sep: Any) -> None:
    # As in the published package (its tests pin it): one stream, one line ending.
    assert ensure_bytes({"data": "a\nb", "sep": item_sep}, "\n") == b"data: a\ndata: b\n\n"


def test_empty_dict_item_is_just_the_separator() -> None:
    assert ensure_bytes({}, "\n") == b"\n"


@pytest.mark.parametrize("sep", SEPS)
def test_event_item_uses_its_own_sep(sep: str) -> None:
    assert ensure_bytes(ServerSentEvent("a"), sep) == b"data: a\r\n\r\n"
    assert ensure_bytes(ServerSentEvent("a", sep="\r"), sep) == b"data: a\r\r"
    assert ensure_bytes(JSONServerSentEvent([1]), sep) == b"data: [1]\r\n\r\n"


@pytest.mark.parametrize(
    ("item", "expected"),
    [(None, b"data: None\n\n"), (3, b"data: 3\n\n"), ([1, "a"], b"data: [1, 'a']\n\n")],
)
def test_other_item_is_str_ed_into_data(item: Any, expected: bytes) -> None:
    assert ensure_bytes(item, "\n") == expected


# --- properties: what a client reads back is exactly what was given ------------------------------

_ODD = ("\r", "\n", "\r\n", "\n\r", "\r\r\n", "\0", " ", ":", "\ufeff", *NOT_LINE_BREAKS)
_FAKE_FIELDS = ("data: x", "event: y", "id: z", "retry: 1", ": c", "data", "id")
_chars = st.characters(codec="utf-8")  # no lone surrogates
texts = st.lists(
    st.one_of(st.sampled_from(_ODD + _FAKE_FIELDS), st.text(_chars, max_size=4)), max_size=12
).map("".join)
single_lines = texts.map(lambda s: s.replace("\r", "").replace("\n", ""))
ids = single_lines.map(lambda s: s.replace("\0", ""))
retries = st.integers(min_value=0, max_value=2**70)


@dataclasses.dataclass(frozen=True)
class Fields:
    kind: str  # "event": ServerSentEvent, "dict": a dict item, "str": a str item
    data: str | None = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None

    def encode(self, sep: str) -> bytes:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        del fields["kind"]
        if self.kind == "event":
            return ServerSentEvent(**fields, sep=sep).encode()
        if self.kind == "dict":
            return ensure_bytes(fields, sep)
        return ensure_bytes(self.data, sep)


event_fields = st.one_of(
    st.builds(
        Fields,
        kind=st.sampled_from(["event", "dict"]),
        data=st.none() | texts,
        event=st.none() | single_lines,
        id=st.none() | ids,
        retry=st.none() | retries,
        comment=st.none() | texts,
    ),
    st.builds(Fields, kind=st.just("str"), data=texts),
)


def expected_stream(items: list[Fields]) -> Stream:
    """What §9.2.6 says a client sees for these events, written as plainly as possible."""
    events, last_event_id, retry = [], "", None
    for item in items:
        if item.id is not None:
            last_event_id = item.id
        # sse_starlette's readers ignore a retry of more than 19 digits (docs/client.md).
        if item.retry is not None and len(str(item.retry)) <= 19:
            retry = item.retry
        if item.data is not None:
            events.append(Event(item.event or "message", lf(item.data), last_event_id))
    return Stream(events, retry)


@pytest.mark.parametrize("sep", SEPS)
@settings(max_examples=200, deadline=None)
@given(items=st.lists(event_fields, max_size=6), cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_client_reads_back_what_was_encoded(sep: str, items: list[Fields], cuts: list[int]) -> None:
    payload = b"".join(item.encode(sep) for item in items)
    assert parse(cut(payload, cuts)) == expected_stream(items)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(event_fields, st.sampled_from(SEPS)), max_size=6),
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
)
def test_client_reads_back_a_stream_mixing_separators(
    items: list[tuple[Fields, str]], cuts: list[int]
) -> None:
    payload = b"".join(item.encode(sep) for item, sep in items)
    assert parse(cut(payload, cuts)) == expected_stream([item for item, _ in items])


@settings(max_examples=300, deadline=None)
@given(data=texts, comment=st.none() | texts, sep=st.sampled_from(SEPS))
def test_data_and_comment_cannot_inject_fields_or_events(
    data: str, comment: str | None, sep: str
) -> None:
    probe = ServerSentEvent("probe", sep=sep).encode()
    stream = read(ServerSentEvent(data, comment=comment, sep=sep).encode() + probe)
    assert stream == Stream([message(lf(data)), message("probe")], None)
    assert read(ensure_bytes(data, sep) + probe) == stream


@settings(max_examples=200, deadline=None)
@given(comment=texts, sep=st.sampled_from(SEPS))
def test_comment_alone_dispatches_nothing(comment: str, sep: str) -> None:
    assert read(ServerSentEvent(comment=comment, sep=sep).encode()) == Stream([], None)


@pytest.mark.parametrize("sep", SEPS)
def test_data_that_looks_like_fields_is_one_message(sep: str) -> None:
    data = "\n\nevent: x\nid: 9\nretry: 1\n\ndata: y\r\n"
    encoded = ServerSentEvent(data, sep=sep).encode()
    assert encoded.count(sep.encode() * 2) == 1
    assert read(encoded) == Stream([message(lf(data))], None)


def test_byte_by_byte_delivery_reads_the_same_events() -> None:
    events = [
        ServerSentEvent("é\r\n☃", id="𝄞", sep="\r"),
        ServerSentEvent("\ufeffx", event="\u2028", sep="\r\n"),
        ServerSentEvent(comment="c", retry=7, sep="\n"),
    ]
    payload = b"".join(e.encode() for e in events)
    expected = Stream([message("é\n☃", "𝄞"), message("\ufeffx", "𝄞", "\u2028")], 7)
    assert parse(payload[i : i + 1] for i in range(len(payload))) == expected


# --- same bytes as the published sse-starlette 3.7.1 --------------------------------------------

# Run in-process against this package and as a script by the upstream interpreter, so both
# sides go through the same code.
_DRIVER = """
import base64, json, sys
from sse_starlette.event import JSONServerSentEvent, ServerSentEvent, ensure_bytes

def encode(case):
    kind = case["kind"]
    if kind == "event":
        return ServerSentEvent(case["data"], **case["fields"]).encode()
    if kind == "json":
        return JSONServerSentEvent(case["data"], **case["fields"]).encode()
    if kind == "event_item":
        return ensure_bytes(ServerSentEvent(case["data"], **case["fields"]), case["sep"])
    return ensure_bytes(case["item"], case["sep"])

if __name__ == "__main__":
    cases = json.load(sys.stdin)
    json.dump([base64.b64encode(encode(case)).decode("ascii") for case in cases], sys.stdout)
"""

_TEXTS = [
    "", "x", "hello world", " leading", "  two", "trailing ", "tab\there", ":colon", "a:b",
    "a\nb", "a\r\nb", "a\rb", "a\n", "\n", "\r\n", "\r", "\n\r", "a\n\nb", "a\r\r\nb\n\r",
    "é☃ 𝄞 中文", "\u2028 \u2029 \x85 \v \f \x1c\x1d\x1e", "nul\0", "\ufeffbom",
    "data: fake\n\nevent: x\n", '{"json": [1, 2]}',
]  # fmt: skip
_SINGLE = [t for t in _TEXTS if "\r" not in t and "\n" not in t]
_IDS = [t for t in _SINGLE if "\0" not in t]
_RETRIES = [0, 1, 1500, 2**40]
_COMMENTS = ["", "ping", "multi\nline", "cr\rline\r\n", "é"]
_JSON_VALUES: list[Any] = [
    {"a": 1, "b": [1, 2.5, None, True]}, [1, "é", None], "str\nnl", 1.5, 0, False,
    {"nested": {"k": ["\u2028", "\0", "𝄞"]}}, {}, [], "",
]  # fmt: skip
_ITEMS: list[Any] = [*_TEXTS, 0, 3, -7, 1.5, True, None, [1, "a"], []]


def differential_corpus() -> list[dict[str, Any]]:
    """Inputs both packages accept and represent correctly, deterministic."""
    rng = random.Random(37)
    corpus: list[dict[str, Any]] = []

    def fields() -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for name, values in (
            ("event", _SINGLE),
            ("id", _IDS),
            ("retry", _RETRIES),
            ("comment", _COMMENTS),
            ("sep", SEPS),
        ):
            if rng.random() < 0.5:
                chosen[name] = rng.choice(values)
        return chosen

    for sep in SEPS:
        for text in _TEXTS:
            corpus.append({"kind": "event", "data": text, "fields": {"sep": sep}})
            corpus.append({"kind": "item", "item": text, "sep": sep})
        for item in _ITEMS:
            corpus.append({"kind": "item", "item": item, "sep": sep})
        for value in _JSON_VALUES:
            corpus.append({"kind": "json", "data": value, "fields": fields()})
        for _ in range(30):
            item = fields()
            item.pop("sep", None)  # upstream overrides a dict's own sep with the response's
            if rng.random() < 0.8:
                item["data"] = rng.choice(_TEXTS)
            corpus.append({"kind": "item", "item": item, "sep": sep})
            data = rng.choice([*_TEXTS, None])
            corpus.append({"kind": "event_item", "data": data, "fields": fields(), "sep": sep})
    for _ in range(120):
        corpus.append({"kind": "event", "data": rng.choice([*_TEXTS, None]), "fields": fields()})
    for comment in _COMMENTS:
        corpus.append({"kind": "event", "data": None, "fields": {"comment": comment}})
    return corpus


def upstream_python() -> Path:
    default = Path(__file__).resolve().parent.parent / ".venv-upstream" / "bin" / "python"
    path = Path(os.environ.get("SSE_UPSTREAM_PYTHON", default))
    if not path.exists():
        pytest.skip(f"published sse-starlette not found at {path}; `make test` creates it")
    return path


def test_same_bytes_as_the_published_package() -> None:
    python = upstream_python()
    corpus = differential_corpus()
    assert len(corpus) > 300
    # -I: isolated, so the upstream interpreter cannot import this checkout's sse_starlette.
    result = subprocess.run(
        [str(python), "-I", "-c", _DRIVER],
        input=json.dumps(corpus),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = [base64.b64decode(b) for b in json.loads(result.stdout)]
    driver: dict[str, Any] = {"__name__": "driver"}
    exec(_DRIVER, driver)
    ours = [driver["encode"](case) for case in json.loads(json.dumps(corpus))]
    assert len(theirs) == len(corpus)
    mismatches = [(case, o, t) for case, o, t in zip(corpus, ours, theirs, strict=True) if o != t]
    assert mismatches == []
