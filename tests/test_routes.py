"""Routing events to subscribers: the index gives what matching each selector one by one
gives, for generated selectors and topics."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sse_starlette.broker._routes import Routes, matches

# Few letters, so that prefixes, exact names and patterns often meet.
names = st.text(alphabet="ab.*", min_size=1, max_size=5)
subscribers = st.lists(st.lists(names, min_size=1, max_size=4), max_size=8)


@given(subscribers, st.lists(names.filter(lambda n: not n.endswith("*")), min_size=1, max_size=3))
def test_routes_match_what_each_selector_matches(
    selections: list[list[str]], topics: list[str]
) -> None:
    routes: Routes[int] = Routes()
    for number, selectors in enumerate(selections):
        routes.add(number, selectors)
    expected = {
        number
        for number, selectors in enumerate(selections)
        if any(matches(selector, topics) for selector in selectors)
    }
    found = list(routes.match(topics))
    assert sorted(found) == sorted(expected)  # each once


@given(subscribers)
def test_removing_every_subscriber_leaves_no_route(selections: list[list[str]]) -> None:
    routes: Routes[int] = Routes()
    for number, selectors in enumerate(selections):
        routes.add(number, selectors)
    for number, selectors in enumerate(selections):
        routes.remove(number, selectors)
    assert not routes and routes.exact == {} and routes.prefixes == {}
