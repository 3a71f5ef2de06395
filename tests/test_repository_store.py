"""One store per repository: where the root is, what it ignores, how git states read.

Real repositories are made with ``git`` (init, commit, ``worktree add``); the
command line runs in-process with the working directory moved into them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro.cli import cli

from .test_cli import error_line, ok, runner

#: Commands that each would open (and maybe create) a store under the root.
COMMANDS = [
    ["create", "a request"],
    ["list"],
    ["search", "oauth"],
    ["show", "0123456789ab"],
    ["stale"],
    ["stats"],
    ["doctor"],
    ["gc", "--dry-run"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
def test_a_root_that_does_not_exist_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "no-such-dir"
    result = runner().invoke(cli, ["--root", str(missing), *args], env={"MAESTRO_ROOT": None})
    assert "--root" in error_line(result, 2)
    assert "no such directory" in result.stderr
    assert not missing.exists()  # nothing was created on the way


@pytest.mark.parametrize("args", COMMANDS[:3], ids=lambda args: args[0])
def test_maestro_root_that_does_not_exist_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "typo"
    result = runner().invoke(cli, args, env={"MAESTRO_ROOT": str(missing), "MAESTRO_STORE": None})
    assert "MAESTRO_ROOT" in error_line(result, 2)
    assert not missing.exists()


def test_an_existing_root_still_works_and_a_store_url_wins(tmp_path: Path) -> None:
    assert ok(runner().invoke(cli, ["--root", str(tmp_path), "list"])).strip() == (
        "no sessions match"
    )
    result = runner().invoke(
        cli, ["--store", "memory:", "list"], env={"MAESTRO_ROOT": str(tmp_path / "unused")}
    )
    assert ok(result).strip() == "no sessions match"
