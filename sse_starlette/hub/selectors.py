"""Mercure topic selectors as the broker takes them: `*`, a topic, or a URI template.

A string matches a selector when the selector is `*`, or is that very string, or is a URI
template the string matches (draft-07 §Topic Selectors). A template the parser refuses is
compared as a plain string, as the Go hub does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sse_starlette.uritemplate import TemplateError, UriTemplate, compile_template, is_template

__all__ = ["Selector", "allows", "compile_selectors", "templates"]


class _Template:
    """A URI template selector, as a broker matcher: it also matches its own text."""

    __slots__ = ("_compiled", "text")

    def __init__(self, text: str, compiled: UriTemplate | None) -> None:
        self.text = text
        self._compiled = compiled

    def match(self, topic: str) -> bool:
        return topic == self.text or (self._compiled is not None and self._compiled.match(topic))

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Template) and other.text == self.text

    def __str__(self) -> str:
        return self.text


Selector = str | _Template


def compile_selector(text: str) -> Selector:
    """`*` and plain topics stay strings (the broker indexes them); templates, and plain
    topics ending in `*` (which the broker would read as a prefix), become matchers."""
    if text == "*":
        return "*"
    if is_template(text):
        try:
            return _Template(text, compile_template(text))
        except TemplateError:
            return _Template(text, None)
    return _Template(text, None) if text.endswith("*") else text


def compile_selectors(texts: Iterable[str]) -> list[Selector]:
    return [compile_selector(text) for text in texts]


def templates(selectors: Iterable[Selector]) -> set[str]:
    """The URI templates among `selectors` (what a process matches one by one)."""
    return {s.text for s in selectors if isinstance(s, _Template) and s._compiled is not None}


def allows(selectors: Sequence[Selector], topic: str) -> bool:
    """Whether one of `selectors` matches `topic`."""
    return any(
        selector == "*" or selector == topic if isinstance(selector, str) else selector.match(topic)
        for selector in selectors
    )
