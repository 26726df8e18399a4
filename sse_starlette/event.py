"""The one encoder: Python values -> bytes of the `text/event-stream` format.

The rules are the WHATWG HTML "Server-sent events" parsing rules (§9.2.5-9.2.6): what a
browser's `EventSource` reads back is exactly what was given, or encoding raises
`ValueError`/`TypeError` naming the field. Nothing is silently altered or dropped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["JSONServerSentEvent", "ServerSentEvent", "ensure_bytes"]

# Internal API, for sse_starlette's own modules (the response, the broker, the hub, the demo)
# and not public: `FIELDS`, `check_fields`, `check_sep`, `data_text`, `dumps`, `encode_event`.

_SEPARATORS = ("\r\n", "\n", "\r")
#: The keys a dict item may have (`sep` is accepted and ignored: the stream's own wins).
FIELDS = frozenset(("data", "event", "id", "retry", "comment", "sep"))


def _lines(value: str) -> list[str]:
    # The spec ends a line at CRLF, lone LF or lone CR and nowhere else; str.splitlines()
    # would also split on U+2028, U+0085, VT, FF, ... and corrupt the data.
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value.split("\n")


def _single_line(field: str, value: Any) -> str:
    text = value if type(value) is str else str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"SSE field {field!r} cannot contain a line break (CR or LF): {text!r}")
    return text


def _check_retry(retry: Any) -> None:
    if type(retry) is not int:
        # bool is an int, but `retry: True` is not ASCII digits and browsers ignore it. The
        # text is the published package's, which its tests (and so users' tests) compare whole.
        raise TypeError("retry argument must be int")
    if retry < 0:
        raise ValueError(f"SSE field 'retry' must be >= 0 (milliseconds), got {retry}")


def check_fields(item: Mapping[str, Any], allowed: frozenset[str] = FIELDS) -> None:
    """Raise `TypeError` listing the keys of `item` that are not `allowed` fields."""
    if not allowed.issuperset(item):
        unknown = sorted(map(str, item.keys() - allowed))
        raise TypeError(f"unknown field(s) {unknown}; allowed: {', '.join(sorted(allowed))}")


def check_sep(sep: str) -> str:
    """`sep` if it is a line ending the spec knows (CRLF, LF, CR); else `ValueError`."""
    if sep not in _SEPARATORS:
        raise ValueError(f"sep must be one of '\\r\\n', '\\n', '\\r', got {sep!r}")
    return sep


def data_text(data: Any) -> str:
    """The text of a `data` value: str as is, bytes as UTF-8, a model or dataclass as JSON."""
    if type(data) is str:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"SSE field 'data' holds bytes that are not UTF-8: {exc}") from None
    dump_json = getattr(data, "model_dump_json", None)  # Pydantic v2 models
    if dump_json is not None and not isinstance(data, type):
        return str(dump_json())
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return dumps(dataclasses.asdict(data))
    return str(data)


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII as itself, NaN and infinities refused (JSON has none)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"SSE field 'data' cannot be sent as JSON: {exc}") from exc


def _surrogate_error(fields: dict[str, Any]) -> ValueError:
    # Only on the error path: find the field so the message can name it.
    for name, value in fields.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return ValueError(
                f"SSE field {name!r} contains a lone surrogate that cannot be sent "
                f"as UTF-8 (position {exc.start}): {value!r}"
            )
    return ValueError("SSE event cannot be encoded as UTF-8")  # pragma: no cover


def encode_event(
    data: Any,
    event: Any,
    id: Any,
    retry: Any,
    comment: Any,
    sep: str,
) -> bytes:
    """Encode one event; field order is the published package's: comment, id, event, data, retry."""
    # Plain concatenation: this runs once per event and is measurably faster than list+join.
    text = ""
    if comment is not None:
        comment = str(comment)
        for line in _lines(comment):
            text += ": " + line + sep
    if id is not None:
        if type(id) is not str:
            id = str(id)
        if "\n" in id or "\r" in id or "\0" in id:
            _single_line("id", id)
            # A browser ignores the whole `id` field when it contains U+0000 (§9.2.6).
            raise ValueError(f"SSE field 'id' cannot contain U+0000 NULL: {id!r}")
        text += "id: " + id + sep
    if event is not None:
        event = _single_line("event", event)
        text += "event: " + event + sep
    if data is not None:
        if type(data) is not str:
            data = data_text(data)
        if "\n" in data or "\r" in data:
            for line in _lines(data):
                text += "data: " + line + sep
        else:
            text += "data: " + data + sep
    if retry is not None:
        _check_retry(retry)
        text += "retry: " + str(retry) + sep
    text += sep
    try:
        return text.encode()
    except UnicodeEncodeError:
        fields = {"comment": comment, "id": id, "event": event, "data": data}
        raise _surrogate_error({k: v for k, v in fields.items() if v is not None}) from None


class ServerSentEvent:
    """One server-sent event.

    `data` is sent as one `data:` line per line (split only on CR, LF and CRLF); a str is sent
    as is, bytes are decoded as UTF-8, a Pydantic model or a dataclass as JSON, anything else
    `str()`-ed. `event` and `id` must be single lines (`id` without U+0000), `retry` a
    non-negative int in milliseconds, `comment` may span lines. `sep` is the line separator:
    CRLF (default), LF or CR.

    >>> ServerSentEvent("foo", event="bar", id="xyz", retry=1).encode()
    b'id: xyz\\r\\nevent: bar\\r\\ndata: foo\\r\\nretry: 1\\r\\n\\r\\n'
    """

    __slots__ = ("_sep", "comment", "data", "event", "id", "retry")

    def __init__(
        self,
        data: Any | None = None,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
        sep: str | None = None,
    ) -> None:
        if retry is not None:
            _check_retry(retry)
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry
        self.comment = comment
        self._sep = "\r\n" if sep is None else check_sep(sep)

    def encode(self) -> bytes:
        """The event as UTF-8 bytes, ending with the blank line that dispatches it."""
        return encode_event(self.data, self.event, self.id, self.retry, self.comment, self._sep)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("data", "event", "id", "retry", "comment")
            if getattr(self, name) is not None
        )
        return f"{type(self).__name__}({fields})"


class JSONServerSentEvent(ServerSentEvent):
    """A `ServerSentEvent` whose `data` is serialised as compact JSON.

    Non-ASCII characters are sent as themselves (`ensure_ascii=False`); NaN and infinities,
    which JSON cannot represent, raise `ValueError`. `data=None` sends no `data` field.
    """

    __slots__ = ()

    def __init__(self, data: Any | None = None, *args: Any, **kwargs: Any) -> None:
        if data is not None:
            if hasattr(data, "model_dump") and not isinstance(data, type):
                data = data.model_dump(mode="json")
            elif dataclasses.is_dataclass(data) and not isinstance(data, type):
                data = dataclasses.asdict(data)
            data = dumps(data)
        super().__init__(data, *args, **kwargs)


def ensure_bytes(data: Any, sep: str) -> bytes:
    """Encode one item that an `EventSourceResponse` accepts.

    bytes and memoryview are sent as they are (already encoded); a `ServerSentEvent` encodes
    itself with its own separator; a dict holds the fields (`data`, `event`, `id`, `retry`,
    `comment`; a `sep` key is ignored: `sep` wins); anything else becomes the `data` of an
    event.
    """
    kind = type(data)
    if kind is dict:
        # {"data": "..."}: the commonest item skips the general path.
        if len(data) == 1 and type(text := data.get("data")) is str:
            return _data_event(text, sep)
        return _encode_dict(data, sep)
    if kind is str:
        return _data_event(data, sep)
    if kind is bytes:
        return data  # type: ignore[no-any-return]
    if isinstance(data, ServerSentEvent):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, dict):
        return _encode_dict(data, sep)
    # `None` too becomes `data: None`, as the published package sends it.
    return encode_event("None" if data is None else data, None, None, None, None, sep)


def _data_event(text: str, sep: str) -> bytes:
    if "\n" not in text and "\r" not in text:
        try:
            return f"data: {text}{sep}{sep}".encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: encode_event raises the error that names the field
    return encode_event(text, None, None, None, None, sep)


def _encode_dict(item: dict[str, Any], sep: str) -> bytes:
    check_fields(item)
    get = item.get
    # A "sep" key is accepted and, as in the published package, the response's `sep` wins:
    # one stream, one line ending.
    return encode_event(get("data"), get("event"), get("id"), get("retry"), get("comment"), sep)
