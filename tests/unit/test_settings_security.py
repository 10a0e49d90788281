"""Security settings: secrets from the environment or from ``SECSTREAM_<NAME>_FILE``, never both; checks that
name the setting at fault; ``secstream config`` masks every secret however it was given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.cli.main import main
from streams.config.settings import Settings
from streams.config.security import SecretFileError, secret_fields

SECRET = "s3cret-value-42"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("SECSTREAM_"):
            monkeypatch.delenv(key)


def _secret_file(tmp_path: Path, text: str, name: str = "secret") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def _sasl_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    monkeypatch.setenv("SECSTREAM_KAFKA_BOOTSTRAP", "kafka:9093")
    monkeypatch.setenv("SECSTREAM_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")  # case as the Kafka docs write it
    monkeypatch.setenv("SECSTREAM_KAFKA_SASL_USERNAME", "svc-secstream")
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


def _error(**kwargs: object) -> str:
    with pytest.raises(ValidationError) as err:
        Settings(**kwargs)
    (first,) = err.value.errors()
    return str(first["msg"])


def test_defaults_are_plaintext_without_secrets() -> None:
    s = Settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism, s.kafka_ssl_check_hostname) == \
        ("PLAINTEXT", "SCRAM-SHA-512", True)
    assert set(secret_fields(Settings)) == {"qdrant_api_key", "kafka_sasl_password", "kafka_ssl_key_password"}


@pytest.mark.parametrize("text", [f"{SECRET}\n", f"{SECRET}\r\n", SECRET])
def test_secret_from_file_drops_one_trailing_newline(monkeypatch, tmp_path, text: str) -> None:
    _sasl_env(monkeypatch, SECSTREAM_KAFKA_SASL_PASSWORD_FILE=str(_secret_file(tmp_path, text)))
    s = Settings()
    assert s.kafka_security_protocol == "SASL_PLAINTEXT"
    assert s.kafka_sasl_password.get_secret_value() == SECRET


def test_secret_from_file_keeps_other_whitespace(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SECSTREAM_QDRANT_API_KEY_FILE", str(_secret_file(tmp_path, " key with spaces \n\n")))
    assert Settings().qdrant_api_key.get_secret_value() == " key with spaces \n"


def test_value_and_file_together_is_an_error(monkeypatch, tmp_path) -> None:
    _sasl_env(monkeypatch, SECSTREAM_KAFKA_SASL_PASSWORD="x",
              SECSTREAM_KAFKA_SASL_PASSWORD_FILE=str(_secret_file(tmp_path, SECRET)))
    with pytest.raises(SecretFileError, match="SECSTREAM_KAFKA_SASL_PASSWORD and SECSTREAM_KAFKA_SASL_PASSWORD_FILE"):
        Settings()


def test_argument_and_file_together_is_an_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SECSTREAM_QDRANT_API_KEY_FILE", str(_secret_file(tmp_path, SECRET)))
    with pytest.raises(SecretFileError, match="both set"):
        Settings(qdrant_api_key="from-a-flag")


def test_unreadable_file_names_the_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SECSTREAM_QDRANT_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SecretFileError) as err:
        Settings()
    assert str(err.value).startswith("SECSTREAM_QDRANT_API_KEY_FILE: cannot read ")
    assert "No such file" in str(err.value) and "\n" not in str(err.value)


def test_sasl_needs_username_and_password() -> None:
    msg = _error(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc")
    assert "SECSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs SECSTREAM_KAFKA_SASL_PASSWORD" in msg
    assert "USERNAME" not in msg.split("(")[0]
    assert "SECSTREAM_KAFKA_SASL_USERNAME and SECSTREAM_KAFKA_SASL_PASSWORD" in _error(
        kafka_security_protocol="SASL_PLAINTEXT")


def test_credentials_without_sasl_are_not_ignored_silently() -> None:
    assert "use SASL_SSL" in _error(kafka_sasl_username="svc", kafka_sasl_password="pw")
    assert "does not use TLS" in _error(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc",
                                        kafka_sasl_password="pw", kafka_ssl_cafile="/etc/ssl/ca.pem")


def test_ssl_files_must_exist(tmp_path) -> None:
    msg = _error(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "ca.pem"))
    assert msg.endswith(f"SECSTREAM_KAFKA_SSL_CAFILE: no such file: {tmp_path / 'ca.pem'}")
    ca = _secret_file(tmp_path, "not checked here", "ca.pem")
    Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca))
    assert "SECSTREAM_KAFKA_SSL_CERTFILE" in _error(kafka_security_protocol="SSL", kafka_ssl_keyfile=str(ca))


def test_qdrant_ca_needs_https(tmp_path) -> None:
    ca = _secret_file(tmp_path, "pem", "ca.pem")
    assert "needs an https:// SECSTREAM_QDRANT_URL" in _error(qdrant_url="http://qdrant:6333", qdrant_ssl_cafile=str(ca))
    assert "no such file" in _error(qdrant_url="https://q:6333", qdrant_ssl_cafile=str(tmp_path / "none.pem"))
    assert Settings(qdrant_url="https://q:6333", qdrant_ssl_cafile=str(ca)).qdrant_ssl_cafile == str(ca)


def test_validation_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=SECRET)
    assert SECRET not in str(err.value)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_masks_secrets_from_env_and_files(capsys, monkeypatch, tmp_path) -> None:
    _sasl_env(monkeypatch, SECSTREAM_KAFKA_SASL_PASSWORD_FILE=str(_secret_file(tmp_path, "file-secret-77\n")),
              SECSTREAM_QDRANT_API_KEY="env-secret-88", SECSTREAM_QDRANT_URL="https://admin:url-secret-99@q:6333")
    for argv in (["config", "--json"], ["config"]):
        code, out, err = _run(capsys, *argv)
        assert code == 0, err
        for secret in ("file-secret-77", "env-secret-88", "url-secret-99"):
            assert secret not in out + err
    cfg = json.loads(_run(capsys, "config", "--json")[1])
    assert cfg["kafka_sasl_password"] == cfg["qdrant_api_key"] == "********"
    assert cfg["kafka_ssl_key_password"] == ""  # not given: nothing to mask
    assert cfg["qdrant_url"] == "https://********@q:6333"
    assert cfg["kafka_sasl_username"] == "svc-secstream" and cfg["kafka_security_protocol"] == "SASL_PLAINTEXT"


@pytest.mark.parametrize("env, expect", [
    ({"SECSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SECSTREAM_KAFKA_SASL_USERNAME"),
    ({"SECSTREAM_QDRANT_API_KEY": "a", "SECSTREAM_QDRANT_API_KEY_FILE": "/etc/hostname"}, "both set"),
    ({"SECSTREAM_QDRANT_API_KEY_FILE": "/no/such/secret"}, "SECSTREAM_QDRANT_API_KEY_FILE: cannot read"),
    ({"SECSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "SECSTREAM_KAFKA_SSL_CAFILE": "/no/ca.pem"},
     "SECSTREAM_KAFKA_SSL_CAFILE: no such file"),
    ({"SECSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SECSTREAM_KAFKA_SECURITY_PROTOCOL"),
])
def test_bad_security_setting_is_one_line(capsys, monkeypatch, env: dict[str, str], expect: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, _, err = _run(capsys, "config")
    assert code == 2 and expect in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_run_refuses_a_secured_protocol_on_the_embedded_broker(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SECSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")  # the system CAs: valid, but not on loopback Tansu
    code, _, err = _run(capsys, "run", "--metrics-port", "0")
    assert code == 2 and "SECSTREAM_KAFKA_BOOTSTRAP" in err and "embedded broker speaks PLAINTEXT" in err
    assert len(err.strip().splitlines()) == 1


def test_settings_in_a_log_line_show_no_secret(monkeypatch, tmp_path) -> None:
    import logging

    from streams.ops.logs import JsonFormatter

    monkeypatch.setenv("SECSTREAM_QDRANT_API_KEY_FILE", str(_secret_file(tmp_path, SECRET)))
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc", kafka_sasl_password="pw-" + SECRET)
    record = logging.LogRecord("streams.x", logging.INFO, __file__, 1, "settings %s %r", (s, s), None)
    line = JsonFormatter().format(record)
    assert SECRET not in line and "**********" in line
