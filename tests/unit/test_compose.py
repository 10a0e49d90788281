"""Static checks of docker-compose.yml, deploy/prometheus/prometheus.yml and the Dockerfile.

There is no Docker engine on the development machine, so nothing here starts a
container: these tests parse the files (PyYAML) and check that they agree with each
other and with :class:`streams.config.settings.Settings`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the compose file")

from streams.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS.read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment whether written as a mapping or as KEY=VALUE items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _ports(service: dict[str, Any]) -> set[int]:
    """Container ports a service exposes or publishes."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for spec in service.get("ports", []):
        target = spec.get("target") if isinstance(spec, dict) else str(spec).split("/")[0].rsplit(":", 1)[-1]
        ports.add(int(target))
    return ports


def _worker_env(compose: dict[str, Any]) -> dict[str, str]:
    return _env(compose["services"]["worker"])


def test_required_services(compose: dict[str, Any]) -> None:
    assert {"kafka", "qdrant", "worker", "prometheus", "grafana"} <= set(compose["services"])


def test_secstream_variables_are_settings_fields(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    seen = []
    for name, service in compose["services"].items():
        for key in _env(service):
            if key.startswith("SECSTREAM_"):
                field = key.removeprefix("SECSTREAM_").lower()
                assert field in fields, f"{name}: {key} is not a Settings field"
                seen.append(key)
    assert "SECSTREAM_KAFKA_BOOTSTRAP" in seen and "SECSTREAM_QDRANT_URL" in seen


def test_worker_environment_validates(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _worker_env(compose).items():
        if key.startswith("SECSTREAM_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert not settings.embedded_broker and not settings.embedded_store
    assert settings.sample is False


def test_worker_runs_secstream(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["build"]["context"] == "." and worker["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    entrypoint = re.search(r"^ENTRYPOINT\s+(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    command = worker["command"] if isinstance(worker["command"], list) else worker["command"].split()
    effective = (worker.get("entrypoint") or (json.loads(entrypoint.group(1)) if entrypoint else [])) + command
    assert effective[:2] == ["secstream", "run"]
    for dep in ("kafka", "qdrant"):
        assert worker["depends_on"][dep]["condition"] == "service_healthy"


def test_metrics_port_exposed_and_scraped(compose: dict[str, Any], prometheus: dict[str, Any]) -> None:
    port = int(_worker_env(compose).get("SECSTREAM_METRICS_PORT", Settings.model_fields["metrics_port"].default))
    assert port in _ports(compose["services"]["worker"])
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    job = jobs["secstream"]
    interval = job.get("scrape_interval", prometheus.get("global", {}).get("scrape_interval"))
    assert interval == "5s"
    targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [f"{name}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
    assert targets and all(t == f"worker:{port}" for t in targets), targets


def test_prometheus_mounts_its_config(compose: dict[str, Any]) -> None:
    mounts = [str(v).split(":")[:2] for v in compose["services"]["prometheus"]["volumes"]]
    assert ["./deploy/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml"] in mounts
    assert 9090 in _ports(compose["services"]["prometheus"])


def test_bootstrap_matches_kafka_advertised_listener(compose: dict[str, Any]) -> None:
    kafka = _env(compose["services"]["kafka"])
    advertised = dict(item.split("://", 1) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    inter_broker = kafka.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    bootstrap = _worker_env(compose)["SECSTREAM_KAFKA_BOOTSTRAP"]
    assert bootstrap == advertised[inter_broker] == "kafka:9092"
    host, port = bootstrap.split(":")
    assert host == compose["services"]["kafka"].get("hostname", "kafka")
    listeners = dict(item.split("://", 1) for item in kafka["KAFKA_LISTENERS"].split(","))
    assert listeners[inter_broker].rsplit(":", 1)[-1] == port


def test_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = _env(kafka)
    assert kafka["image"] == "apache/kafka:3.9.0"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:{listeners[controller].rsplit(':', 1)[-1]}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_qdrant_url_matches_service(compose: dict[str, Any]) -> None:
    qdrant = compose["services"]["qdrant"]
    assert re.fullmatch(r"qdrant/qdrant:v1\.15\.\d+", qdrant["image"])
    url = urlsplit(_worker_env(compose)["SECSTREAM_QDRANT_URL"])
    assert url.hostname == "qdrant" and url.port in _ports(qdrant) and url.port == 6333
    assert 6334 in _ports(qdrant)
    assert qdrant.get("volumes") and qdrant.get("healthcheck")


def test_dockerfile_installs_cpu_torch_first() -> None:
    text = DOCKERFILE.read_text()
    assert text.lstrip().startswith(("FROM python:3.11-slim", "#")) and "FROM python:3.11-slim" in text
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    torch = next(i for i, r in enumerate(runs)
                 if "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in r)
    project = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch < project
    assert re.search(r"HF_HUB_OFFLINE=1", text)
    assert 'ENTRYPOINT ["secstream"]' in text and 'CMD ["run"]' in text


ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def test_alert_rules_are_loaded_and_use_real_metrics(compose: dict[str, Any], prometheus: dict[str, Any]) -> None:
    from streams.ops.metrics import REGISTRY

    mounts = compose["services"]["prometheus"]["volumes"]
    target = next(m.split(":")[1] for m in mounts if m.startswith("./deploy/prometheus/alerts.yml"))
    assert prometheus["rule_files"] == [target]
    families = list(REGISTRY.collect())  # a labelled family with no child yet has no samples: use its name
    exposed = {f"{fam.name}{suffix}" for fam in families for suffix in ("", "_total", "_count", "_sum", "_bucket")}
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {"SecstreamConsumerLagGrowing", "SecstreamDLQSpike", "SecstreamNoEvents"} <= {r["alert"] for r in rules}
    for rule in rules:
        used = set(re.findall(r"secstream_[a-z_]+", rule["expr"]))
        assert used <= exposed, (rule["alert"], used - exposed)
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


def test_two_workers_share_the_partitions(compose: dict[str, Any]) -> None:
    replicas = compose["services"]["worker"]["deploy"]["replicas"]
    assert 2 <= replicas <= int(_worker_env(compose)["SECSTREAM_TOPIC_PARTITIONS"])
    assert "container_name" not in compose["services"]["worker"]  # replicas need generated names
