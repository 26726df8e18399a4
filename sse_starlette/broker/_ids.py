"""Broker ids: "<milliseconds>-<sequence>", as Redis stream ids, in both backends."""

from __future__ import annotations

import re

__all__ = ["parse_id"]

# ASCII digits only: `\d` would take any Unicode digit ("١٢-٣" is 12-3 to int()).
_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_PART = 2**64 - 1  # what a Redis stream id holds in each part


def parse_id(value: str) -> tuple[int, int] | None:
    """A broker id ("<milliseconds>-<sequence>", as Redis stream ids) as a sortable pair;
    None for anything else, including values a Redis stream id cannot hold."""
    match = _ID.fullmatch(value)
    if match is None:
        return None
    pair = int(match[1]), int(match[2])
    if pair[0] > _MAX_PART or pair[1] > _MAX_PART:
        return None
    return pair
