"""Commands that only read their arguments or the settings answer without the heavy imports (issue 16):
an import-list check of ``python -X importtime``, not a timing assertion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "torch", "faust", "qdrant_client", "sentence_transformers")


def imported(*argv: str) -> tuple[int, set[str], str]:
    """Exit code, top-level packages imported and the non-importtime stderr of ``secstream ARGV``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECSTREAM_")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "streams.cli.main", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    names, other = set(), []
    for line in done.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
        else:
            other.append(line)
    return done.returncode, names, "\n".join(other)


@pytest.mark.parametrize(("argv", "code"), [
    (["config"], 0),
    (["config", "--json"], 0),
    (["--version"], 0),
    (["alerts", "--help"], 0),
    (["feedback", "--verdict", "maybe", "6f1c1f3e-8a4b-5d2e-9c7a-2b3d4e5f6a7b"], 2),  # a bad verdict
    (["feedback", "not-an-id", "--verdict", "fp"], 2),
    (["hunt", "x", "--since", "yesterday"], 2),
    (["hunt"], 2),
    (["replay", "/no/such/file.log", "--out", "o"], 2),
    (["produce", "/no/such/file.log"], 2),
    (["train", "sessions"], 2),
    (["frobnicate"], 2),
])
def test_argument_errors_and_config_skip_the_heavy_imports(argv: list[str], code: int) -> None:
    rc, names, err = imported(*argv)
    assert rc == code, err
    assert not names & set(HEAVY), f"{argv} imported {sorted(names & set(HEAVY))}"
