"""Server hooks are guests: a server whose internals moved is left untouched, with one warning.

Each test runs a fresh interpreter, so that imports and hooks start from nothing; fake server
modules on `sys.path` (ahead of the real ones) stand for a server release that renamed what a
hook patches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sse_starlette._servers import OPT_OUT

REPO = Path(__file__).resolve().parents[1]

# A release of each server in which something a hook needs has moved (module -> files).
MOVED: dict[str, dict[str, str]] = {
    "uvicorn.server": {
        "uvicorn/__init__.py": "__version__ = '99.0'\n",
        # `shutdown` renamed: the hook needs both methods.
        "uvicorn/server.py": "class Server:\n    def handle_exit(self, sig, frame): pass\n",
    },
    "hypercorn.asyncio.run": {
        "hypercorn/__init__.py": "__version__ = '99.0'\n",
        "hypercorn/asyncio/__init__.py": "from .run import worker_serve\n",
        # `WorkerContext` gone.
        "hypercorn/asyncio/run.py": "async def worker_serve(app, config): pass\n",
    },
    "granian._signals": {
        "granian/__init__.py": "__version__ = '99.0'\n",
        # A new required parameter.
        "granian/_signals.py": (
            "def set_loop_signals(loop, signals): pass\ndef _get_signals(): return []\n"
        ),
    },
    "daphne.server": {
        "daphne/__init__.py": "__version__ = '99.0'\n",
        "daphne/server.py": "class Server:\n    pass\n",  # no `kill_all_applications`
    },
}

# Prints every function of the server module (and of its classes) that sse_starlette made.
_PATCHED = """
import inspect

def patched(module):
    found = []
    for name, value in vars(module).items():
        if name.startswith("__"):  # __loader__: the import hook's, not the server's
            continue
        values = [value, *vars(value).values()] if inspect.isclass(value) else [value]
        for item in values:
            if str(getattr(item, "__module__", "")).startswith("sse_starlette"):
                found.append(f"{name}.{getattr(item, '__name__', '?')}")
    return found
"""


def run_python(code: str, *, path: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run `code` in a fresh interpreter; its stdout, and its log lines after `LOG:`."""
    pythonpath = [str(path)] if path else []
    environ = {
        **{k: v for k, v in os.environ.items() if k != OPT_OUT},
        "PYTHONPATH": os.pathsep.join([*pythonpath, str(REPO)]),
        **(env or {}),
    }
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, format='LOG: %(levelname)s %(message)s')\n"
        + _PATCHED
        + textwrap.dedent(code)
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environ, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def fake_server(tmp_path: Path, module: str) -> Path:
    for name, text in MOVED[module].items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("module", MOVED)
@pytest.mark.parametrize("sse_first", [True, False], ids=["sse_starlette first", "server first"])
def test_a_server_whose_internals_moved_imports_untouched_with_one_warning(
    tmp_path: Path, module: str, sse_first: bool
) -> None:
    imports = ["import sse_starlette", f"import {module}"]
    server = module.split(".")[0]
    out = run_python(
        "\n".join(imports if sse_first else imports[::-1])
        + f"\nimport {module} as m\nimport sse_starlette._servers\n"
        # Again, as the first stream of a response does: still one warning.
        + "sse_starlette._servers._modules_seen = 0\n"
        + "sse_starlette._servers.install()\n"
        + "print('patched:', patched(m))\n",
        path=fake_server(tmp_path, module),
    )
    warnings = [line for line in out.splitlines() if line.startswith("LOG: WARNING")]
    assert len(warnings) == 1, out
    assert f"cannot hook {server} 99.0" in warnings[0]
    assert f"{OPT_OUT}={server}" in warnings[0]
    assert "patched: []" in out


def test_every_installed_server_is_hooked_without_a_warning() -> None:
    out = run_python(
        """
        import sse_starlette
        import uvicorn.server, hypercorn.asyncio.run, hypercorn.trio.run, granian._signals
        import daphne.server
        for m in (uvicorn.server, hypercorn.asyncio.run, hypercorn.trio.run, granian._signals,
                  daphne.server):
            print(m.__name__, bool(patched(m)))
        """
    )
    assert "LOG:" not in out
    modules = ["uvicorn.server", "hypercorn.asyncio.run", "hypercorn.trio.run"]
    modules += ["granian._signals", "daphne.server"]
    assert out.split() == [word for module in modules for word in (module, "True")]


@pytest.mark.parametrize(
    ("value", "hooked"),
    [
        ("1", []),
        ("uvicorn", ["hypercorn.asyncio.run", "granian._signals", "daphne.server"]),
        ("uvicorn, daphne", ["hypercorn.asyncio.run", "granian._signals"]),
        ("uvicorn daphne", ["hypercorn.asyncio.run", "granian._signals"]),
        ("0", ["uvicorn.server", "hypercorn.asyncio.run", "granian._signals", "daphne.server"]),
        ("none", ["uvicorn.server", "hypercorn.asyncio.run", "granian._signals", "daphne.server"]),
    ],
)
def test_the_opt_out_leaves_the_servers_it_names_untouched(value: str, hooked: list[str]) -> None:
    out = run_python(
        """
        import sse_starlette
        import uvicorn.server, hypercorn.asyncio.run, granian._signals, daphne.server
        for m in (uvicorn.server, hypercorn.asyncio.run, granian._signals, daphne.server):
            if patched(m):
                print(m.__name__)
        """,
        env={OPT_OUT: value},
    )
    assert out.split() == hooked


def test_an_opt_out_naming_no_known_server_says_so() -> None:
    out = run_python("import sse_starlette\n", env={OPT_OUT: "uvicron"})
    assert f"LOG: WARNING sse_starlette: {OPT_OUT}='uvicron' names no server it knows" in out
