"""Worker probes (streams/ops/health.py) served with /metrics (streams/ops/metrics.py), over real HTTP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from streams.kafka.embedded_broker import free_port
from streams.ops.health import Health
from streams.ops.metrics import serve, served_url


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probes_follow_the_worker_state_and_metrics_still_answer() -> None:
    health = Health(stall_s=0.3)
    port = free_port()
    serve(port, "127.0.0.1", health=health)
    assert get(port, "/healthz") == (200, "starting\n")  # before the loop beats: start-up is not a stall
    assert get(port, "/readyz") == (503, "starting\n")
    health.beat()
    health.set_ready(False, "no partition of secstream.events assigned")
    assert get(port, "/readyz") == (503, "no partition of secstream.events assigned\n")
    health.set_ready(True)
    assert get(port, "/healthz") == (200, "ok\n") and get(port, "/readyz") == (200, "ok\n")
    time.sleep(0.5)  # the loop stopped beating
    status, text = get(port, "/healthz")
    assert status == 503 and "event loop silent" in text
    assert get(port, "/readyz")[0] == 503  # not live is not ready
    status, text = get(port, "/metrics")
    assert status == 200 and "secstream_events_total" in text


def test_a_stalled_consumer_turns_readiness_false_with_the_reason_until_it_clears() -> None:
    health = Health()
    port = free_port()
    serve(port, "127.0.0.1", health=health)
    health.beat()
    health.set_ready(True)
    health.set_stalled("secstream.events/0: hole for 60 s (committed 40, end 100)")
    status, text = get(port, "/readyz")
    assert status == 503 and text.startswith("consumer stalled: secstream.events/0: hole for 60 s")
    assert get(port, "/healthz") == (200, "ok\n")  # the loop runs: replace the worker, do not kill it mid-batch
    health.set_stalled("")
    assert get(port, "/readyz") == (200, "ok\n")


def test_a_consumer_stalled_past_the_restart_limit_fails_liveness_so_the_worker_is_restarted() -> None:
    """Kubernetes does not replace a pod that is only unready: after SECSTREAM_STALL_RESTART_AFTER_S of a stall the
    guard gave up on, /healthz fails too and the kubelet's liveness probe restarts the worker."""
    now = [1000.0]
    health = Health(stall_s=30.0, restart_after_s=300.0, clock=lambda: now[0])
    port = free_port()
    serve(port, "127.0.0.1", health=health)
    health.beat()
    health.set_ready(True)
    health.set_stalled("secstream.events/0: hole for 60 s")
    now[0] += 299.0
    health.beat()
    health.set_stalled("secstream.events/0: hole for 359 s")  # the guard says it again: the clock does not restart
    assert get(port, "/healthz") == (200, "ok\n")
    now[0] += 1.0
    health.beat()
    status, text = get(port, "/healthz")
    assert status == 503 and text.startswith("consumer stalled for 300 s and not recovered: secstream.events/0")
    health.set_stalled("")  # it cleared by itself: live again, and a new stall starts a new clock
    assert get(port, "/healthz") == (200, "ok\n")
    health.set_stalled("secstream.events/0: hole for 60 s")
    now[0] += 299.0
    health.beat()
    assert get(port, "/healthz") == (200, "ok\n")
    never = Health(restart_after_s=0.0, clock=lambda: now[0])
    never.beat()
    never.set_stalled("x")
    now[0] += 1e6
    never.beat()
    assert never.live() == (True, "ok")


def test_metrics_bind_loopback_unless_told_and_say_the_address_they_bound() -> None:
    from streams.config.settings import Settings

    assert Settings().metrics_host == "127.0.0.1"  # the embedded default is a laptop: not every interface
    port = free_port()
    assert serve(port, Settings().metrics_host, health=Health()) == f"http://127.0.0.1:{port}"
    assert get(port, "/metrics")[0] == 200
    assert served_url("0.0.0.0", 8000) == "http://0.0.0.0:8000" and served_url("::1", 9) == "http://[::1]:9"
    assert serve(0, "127.0.0.1") == ""  # port 0: no endpoint
