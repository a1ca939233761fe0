"""deploy/kubernetes/ against the Kubernetes schemas (shipped by kubernetes-validate, so this
runs offline) and against the gateway's own settings and routes (SPEC §8)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.app import create_app
from gateway.server import stop_budget_s
from gateway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest and the newest Kubernetes versions the manifests are checked against.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]
    return found


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def gateway_container() -> dict[str, Any]:
    (container,) = one("Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    return container


def test_every_file_is_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_are_valid_against_the_kubernetes_schemas(version: str) -> None:
    kinds = set()
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)  # raises when invalid
        kinds.add(document["kind"])
    expected = {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler"}
    assert expected | {"PodDisruptionBudget"} <= kinds


def test_the_schemas_do_catch_a_mistake() -> None:
    broken = one("Deployment", "gateway")
    broken["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 40  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def shipped_settings(tmp_path: Path) -> Settings:
    """The ConfigMap's gateway.toml, loaded as the pod will load it."""
    toml = one("ConfigMap", "gateway-config")["data"]["gateway.toml"]
    tomllib.loads(toml)
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    return load_settings(path)


def test_probes_use_the_gateways_routes_on_its_port(tmp_path: Path) -> None:
    container = gateway_container()
    routes = set(create_app(Settings()).openapi()["paths"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= routes
    (port,) = container["ports"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert port["containerPort"] == int(env["GATEWAY_PORT"])
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert "port" not in tomllib.loads(one("ConfigMap", "gateway-config")["data"]["gateway.toml"])
    shipped_settings(tmp_path)  # the configuration is valid


def test_termination_grace_outlasts_the_drain(tmp_path: Path) -> None:
    spec = one("Deployment", "gateway")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > stop_budget_s(shipped_settings(tmp_path))


def test_config_secret_redis_and_security_are_wired(tmp_path: Path) -> None:
    container = gateway_container()
    spec = one("Deployment", "gateway")["spec"]["template"]["spec"]
    (mount,) = container["volumeMounts"]
    (volume,) = spec["volumes"]
    assert (mount["mountPath"], volume["configMap"]["name"]) == ("/app/config", "gateway-config")
    assert container["envFrom"] == [{"secretRef": {"name": "gateway-provider-keys"}}]
    secret_keys = set(one("Secret", "gateway-provider-keys")["stringData"])
    settings = shipped_settings(tmp_path)
    named = {getattr(p, "api_key_env", None) for p in settings.providers.values()} - {None}
    assert named <= secret_keys  # every key the configuration names comes from the Secret
    env = {item["name"]: item.get("value") for item in container["env"]}
    redis = one("Service", "gateway-redis")
    assert (
        env["GATEWAY_REDIS_URL"] == f"redis://gateway-redis:{redis['spec']['ports'][0]['port']}/0"
    )
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"]
    hpa, pdb = one("HorizontalPodAutoscaler", "gateway"), one("PodDisruptionBudget", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    labels = one("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service", "gateway")["spec"]["selector"].items() <= labels.items()
