"""A misspelled ``SECSTREAM_*`` variable is named, once, with the setting it was probably meant to be (issue 16)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config.unknown_env import known_variables, unknown_variables, warn_unknown_env

ROOT = Path(__file__).resolve().parents[2]


def test_known_names_are_the_settings_their_secret_files_and_nothing_else() -> None:
    known = known_variables()
    assert {"SECSTREAM_ALERT_THRESHOLD", "SECSTREAM_KAFKA_SASL_PASSWORD_FILE", "SECSTREAM_QDRANT_API_KEY_FILE",
            "SECSTREAM_TEST_FAULT_FILE"} <= known
    assert "SECSTREAM_ALERT_THRESHOLD_FILE" not in known  # only secrets take a file
    env = {"SECSTREAM_ALERT_TRESHOLD": "80", "SECSTREAM_ALERT_THRESHOLD": "90", "secstream_log_level": "debug",
           "SECSTREAM_KAFKA_SASL_PASWORD_FILE": "/run/x", "SECSTREAM_ZZZ": "1", "PATH": "/bin"}
    assert unknown_variables(env) == [("SECSTREAM_ALERT_TRESHOLD", "SECSTREAM_ALERT_THRESHOLD"),
                                      ("SECSTREAM_KAFKA_SASL_PASWORD_FILE", "SECSTREAM_KAFKA_SASL_PASSWORD_FILE"),
                                      ("SECSTREAM_ZZZ", None)]


def test_each_unknown_variable_is_warned_about_once() -> None:
    out = io.StringIO()
    env = {"SECSTREAM_METRIX_PORT": "1"}
    assert warn_unknown_env(env, out) == ["warning: SECSTREAM_METRIX_PORT is not a secstream setting and is "
                                          "ignored; did you mean SECSTREAM_METRICS_PORT?"]
    assert warn_unknown_env(env, out) == []
    assert out.getvalue().count("\n") == 1


@pytest.mark.parametrize("argv", [["config"], ["config", "--json"]])
def test_the_cli_warns_on_stderr_in_one_line_and_still_runs(argv: list[str]) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SECSTREAM_")},
           "SECSTREAM_ALERT_TRESHOLD": "80", "SECSTREAM_BATCH_SIZE": "10"}
    done = subprocess.run([sys.executable, "-m", "streams.cli.main", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # before: nothing said, and SECSTREAM_ALERT_THRESHOLD silently stayed at its default
    assert done.stderr.strip() == ("warning: SECSTREAM_ALERT_TRESHOLD is not a secstream setting and is ignored; "
                                   "did you mean SECSTREAM_ALERT_THRESHOLD?")
    assert "TRESHOLD" not in done.stdout and "10" in done.stdout  # stdout stays the settings
