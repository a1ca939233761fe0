"""What can be checked of the image and compose file without a Docker engine."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from gateway.app import create_app
from gateway.server import stop_budget_s
from gateway.settings import Settings, load_settings
from gateway.tracing import tracing_enabled

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    text = dockerfile().replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.+)$", text, flags=re.MULTILINE)
    assert found, name
    return found[-1].strip()


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", value)
    assert match, value
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_compose_parses_and_references_files_that_exist() -> None:
    services = compose()["services"]
    service = services["gateway"]
    assert (ROOT / service["build"] / "Dockerfile").is_file()
    for volume in service["volumes"] + services["proxy"]["volumes"]:
        host, _, mode = volume.split(":")
        assert (ROOT / host).exists(), host
        assert mode == "ro"
    assert service["volumes"] == ["./config:/app/config:ro"]
    for env_file in service["env_file"]:
        assert env_file["required"] is False
        assert (ROOT / (env_file["path"] + ".example")).is_file()


def test_image_runs_the_readme_command_as_its_entry_point() -> None:
    entrypoint = json.loads(instruction("ENTRYPOINT"))
    assert entrypoint == ["gateway", "serve", "--host", "0.0.0.0"]
    assert " ".join(entrypoint) in (ROOT / "README.md").read_text()


def test_image_runs_as_non_root_with_the_mounted_config() -> None:
    assert instruction("USER") not in ("root", "0")
    assert "GATEWAY_CONFIG=/app/config/gateway.toml" in dockerfile()
    assert (ROOT / "config" / "gateway.toml").is_file()
    load_settings(ROOT / "config" / "gateway.toml")  # the shipped config is valid


def test_healthcheck_probes_a_route_that_exists_on_the_configured_port() -> None:
    paths = set(create_app(Settings()).openapi()["paths"])
    check = instruction("HEALTHCHECK")
    assert "http://127.0.0.1:{os.environ['GATEWAY_PORT']}/healthz" in check
    assert "/healthz" in paths
    assert "healthcheck" not in compose()["services"]["gateway"]  # the image's own is used


def test_the_port_is_named_once_per_file() -> None:
    port = str(Settings().port)
    assert f"GATEWAY_PORT={port}" in dockerfile()
    assert dockerfile().count(port) == 1
    assert instruction("EXPOSE") == "${GATEWAY_PORT}"
    services = compose()["services"]
    assert services["gateway"]["environment"]["GATEWAY_PORT"] == port
    assert services["gateway"]["expose"] == [port]
    assert "ports" not in services["gateway"]  # so that it can be scaled
    assert services["proxy"]["environment"]["GATEWAY_PORT"] == port
    assert services["proxy"]["ports"] == [f"127.0.0.1:{port}:80"]  # the host's side
    nginx = (ROOT / "config" / "nginx.conf").read_text()
    assert "gateway:${GATEWAY_PORT}" in nginx
    assert port not in nginx
    shipped = tomllib.loads((ROOT / "config" / "gateway.toml").read_text())
    assert "port" not in shipped  # the environment would override it in the image


def test_the_proxy_and_the_gateway_both_outlast_the_drain() -> None:
    budget = stop_budget_s(load_settings(ROOT / "config" / "gateway.toml"))
    services = compose()["services"]
    for name in ("gateway", "proxy"):
        assert seconds(services[name]["stop_grace_period"]) > budget, name
    assert services["proxy"]["stop_signal"] == "SIGQUIT"  # nginx's graceful stop


def test_secrets_stay_out_of_git_and_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_proxy_does_not_buffer_streams() -> None:
    nginx = (ROOT / "config" / "nginx.conf").read_text()
    for directive in ("proxy_buffering off;", "proxy_http_version 1.1;", "gzip off;"):
        assert directive in nginx


def test_replicas_share_limits_through_the_compose_redis() -> None:
    services = compose()["services"]
    url = services["gateway"]["environment"]["GATEWAY_REDIS_URL"]
    assert url == "redis://redis:6379/0"
    assert "redis" in services
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_tracing_profile_adds_a_backend_the_gateway_can_reach() -> None:
    services = compose()["services"]
    jaeger = services["jaeger"]
    assert jaeger["profiles"] == ["tracing"]  # off unless asked for
    assert "4318" in jaeger["expose"]  # OTLP/HTTP
    assert all(port.startswith("127.0.0.1:") for port in jaeger["ports"])
    assert "jaeger" not in services["gateway"]["depends_on"]  # a plain `up` needs no backend
    # Empty (tracing off) unless .env names the backend, as .env.example shows.
    endpoint = services["gateway"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    example = (ROOT / ".env.example").read_text()
    assert "# OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in example
    assert "docker compose --profile tracing up" in (ROOT / "README.md").read_text()
    settings = load_settings()
    assert not tracing_enabled(settings.tracing, {"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert tracing_enabled(settings.tracing, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"})
