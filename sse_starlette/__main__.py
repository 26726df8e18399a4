"""`python -m sse_starlette demo` (a live page) and `python -m sse_starlette hub` (a pub/sub hub).

Every option can also be set by an environment variable (named in `--help`); a flag given on
the command line wins. Both serve with uvicorn (`pip install 'sse-starlette[uvicorn]'`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _add(
    parser: argparse._ActionsContainer,
    flag: str,
    env: str,
    help: str,
    default: Any = None,
    secret: bool = False,
    **kwargs: Any,
) -> None:
    # argparse converts a str default with `type`, so a bad environment value gets the same
    # clear error as a bad flag.
    value = os.environ.get(env)
    shown = "" if default is None or secret else f", default: {default}"
    parser.add_argument(
        flag,
        default=value if value not in (None, "") else default,
        help=f"{help} [env {env}{shown}]",
        **kwargs,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_server_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    group = parser.add_argument_group("server")
    _add(group, "--host", f"{prefix}_HOST", "address to bind", "127.0.0.1")
    _add(group, "--port", f"{prefix}_PORT", "port (0: any free port)", 8000, type=int)
    group.add_argument(
        "--fd",
        type=int,
        help="serve on this inherited, already listening socket instead of --host/--port "
        "(socket activation; a supervisor that keeps the port across restarts)",
    )
    _add(
        group,
        "--log-level",
        f"{prefix}_LOG_LEVEL",
        "log level",
        "info",
        choices=["debug", "info", "warning", "error"],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sse_starlette",
        description="Server-Sent Events without writing code: a live demo, a pub/sub hub.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{demo,hub}")

    demo = commands.add_parser(
        "demo",
        help="a live page: shared chat and ticker, several tabs, resume after a restart",
        description="Serve a live page (a shared chat and a ticker chart) and print its "
        "address. Open it in several tabs; restart the server and the tabs resume. With "
        "--redis, start it again on another port: every process shares the same events.",
    )
    _add_server_options(demo, "SSE_DEMO")
    _add(
        demo,
        "--redis",
        "SSE_DEMO_REDIS",
        "Redis URL: several demo processes act as one",
        metavar="URL",
    )
    _add(
        demo,
        "--tick",
        "SSE_DEMO_TICK",
        "seconds between ticker values (0: no ticker)",
        1.0,
        type=_seconds,
    )

    hub = commands.add_parser(
        "hub",
        help="a Mercure hub (POST/GET /.well-known/mercure)",
        description="A Mercure hub (draft-07, as the Go hub 0.x): publish with POST "
        "/.well-known/mercure (form-encoded, a publisher's JWT), subscribe with GET "
        "/.well-known/mercure?topic=SELECTOR; /metrics (Prometheus), /healthz. A key value "
        "starting with @ is read from that file. See docs/hub.md.",
    )
    _add_server_options(hub, "SSE_HUB")
    events = hub.add_argument_group("events (the broker)")
    _add(
        events,
        "--redis",
        "SSE_HUB_REDIS",
        "Redis URL (redis://, rediss://, unix://, redis+cluster://): hub processes on it act "
        "as one; default: in memory, one process",
        metavar="URL",
    )
    for name, flag, help, kind in _BROKER_OPTIONS:
        _add(events, flag, "SSE_HUB_" + flag[2:].replace("-", "_").upper(), help,
             _BROKER_DEFAULTS[name], dest=name, **kind)  # fmt: skip
    settings = hub.add_argument_group("access and limits")
    from sse_starlette.hub.settings import HubSettings

    for setting in HubSettings.fields():
        _add_setting(settings, setting)
    return parser


# The broker's options the hub command offers, with the broker's own defaults.
_BROKER_OPTIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("history", "--history", "updates kept for resuming", {"type": _positive_int}),
    ("max_age", "--max-age", "seconds updates are kept for resuming (default: no limit)",
     {"type": _seconds}),
    ("buffer", "--buffer", "updates a subscriber may fall behind", {"type": _positive_int}),
    ("slow_consumer", "--slow-consumer", "disconnect: end the stream (the client resumes); "
     "drop_oldest: drop updates", {"choices": ["disconnect", "drop_oldest"]}),
    ("prefix", "--redis-prefix", "prefix of the Redis keys", {}),
]  # fmt: skip


def _broker_defaults() -> dict[str, Any]:
    from sse_starlette.broker import Broker

    parameters = inspect.signature(Broker).parameters
    return {name: parameters[name].default for name, *_ in _BROKER_OPTIONS}


_BROKER_DEFAULTS = _broker_defaults()


def _add_setting(group: argparse._ArgumentGroup, setting: dataclasses.Field[Any]) -> None:
    """One `HubSettings` field as a flag and an environment variable, typed by its default."""
    flag = "--" + setting.name.replace("_", "-")
    env = "SSE_HUB_" + setting.name.upper()
    help, secret, default = setting.metadata["help"], setting.metadata["secret"], setting.default
    if isinstance(default, bool):
        value = os.environ.get(env)
        group.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=default if value in (None, "") else _env_flag(env),
            help=f"{help} [env {env}=1/0, default: {'on' if default else 'off'}]",
        )
    elif isinstance(default, tuple):
        values = [v.strip() for v in os.environ.get(env, "").split(",") if v.strip()]
        help = f"{help}; repeat for several [env {env}, comma-separated]"
        group.add_argument(flag, action=_Replacing, default=values, metavar="ORIGIN", help=help)
    elif isinstance(default, int):
        _add(group, flag, env, help, default, type=_positive_int)
    elif isinstance(default, float):
        _add(group, flag, env, help, default, type=_seconds)
    else:
        _add(group, flag, env, help, default, secret=secret, type=_text_or_file)


class _Replacing(argparse.Action):
    """Appends, as `action="append"`, but the first flag replaces the environment's list: a
    flag wins over the environment, also for lists (of allowed origins, say)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
        option_string: str | None = None,
    ) -> None:  # fmt: skip
        items = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if items is self.default else items), values])


def _text_or_file(value: str) -> str:
    """A value, or with `@path` the contents of that file (a PEM key, say)."""
    if not value.startswith("@"):
        return value
    try:
        with open(value[1:], encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {value[1:]}: {exc}") from None


def _listening_socket(host: str, port: int, fd: int | None) -> socket.socket:
    if fd is not None:
        return socket.socket(fileno=fd)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere: the local address is one that works
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _serve(
    make_app: Callable[[str], Starlette],
    options: argparse.Namespace,
    announce: Callable[[str], str],
    access_log: bool = False,
) -> int:
    try:
        import uvicorn
    except ImportError:
        print("serving needs uvicorn: pip install 'sse-starlette[uvicorn]'", file=sys.stderr)
        return 1
    try:
        sock = _listening_socket(options.host, options.port, options.fd)
    except OSError as exc:
        print(f"cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    url = _address(sock)
    try:
        app = make_app(url)
    except (ValueError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        log_config=None,  # our basicConfig: one format for uvicorn's lines and ours
        log_level=options.log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )
    print(announce(url), flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _demo(options: argparse.Namespace) -> int:
    from sse_starlette.broker import Broker
    from sse_starlette.demo import create_demo

    def make_app(url: str) -> Starlette:
        broker = Broker(options.redis or "memory://", history=10_000, prefix="sse-demo:")
        return create_demo(broker, label=url.removeprefix("http://"), tick=options.tick)

    def announce(url: str) -> str:
        also = " (run it again with another --port: every process shares the events)"
        return (
            f"sse-starlette demo: open {url} in two browser tabs"
            + (also if options.redis else "")
            + "; Ctrl+C stops it"
        )

    return _serve(make_app, options, announce)


def _hub(options: argparse.Namespace) -> int:
    from sse_starlette.broker import Broker
    from sse_starlette.hub import create_hub
    from sse_starlette.hub.settings import HubSettings

    def make_app(url: str) -> Starlette:
        broker = Broker(
            options.redis or "memory://",
            **{name: getattr(options, name) for name, *_ in _BROKER_OPTIONS},
        )
        settings = {field.name: getattr(options, field.name) for field in HubSettings.fields()}
        settings["cors_origins"] = tuple(settings["cors_origins"])
        settings["publish_origins"] = tuple(settings["publish_origins"])
        return create_hub(broker, **settings)

    def announce(url: str) -> str:
        return (
            f"sse-starlette Mercure hub on {url} (publish and subscribe at "
            f"/.well-known/mercure; /metrics, /healthz)"
        )

    # The hub logs its own access lines, without query strings: tokens travel there.
    return _serve(make_app, options, announce)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=options.log_level.upper(), format=LOG_FORMAT)
    if options.command == "demo":
        return _demo(options)
    return _hub(options)


if __name__ == "__main__":
    sys.exit(main())
