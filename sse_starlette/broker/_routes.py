"""Which subscribers an event goes to: topic names, and selectors that name or match them.

A selector is a topic name, or a prefix followed by `*` (`chat.*`; `*` alone: every topic),
or a `Matcher`: an object that tells the topics it selects (the hub's URI templates). A `*`
elsewhere in a name is an ordinary character.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

__all__ = ["Matcher", "Routes", "check_topics", "matches", "selection"]

S = TypeVar("S")


@runtime_checkable
class Matcher(Protocol):
    """A selector that is not a name or a prefix: equal matchers must hash equal, so that a
    process checks each distinct one once per event, whatever the number of subscribers."""

    def match(self, topic: str) -> bool: ...

    def __hash__(self) -> int: ...


def check_topics(topics: Any, what: str) -> tuple[Any, ...]:
    """`topics` as a tuple of distinct names (or, for selectors, matchers), in the order
    given; ValueError/TypeError for what cannot be stored and matched exactly (`what`:
    "topic" or "selector")."""
    single = isinstance(topics, str) or (what == "selector" and isinstance(topics, Matcher))
    names = [topics] if single else list(topics)
    if not names:
        raise ValueError(f"name at least one {what}")
    for name in names:
        if what == "selector" and isinstance(name, Matcher) and not isinstance(name, str):
            continue
        if not isinstance(name, str):
            raise TypeError(f"a {what} must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError(f"a {what} must not be empty")
        try:
            name.encode()
        except UnicodeEncodeError:
            raise ValueError(f"a {what} must be valid Unicode (no lone surrogates)") from None
    return tuple(dict.fromkeys(names))


def matches(selector: str | Matcher, topics: Iterable[str]) -> bool:
    """Whether `selector` names or matches one of `topics`."""
    if not isinstance(selector, str):
        return any(selector.match(topic) for topic in topics)
    if selector.endswith("*"):
        prefix = selector[:-1]
        return any(topic.startswith(prefix) for topic in topics)
    return selector in topics


def selection(selectors: Iterable[str | Matcher]) -> Callable[[Sequence[str]], bool]:
    """Whether one of `selectors` names or matches one of an event's topics, indexed as
    `Routes` is: the cost per event does not grow with the number of selectors."""
    routes: Routes[bool] = Routes()
    routes.add(True, selectors)
    return lambda topics: bool(routes.match(topics))


class Routes(Generic[S]):
    """The subscribers of one process, by the selectors they subscribed with.

    Matching an event costs one dict lookup per topic of the event, plus one per distinct
    prefix length in use: not one per subscriber or per pattern.
    """

    __slots__ = ("_counts", "_lengths", "exact", "matchers", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, set[S]] = {}
        self.prefixes: dict[str, set[S]] = {}  # "chat." for `chat.*`; "" for `*`
        # The prefix lengths in use, sorted, and how many prefixes have each: kept up to date
        # as prefixes come and go, in time independent of how many there are.
        self._lengths: list[int] = []
        self._counts: Counter[int] = Counter()
        self.matchers: dict[Matcher, set[S]] = {}

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes or self.matchers)

    def add(self, subscriber: S, selectors: Iterable[str | Matcher]) -> None:
        for selector in selectors:
            table, key = self._place(selector)
            subscribers = table.get(key)
            if subscribers is None:
                subscribers = table[key] = set()
                if table is self.prefixes:
                    self._counts[len(key)] += 1
                    if self._counts[len(key)] == 1:
                        bisect.insort(self._lengths, len(key))
            subscribers.add(subscriber)

    def remove(self, subscriber: S, selectors: Iterable[str | Matcher]) -> None:
        for selector in selectors:
            table, key = self._place(selector)
            subscribers = table.get(key)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del table[key]
                    if table is self.prefixes:
                        self._counts[len(key)] -= 1
                        if not self._counts[len(key)]:
                            del self._counts[len(key)]
                            self._lengths.remove(len(key))

    def subscribers(self) -> set[S]:
        """Every subscriber, once."""
        tables = (self.exact, self.prefixes, self.matchers)
        return {s for table in tables for subscribers in table.values() for s in subscribers}

    def match(self, topics: Sequence[str]) -> Iterable[S]:
        """Every subscriber an event of `topics` goes to, each once."""
        exact, prefixes = self.exact, self.prefixes
        if len(topics) == 1 and not prefixes and not self.matchers:  # no set to build
            return exact.get(topics[0], ())
        found: set[S] = set()
        for topic in topics:
            subscribers = exact.get(topic)
            if subscribers:
                found.update(subscribers)
            for length in self._lengths:
                if length > len(topic):
                    break
                subscribers = prefixes.get(topic[:length])
                if subscribers:
                    found.update(subscribers)
        for matcher, subscribers in self.matchers.items():
            if any(matcher.match(topic) for topic in topics):
                found.update(subscribers)
        return found

    def _place(self, selector: str | Matcher) -> tuple[dict[Any, set[S]], Any]:
        if not isinstance(selector, str):
            return self.matchers, selector
        if selector.endswith("*"):
            return self.prefixes, selector[:-1]
        return self.exact, selector
