"""The ``maestro`` command: a thin layer over :class:`maestro.SessionManager`.

Each command opens a manager, makes a few library calls and renders the
result: Rich tables for people, ``--json`` for scripts.  Expected errors are
one line on stderr and a distinct exit code, never a traceback.  Rich is
imported only when something is drawn, and a command's module only when
that command runs, so a call, ``--help`` and shell completion start quickly.
The common forms of ``show`` and ``list`` run without Click at all
(:mod:`~maestro.cli.direct`): importing Click alone takes longer than the
rest of such a call.

The package by concern: :mod:`~maestro.cli.group` (the group, its global
options, the command table), :mod:`~maestro.cli.context` (what a command
receives, output and errors), :mod:`~maestro.cli.fields` (``--json=a,b``),
:mod:`~maestro.cli.options` (shared arguments, options and completion), and
the commands: :mod:`~maestro.cli.sessions` (create and read),
:mod:`~maestro.cli.changes` (the state machine and other changes),
:mod:`~maestro.cli.maintenance` (many sessions, the store),
:mod:`~maestro.cli.watch`, :mod:`~maestro.cli.demo`, :mod:`~maestro.cli.db`,
:mod:`~maestro.cli.mcp` and :mod:`~maestro.cli.serve`; what ``show``
and ``list`` do is in :mod:`~maestro.cli.reading`, which both their Click
commands and :mod:`~maestro.cli.direct` call.
"""

from __future__ import annotations

import sys

from maestro.cli.context import EXIT_CODES, CommandError

#: Set by type checkers only: neither :mod:`typing` nor Click is loaded to start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from maestro.ages import parse_age
    from maestro.cli.group import cli
    from maestro.cli.options import parse_assignments

__all__ = ["EXIT_CODES", "CommandError", "cli", "main", "parse_age", "parse_assignments"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the common forms of ``show`` and ``list`` run
    without Click (:mod:`maestro.cli.direct`), everything else through it."""
    from maestro.cli.direct import run

    run(sys.argv[1:] if argv is None else list(argv))  # exits if it ran the command
    from maestro.cli.group import cli

    cli.main(args=argv, prog_name="maestro")


def __getattr__(name: str) -> object:
    # The Click group, and helpers only some callers use, loaded with the
    # module that defines them.
    if name == "cli":
        from maestro.cli.group import cli

        return cli
    if name == "parse_age":
        from maestro.ages import parse_age

        return parse_age
    if name == "parse_assignments":
        from maestro.cli.options import parse_assignments

        return parse_assignments
    raise AttributeError(f"module 'maestro.cli' has no attribute {name!r}")
