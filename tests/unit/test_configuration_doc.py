"""docs/configuration.md documents every setting of the settings model, and is what the generator
(streams/config/reference.py) writes from the model now: a setting added, renamed, re-defaulted or
left without a meaning fails here until the page is regenerated."""

from __future__ import annotations

import difflib
from pathlib import Path

from streams.config.reference import REGENERATE, field_docs, page
from streams.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
FIX = f"regenerate the page: `{REGENERATE}` (run in the repository root)"


def test_every_setting_is_on_the_page() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [f"SECSTREAM_{name.upper()}" for name in Settings.model_fields
               if f"`SECSTREAM_{name.upper()}`" not in text]
    assert not missing, f"docs/configuration.md does not document {', '.join(missing)}; {FIX}"


def test_every_setting_has_a_meaning() -> None:
    bare = [doc.variable for section in field_docs() for doc in section.fields if not doc.meaning]
    assert not bare, (f"settings with no meaning to document: {', '.join(bare)}; give each a "
                      f"Field(description=...) or a comment in streams/config/settings.py, then {FIX}")


def test_every_setting_is_generated_once() -> None:
    names = [doc.name for section in field_docs() for doc in section.fields]
    assert sorted(names) == sorted(Settings.model_fields)


def test_the_page_is_what_the_generator_writes() -> None:
    want, have = page(), DOC.read_text(encoding="utf-8")
    if have != want:
        diff = "".join(list(difflib.unified_diff(have.splitlines(keepends=True), want.splitlines(keepends=True),
                                                 "docs/configuration.md", "generated"))[:40])
        raise AssertionError(f"docs/configuration.md differs from the settings model; {FIX}\n{diff}")
