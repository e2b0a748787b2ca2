"""Started as deploy/Dockerfile starts it, Volley delivers using the installed packages:
the image's working directory (WORKDIR /opt/volley) holds copies of the engine/ and
spool/ sources it was installed from, and the entry point is the `volley` script.

In the image the copies are the same code as the installed packages, which hides an
import from the working directory; here the copies are built from the Dockerfile's own
WORKDIR and COPY lines and then made to fail on import, so any such import shows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

from tests.support.dockerfile import instructions
from tests.support.smoke import delivers_cleanly
from tests.support.volley import REPO, VOLLEY_SCRIPT

POISON = 'raise ImportError("{} of the working directory was imported")\n'


def image_layout(root: Path) -> tuple[Path, list[str]]:
    """Build the image's WORKDIR under `root` from the Dockerfile's COPY lines; return it
    and the entry point + command."""
    workdir: PurePosixPath | None = None
    entry: list[str] = []
    for word, args in instructions():
        if word == "WORKDIR":
            workdir = PurePosixPath(args)
        elif word == "COPY" and workdir is not None and not args.startswith("--"):
            *sources, dest = args.split()
            target = root / str(workdir / dest).lstrip("/")
            for src in sources:
                s = REPO / src
                if s.is_dir():
                    shutil.copytree(s, target, ignore=shutil.ignore_patterns("__pycache__"))
                elif dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(s, target / s.name)
        elif word == "ENTRYPOINT":
            entry = json.loads(args)
    assert workdir is not None and entry == ["volley"], (workdir, entry)
    return root / str(workdir).lstrip("/"), entry


def test_delivers_from_the_images_working_directory(net, volley, tmp_path: Path) -> None:
    (rx,) = net.domain("dest.test")
    workdir, entry = image_layout(tmp_path / "image")
    for package in ("engine", "spool"):
        init = workdir / package / "__init__.py"
        assert init.is_file(), f"the Dockerfile no longer copies {package}/ to its WORKDIR"
        init.write_text(POISON.format(package))
    # ENTRYPOINT ["volley"] is the console script the image's `pip install .` made.
    v = volley(workers=2, command=[VOLLEY_SCRIPT, *entry[1:]], cwd=workdir, pythonpath=False)
    delivers_cleanly(v, rx, "dest.test")
