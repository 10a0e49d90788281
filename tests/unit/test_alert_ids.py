"""Alert ids where an analyst reads them (issue 16): `secstream alerts` shows each alert's id and count,
so the updates of one alert read as such, and `secstream feedback` takes the id as shown; a verdict on an
id the store does not hold is refused, and one the store cannot check says it is unverified.

Real components: alerts from :class:`detection.dedup.AlertDeduper`, a real embedded (edge) store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_dedup import _alert

from detection.dedup import AlertDeduper
from detection.ocsf import to_ocsf
from streams.cli.alert_lines import format_alert_line
from streams.cli.alert_lookup import (
    AlertRefError,
    ShortIds,
    UnknownAlert,
    parse_alert_ref,
    resolve_alert,
    short_id_chars,
)
from streams.cli.main import main
from streams.cli.topic_commands import alert_row, alerts_table
from streams.config.settings import Settings
from streams.store import CollectionSpec, EdgeStore, StorePoint, point_id

ROOT = Path(__file__).resolve().parents[2]
ID_A = "6f1c1f3e-8a4b-5d2e-9c7a-2b3d4e5f6a7b"
ID_B = "6f1c1f3e-1d2c-5b3a-8e4f-0a1b2c3d4e5f"  # same first 8 characters as ID_A
ID_C = "0b9e2f71-3c4d-5e6f-8a9b-0c1d2e3f4a5b"
UNKNOWN = "9d8c7b6a-5f4e-5d3c-9b2a-1f0e9d8c7b6a"


def _new_and_update() -> tuple[dict, dict]:
    d = AlertDeduper()
    new = d.process([_alert(0)]).published[0]
    update = d.process([_alert(i) for i in range(1, 50)]).published[0]
    return new, update


def test_table_shows_the_id_and_count_so_updates_are_not_duplicates() -> None:
    new, update = _new_and_update()
    lines = alerts_table([alert_row(new), alert_row(update)]).splitlines()
    assert lines[0].split()[:5] == ["id", "time", "severity", "score", "count"]
    short = new["alert_id"][:8]
    assert lines[2].split()[0] == lines[3].split()[0] == short  # before: no id, the rows looked like duplicates
    assert lines[2].split()[4] == "1" and "50 (update)" in lines[3]
    assert alert_row(to_ocsf(update))[0] == update["alert_id"] and "50 (update)" in alert_row(to_ocsf(update))[4]
    full = alerts_table([alert_row(new)], full_ids=True).splitlines()
    assert full[2].split()[0] == new["alert_id"]
    assert parse_alert_ref(short) == (short, False)  # what feedback takes


def test_ids_are_cut_to_the_characters_that_tell_them_apart() -> None:
    assert short_id_chars([ID_A, ID_C, ID_A]) == 8
    assert short_id_chars([ID_A, ID_B, ID_C]) == 10  # "6f1c1f3e-8" vs "6f1c1f3e-1"
    rows = alerts_table([[i, "", "", "", "1", "", "", ""] for i in (ID_A, ID_B)]).splitlines()
    assert [r.split()[0] for r in rows[2:]] == [ID_A[:10], ID_B[:10]]
    short = ShortIds()  # --follow: an id keeps what it was first shown as; a later clash is shown longer
    assert [short(ID_A), short(ID_C), short(ID_B), short(ID_A)] == [ID_A[:8], ID_C[:8], ID_B[:10], ID_A[:8]]


def test_alert_line_starts_with_the_short_id_and_shows_the_count() -> None:
    _, update = _new_and_update()
    line = format_alert_line(update)
    assert line.startswith(update["alert_id"][:8] + "  ") and "x50 (update)" in line
    assert format_alert_line(to_ocsf(update)) == line
    assert format_alert_line(update, ids=str).startswith(update["alert_id"] + "  ")


def test_feedback_ids_parse_whole_or_as_shown() -> None:
    assert parse_alert_ref(ID_A.upper()) == (ID_A, True)
    assert parse_alert_ref("6F1C1F3E") == ("6f1c1f3e", False)
    for bad in ("not-an-id", "6f1c1f3", "6f1c1f3e8", "6f1c1f3g"):
        with pytest.raises(AlertRefError, match="is not an alert id"):
            parse_alert_ref(bad)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory whose store holds three alerts, as the worker's alert stage stores them."""
    store = EdgeStore(tmp_path / "qdrant")
    try:
        store.ensure(CollectionSpec(name="alerts", dense_dim=8, sparse_name=None))
        rng = np.random.default_rng(3)
        store.upsert("alerts", [StorePoint(id=point_id(i), dense=rng.normal(size=8).astype(np.float32),
                                           payload={"alert_id": i, "kind": "event_anomaly"})
                                for i in (ID_A, ID_B, ID_C)])
    finally:
        store.close()
    return tmp_path


def test_feedback_resolves_whole_and_short_ids_in_the_store(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    assert resolve_alert(settings, ID_A, True).verified
    found = resolve_alert(settings, ID_C[:8], False)
    assert (found.alert_id, found.verified) == (ID_C, True)
    assert resolve_alert(settings, ID_B[:10], False).alert_id == ID_B
    with pytest.raises(UnknownAlert, match="start of several alert ids"):
        resolve_alert(settings, ID_A[:8], False)
    with pytest.raises(UnknownAlert, match="secstream alerts"):
        resolve_alert(settings, UNKNOWN, True)


def test_feedback_on_an_unknown_alert_is_refused_in_one_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SECSTREAM_DATA_DIR", str(data_dir))
    monkeypatch.delenv("SECSTREAM_QDRANT_URL", raising=False)
    # before: published (to whatever broker answered) and "published", exit 0
    assert main(["feedback", UNKNOWN, "--verdict", "fp", "--bootstrap", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no alert with id {UNKNOWN} in the alerts stored in {data_dir / 'qdrant'}")
    assert "`secstream alerts`" in err and len(err.strip().splitlines()) == 1


def test_a_store_that_cannot_be_opened_leaves_the_verdict_unverified(data_dir: Path, tmp_path: Path) -> None:
    assert not resolve_alert(Settings(data_dir=tmp_path / "nowhere"), UNKNOWN, True).verified
    code = ("import sys; from pathlib import Path; from streams.store import EdgeStore; "
            "s = EdgeStore(Path(sys.argv[1])); s.attach('alerts'); print('ready', flush=True); sys.stdin.read(); "
            "s.close()")
    holder = subprocess.Popen(  # another process holds the embedded store, as a running worker does
        [sys.executable, "-c", code, str(data_dir / "qdrant")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        found = resolve_alert(Settings(data_dir=data_dir), UNKNOWN, True)
        assert (found.alert_id, found.verified) == (UNKNOWN, False)
        assert "open in another process" in found.note and "Qdrant server" not in found.note
        with pytest.raises(UnknownAlert, match="cannot complete the short id"):  # no alerts topic to ask
            resolve_alert(Settings(data_dir=data_dir), ID_C[:8], False)
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
