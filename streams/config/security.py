"""Security settings: secrets read from files (``SECSTREAM_<NAME>_FILE``) and the checks of the Kafka
and Qdrant security settings. :mod:`streams.config.settings` uses both; nothing here opens a connection.

Secret files are the Docker/Kubernetes convention: a secret mounted as a file and named by an
environment variable, e.g. ``SECSTREAM_KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka-password``.
Every secret setting (a ``SecretStr`` field) can be given either way, never both. The file's
contents, less one trailing newline, are the value; they are handed to the settings as a
``SecretStr`` so no debug dump of the settings sources shows them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from schemas.errors import SecstreamError

__all__ = ["PREFIX", "SASL_PROTOCOLS", "SSL_PROTOCOLS", "SecretFileError", "SecretFileSource",
           "check_kafka_security", "check_qdrant_security", "read_secret_file", "secret_fields"]

PREFIX = "SECSTREAM_"
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
_SSL_FILES = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


class SecretFileError(SecstreamError):
    """A ``SECSTREAM_*_FILE`` secret could not be used (unreadable, or given twice)."""


def var(name: str) -> str:
    """The environment variable of a setting: ``kafka_sasl_password`` → ``SECSTREAM_KAFKA_SASL_PASSWORD``."""
    return PREFIX + name.upper()


def secret_fields(settings_cls: type[BaseSettings]) -> list[str]:
    """The settings that hold secrets (``SecretStr``): the ones that also take a ``*_FILE``."""
    return [name for name, info in settings_cls.model_fields.items() if info.annotation is SecretStr]


def read_secret_file(variable: str, path: str) -> SecretStr:
    """The secret in ``path`` (one trailing newline removed); :class:`SecretFileError` naming ``variable``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretFileError(f"{variable}: cannot read {path}: {reason}") from exc
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return SecretStr(text)


class SecretFileSource(PydanticBaseSettingsSource):
    """Settings source of the ``SECSTREAM_<NAME>_FILE`` variables of the secret settings.

    It runs after the environment and the constructor's arguments, so it sees what they gave
    (``current_state``): a secret given there and by a file is an error, not a silent choice.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        env = os.environ if environ is None else environ
        self._env = {k.upper(): v for k, v in env.items()}  # pydantic-settings matches names case-insensitively

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every secret at once

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in secret_fields(self.settings_cls):
            file_var = var(name) + "_FILE"
            path = self._env.get(file_var, "")
            if not path:
                continue
            if _given(self.current_state.get(name)):
                raise SecretFileError(f"{var(name)} and {file_var} are both set: give the secret one way")
            out[name] = read_secret_file(file_var, path)
        return out


def _given(value: Any) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value not in (None, "")


def _missing_file(name: str, value: str) -> str | None:
    if value and not Path(value).is_file():
        return f"{var(name)}: no such file: {value}"
    return None


def check_kafka_security(s: Any) -> None:
    """Raise ValueError (one line, naming the settings) when the Kafka security settings do not fit together."""
    protocol = s.kafka_security_protocol
    has_password = bool(s.kafka_sasl_password.get_secret_value())
    if protocol in SASL_PROTOCOLS:
        missing = [var(n) for n, given in (("kafka_sasl_username", s.kafka_sasl_username),
                                           ("kafka_sasl_password", has_password)) if not given]
        if missing:
            raise ValueError(f"SECSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)} "
                             f"(the password may come from SECSTREAM_KAFKA_SASL_PASSWORD_FILE)")
    elif s.kafka_sasl_username or has_password:
        raise ValueError(f"SASL credentials are set but SECSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                         f"them: use SASL_SSL (or SASL_PLAINTEXT)")
    given = [n for n in _SSL_FILES if getattr(s, n)]
    if protocol not in SSL_PROTOCOLS and (given or s.kafka_ssl_key_password.get_secret_value()):
        names = ", ".join(var(n) for n in given) or var("kafka_ssl_key_password")
        raise ValueError(f"{names} set but SECSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS: "
                         f"use SSL or SASL_SSL")
    if s.kafka_ssl_keyfile and not s.kafka_ssl_certfile:
        raise ValueError("SECSTREAM_KAFKA_SSL_KEYFILE needs SECSTREAM_KAFKA_SSL_CERTFILE (the client certificate)")
    for name in given:
        problem = _missing_file(name, getattr(s, name))
        if problem:
            raise ValueError(problem)


def check_qdrant_security(s: Any) -> None:
    """Raise ValueError when the Qdrant TLS settings do not fit together."""
    if not s.qdrant_ssl_cafile:
        return
    problem = _missing_file("qdrant_ssl_cafile", s.qdrant_ssl_cafile)
    if problem:
        raise ValueError(problem)
    if not s.qdrant_url.lower().startswith("https://"):
        raise ValueError(f"SECSTREAM_QDRANT_SSL_CAFILE needs an https:// SECSTREAM_QDRANT_URL, got "
                         f"{s.qdrant_url or 'none (embedded store)'}")
