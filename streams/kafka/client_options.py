"""The one place Kafka security settings become client options: aiokafka keyword arguments and
Faust broker credentials, from the same settings (docs/security.md).

``SECSTREAM_KAFKA_SECURITY_PROTOCOL`` picks the transport: ``PLAINTEXT`` (the default, and the
embedded broker's), ``SSL`` (TLS, optionally mutual with a client certificate), ``SASL_PLAINTEXT``
or ``SASL_SSL`` (SCRAM-SHA-256/512 or PLAIN over plain TCP or TLS). TLS contexts come from
:func:`aiokafka.helpers.create_ssl_context`: the system CAs, or ``KAFKA_SSL_CAFILE``; hostname
checking stays on unless ``KAFKA_SSL_CHECK_HOSTNAME=false`` (the certificate is verified either way).

Faust maps its credentials onto the same aiokafka arguments
(``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``): ``SSLCredentials`` for SSL,
``SASLCredentials(mechanism=..., ssl_context=...)`` for SASL (SASL_SSL when it has a context).
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol

from pydantic import SecretStr

from schemas.errors import SecstreamError
from streams.config.security import SASL_PROTOCOLS, SSL_PROTOCOLS

__all__ = ["KafkaSecurityError", "KafkaSecuritySettings", "aiokafka_kwargs", "connect_error", "describe", "faust_credentials",
           "ssl_context"]


class KafkaSecurityError(SecstreamError):
    """TLS material that cannot be loaded, or a Kafka client that could not connect or authenticate."""


class KafkaSecuritySettings(Protocol):
    """The settings this module reads (a :class:`streams.config.settings.Settings` has them all)."""

    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: SecretStr
    kafka_ssl_cafile: str
    kafka_ssl_certfile: str
    kafka_ssl_keyfile: str
    kafka_ssl_key_password: SecretStr
    kafka_ssl_check_hostname: bool


def _uses_tls(s: KafkaSecuritySettings) -> bool:
    return s.kafka_security_protocol in SSL_PROTOCOLS


def _uses_sasl(s: KafkaSecuritySettings) -> bool:
    return s.kafka_security_protocol in SASL_PROTOCOLS


def ssl_context(s: KafkaSecuritySettings) -> ssl.SSLContext | None:
    """The client TLS context of the settings; None when the protocol does not use TLS."""
    if not _uses_tls(s):
        return None
    from aiokafka.helpers import create_ssl_context

    password = s.kafka_ssl_key_password.get_secret_value() or None
    try:
        ctx = create_ssl_context(cafile=s.kafka_ssl_cafile or None, certfile=s.kafka_ssl_certfile or None,
                                 keyfile=s.kafka_ssl_keyfile or None, password=password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        files = ", ".join(f"{name}={value}" for name, value in (
            ("SECSTREAM_KAFKA_SSL_CAFILE", s.kafka_ssl_cafile), ("SECSTREAM_KAFKA_SSL_CERTFILE", s.kafka_ssl_certfile),
            ("SECSTREAM_KAFKA_SSL_KEYFILE", s.kafka_ssl_keyfile)) if value) or "the system CAs"
        raise KafkaSecurityError(f"cannot load the Kafka TLS files ({files}): {exc}") from exc
    ctx.check_hostname = bool(s.kafka_ssl_check_hostname)  # verify_mode stays CERT_REQUIRED
    return ctx


def aiokafka_kwargs(s: KafkaSecuritySettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin) of the settings.

    ``{"security_protocol": "PLAINTEXT"}`` by default, aiokafka's own default, so clients built
    with it behave as before on an unsecured broker.
    """
    out: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    ctx = ssl_context(s)
    if ctx is not None:
        out["ssl_context"] = ctx
    if _uses_sasl(s):
        out.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_sasl_username,
                   sasl_plain_password=s.kafka_sasl_password.get_secret_value())
    return out


def faust_credentials(s: KafkaSecuritySettings) -> Any:
    """``faust.App(broker_credentials=...)`` of the settings: None (plaintext), ``SSLCredentials`` or
    ``SASLCredentials`` (SCRAM or PLAIN; over TLS when the protocol is SASL_SSL)."""
    import faust

    ctx = ssl_context(s)
    if _uses_sasl(s):
        return faust.SASLCredentials(username=s.kafka_sasl_username, password=s.kafka_sasl_password.get_secret_value(),
                                     ssl_context=ctx, mechanism=s.kafka_sasl_mechanism)
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def describe(s: KafkaSecuritySettings) -> str:
    """How a client connects, for messages: ``SASL_SSL, SCRAM-SHA-512 as 'svc'`` (never a secret)."""
    if _uses_sasl(s):
        return f"{s.kafka_security_protocol}, {s.kafka_sasl_mechanism} as {s.kafka_sasl_username!r}"
    return s.kafka_security_protocol


def connect_error(exc: BaseException, bootstrap: str, s: KafkaSecuritySettings) -> KafkaSecurityError:
    """One line for a client that failed to start: what it tried and why, credentials named, not shown.

    aiokafka's SCRAM client raises ``KeyError('v')`` when the broker's final SCRAM message is an error
    (``e=unknown-user``, ``e=invalid-proof``) instead of a signature; a broker that answers with an
    error code raises ``SaslAuthenticationFailed``. Connection and TLS failures surface as "Unable to
    bootstrap", with the cause in aiokafka's log line just before.
    """
    from aiokafka import errors

    where = f"Kafka at {bootstrap} ({describe(s)})"
    if (isinstance(exc, KeyError) and _uses_sasl(s)) or isinstance(exc, errors.SaslAuthenticationFailed):
        return KafkaSecurityError(f"{where}: the broker rejected the SASL credentials of user "
                                  f"{s.kafka_sasl_username!r}")
    if isinstance(exc, errors.UnsupportedSaslMechanismError):
        return KafkaSecurityError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLError):
        return KafkaSecurityError(f"{where}: TLS handshake failed: {exc}")
    reason = str(exc) or type(exc).__name__
    return KafkaSecurityError(f"{where}: {reason} (see the aiokafka error above for the cause)")
