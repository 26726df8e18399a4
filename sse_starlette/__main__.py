"""`python -m sse_starlette demo` (a live page) and `python -m sse_starlette hub` (a pub/sub hub).

Every option can also be set by an environment variable (named in `--help`); a flag given on
the command line wins. Both serve with uvicorn (`pip install 'sse-starlette[uvicorn]'`).
"""

from __future__ import annotations

import argparse
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
        help="a standalone publish/subscribe hub (POST /publish, GET /subscribe)",
        description="A publish/subscribe hub. POST /publish with a JSON body {topic, data, "
        "event, retry, comment}; GET /subscribe?topic=NAME streams the topic (resumes after "
        "Last-Event-ID); /metrics (Prometheus), /healthz. Without a JWT key the hub is OPEN: "
        "anyone may publish and subscribe. See docs/hub.md.",
    )
    _add_server_options(hub, "SSE_HUB")
    broker = hub.add_argument_group("events")
    _add(
        broker,
        "--redis",
        "SSE_HUB_REDIS",
        "Redis URL (redis://, rediss://, unix://): hub processes on it act as one; "
        "default: in memory, one process",
        metavar="URL",
    )
    _add(broker, "--redis-prefix", "SSE_HUB_REDIS_PREFIX", "prefix of the Redis keys", "sse:")
    _add(
        broker,
        "--history",
        "SSE_HUB_HISTORY",
        "events kept per topic for resuming",
        1000,
        type=_positive_int,
    )
    _add(
        broker,
        "--max-age",
        "SSE_HUB_MAX_AGE",
        "seconds events are kept for resuming (default: no age limit)",
        type=_seconds,
    )
    _add(
        broker,
        "--buffer",
        "SSE_HUB_BUFFER",
        "events a subscriber may fall behind before --slow-consumer applies",
        256,
        type=_positive_int,
    )
    _add(
        broker,
        "--slow-consumer",
        "SSE_HUB_SLOW_CONSUMER",
        "disconnect: end the stream, the client resumes from history; "
        "drop_oldest: drop events and send a reset event",
        "disconnect",
        choices=["disconnect", "drop_oldest"],
    )
    _add(
        broker,
        "--max-payload",
        "SSE_HUB_MAX_PAYLOAD",
        "largest publish body in bytes (larger: 413)",
        65536,
        type=_positive_int,
    )
    _add(
        broker,
        "--ping",
        "SSE_HUB_PING",
        "seconds between keep-alive comments (0: none)",
        15.0,
        type=_seconds,
    )
    _add(
        broker,
        "--send-timeout",
        "SSE_HUB_SEND_TIMEOUT",
        "seconds a write may block before the stream is dropped (0: no limit)",
        30.0,
        type=_seconds,
    )
    auth = hub.add_argument_group("access")
    _add(
        auth,
        "--jwt-key",
        "SSE_HUB_JWT_KEY",
        "HS256 secret that signs the tokens",
        secret=True,
        metavar="SECRET",
    )
    _add(
        auth,
        "--jwt-public-key-file",
        "SSE_HUB_JWT_PUBLIC_KEY_FILE",
        "PEM file of the public key that verifies RS256 tokens",
        metavar="PATH",
    )
    _add(auth, "--jwt-audience", "SSE_HUB_JWT_AUDIENCE", "tokens must carry this 'aud' claim")
    _add(auth, "--jwt-cookie", "SSE_HUB_JWT_COOKIE", "cookie that may carry the token", "sse_token")
    origins = os.environ.get("SSE_HUB_CORS_ORIGINS", "")
    auth.add_argument(
        "--cors-origin",
        action="append",
        default=[origin.strip() for origin in origins.split(",") if origin.strip()],
        metavar="ORIGIN",
        help="origin whose pages may call the hub; repeat for several, '*' for any "
        "[env SSE_HUB_CORS_ORIGINS, comma-separated]",
    )
    auth.add_argument(
        "--access-log",
        action="store_true",
        default=_env_flag("SSE_HUB_ACCESS_LOG"),
        help="log every request, not just stream open/close [env SSE_HUB_ACCESS_LOG=1]",
    )
    return parser


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

    def make_app(url: str) -> Starlette:
        public_key = None
        if options.jwt_public_key_file:
            with open(options.jwt_public_key_file, encoding="utf-8") as file:
                public_key = file.read()
        broker = Broker(
            options.redis or "memory://",
            history=options.history,
            max_age=options.max_age,
            buffer=options.buffer,
            slow_consumer=options.slow_consumer,
            prefix=options.redis_prefix,
        )
        return create_hub(
            broker,
            jwt_secret=options.jwt_key or None,
            jwt_public_key=public_key,
            jwt_audience=options.jwt_audience or None,
            cookie_name=options.jwt_cookie,
            max_payload=options.max_payload,
            ping=options.ping,
            send_timeout=options.send_timeout or None,
            cors_origins=options.cors_origin,
        )

    def announce(url: str) -> str:
        open_mode = not (options.jwt_key or options.jwt_public_key_file)
        return (
            f"sse-starlette hub on {url}: POST {url}/publish, GET {url}/subscribe?topic=NAME, "
            f"{url}/metrics, {url}/healthz"
            + ("\nOPEN MODE: no JWT key, anyone may publish and subscribe" if open_mode else "")
        )

    return _serve(make_app, options, announce, access_log=options.access_log)


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
