"""The distribution: a version pip keeps beside packages that require sse-starlette 3.x."""

from __future__ import annotations

import importlib.metadata

from packaging.requirements import Requirement
from packaging.version import Version

import sse_starlette


def test_the_version_has_one_source_and_is_above_the_newest_published_3x() -> None:
    assert importlib.metadata.version("sse-starlette") == sse_starlette.__version__
    version = Version(sse_starlette.__version__)
    # `mcp` requires sse-starlette>=3.0.0: below that pip swaps in the published package.
    assert Version("3.7.1") < version < Version("4")


def test_starlette_floor_is_the_published_packages_security_floor() -> None:
    requires = [Requirement(r) for r in importlib.metadata.requires("sse-starlette") or []]
    starlette = next(r for r in requires if r.name == "starlette" and r.marker is None)
    assert str(starlette.specifier) == ">=0.49.1"
