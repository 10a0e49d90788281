"""Fixtures shared by the integration tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.embedded_broker import free_port


@pytest.fixture()
def s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A local S3 server (moto) with a bucket ``tansu``: the broker's durable storage."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    port = free_port()
    log = open(tmp_path / "s3.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "eu-west-2",
           "AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true"}
    try:
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT"], aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="eu-west-2")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="tansu", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert time.monotonic() < deadline, (tmp_path / "s3.log").read_text()
                time.sleep(0.2)
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log.close()
