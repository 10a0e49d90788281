"""Kafka security settings → client options: aiokafka keyword arguments and Faust credentials agree, the
default stays plaintext, TLS contexts verify certificates, and failures read as one line without secrets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import SaslAuthenticationFailed
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.kafka.client_options import (
    KafkaSecurityError,
    aiokafka_kwargs,
    connect_error,
    describe,
    faust_credentials,
    ssl_context,
)
from streams.config.settings import Settings
from tests.unit.tls_helpers import TlsFiles, make_tls_files

PASSWORD = "pa55-word-31"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _sasl(protocol: str = "SASL_PLAINTEXT", **extra: object) -> Settings:
    return Settings(kafka_bootstrap="kafka:9093", kafka_security_protocol=protocol, kafka_sasl_username="svc",
                    kafka_sasl_password=PASSWORD, **extra)


def test_default_is_plaintext_as_before() -> None:
    s = Settings()
    assert aiokafka_kwargs(s) == {"security_protocol": "PLAINTEXT"}  # aiokafka's own default
    assert faust_credentials(s) is None and ssl_context(s) is None
    assert credentials_to_aiokafka_auth(faust_credentials(s)) == aiokafka_kwargs(s)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_plaintext(mechanism: str) -> None:
    s = _sasl(kafka_sasl_mechanism=mechanism)
    assert aiokafka_kwargs(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
                                  "sasl_plain_username": "svc", "sasl_plain_password": PASSWORD}
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.mechanism.value == mechanism
    assert PASSWORD not in repr(creds)
    # the worker's Faust clients get exactly what the CLI tools' aiokafka clients get
    assert credentials_to_aiokafka_auth(creds) == {**aiokafka_kwargs(s), "ssl_context": None}


def test_sasl_ssl_with_private_ca(tls: TlsFiles) -> None:
    s = _sasl("SASL_SSL", kafka_ssl_cafile=str(tls.ca))
    kw = aiokafka_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    ctx = kw["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
    auth = credentials_to_aiokafka_auth(creds)
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {k: v for k, v in kw.items() if k != "ssl_context"}
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_mutual_tls_and_hostname_check(tls: TlsFiles) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls.ca), kafka_ssl_certfile=str(tls.client_cert),
                 kafka_ssl_keyfile=str(tls.client_key), kafka_ssl_check_hostname=False)
    kw = aiokafka_kwargs(s)
    assert set(kw) == {"security_protocol", "ssl_context"} and kw["security_protocol"] == "SSL"
    assert not kw["ssl_context"].check_hostname and kw["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"


def test_unloadable_tls_files_name_the_settings(tmp_path: Path, tls: TlsFiles) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls.ca), kafka_ssl_certfile=str(bad))
    with pytest.raises(KafkaSecurityError, match="SECSTREAM_KAFKA_SSL_CERTFILE=") as err:
        aiokafka_kwargs(s)
    assert "\n" not in str(err.value)


def test_aiokafka_clients_accept_the_options(tls: TlsFiles) -> None:
    async def build() -> None:
        for s in (Settings(), _sasl("SASL_SSL", kafka_ssl_cafile=str(tls.ca), kafka_sasl_mechanism="SCRAM-SHA-256")):
            kw = aiokafka_kwargs(s)
            AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **kw)
            AIOKafkaConsumer("t", bootstrap_servers="127.0.0.1:9", **kw)

    asyncio.run(build())


def test_faust_app_takes_the_credentials() -> None:
    app = faust.App("secstream-test", broker="kafka://kafka:9093", broker_credentials=faust_credentials(_sasl()))
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    assert app.conf.broker_credentials.username == "svc"


def test_connect_errors_are_one_line_without_secrets() -> None:
    s = _sasl(kafka_sasl_mechanism="SCRAM-SHA-256")
    assert describe(s) == "SASL_PLAINTEXT, SCRAM-SHA-256 as 'svc'"
    for exc in (KeyError("v"), SaslAuthenticationFailed("bad")):
        msg = str(connect_error(exc, "kafka:9093", s))
        assert msg == "Kafka at kafka:9093 (SASL_PLAINTEXT, SCRAM-SHA-256 as 'svc'): the broker rejected the SASL " \
                      "credentials of user 'svc'"
    tls_msg = str(connect_error(ssl.SSLCertVerificationError("certificate verify failed"), "kafka:9093", Settings()))
    assert "TLS handshake failed" in tls_msg
    for msg in (tls_msg, str(connect_error(OSError("refused"), "kafka:9093", s))):
        assert PASSWORD not in msg and "\n" not in msg
