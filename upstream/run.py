"""Run the published sse-starlette's own public tests against this project.

    python upstream/run.py [VERSION ...]

Each version's sdist is downloaded from PyPI at run time (its tests stay theirs and out of
this repository). Its `tests/` and its pytest settings are unpacked beside two stand-ins for
files the sdist does not ship (`conftest.py`, `anyio_compat.py`, in this folder) and run in a
virtualenv of their own, with this project installed from the working tree. One line per
version; exit status 1 if any public test failed.

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
VENV = ROOT / ".venv-upstream-tests"
SDISTS = VENV / "sdists"

VERSIONS = ("3.0.2", "3.7.0", "3.7.1")

# What upstream's tests import besides the package under test (their dev dependency group).
REQUIREMENTS = (
    "pytest>=8",
    "pytest-asyncio>=0.25.0",  # their pytest settings say asyncio_mode = "auto"
    "httpx>=0.28.1",  # 3.0.2
    "httpx2>=2.12.0",  # 3.7.x
    "uvicorn>=0.34.0",
    "asgi-lifespan>=2.1.0",
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
    python = _venv_python()
    results = [run(version, python) for version in argv or VERSIONS]
    return 0 if all(results) else 1


def run(version: str, python: Path) -> bool:
    """Run one version's public tests; print its line (and the output, if any failed)."""
    private, newer = PRIVATE.get(version, ()), NEWER_WINS.get(version, ())
    with tempfile.TemporaryDirectory(prefix=f"upstream-{version}-") as tmp:
        _unpack(version, Path(tmp))
        args = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        args += ["-c", "pyproject.toml", "--rootdir", tmp]
        for left in private:
            args += ["--deselect" if left.test else "--ignore", left.node]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["SSE_UPSTREAM_NEWER_WINS"] = "\n".join(left.node for left in newer)
        result = subprocess.run(args, cwd=tmp, capture_output=True, text=True, env=env)
    ok = result.returncode == 0
    print(
        f"sse-starlette {version}: {'pass' if ok else 'FAIL'}: {_summary(result.stdout)} "
        f"({len(private)} files or tests left out as private, {len(newer)} where a newer "
        "version's test wins)"
    )
    if not ok:
        print(result.stdout[-20000:], result.stderr[-5000:], sep="\n")
    return ok


def _venv_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        _pip("install", "-q", "--upgrade", "pip")
        _pip("install", "-q", *REQUIREMENTS)
    # Not editable: an editable install puts this repository's own `tests` package on
    # sys.path, where it would shadow the upstream `tests` package being run.
    _pip("install", "-q", "--force-reinstall", "--no-deps", str(ROOT))
    _pip("install", "-q", str(ROOT))  # and the project's own dependencies
    return python


def _pip(*args: str) -> None:
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", *args], check=True)


def _sdist(version: str) -> Path:
    path = SDISTS / f"sse_starlette-{version}.tar.gz"
    if not path.exists():
        _pip("download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(SDISTS),
             f"sse-starlette=={version}")  # fmt: skip
    return path


def _unpack(version: str, into: Path) -> None:
    """Upstream's tests/ and pytest settings (never its package, which would shadow ours),
    with the stand-ins."""
    top = f"sse_starlette-{version}/"
    (into / "tests").mkdir()
    with tarfile.open(_sdist(version)) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix(top)
            wanted = name == "pyproject.toml" or re.fullmatch(r"tests/[^/]+\.py", name)
            source = archive.extractfile(member) if member.isfile() and wanted else None
            if source is not None:
                (into / name).write_bytes(source.read())
    (into / "tests" / "__init__.py").touch()
    for stand_in in ("conftest.py", "anyio_compat.py"):
        shutil.copy(HERE / stand_in, into / "tests" / stand_in)


def _summary(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return lines[-1].strip("= ") if lines else "no summary"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
