"""The hub's settings, declared once: `create_hub()` takes them, the CLI offers each as a flag
and an environment variable with the same default (`python -m sse_starlette hub --help`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HubSettings"]


def _setting(default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class HubSettings:
    """How a hub checks tokens and bounds what clients send. See docs/hub.md."""

    jwt_key: str | None = _setting(
        None,
        "key that verifies publishers' and subscribers' tokens: an HS256 secret, or a PEM "
        "public key (RSA: RS256, EC P-256: ES256); the algorithm is the key's",
        secret=True,
    )
    publisher_jwt_key: str | None = _setting(
        None, "key for publishers' tokens only (default: jwt_key)", secret=True
    )
    subscriber_jwt_key: str | None = _setting(
        None, "key for subscribers' tokens only (default: jwt_key)", secret=True
    )
    jwt_audience: str | None = _setting(None, "tokens must carry this 'aud' claim")
    jwt_leeway: float = _setting(10.0, "seconds of clock skew allowed on exp, nbf and iat")
    cookie_name: str = _setting("mercureAuthorization", "cookie that may carry the token")
    anonymous: bool = _setting(True, "subscribers without a token get public updates")
    cors_origins: tuple[str, ...] = _setting(
        (), "origins whose pages may call the hub ('*': any, never with credentials)"
    )
    publish_origins: tuple[str, ...] = _setting(
        (), "origins whose pages may publish with a cookie ('*': any)"
    )
    max_body: int = _setting(1_048_576, "largest publish body in bytes (larger: 413)")
    max_topics: int = _setting(100, "most topics in one update (more: 400)")
    max_selectors: int = _setting(100, "most topic selectors in one subscription (more: 400)")
    max_template_bytes: int = _setting(
        2048, "most bytes of URI templates in one subscription, all together (more: 400)"
    )
    max_templates: int = _setting(
        1000, "most distinct URI templates subscribed to in one hub process (more: 429)"
    )
    max_streams_per_token: int = _setting(
        0, "most streams open at once with one token, in one process (more: 429; 0: no limit)"
    )
    subscriptions: bool = _setting(
        False, "publish subscription events and serve /.well-known/mercure/subscriptions"
    )
    ping: float = _setting(15.0, "seconds between keep-alive comments (0: none)")
    send_timeout: float | None = _setting(
        30.0, "seconds a write may block before the stream is dropped (None/0: no limit)"
    )

    def __post_init__(self) -> None:
        for name in ("max_body", "max_topics", "max_selectors", "max_template_bytes",
                     "max_templates"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.jwt_leeway < 0 or self.ping < 0 or self.max_streams_per_token < 0:
            raise ValueError("jwt_leeway, ping and max_streams_per_token must be >= 0")

    @classmethod
    def fields(cls) -> list[dataclasses.Field[Any]]:
        return list(dataclasses.fields(cls))
