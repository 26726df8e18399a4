"""The hub's settings are declared once: create_hub, the CLI flags and their environment
variables share names and defaults; discovery helpers make valid Link headers."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sse_starlette.__main__ import _parser
from sse_starlette.broker import Broker
from sse_starlette.hub import HubSettings, create_hub
from sse_starlette.hub.discovery import MercureDiscovery, mercure_link


def hub_options(*argv: str) -> dict[str, object]:
    return vars(_parser().parse_args(["hub", *argv]))


def test_every_setting_is_a_flag_with_the_libraries_default() -> None:
    options = hub_options()
    for field in HubSettings.fields():
        expected = list(field.default) if isinstance(field.default, tuple) else field.default
        assert options[field.name] == expected, field.name
    broker = inspect.signature(Broker).parameters
    for name in ("history", "max_age", "buffer", "slow_consumer", "prefix"):
        assert options[name] == broker[name].default, name


def test_a_setting_comes_from_its_environment_variable_and_a_flag_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSE_HUB_MAX_TOPICS", "7")
    monkeypatch.setenv("SSE_HUB_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SSE_HUB_ANONYMOUS", "0")
    options = hub_options()
    assert options["max_topics"] == 7
    assert options["cors_origins"] == ["https://a.example", "https://b.example"]
    assert options["anonymous"] is False
    assert hub_options("--max-topics", "9", "--anonymous")["max_topics"] == 9


def test_a_key_file_is_read_with_at(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n...")
    assert hub_options("--jwt-key", f"@{key}")["jwt_key"] == key.read_text()


@pytest.mark.parametrize("settings", [{"max_body": 0}, {"jwt_leeway": -1}, {"nope": 1}])
def test_an_impossible_setting_is_refused(settings: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        create_hub(**settings)


def test_mercure_link_quotes_its_parameters_and_refuses_what_would_break_the_header() -> None:
    hub = "https://hub.example/.well-known/mercure"
    assert mercure_link(hub) == f'<{hub}>; rel="mercure"'
    assert mercure_link(hub, last_event_id="urn:uuid:1", content_type="application/ld+json") == (
        f'<{hub}>; rel="mercure"; last-event-id="urn:uuid:1"; content-type="application/ld+json"'
    )
    bad_links: list[dict[str, Any]] = [
        {"hub": hub + "\r\nX: y"},
        {"hub": hub, "last_event_id": 'a"b'},
    ]
    for bad in bad_links:
        with pytest.raises(ValueError):
            mercure_link(**bad)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_discovery_middleware_advertises_the_hub_on_every_response() -> None:
    app = Starlette(routes=[Route("/books/1", lambda r: PlainTextResponse("Dune"))])
    app.add_middleware(MercureDiscovery, hub="https://hub.example/.well-known/mercure")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/books/1", "/missing"):
            response = await client.get(path)
            assert response.headers["link"] == (
                '<https://hub.example/.well-known/mercure>; rel="mercure"'
            )


def test_a_flag_replaces_the_environments_list_of_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSE_HUB_PUBLISH_ORIGINS", "*")
    options = hub_options("--publish-origins", "https://app.example")
    assert options["publish_origins"] == ["https://app.example"]  # not ['*', ...]


@pytest.mark.parametrize(
    "key",
    [
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@example",
        "# a comment\n-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----\n",
    ],
)
def test_a_key_that_is_no_secret_nor_pem_stops_the_hub_at_start_up(key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        create_hub(jwt_key=key)
