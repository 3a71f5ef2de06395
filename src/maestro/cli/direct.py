"""The common forms of ``show`` and ``list``, run without Click.

Importing Click takes longer than all the rest of ``maestro --json show
ID``.  So :func:`run` reads these command lines itself::

    maestro [GLOBAL...] show ID [--full] [GLOBAL...]
    maestro [GLOBAL...] list [--active] [--status STATE]... [--phase PHASE]...
                             [--branch NAME] [--worktree NAME] [--limit N]
                             [--offset N] [--sort created|updated] [--wide] [GLOBAL...]

where GLOBAL is ``--json``, ``--root DIR``, ``--store URL`` (also written
``--root=DIR``), and before the command ``--all-projects``, with
``$MAESTRO_ROOT``, ``$MAESTRO_STORE`` and ``$MAESTRO_ALL_PROJECTS`` read as
the Click group reads them.  It then builds the same
:class:`~maestro.cli.context.Context` the group would and calls the same
function the Click command calls (:mod:`maestro.cli.reading`) through the
same error handling, so the output, on either stream, and the exit code
are the same bytes and the same number.

Only argument parsing is this module's own, and it takes nothing it is not
sure of: help, shell completion, ``--json=FIELDS``, an option it does not
know, a value Click would refuse or read differently (an empty one, one
starting with ``-``, a ``--root`` that is not a directory), every other
command: :func:`run` returns without having done anything, and Click runs
the command line as it always did.
"""

from __future__ import annotations

import os
import sys

from maestro.cli.context import (
    EXIT_ERROR,
    EXIT_OK,
    Context,
    UsageProblem,
    _install_log_handler,
    echo,
    run_handled,
)

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any, TextIO

__all__ = ["Call", "parse", "run"]

#: The variable Click's shell completion sets (it answers, the command does not run).
COMPLETE_VAR = "_MAESTRO_COMPLETE"

#: Options taking a value, before or after the command name.
_GLOBAL_VALUES = ("--root", "--store")
#: ``list``'s options taking a value, and its flags.
_LIST_VALUES = ("--status", "--phase", "--branch", "--worktree", "--limit", "--offset", "--sort")
_LIST_FLAGS = ("--active", "--wide")
_SORTS = ("created", "updated")
#: What Click reads as a boolean in ``$MAESTRO_ALL_PROJECTS`` (after strip and lower).
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off"})


class Call:
    """A command line :func:`run` can run: the command, the context it gets, its arguments."""

    def __init__(self, command: str, context: Context, arguments: dict[str, Any]) -> None:
        self.command = command
        self.context = context
        self.arguments = arguments

    def __repr__(self) -> str:
        return f"Call({self.command!r}, {self.context!r}, {self.arguments!r})"


def run(args: Sequence[str]) -> None:
    """Run ``args`` (``sys.argv[1:]``) and exit, if they are a form this module
    knows; else return having done nothing, for Click to run them."""
    if COMPLETE_VAR in os.environ:
        return
    call = parse(args, os.environ)
    if call is None:
        return
    from maestro.cli.reading import list_sessions, show_session

    ctx = call.context
    work: Callable[..., None] = show_session if call.command == "show" else list_sessions
    _install_log_handler()
    try:
        run_handled(ctx, work, ctx, **call.arguments)
    except UsageProblem:
        return  # found before anything was read or printed: Click says it its way
    except BrokenPipeError:
        # The reader went away (`maestro list | head`): quiet, as Click is.
        sys.stdout = _QuietFlush(sys.stdout)
        sys.stderr = _QuietFlush(sys.stderr)
        sys.exit(EXIT_ERROR)
    except (EOFError, KeyboardInterrupt):
        echo("", err=True)  # closes the terminal's ^C echo, as Click does
        echo("Aborted!", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)


def parse(args: Sequence[str], environ: Mapping[str, str]) -> Call | None:
    """The :class:`Call` ``args`` ask for, or ``None`` if Click must read them."""
    words = list(args)
    globals_: dict[str, Any] = {"json": False, "all_projects": None}
    index = _globals(words, 0, globals_, leading=True)
    if index is None or index >= len(words) or words[index] not in ("show", "list"):
        return None
    command = words[index]
    local: dict[str, Any] = {"json": False}
    arguments: dict[str, Any] = {}
    reader = _show_argument if command == "show" else _list_argument
    index += 1
    while index < len(words):
        after_globals = _globals(words, index, local, leading=False)
        if after_globals is None:
            return None
        if after_globals > index:
            index = after_globals
            continue
        read = reader(words, index, arguments)
        if read is None:
            return None
        index = read
    if command == "show" and "session_id" not in arguments:
        return None
    return _call(command, globals_, local, arguments, environ)


def _call(
    command: str,
    given: dict[str, Any],
    local: dict[str, Any],
    arguments: dict[str, Any],
    environ: Mapping[str, str],
) -> Call | None:
    """The context the group and the command's options would make, if Click
    would accept them as given."""
    from pathlib import Path

    root_text = given.get("root") or environ.get("MAESTRO_ROOT") or None
    store = given.get("store") or environ.get("MAESTRO_STORE") or None
    all_projects = given["all_projects"]
    if all_projects is None:
        switch = environ.get("MAESTRO_ALL_PROJECTS", "").strip().lower()
        if switch not in _TRUE and switch not in _FALSE:
            return None  # Click refuses it, in its words
        all_projects = switch in _TRUE
    # Every root Click would read must be a directory: a missing one is an
    # error Click reports from the group, a file one Click's own refusal.
    for text in (root_text, local.get("root")):
        if text is not None and not os.path.isdir(text):
            return None
    root: Path | None = None if root_text is None else Path(root_text)
    context = Context(root=root, as_json=given["json"], store=store)
    context.all_projects = all_projects
    context.command = f"maestro {command}"
    # The command's own --root, --store and --json, set after the group's.
    if "root" in local:
        context.root = Path(local["root"])
    if "store" in local:
        context.store = local["store"]
    if local["json"]:
        context.as_json = True
    return Call(command, context, arguments)


def _value(words: list[str], index: int) -> tuple[str, int] | None:
    """The value of the option at ``index`` (``--opt VALUE`` or ``--opt=VALUE``), and
    the index after it; ``None`` for a value Click might read otherwise."""
    word = words[index]
    _, equals, value = word.partition("=")
    following = index + 1
    if not equals:
        if following >= len(words):
            return None
        value = words[following]
        following += 1
    if not value or value.startswith("-"):
        return None
    return value, following


def _option_name(word: str) -> str:
    return word.partition("=")[0]


def _globals(words: list[str], index: int, into: dict[str, Any], *, leading: bool) -> int | None:
    """Read the global options from ``index`` on: the index of the first other
    word, or ``None`` if one of them is not read here."""
    while index < len(words):
        word = words[index]
        name = _option_name(word)
        if word == "--json":
            into["json"] = True
            index += 1
        elif leading and word == "--all-projects":
            into["all_projects"] = True
            index += 1
        elif name in _GLOBAL_VALUES:
            read = _value(words, index)
            if read is None:
                return None
            into[name.removeprefix("--")], index = read
        elif leading and word.startswith("-"):
            return None
        else:
            return index
    return index


def _show_argument(words: list[str], index: int, into: dict[str, Any]) -> int | None:
    word = words[index]
    if word == "--full":
        into["full"] = True
    elif word.startswith("-") or "session_id" in into:
        return None
    else:
        into["session_id"] = word
        into.setdefault("full", False)
    return index + 1


def _list_argument(words: list[str], index: int, into: dict[str, Any]) -> int | None:
    word = words[index]
    if word in _LIST_FLAGS:
        into[word.removeprefix("--")] = True
        return index + 1
    name = _option_name(word)
    if name not in _LIST_VALUES:
        return None  # an option this module does not take, or an argument list has none
    read = _value(words, index)
    if read is None:
        return None
    value, following = read
    if name in ("--status", "--phase"):
        from maestro.models import SessionPhase, SessionStatus

        choices = SessionStatus if name == "--status" else SessionPhase
        if value not in {member.value for member in choices}:
            return None
        key = "statuses" if name == "--status" else "phases"
        into[key] = (*into.get(key, ()), value)
    elif name in ("--limit", "--offset"):
        if not (value.isascii() and value.isdigit()):
            return None
        number = int(value)
        if number < (1 if name == "--limit" else 0):
            return None
        into[name.removeprefix("--")] = number
    elif name == "--sort":
        if value not in _SORTS:
            return None
        into["sort"] = value
    else:
        into[name.removeprefix("--")] = value
    return following


class _QuietFlush:
    """A standard stream whose flush says nothing of a reader gone away, as Click
    leaves them after a broken pipe (the interpreter flushes them as it exits)."""

    def __init__(self, wrapped: TextIO) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        from contextlib import suppress

        with suppress(BrokenPipeError):
            self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)
