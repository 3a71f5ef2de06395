"""The ``maestro`` command: a thin layer over :class:`maestro.SessionManager`.

Each command opens a manager, makes a few library calls and renders the
result: Rich tables for people, ``--json`` for scripts.  Expected errors are
one line on stderr and a distinct exit code, never a traceback.  Rich is
imported only when something is drawn, and a command's module only when
that command runs, so a call, ``--help`` and shell completion start quickly.

The package by concern: :mod:`~maestro.cli.group` (the group, its global
options, the command table), :mod:`~maestro.cli.context` (what a command
receives, output and errors), :mod:`~maestro.cli.fields` (``--json=a,b``),
:mod:`~maestro.cli.options` (shared arguments, options and completion), and
the commands: :mod:`~maestro.cli.sessions` (create and read),
:mod:`~maestro.cli.changes` (the state machine and other changes),
:mod:`~maestro.cli.maintenance` (many sessions, the store),
:mod:`~maestro.cli.watch`, :mod:`~maestro.cli.demo`, :mod:`~maestro.cli.db`,
:mod:`~maestro.cli.mcp` and :mod:`~maestro.cli.serve`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maestro.cli.context import EXIT_CODES, CommandError
from maestro.cli.group import cli, main

if TYPE_CHECKING:
    from maestro.ages import parse_age
    from maestro.cli.options import parse_assignments

__all__ = ["EXIT_CODES", "CommandError", "cli", "main", "parse_age", "parse_assignments"]


def __getattr__(name: str) -> object:
    # Helpers only some callers use, loaded with the module that defines them.
    if name == "parse_age":
        from maestro.ages import parse_age

        return parse_age
    if name == "parse_assignments":
        from maestro.cli.options import parse_assignments

        return parse_assignments
    raise AttributeError(f"module 'maestro.cli' has no attribute {name!r}")
