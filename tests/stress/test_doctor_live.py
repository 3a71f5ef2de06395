"""``doctor --fix`` in a loop beside live writers in other processes.

Creators of large records and an importer run while the parent repairs the
store over and over: no writer may fail, nothing a live writer holds may be
reported or removed, and no session may be quarantined.  (The single-process
versions, each writer held mid-write, are in ``tests/test_doctor_safety.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from maestro import SessionManager

from ..conftest import Clock
from .conftest import size

CHILD = r"""
import json, sys
from maestro import SessionManager

root, action = sys.argv[1], sys.argv[2]
manager = SessionManager(root)
if action == "create":
    made = [manager.create_session("r" * 1_000_000).session_id for _ in range(int(sys.argv[3]))]
    print(json.dumps(made))
else:
    made = []
    for archive in sys.argv[3:]:
        made += manager.import_sessions(archive).created
    print(json.dumps(made))
"""


def test_doctor_fix_in_a_loop_beside_creators_and_an_importer(tmp_path: Path) -> None:
    creates, archives = size(15, 200), size(6, 60)
    paths = []
    expected_imports = set()
    for number in range(archives):
        source = SessionManager(tmp_path / f"source{number}", clock=Clock())
        for _ in range(3):
            sid = source.create_session(f"imported {number}").session_id
            (source.sessions_dir / sid / "notes.txt").write_bytes(b"n" * 200_000)
            expected_imports.add(sid)
        paths.append(str(tmp_path / f"a{number}.tar.gz"))
        source.export_sessions(paths[-1])
    root = tmp_path / "store"
    manager = SessionManager(root, clock=Clock())
    manager.create_session("makes the store")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in (["create", str(creates)], ["create", str(creates)], ["import", *paths])
    ]
    rounds = 0
    try:
        while any(child.poll() is None for child in children) or rounds == 0:
            report = manager.doctor(fix=True)
            rounds += 1
            assert report.temp_files == [], report.to_dict()
            # A staging directory caught between its mkdir and its lock looks
            # abandoned; removing it is harmless (the importer starts another).
            assert set(report.leftovers) <= report.resolved, report.to_dict()
            found = report.to_dict()
            assert not (found["corrupt"] or found.get("unreadable") or found.get("misplaced"))
    finally:
        results = [child.communicate(timeout=300) for child in children]
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    created = [set(json.loads(out)) for out, _ in results]
    assert len(created[0]) == len(created[1]) == creates
    assert created[2] == expected_imports
    assert not (manager.sessions_dir.parent / "quarantine").exists()
    assert len(manager.query_sessions()) == 1 + 2 * creates + 3 * archives
    assert manager.doctor(fix=True).healthy
