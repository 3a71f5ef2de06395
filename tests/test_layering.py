"""The core knows no backend and no face: checked on the source and on a fresh interpreter.

* No module of ``maestro`` outside ``maestro/stores/`` touches a private
  attribute (``_name``) of a store object or of a store module, nor imports
  a private name from one, nor probes a store with ``getattr``/``hasattr``/
  ``isinstance``: a store is used through its declared contract and
  capabilities.
* A face (the CLI, the renderer) imports no store module.
* ``import maestro`` loads no face and none of the heavy modules only some
  operations need.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import maestro

PACKAGE = Path(maestro.__file__).parent
STORES = PACKAGE / "stores"
#: The faces: the command line, the renderer, the HTTP server and the MCP server.
FACE_PATHS = ("cli", "render.py", "server", "mcp", "mcp.py")


def _face_modules() -> list[Path]:
    found: list[Path] = []
    for name in FACE_PATHS:
        path = PACKAGE / name
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _looks_like_store(node: ast.expr) -> bool:
    """``store``, ``file_store``, ``self.store``, ``manager.store``: names that hold a store."""
    if isinstance(node, ast.Name):
        return "store" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "store" in node.attr.lower()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id == "cast" and bool(node.args) and _looks_like_store(node.args[-1])
    return False


def private_uses(source: str) -> list[str]:
    """Every place ``source`` reaches into a store's private names or probes a store."""
    tree = ast.parse(source)
    store_modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            inside = node.module == "maestro.stores" or node.module.startswith("maestro.stores.")
            for alias in node.names:
                if inside and _is_private(alias.name):
                    found.append(f"line {node.lineno}: imports {node.module}.{alias.name}")
                if inside:  # a store module, class or function: its privates are its own
                    store_modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("maestro.stores"):
                    store_modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base = node.value
            if _looks_like_store(base) or (isinstance(base, ast.Name) and base.id in store_modules):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and node.args
            and _looks_like_store(node.args[0])
        ):
            # Probing a store for a method: what it offers is declared instead.
            found.append(f"line {node.lineno}: {node.func.id} on a store")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and node.args
            and _looks_like_store(node.args[0])
        ):
            found.append(f"line {node.lineno}: isinstance on a store")
    return found


def _core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if STORES not in p.parents)


def test_the_checker_catches_what_it_looks_for() -> None:
    bad = """
from maestro.stores.files import FileSessionStore, _close
from maestro.stores import files
import maestro.stores.index as idx

def f(store, manager):
    store._locked("x")
    manager.store._write(1, 2)
    cast(FileSessionStore, manager.store)._index_begin("x")
    files._close(3)
    idx._not_now(None)
    FileSessionStore._locked
    getattr(store, "_current")
    hasattr(manager.store, "session_ids")
    getattr(manager.store, "session_ids", None)
    isinstance(manager.store, FileSessionStore)
"""
    assert len(private_uses(bad)) == 11
    fine = """
def f(store, manager, session):
    store.load("x")
    manager.store.capabilities
    session._private_thing
    store.__class__
"""
    assert private_uses(fine) == []


def test_no_module_outside_stores_touches_a_store_private_name() -> None:
    modules = _core_modules()
    assert PACKAGE / "manager.py" in modules and PACKAGE / "cli" / "__init__.py" in modules
    offences = {
        str(path.relative_to(PACKAGE)): uses
        for path in modules
        if (uses := private_uses(path.read_text(encoding="utf-8")))
    }
    assert offences == {}


def test_faces_import_no_store_module() -> None:
    faces = _face_modules()
    assert PACKAGE / "cli" / "__init__.py" in faces and PACKAGE / "render.py" in faces
    for path in faces:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ] + [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ]
        assert [m for m in imported if m.startswith("maestro.stores")] == [], path.name


#: Never loaded by ``import maestro``: the faces, optional engines, and
#: modules only an export or import needs; nor the models, the stores and
#: what they are built with (``from maestro import Session`` loads them).
NOT_ON_IMPORT = (
    "rich",
    "click",
    "maestro.cli",
    "maestro.render",
    "maestro.server",
    "maestro.mcp",
    "maestro.stores",
    "maestro.models",
    "maestro.stores.files_maintenance",
    "maestro.stores.files_transfer",
    "psycopg",
    "tarfile",
    "asyncio",  # only an ``async with manager.phase(...)`` needs it
    "dataclasses",
    "inspect",
    "typing",
    "orjson",
)


def test_importing_maestro_loads_no_face() -> None:
    code = "import json, sys, maestro; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    assert "maestro.manager" in loaded  # the probe did import the library
    leaked = sorted(
        module
        for module in loaded
        for banned in NOT_ON_IMPORT
        if module == banned or module.startswith(banned + ".")
    )
    assert leaked == []


#: Loaded only by the operations that need them, never to start: the JSON
#: Schema compiler (writes), SQLite (queries), Rich (a terminal), logging
#: (a warning), subprocess (git), hashlib (request ids, page cursors), tarfile,
#: the search (a query with text), the reports (export, import, doctor).
LAZY = (
    "fastjsonschema",
    "sqlite3",
    "rich",
    "click",
    "tarfile",
    "logging",
    "subprocess",
    "hashlib",
    "unicodedata",
    "maestro.stores.index",
    "maestro.render",
    "maestro.search",
    "maestro.reports",
)

#: Not even loaded by ``from maestro import SessionManager``, only by the
#: calls that use them: the models and the stores, :mod:`dataclasses` (and
#: the :mod:`inspect` it brings), :mod:`typing`, orjson.
NOT_FOR_THE_MANAGER = (
    "maestro.models",
    "maestro.stores",
    "maestro.lifecycle",
    "maestro.gitctx",
    "maestro.idempotency",
    "dataclasses",
    "inspect",
    "typing",
    "orjson",
    "threading",
)


#: Not loaded to read a session, nor by ``maestro --json show`` and a piped
#: ``maestro list``: each costs a good part of starting Python itself.
#: dataclasses loads inspect (and ast, dis, tokenize), orjson dataclasses and
#: uuid; the library's records, and a few records' JSON, do without them.
NOT_FOR_A_READ = ("dataclasses", "inspect", "typing", "orjson", "uuid", "threading")


#: The environment of the probes: nothing that would make a pipe count as a terminal.
_WITHOUT_TERMINAL = {
    key: value
    for key, value in os.environ.items()
    if key not in ("MAESTRO_FORCE_TTY", "FORCE_COLOR", "TTY_COMPATIBLE")
}


def _loaded_by(code: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter has loaded when ``code`` (then exit) is done."""
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: open(sys.argv[1], 'w').write('\\n'.join(sys.modules)))\n" + code
    )
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "modules"
        subprocess.run(
            [sys.executable, "-c", probe, str(listing), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**_WITHOUT_TERMINAL, **(env or {})},
        )
        return set(listing.read_text().split("\n"))


def _among(loaded: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(
        module
        for module in loaded
        for name in banned
        if module == name or module.startswith(name + ".")
    )


def test_importing_the_manager_loads_nothing_it_does_not_use() -> None:
    loaded = _loaded_by("from maestro import SessionManager")
    assert "maestro.manager" in loaded
    assert _among(loaded, LAZY) == []
    assert _among(loaded, NOT_FOR_THE_MANAGER) == []
    # The models come with the first name that needs them, made without
    # dataclasses, and so without inspect (see maestro.records).
    loaded = _loaded_by("from maestro import SessionManager, SessionStatus")
    assert "maestro.models" in loaded
    assert _among(loaded, ("dataclasses", "inspect", "typing")) == []


def test_reading_a_session_loads_no_sqlite_no_schema_compiler(tmp_path: Path) -> None:
    from maestro import SessionManager

    from .conftest import GIT

    sid = SessionManager(tmp_path, durable=False).create_session("read me", git_context=GIT)
    loaded = _loaded_by(
        "from maestro import SessionManager\n"
        "session = SessionManager(sys.argv[2]).get_session(sys.argv[3])\n"
        "assert session.feature_request == 'read me'\n",
        str(tmp_path),
        sid.session_id,
    )
    assert "maestro.stores.files" in loaded
    assert _among(loaded, LAZY) == []
    assert _among(loaded, NOT_FOR_A_READ) == []
    # A query does need SQLite: the probe would see it.
    loaded = _loaded_by(
        "from maestro import SessionManager\n"
        "assert len(SessionManager(sys.argv[2]).query_sessions()) == 1\n",
        str(tmp_path),
    )
    assert "sqlite3" in loaded


def test_a_piped_command_loads_no_click_no_rich(tmp_path: Path) -> None:
    from maestro import SessionManager

    from .conftest import GIT

    manager = SessionManager(tmp_path, durable=False)
    sid = manager.create_session("pipe me", git_context=GIT).session_id
    manager.query_sessions()  # the index made, as a store in use has it
    command = "from maestro.cli import main\nmain(sys.argv[2:])\n"
    clean = {"MAESTRO_ROOT": str(tmp_path), "NO_COLOR": "1"}
    shown = _loaded_by(command, "--json", "show", sid, env=clean)
    assert "maestro.cli.reading" in shown  # the command ran, without Click's command tree
    assert _among(shown, ("click", "rich", "sqlite3", "fastjsonschema", "maestro.render")) == []
    assert _among(shown, NOT_FOR_A_READ) == []
    # Nor what only other commands, writes, queries or pages need.
    not_needed = (*OTHER_COMMANDS, *LAZY, *CLICK_SIDE, "maestro.pages")
    assert _among(shown, (*not_needed, "maestro.idempotency")) == []
    listed = _loaded_by(command, "list", env=clean)
    assert "sqlite3" in listed  # the query ran
    not_listed = (
        "click",
        "rich",
        "maestro.render",
        "maestro.reports",
        *CLICK_SIDE,
        *NOT_FOR_A_READ,
    )
    assert _among(listed, (*not_listed, *OTHER_COMMANDS)) == []
    # A form the direct path leaves to Click does load it: the probe would see it.
    helped = _loaded_by(command, "list", "--since", "2d", env=clean)
    assert "click" in helped and "maestro.cli.sessions" in helped


def test_the_console_script_loads_no_click_for_show_and_list(tmp_path: Path) -> None:
    """The installed ``maestro`` itself, as a shell runs it: ``-X importtime`` lists
    every module it imports."""
    import shutil

    from maestro import SessionManager

    from .conftest import GIT

    script = shutil.which("maestro", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the maestro console script is not installed beside this interpreter")
    sid = SessionManager(tmp_path, durable=False).create_session("pipe me", git_context=GIT)
    env = {**_WITHOUT_TERMINAL, "MAESTRO_ROOT": str(tmp_path), "NO_COLOR": "1"}

    def imported(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", script, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
        return {line.rsplit("|", 1)[1].strip() for line in lines}

    for args in (("--json", "show", sid.session_id), ("list",), ("list", "--active")):
        loaded = imported(*args)
        assert "maestro.cli.reading" in loaded, args
        assert _among(loaded, ("click", "rich", *CLICK_SIDE)) == [], args
    assert "click" in imported("list", "--help")


#: The Click side of the command line: the group and the commands' modules.
CLICK_SIDE = ("maestro.cli.group", "maestro.cli.sessions", "maestro.cli.options")


#: The modules of the commands ``show`` and ``list`` are not.
OTHER_COMMANDS = (
    "maestro.cli.changes",
    "maestro.cli.maintenance",
    "maestro.cli.watch",
    "maestro.cli.demo",
    "maestro.cli.db",
    "maestro.cli.mcp",
    "maestro.cli.serve",
    "maestro.netpolicy",
)


def test_a_command_module_is_loaded_when_its_command_is_looked_up() -> None:
    code = (
        "from maestro.cli import cli\n"
        "names = set(cli.commands)\n"  # listing the names imports nothing
        "assert 'delete' in names and 'serve' in names, names\n"
        "assert 'maestro.cli.changes' not in sys.modules\n"
        "assert cli.commands['delete'].name == 'delete'\n"
    )
    loaded = _loaded_by(code)
    assert "maestro.cli.changes" in loaded
    assert _among(loaded, tuple(m for m in OTHER_COMMANDS if m != "maestro.cli.changes")) == []
    assert "maestro.cli.sessions" not in loaded


def test_help_lists_every_command_of_the_table_with_its_short_help() -> None:
    from click.testing import CliRunner

    from maestro.cli import cli
    from maestro.cli.group import COMMAND_MODULES

    listed = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    commands = listed.output.split("Commands:\n", 1)[1].split("\n\n", 1)[0]  # the epilog follows
    rows = {line.split()[0]: line for line in commands.splitlines() if line.startswith("  ")}
    assert set(rows) == set(COMMAND_MODULES) == set(cli.commands)
    for name in COMMAND_MODULES:
        short = cli.commands[name].get_short_help_str(limit=150)
        assert short and short in rows[name], name
