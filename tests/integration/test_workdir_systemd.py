"""Started as deploy/systemd/volley.service starts it, Volley delivers: its working
directory (WorkingDirectory=/var/lib/volley) holds the spool itself, `spool/`, and here
an `engine/` folder too, and neither may stand in for the installed packages.

Before workers were started with `python -P`, every worker died at import ("cannot
import name 'EntryRef' from 'spool'"), was restarted forever, and nothing was delivered.
Run both ways Volley is started: the installed `volley` console script (what the unit's
ExecStart runs; no PYTHONPATH) and `python -m engine`.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from tests.support.smoke import delivers_cleanly
from tests.support.volley import PYTHON_M_ENGINE, REPO, VOLLEY_SCRIPT

UNIT = REPO / "deploy" / "systemd" / "volley.service"
JUNK_ENGINE = 'raise ImportError("engine/ of the working directory was imported")\n'


def unit_working_directory() -> str:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT.read_text())
    return unit["Service"]["WorkingDirectory"]


@pytest.mark.parametrize("how", ["volley-script", "python-m-engine"])
def test_delivers_from_a_working_directory_holding_spool_and_engine(net, volley, how) -> None:
    # The layout this test reproduces: the spool is <WorkingDirectory>/spool.
    assert unit_working_directory() == "/var/lib/volley"
    (rx,) = net.domain("dest.test")
    if how == "volley-script":
        v = volley(workers=2, command=[VOLLEY_SCRIPT], pythonpath=False, start=False)
        # A regular package in the working directory would win over any installed one.
        (v.root / "engine").mkdir(parents=True)
        (v.root / "engine" / "__init__.py").write_text(JUNK_ENGINE)
    else:
        # `python -m engine` finds `engine` on sys.path, which starts with the working
        # directory: an engine/ folder there is the user's choice. spool/ must not matter.
        v = volley(workers=2, command=PYTHON_M_ENGINE, pythonpath=False, start=False)
    assert v.cwd == v.root and v.spool == v.root / "spool"
    v.start()
    delivers_cleanly(v, rx, "dest.test")
    assert Path(v.spool / "incoming").is_dir() and v.queued() == []
