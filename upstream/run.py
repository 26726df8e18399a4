"""Run other people's tests against this project: the published sse-starlette's own public
tests, and the SSE tests of the packages that depend on it.

    python upstream/run.py [SUITE ...]      # e.g. 3.7.1, mcp; default: all

Each sdist is downloaded from PyPI at run time (the tests stay theirs and out of this
repository). Its `tests/` and its pytest settings are unpacked (for sse-starlette beside two
stand-ins for files its sdists do not ship: `conftest.py`, `anyio_compat.py`, in this folder)
and run in a virtualenv of their own, with this project installed from the working tree
beside the dependent, so pip must accept the pair. One line per suite; exit status 1 if any
test failed.

The tests left out are declared below, each with the reason: it imports, patches or calls a
private helper of the published implementation, or needs a file the sdist does not contain.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = ROOT / ".venv-upstream-tests"  # one virtualenv per distribution, and the sdists


class Suite(NamedTuple):
    distribution: str
    version: str
    requirements: tuple[str, ...]  # what its tests import besides the package under test
    paths: tuple[str, ...] = ("tests",)  # what of its tests/ to run
    stand_ins: bool = False  # add conftest.py and anyio_compat.py from this folder

    @property
    def name(self) -> str:
        return self.version if self.distribution == "sse-starlette" else self.distribution


# sse-starlette's own dev dependency group (as far as its public tests import it).
_SSE_STARLETTE_TESTS = (
    "pytest>=8",
    "pytest-asyncio>=0.25.0",  # its pytest settings say asyncio_mode = "auto"
    "httpx>=0.28.1",  # 3.0.2
    "httpx2>=2.12.0",  # 3.7.x
    "uvicorn>=0.34.0",
    "asgi-lifespan>=2.1.0",
)

SUITES = (
    *(
        Suite("sse-starlette", version, _SSE_STARLETTE_TESTS, stand_ins=True)
        for version in ("3.0.2", "3.7.0", "3.7.1")
    ),
    # The MCP Python SDK, sse-starlette's largest dependent: its SSE and streamable-HTTP
    # transports, server side, client side and both together. Pinned, so that a new release
    # of theirs cannot turn CI red overnight; raise it deliberately.
    Suite(
        "mcp",
        "2.3.0",
        (
            "mcp[cli]==2.3.0",
            *("pytest>=8.4", "trio", "inline-snapshot", "dirty-equals", "pytest-examples"),
            *("pytest-pretty", "logfire", "opentelemetry-sdk", "blockbuster", "coverage"),
        ),
        (
            "tests/shared/test_sse.py",
            "tests/shared/test_streamable_http.py",
            "tests/server/test_sse_security.py",
            "tests/server/test_streamable_http_manager.py",
            "tests/server/test_streamable_http_security.py",
            "tests/interaction/transports",
        ),
    ),
)


class Left(NamedTuple):
    """Tests left out of a run: a whole file, or one test function (all its parameters)."""

    file: str
    test: str | None
    why: str

    @property
    def node(self) -> str:
        return f"tests/{self.file}" + (f"::{self.test}" if self.test else "")


_SSE = "TestEventSourceResponse::"
_DISCONNECT = Left(
    "test_sse.py",
    _SSE + "test_disconnect_whenClientDisconnects_thenHandlesGracefully",
    "needs upstream's conftest (its `httpx_client` app, not in the sdist) and matches the "
    "published implementation's debug log lines",
)
_PRIVATE_EXIT_SIGNAL = "replaces the private method `EventSourceResponse._listen_for_exit_signal`"
_PRIVATE_PING = (
    "calls the private method `EventSourceResponse._ping` and patches "
    "`sse_starlette.sse.anyio.sleep` (the published implementation's ping loop)"
)

PRIVATE: dict[str, tuple[Left, ...]] = {
    "3.0.2": (
        Left("test_multi_loop.py", None, "imports the private `_exit_event_context`"),
        _DISCONNECT,
    ),
    "3.7.0": (
        Left("test_multi_loop.py", None, "imports the private `_get_shutdown_state`"),
        Left(
            "test_issue132.py",
            None,
            "imports and patches the private `_get_uvicorn_server`, `_get_shutdown_state`, "
            "`_shutdown_watcher`",
        ),
        Left(
            "test_issue152.py",
            None,
            "imports the private `_ensure_watcher_started_on_this_loop`, `_get_shutdown_state`",
        ),
        Left(
            "test_broadcasting_example.py",
            None,
            "loads upstream's `examples/02_broadcasting.py`, which the sdist does not ship (it "
            "tests that example, not the package)",
        ),
        _DISCONNECT,
        Left(
            "test_sse.py",
            _SSE + "test_send_whenInterrupted_thenClosesSuspendedGenerator",
            _PRIVATE_EXIT_SIGNAL,
        ),
        Left(
            "test_issue217.py",
            "test_send_whenInterruptedAndCleanupStuck_thenDeadlineCancelsCleanup",
            _PRIVATE_EXIT_SIGNAL,
        ),
        Left(
            "test_issue217.py",
            "test_closingFrame_whenSendStalls_thenInterruptionEndsResponse",
            _PRIVATE_EXIT_SIGNAL,
        ),
        Left(
            "test_sse.py",
            _SSE + "test_ping_whenTimerTicks_thenSendsOneMessagePerTick",
            _PRIVATE_PING,
        ),
        Left(
            "test_sse.py",
            _SSE + "test_ping_whenSendTimesOut_thenRaisesSendTimeoutError",
            _PRIVATE_PING,
        ),
    ),
}
PRIVATE["3.7.1"] = PRIVATE["3.7.0"]

# Where two versions' tests disagree the newer one wins (README, "Drop-in"). Each is run as a
# strict xfail: should it start passing, the run fails and the entry goes.
NEWER_WINS: dict[str, tuple[Left, ...]] = {
    "3.0.2": (
        Left(
            "test_sse.py",
            _SSE + "test_pingInterval_whenNegativeValue_thenRaisesValueError",
            "matches 'ping interval must be greater than 0'; 3.7.x matches 'ping interval must "
            "be >= 0' (0 disables the ping)",
        ),
    ),
}


def main(argv: list[str]) -> int:
    unknown = set(argv) - {suite.name for suite in SUITES}
    if unknown:
        print(f"unknown suites {sorted(unknown)}; known: {[s.name for s in SUITES]}")
        return 2
    results = [run(suite) for suite in SUITES if not argv or suite.name in argv]
    return 0 if all(results) else 1


def run(suite: Suite) -> bool:
    """Run one suite; print its line (and the output, if any test failed)."""
    try:
        python = _venv_python(suite)
    except (subprocess.CalledProcessError, SystemExit) as exc:
        print(f"{suite.distribution} {suite.version}: FAIL: not installed beside it: {exc}")
        return False
    private, newer = PRIVATE.get(suite.name, ()), NEWER_WINS.get(suite.name, ())
    with tempfile.TemporaryDirectory(prefix=f"upstream-{suite.name}-") as tmp:
        _unpack(suite, Path(tmp))
        args = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"]
        args += ["-c", "pyproject.toml", "--rootdir", tmp, *suite.paths]
        for left in private:
            args += ["--deselect" if left.test else "--ignore", left.node]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["SSE_UPSTREAM_NEWER_WINS"] = "\n".join(left.node for left in newer)
        result = subprocess.run(args, cwd=tmp, capture_output=True, text=True, env=env)
    ok = result.returncode == 0
    print(
        f"{suite.distribution} {suite.version}: {'pass' if ok else 'FAIL'}: "
        f"{_summary(result.stdout)} ({len(private)} files or tests left out as private, "
        f"{len(newer)} where a newer version's test wins)"
    )
    if not ok:
        print(result.stdout[-20000:], result.stderr[-5000:], sep="\n")
    return ok


def _venv_python(suite: Suite) -> Path:
    venv = VENVS / suite.distribution
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _pip(python, "install", "-q", "--upgrade", "pip")
    # One resolve with the dependent: pip must keep this project beside it (at a version it
    # accepts), not swap in the published one, which the run would then test: refuse that.
    _pip(python, "install", "-q", str(ROOT), *suite.requirements)
    query = "import importlib.metadata as m; print(m.version('sse-starlette'))"
    installed = subprocess.run([str(python), "-c", query], capture_output=True, text=True)
    ours = re.search(r'__version__ = "(.+)"', (ROOT / "sse_starlette/__init__.py").read_text())
    if ours is None or installed.stdout.strip() != ours[1]:
        raise SystemExit(f"pip installed sse-starlette {installed.stdout.strip()}, not this one")
    # The working tree as it is now, under the same version. Not editable: an editable
    # install puts this repository's own `tests` package on sys.path, where it would shadow
    # the `tests` package being run.
    _pip(python, "install", "-q", "--force-reinstall", "--no-deps", str(ROOT))
    return python


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", *args], check=True)


def _sdist(suite: Suite) -> Path:
    sdists = VENVS / "sdists"
    stem = f"{suite.distribution.replace('-', '_')}-{suite.version}"
    path = sdists / f"{stem}.tar.gz"
    if not path.exists():
        _pip(Path(sys.executable), "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", str(sdists), f"{suite.distribution}=={suite.version}")  # fmt: skip
    return path


def _unpack(suite: Suite, into: Path) -> None:
    """The sdist's tests/ and pytest settings (never its package, which would shadow the
    installed one), with the stand-ins where asked."""
    top = f"{_sdist(suite).name.removesuffix('.tar.gz')}/"
    with tarfile.open(_sdist(suite)) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix(top)
            wanted = name == "pyproject.toml" or name.startswith("tests/")
            source = archive.extractfile(member) if member.isfile() and wanted else None
            if source is not None:
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                (into / name).write_bytes(source.read())
    if suite.stand_ins:
        (into / "tests" / "__init__.py").touch()
        for stand_in in ("conftest.py", "anyio_compat.py"):
            shutil.copy(HERE / stand_in, into / "tests" / stand_in)


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return lines[-1].strip("= ") if lines else "no summary"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
