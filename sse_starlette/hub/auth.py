"""Who may publish and subscribe: Mercure's JWS tokens, where they come from, what they grant.

A token comes from the `Authorization: Bearer` header, else the `authorization` query
parameter, else the cookie (`mercureAuthorization` by default), in that order: the first
one present is the one used, even if it is invalid (draft-07 §Authorization).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.requests import Request

from sse_starlette.hub.selectors import Selector, compile_selectors

__all__ = ["Claims", "Key", "Rejected", "Token", "origin_allowed", "read_token"]

logger = logging.getLogger("sse_starlette.hub")

Source = Literal["header", "query", "cookie"]


class Rejected(Exception):
    """A request the hub refuses: its status, a short reason (for metrics), a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Token:
    """A token as the request carried it, and where it was found."""

    value: str
    source: Source


@dataclass
class Claims:
    """What a valid token grants: `mercure.publish` and `mercure.subscribe` selectors,
    `mercure.payload`, and its expiry (seconds since the epoch, or None)."""

    publish: list[Selector] = field(default_factory=list)
    subscribe: list[Selector] = field(default_factory=list)
    payload: Any = None
    expires: float | None = None
    token: str = ""  # the token's text: what streams are counted by


def read_token(request: Request, cookie_name: str) -> Token | None:
    """The token the request presents, from the first place that has one."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Rejected(401, "invalid-token", "Authorization must be 'Bearer <token>'")
        return Token(value.strip(), "header")
    query = request.query_params.get("authorization")
    if query is not None:
        return Token(query, "query")
    cookie = request.cookies.get(cookie_name)
    if cookie is not None:
        return Token(cookie, "cookie")
    return None


class Key:
    """One key that verifies tokens: an HS256 secret, or a PEM public key (RSA: RS256; EC
    P-256: ES256). The algorithm comes from the key, never from the token."""

    def __init__(self, key: str, *, audience: str | None = None, leeway: float = 0) -> None:
        try:
            # Imported only when a key is configured: a hub without keys runs without PyJWT.
            import jwt
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
            from cryptography.hazmat.primitives.serialization import load_pem_public_key
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("JWT keys need PyJWT: pip install 'sse-starlette[hub]'") from exc
        self.jwt = jwt
        self.audience = audience
        self.leeway = leeway
        self.key: Any
        if key.lstrip().startswith("-----BEGIN"):
            try:
                public = load_pem_public_key(key.encode())
            except ValueError as exc:
                raise ValueError(f"the public key cannot be read: {exc}") from None
            if isinstance(public, rsa.RSAPublicKey):
                self.algorithm = "RS256"
            elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1":
                self.algorithm = "ES256"
            else:
                raise ValueError("the public key must be RSA (RS256) or EC P-256 (ES256)")
            self.key = public
        else:
            from jwt.algorithms import HMACAlgorithm

            try:  # PyJWT refuses, as an HMAC secret, what looks like a public key
                HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)
            except jwt.InvalidKeyError as exc:
                raise ValueError(
                    f"the key is neither a PEM public key nor a secret: {exc}"
                ) from None
            if len(key.encode()) < 32:
                logger.warning("the JWT secret is shorter than 32 bytes: it can be brute-forced")
            self.algorithm, self.key = "HS256", key

    def claims(self, token: Token) -> Claims:
        """The token's grants; `Rejected` (401) when it is not valid now."""
        jwt = self.jwt
        try:
            decoded = jwt.decode(
                token.value,
                self.key,
                algorithms=[self.algorithm],  # never the one the token names: no confusion
                audience=self.audience,
                leeway=self.leeway,
                # An `aud` is checked when an audience is configured (as the Go hub does):
                # tokens of issuers that set one work on a hub that names none.
                options={"require": ["aud"], "verify_aud": True}
                if self.audience is not None
                else {"verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise Rejected(401, "invalid-token", "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise Rejected(401, "invalid-token", f"invalid token: {exc}") from None
        mercure = decoded.get("mercure", {})
        if not isinstance(mercure, dict):
            raise Rejected(401, "invalid-token", "the token's 'mercure' claim is not an object")
        claims = Claims(payload=mercure.get("payload"), token=token.value)
        for action in ("publish", "subscribe"):
            selectors = mercure.get(action, [])
            if not isinstance(selectors, list) or not all(map(_is_selector, selectors)):
                message = f"the token's 'mercure.{action}' claim must be a list of selectors"
                raise Rejected(401, "invalid-token", message)
            setattr(claims, action, compile_selectors(selectors))
        exp = decoded.get("exp")
        try:
            claims.expires = float(exp) + self.leeway if isinstance(exp, int | float) else None
        except OverflowError:  # an `exp` past what a float holds: it never comes
            claims.expires = None
        return claims


def _is_selector(value: object) -> bool:
    """A non-empty str of valid Unicode (JSON may carry a lone surrogate)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def origin_allowed(request: Request, origins: Sequence[str]) -> bool:
    """Whether a cookie-authorized publish comes from a page of an allowed origin: `Origin`,
    else `Referer`'s origin; neither: refused (a browser sends one with every POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return False
        try:
            parts = urlsplit(referer)
        except ValueError:  # not a URL: no origin to allow
            return False
        origin = f"{parts.scheme}://{parts.netloc}"
    return "*" in origins or origin in origins
