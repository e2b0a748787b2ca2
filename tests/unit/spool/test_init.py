"""The package surface and the layering rule: spool never imports engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import spool


def test_public_api_is_reexported() -> None:
    for name in spool.__all__:
        assert getattr(spool, name) is not None
    assert {"Spool", "ShardQueue", "EntryRef", "NewEntry", "queue_summary"} <= set(spool.__all__)
    assert {"CorruptEntry", "SpoolError", "SpoolFull", "encode", "decode"} <= set(spool.__all__)


def test_importing_spool_loads_no_engine_module() -> None:
    code = (
        "import sys, spool, spool.atomic, spool.store, spool.summary;"
        "print(sorted(m for m in sys.modules if m == 'engine' or m.startswith('engine.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_no_spool_source_names_engine_or_asyncio() -> None:
    banned = {"engine", "asyncio", "socket", "uvloop", "aiodns", "prometheus_client"}
    for path in Path(spool.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{path.name} imports {roots & banned}"


def test_record_is_a_pure_codec() -> None:
    source = (Path(spool.__file__).parent / "record.py").read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "struct", "zlib", "typing", "msgpack", "spool"}
