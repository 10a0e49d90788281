"""The Qdrant server client over TLS with an API key, against a local HTTPS endpoint that answers like Qdrant's
REST API (no Qdrant server binary here): the certificate is verified against SECSTREAM_QDRANT_SSL_CAFILE, the key
arrives in the ``api-key`` header, and a server the CA did not sign is refused."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from streams.stages.factory import build_store
from streams.config.settings import Settings
from streams.store import StoreError
from tests.unit.tls_helpers import TlsFiles, make_tls_files

pytestmark = pytest.mark.integration

API_KEY = "qdrant-key-7731"


class _Qdrant(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("api-key")))
        body = {"title": "qdrant", "version": "1.15.5"} if self.path == "/" else \
            {"result": {"exists": False}, "status": "ok", "time": 0.0}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_qdrant(tmp_path: Path) -> Iterator[tuple[str, TlsFiles]]:
    tls = make_tls_files(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.server_cert, tls.server_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Qdrant)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Qdrant.seen = []
    try:
        yield f"https://localhost:{server.server_address[1]}", tls
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_private_ca_and_api_key(https_qdrant: tuple[str, TlsFiles]) -> None:
    url, tls = https_qdrant
    store = build_store(Settings(qdrant_url=url, qdrant_api_key=API_KEY, qdrant_ssl_cafile=str(tls.ca)))
    try:
        assert store.attach("events") is None  # asked the server: no such collection
    finally:
        store.close()
    assert ("/collections/events/exists", API_KEY) in _Qdrant.seen


def test_certificate_from_another_ca_is_refused(https_qdrant: tuple[str, TlsFiles]) -> None:
    url, tls = https_qdrant
    for settings in (Settings(qdrant_url=url, qdrant_api_key=API_KEY, qdrant_ssl_cafile=str(tls.other_ca)),
                     Settings(qdrant_url=url, qdrant_api_key=API_KEY)):  # the system CAs do not know ours either
        store = build_store(settings)
        try:
            with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED") as err:
                store.attach("events")
            assert API_KEY not in str(err.value)
        finally:
            store.close()
    assert not [path for path, _ in _Qdrant.seen if path.startswith("/collections")]
