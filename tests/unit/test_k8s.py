"""Static checks of deploy/k8s/ (no cluster here): the manifests parse, every SECSTREAM_ variable is a real
setting, secrets are only secret settings, probes ask the worker's health endpoints on its metrics port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the manifests")

from pydantic import SecretStr  # noqa: E402

from streams.settings import Settings  # noqa: E402

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def _setting(var: str) -> str:
    assert var.startswith("SECSTREAM_"), var
    name = var[len("SECSTREAM_"):].lower()
    assert name in Settings.model_fields, f"{var} is not a setting"
    return name


def test_config_and_secret_name_real_settings(docs: dict[str, dict[str, Any]]) -> None:
    config = docs["ConfigMap/secstream-worker"]["data"]
    secret = docs["Secret/secstream-worker"]["stringData"]
    for var in config:
        if var.startswith("SECSTREAM_"):
            assert Settings.model_fields[_setting(var)].annotation is not SecretStr, f"{var} is a secret"
    for var in secret:
        assert Settings.model_fields[_setting(var)].annotation is SecretStr, f"{var} is not a secret setting"
    Settings(**{_setting(k): v for k, v in config.items() if k.startswith("SECSTREAM_")})  # values validate


def test_worker_probes_resources_and_metrics_port(docs: dict[str, dict[str, Any]]) -> None:
    dep = docs["Deployment/secstream-worker"]
    pod = dep["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    port = int(docs["ConfigMap/secstream-worker"]["data"]["SECSTREAM_METRICS_PORT"])
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {"metrics": port}
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["resources"]["requests"] and worker["resources"]["limits"]
    refs = [list(ref.values())[0]["name"] for ref in worker["envFrom"]]
    assert refs == ["secstream-worker", "secstream-worker"]  # the ConfigMap, then the Secret
    partitions = int(docs["ConfigMap/secstream-worker"]["data"]["SECSTREAM_TOPIC_PARTITIONS"])
    assert 2 <= dep["spec"]["replicas"] <= partitions
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert docs["ConfigMap/secstream-worker"]["data"]["SECSTREAM_DATA_DIR"] in mounts
    assert docs["Service/secstream-worker-metrics"]["spec"]["ports"][0]["port"] == port
