"""Static checks of Grafana in docker-compose.yml and deploy/grafana/ (no Grafana runs here).

Every PromQL expression of the dashboard may name only series that streams.ops.metrics.REGISTRY
exposes (or Prometheus' ``up``), and only labels those series carry; the panels use the
provisioned datasource; the compose service mounts the provisioning folders of the repo.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the compose and provisioning files")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "secstream.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
PROVIDERS = GRAFANA / "provisioning" / "dashboards"

# Labels Prometheus adds to every scraped series; `le` is on every histogram bucket.
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
FUNCTIONS = {"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "clamp_min"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _series() -> dict[str, set[str]]:
    """Every series name a worker exposes (streams.ops.metrics.REGISTRY) -> the labels it may carry."""
    from prometheus_client.metrics import MetricWrapperBase

    from streams.ops import metrics

    registered = {family.name: family.type for family in metrics.REGISTRY.collect()}
    out: dict[str, set[str]] = {"up": set(TARGET_LABELS)}
    seen = set()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        family = metric.describe()[0]
        assert registered.get(family.name) == family.type, f"{family.name} is not in streams.ops.metrics.REGISTRY"
        seen.add(family.name)
        labels = set(metric._labelnames) | TARGET_LABELS  # the metric's own label names
        for suffix in SUFFIXES[family.type]:
            out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    assert seen == set(registered), set(registered) ^ seen
    return out


SERIES = _series()


def _jobs() -> set[str]:
    return {job["job_name"] for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}


def _problems(expr: str, series: dict[str, set[str]], jobs: set[str]) -> list[str]:
    """What is wrong with one PromQL expression: unknown series, labels a series lacks,
    a job Prometheus does not scrape, a histogram_quantile without ``le``, unknown functions."""
    problems: list[str] = []
    groupings = [{label.strip() for label in body.split(",") if label.strip()}
                 for body in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)]
    rest = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", expr)
    selectors: list[tuple[str, dict[str, str]]] = []

    def selector(match: re.Match[str]) -> str:
        body, matchers, pos = match.group(2), {}, 0
        while pos < len(body):
            m = MATCHER.match(body, pos)
            if m is None:
                problems.append(f"unparsed matchers {body[pos:]!r}")
                break
            matchers[m.group(1)] = m.group(3)
            pos = m.end()
        selectors.append((match.group(1), matchers))
        return " "

    rest = re.sub(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", selector, rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", rest):
        name, call = m.group(1), m.group(2)
        if call:
            if name not in FUNCTIONS:
                problems.append(f"unknown function {name}")
        elif name not in KEYWORDS:
            selectors.append((name, {}))
    if not selectors:
        problems.append("no series")
    names = {name for name, _ in selectors}
    for name, matchers in selectors:
        if name not in series:
            problems.append(f"unknown series {name}")
            continue
        problems += [f"{name} has no label {label}" for label in set(matchers) - series[name]]
        if "job" in matchers and matchers["job"] not in jobs:
            problems.append(f"job {matchers['job']} is not scraped")
    for labels in groupings:
        for name in names & set(series):
            problems += [f"{name} has no label {label} to group by" for label in labels - series[name]]
    if "histogram_quantile" in expr and not any("le" in labels for labels in groupings):
        problems.append("histogram_quantile without le in by (...)")
    return problems


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], target) for panel in dashboard["panels"] for target in panel["targets"]]


def _binds(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (host path, read-only) of a service's bind mounts (short syntax)."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *mode = str(spec).split(":")
        if source.startswith("."):
            out[target] = (source, "ro" in mode)
    return out


def test_the_checker_finds_wrong_names() -> None:
    jobs = {"secstream"}
    assert _problems('sum by (result) (rate(secstream_events_total{job="secstream"}[5m]))', SERIES, jobs) == []
    assert _problems("rate(secstream_events[5m])", SERIES, jobs) == ["unknown series secstream_events"]
    assert _problems("secstream_dlq_total{kind=\"x\"}", SERIES, jobs) == ["secstream_dlq_total has no label kind"]
    assert _problems("sum by (reason) (secstream_events_total)", SERIES, jobs) == [
        "secstream_events_total has no label reason to group by"]
    assert _problems('up{job="workers"}', SERIES, jobs) == ["job workers is not scraped"]
    assert _problems("histogram_quantile(0.9, sum(rate(secstream_upsert_seconds_bucket[1m])))", SERIES, jobs) == [
        "histogram_quantile without le in by (...)"]
    assert _problems("secstream_upsert_seconds", SERIES, jobs) == ["unknown series secstream_upsert_seconds"]
    assert SERIES["secstream_consumer_lag_messages"] == {"topic", "partition", "job", "instance"}


def test_every_expression_uses_real_series_and_labels(dashboard: dict[str, Any]) -> None:
    jobs = _jobs()
    targets = _targets(dashboard)
    assert len(targets) >= 12
    for title, target in targets:
        assert _problems(target["expr"], SERIES, jobs) == [], (title, target["expr"])
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
        assert m, var["query"]
        assert _problems(m.group(1), SERIES, jobs) == [] and m.group(2) in SERIES["up"]


def test_panels_cover_the_pipeline(dashboard: dict[str, Any]) -> None:
    exprs = [target["expr"] for _, target in _targets(dashboard)]
    used = {name for expr in exprs for name in re.findall(r"\b(secstream_\w+|up)\{", expr)}
    assert {"up", "secstream_events_total", "secstream_consumer_lag_messages", "secstream_end_to_end_seconds_bucket",
            "secstream_stage_seconds_bucket", "secstream_dlq_total", "secstream_alerts_total",
            "secstream_text_cache_total", "secstream_upsert_seconds_bucket", "secstream_store_points"} <= used
    for histogram in ("secstream_end_to_end_seconds_bucket", "secstream_stage_seconds_bucket",
                      "secstream_upsert_seconds_bucket"):
        quantiles = {float(q) for expr in exprs if histogram in expr
                     for q in re.findall(r"histogram_quantile\(([\d.]+),", expr)}
        assert quantiles == {0.5, 0.95, 0.99}, histogram
    grouped = {frozenset(label.strip() for label in g.split(",")) for expr in exprs
               for g in re.findall(r"by \(([^)]*)\)", expr)}
    assert {frozenset({"result"}), frozenset({"reason"}), frozenset({"kind", "severity"}),
            frozenset({"topic", "partition"}), frozenset({"le", "stage"})} <= grouped
    assert any('result="hit"' in e and "secstream_text_cache_total" in e and " / " in e for e in exprs)


def test_instance_variable_filters_every_panel(dashboard: dict[str, Any]) -> None:
    names = {var["name"] for var in dashboard["templating"]["list"]}
    assert "instance" in names
    for title, target in _targets(dashboard):
        assert 'instance=~"$instance"' in target["expr"], title
        used = set(re.findall(r"\$(\w+)", target["expr"]))
        assert used <= names | {"__rate_interval", "__interval", "__range"}, (title, used)


def test_panels_use_the_provisioned_datasource(dashboard: dict[str, Any], compose: dict[str, Any]) -> None:
    sources = [ds for path in sorted(DATASOURCES.glob("*.y*ml"))
               for ds in yaml.safe_load(path.read_text())["datasources"]]
    prometheus = [ds for ds in sources if ds["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["uid"]
    uid = prometheus[0]["uid"]
    url = urlsplit(prometheus[0]["url"])
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    assert f"{url.port}:{url.port}" in compose["services"]["prometheus"]["ports"]
    refs = [panel["datasource"] for panel in dashboard["panels"]]
    refs += [target["datasource"] for _, target in _targets(dashboard)]
    refs += [var["datasource"] for var in dashboard["templating"]["list"]]
    assert refs and all(ref == {"type": "prometheus", "uid": uid} for ref in refs)


def test_grafana_service_mounts_the_provisioning(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", grafana["image"])
    assert "3000:3000" in grafana["ports"] and "prometheus" in grafana["depends_on"]
    binds = _binds(grafana)
    for target, (source, read_only) in binds.items():
        assert (ROOT / source).is_dir(), source
        assert read_only, target
    provisioning = ROOT / binds["/etc/grafana/provisioning"][0]
    assert provisioning == GRAFANA / "provisioning"
    assert list(DATASOURCES.glob("*.yml")) and list(PROVIDERS.glob("*.yml"))
    providers = [p for path in sorted(PROVIDERS.glob("*.yml")) for p in yaml.safe_load(path.read_text())["providers"]]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    path = providers[0]["options"]["path"]
    assert ROOT / binds[path][0] == DASHBOARD.parent
    env = grafana["environment"]
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{path}/{DASHBOARD.name}"


def test_grafana_has_no_password_in_the_file(compose: dict[str, Any]) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # nothing fetched at run time
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true" and env["GF_ANALYTICS_CHECK_FOR_UPDATES"] == "false"


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine
    assert len({p["id"] for p in dashboard["panels"]}) == len({p["title"] for p in dashboard["panels"]}) \
        == len(dashboard["panels"])


def test_committed_json_is_the_generators_output() -> None:
    spec = importlib.util.spec_from_file_location("grafana_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == DASHBOARD.read_text(), "run python deploy/grafana/dashboard.py"
