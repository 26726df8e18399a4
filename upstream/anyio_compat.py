"""Stands in for upstream's `tests/anyio_compat.py`, which its sdists do not ship.

Upstream's tests wrap calls in `collapse_excgroups()` so that an error raised inside a task
group reaches `pytest.raises` as itself. Written here from that use, not copied.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]


@contextmanager
def collapse_excgroups() -> Iterator[None]:
    """Re-raise a group of exactly one exception as that exception (nested groups too)."""
    try:
        yield
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        raise exc from None
