"""Static checks of deploy/k8s/ (no cluster here): the manifests parse, every SECSTREAM_ variable is a real
setting, secrets reach the worker only as files of the Secret (SECSTREAM_<SECRET>_FILE) and, written out as
the kubelet would, make valid settings; probes ask the worker's health endpoints on its metrics port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the manifests")

from pydantic import SecretStr

from streams.config.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


SECRETS_MOUNT = "/run/secrets/secstream"


def _setting(var: str) -> str:
    assert var.startswith("SECSTREAM_"), var
    name = var[len("SECSTREAM_"):].lower()
    assert name in Settings.model_fields, f"{var} is not a setting"
    return name


def _secret_mount(docs: dict[str, dict[str, Any]]) -> str:
    pod = docs["Deployment/secstream-worker"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "secstream-worker"
    assert volume["secret"]["defaultMode"] & 0o007 == 0, "secret files must not be world-readable"
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    return str(mount["mountPath"])


def test_secrets_are_files_of_the_secret(docs: dict[str, dict[str, Any]]) -> None:
    config = docs["ConfigMap/secstream-worker"]["data"]
    secret = docs["Secret/secstream-worker"]["stringData"]
    mount = _secret_mount(docs)
    assert mount == SECRETS_MOUNT
    for var, value in config.items():
        if var.endswith("_FILE") and var.removeprefix("SECSTREAM_").lower() not in Settings.model_fields:
            # a secret setting, read from a file of the mounted Secret
            assert Settings.model_fields[_setting(var.removesuffix("_FILE"))].annotation is SecretStr, var
            assert value.startswith(mount + "/") and value.removeprefix(mount + "/") in secret, var
        elif var.startswith("SECSTREAM_"):
            assert Settings.model_fields[_setting(var)].annotation is not SecretStr, f"{var} is a secret"
        if var.startswith("SECSTREAM_") and value.startswith(mount + "/"):
            assert value.removeprefix(mount + "/") in secret, f"{var}: no such key in the Secret"


def test_manifests_make_valid_settings(docs: dict[str, dict[str, Any]], tmp_path, monkeypatch) -> None:
    """The Secret written out as the kubelet mounts it, the ConfigMap as the environment: the settings load,
    with the secrets from the files and masked by ``secstream config``."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("SECSTREAM_"):
            monkeypatch.delenv(key)
    secret = docs["Secret/secstream-worker"]["stringData"]
    for key, value in secret.items():
        (tmp_path / key).write_text(value)
    for var, value in docs["ConfigMap/secstream-worker"]["data"].items():
        if var.startswith("SECSTREAM_"):
            monkeypatch.setenv(var, value.replace(SECRETS_MOUNT, str(tmp_path)))
    s = Settings()
    assert s.kafka_security_protocol == "SASL_SSL" and s.kafka_sasl_password.get_secret_value() == "change-me"
    assert s.qdrant_api_key.get_secret_value() == "change-me" and s.qdrant_url.startswith("https://")
    masked = s.masked()
    assert masked["kafka_sasl_password"] == masked["qdrant_api_key"] == "********"


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
    assert worker["envFrom"] == [{"configMapRef": {"name": "secstream-worker"}}]  # secrets are files, not env
    partitions = int(docs["ConfigMap/secstream-worker"]["data"]["SECSTREAM_TOPIC_PARTITIONS"])
    assert 2 <= dep["spec"]["replicas"] <= partitions
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert docs["ConfigMap/secstream-worker"]["data"]["SECSTREAM_DATA_DIR"] in mounts
    assert docs["Service/secstream-worker-metrics"]["spec"]["ports"][0]["port"] == port
