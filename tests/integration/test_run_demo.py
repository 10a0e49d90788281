"""`secstream run` on the embedded default, as the README's Quick start runs it: the
embedded broker, the embedded store, the bundled sample; alerts printed live,
/metrics served, and on Ctrl-C a clean exit with no broker left behind."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from streams.kafka.embedded_broker import free_port

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # the Faust/mode spinner's cursor codes
ALERT_LINE = re.compile(r"^[0-9a-f-]+\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\s+(low|medium|high|critical)\s+\d+\.\d\s+\w+=")  # short id first


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_run_shows_alerts_and_metrics_then_stops_cleanly(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECSTREAM_")}
    env.update({"SECSTREAM_METRICS_PORT": str(port), "SECSTREAM_METRICS_HOST": "127.0.0.1", "TMPDIR": str(tmp_path),
                "HF_HUB_OFFLINE": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")  # type: ignore[arg-type]
    sel.register(proc.stderr, selectors.EVENT_READ, "err")  # type: ignore[arg-type]
    pending = {"out": b"", "err": b""}
    alerts: list[str] = []
    err_text = ""
    broker_pid = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and not alerts and proc.poll() is None:
            for key, _ in sel.select(timeout=1.0):
                # raw reads: a buffered readline() after select() can strand lines in its buffer
                pending[key.data] += os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                *lines, pending[key.data] = pending[key.data].split(b"\n")
                for raw in lines:
                    line = ANSI.sub("", raw.decode(errors="replace"))
                    if key.data == "out" and ALERT_LINE.match(line):
                        alerts.append(line)
                    elif key.data == "err":
                        err_text += line + "\n"
                        m = re.search(r"listening on 127\.0\.0\.1:\d+, pid (\d+)", line)
                        if m:
                            broker_pid = int(m.group(1))
        assert alerts, f"no alert printed within 300 s; stderr:\n{err_text[-3000:]}"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "secstream_events_total" in metrics and "secstream_alerts_total" in metrics
        assert broker_pid is not None and _alive(broker_pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, err_text[-2000:]
    time.sleep(0.5)
    assert broker_pid is not None and not _alive(broker_pid), "embedded broker outlived `secstream run`"
