"""What Rich would find out about a standard stream, found out without loading Rich.

:func:`maestro.cli.context._console` makes Rich consoles that read the
environment: whether the stream is a terminal, how wide it is, which
colours it takes, its encoding.  Loading Rich just to learn that costs more
than the rest of ``maestro list``, so here the common case is read the way
Rich reads it: a POSIX terminal, nothing in the environment that forces or
refuses one (``MAESTRO_FORCE_TTY``, ``FORCE_COLOR``, ``TTY_COMPATIBLE``,
``TTY_INTERACTIVE``), no IPython or Jupyter, no IDLE, no dumb ``TERM``, a
``COLUMNS`` and ``LINES`` of plain digits if any, and a stream that is a
plain text file.  Anything else answers ``None``: ask Rich.

On such a terminal Rich's colour system is the standard one, 256 colours or
true colour (``TERM``, ``COLORTERM``); the few named colours a table uses
are written the same in all three, so which one does not matter here.
"""

from __future__ import annotations

import io
import os
import sys

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Terminal", "is_terminal", "stdout_terminal", "utf"]

#: Variables that make Rich take a stream for a terminal or not, whatever it is.
FORCING = ("MAESTRO_FORCE_TTY", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
#: The width Rich takes when the terminal reports none.
DEFAULT_WIDTH = 80


class Terminal:
    """The console :func:`~maestro.cli.context._console` would make for stdout."""

    __slots__ = ("encoding", "no_color", "width")

    def __init__(self, width: int, encoding: str, no_color: bool) -> None:
        #: Columns, as ``Console.width`` says.
        self.width = width
        #: Lower case, as ``Console.encoding`` says.
        self.encoding = encoding
        #: ``NO_COLOR``: no colours, bold and dim still.
        self.no_color = no_color

    def __repr__(self) -> str:
        return f"Terminal({self.width!r}, {self.encoding!r}, {self.no_color!r})"


def utf(encoding: str) -> bool:
    """Whether text drawn for ``encoding`` (as ``Console.encoding`` gives it) may use
    Unicode glyphs: what :meth:`~maestro.cli.context.Context.glyphs` decides by."""
    return encoding.lower().replace("-", "").startswith("utf")


def _left_to_rich(environ: Mapping[str, str]) -> bool:
    """An environment in which Rich decides by more than the stream itself."""
    if sys.platform == "win32" or any(name in environ for name in FORCING):
        return True
    import builtins

    if hasattr(builtins, "get_ipython"):  # IPython, Jupyter: Rich asks it
        return True
    if not hasattr(sys.stdin, "__module__"):
        return False  # a file, as usual
    stdin_module = sys.stdin.__module__
    return not isinstance(stdin_module, str) or stdin_module.startswith("idlelib")  # IDLE


def is_terminal(stream: object, environ: Mapping[str, str] = os.environ) -> bool | None:
    """``Console(file=stream).is_terminal`` as :func:`_console` makes it, or ``None``
    where only Rich can say."""
    if _left_to_rich(environ) or hasattr(stream, "rich_proxied_file"):
        return None
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False  # no stream, or a closed one: Rich says no terminal too


def stdout_terminal(environ: Mapping[str, str] = os.environ) -> Terminal | None:
    """The terminal stdout is, as the console of :func:`_console` would see it, or
    ``None`` where it is not one, or only Rich can say what it is."""
    stream = sys.stdout
    if type(stream) is not io.TextIOWrapper or is_terminal(stream, environ) is not True:
        return None
    if environ.get("TERM", "").strip().lower() in ("dumb", "unknown"):
        return None  # no colours, and 80 columns whatever the terminal says
    sizes = [environ.get("COLUMNS", ""), environ.get("LINES", "")]
    if any(size.isdigit() and not size.isascii() for size in sizes):
        return None  # digits of another script: Rich's int() reads them or fails
    columns = int(sizes[0]) if sizes[0].isdigit() else _terminal_columns()
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower()
    return Terminal(columns, encoding, bool(environ.get("NO_COLOR")))


def _terminal_columns() -> int:
    """The width of the first standard stream that is a terminal, as Rich asks:
    stdin, stdout, then stderr."""
    for stream, default in ((sys.__stdin__, 0), (sys.__stdout__, 1), (sys.__stderr__, 2)):
        try:
            descriptor = stream.fileno()  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - Rich takes the usual number then
            descriptor = default
        try:
            columns = os.get_terminal_size(descriptor).columns
        except (AttributeError, ValueError, OSError):
            continue
        return columns or DEFAULT_WIDTH  # a pseudo-terminal may say 0
    return DEFAULT_WIDTH
