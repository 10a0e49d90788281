"""Misspelled settings: a ``SECSTREAM_*`` environment variable that no setting reads.

pydantic-settings ignores variables it does not know (``extra="ignore"``), so ``SECSTREAM_ALERT_TRESHOLD=80``
would leave the threshold at its default without a word. :func:`warn_unknown_env` prints one line per
such variable on stderr, once per process, naming the closest known name (:func:`difflib.get_close_matches`).

Known names: ``SECSTREAM_<FIELD>`` for every field of :class:`streams.config.settings.Settings`,
``SECSTREAM_<SECRET>_FILE`` for its secret fields (:mod:`streams.config.security`), and the few
variables other parts of the project read (:data:`OTHER_VARIABLES`). Names are compared in upper
case, as pydantic-settings matches them case-insensitively.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["OTHER_VARIABLES", "PREFIX", "known_variables", "unknown_variables", "warn_unknown_env"]

PREFIX = "SECSTREAM_"
#: read outside the settings: bench/fault_store.py (the fault-injection store of the tests and benchmarks)
OTHER_VARIABLES = frozenset({"SECSTREAM_TEST_FAULT_FILE"})
_warned: set[str] = set()


def known_variables(settings_cls: Any = None) -> set[str]:
    """Every environment variable the settings (and :data:`OTHER_VARIABLES`) read, in upper case."""
    from streams.config.security import secret_fields
    from streams.config.settings import Settings

    cls = settings_cls or Settings
    names = {PREFIX + name.upper() for name in cls.model_fields}
    names |= {PREFIX + name.upper() + "_FILE" for name in secret_fields(cls)}
    return names | OTHER_VARIABLES


def unknown_variables(environ: Mapping[str, str] | None = None,
                      settings_cls: Any = None) -> list[tuple[str, str | None]]:
    """``(variable, closest known variable or None)`` for each ``SECSTREAM_*`` variable no setting reads."""
    env = os.environ if environ is None else environ
    known = known_variables(settings_cls)
    out = []
    for var in sorted(env):
        upper = var.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        # compared without the shared prefix, which would make every name look close to every other
        close = difflib.get_close_matches(upper[len(PREFIX):], sorted(k[len(PREFIX):] for k in known), n=1,
                                          cutoff=0.6)
        out.append((var, PREFIX + close[0] if close else None))
    return out


def warn_unknown_env(environ: Mapping[str, str] | None = None, stream: TextIO | None = None,
                     settings_cls: Any = None) -> list[str]:
    """Print one warning line per unknown ``SECSTREAM_*`` variable not warned about before in this
    process; returns the lines printed."""
    lines = []
    for var, close in unknown_variables(environ, settings_cls):
        if var in _warned:
            continue
        _warned.add(var)
        hint = f"did you mean {close}?" if close else "`secstream config` lists the settings"
        lines.append(f"warning: {var} is not a secstream setting and is ignored; {hint}")
    for line in lines:
        print(line, file=stream or sys.stderr, flush=True)
    return lines
