"""The sessions table as text: what Rich prints for it, drawn without loading Rich.

``maestro list`` on a terminal prints one row per session under a bold
header and a rule.  Loading Rich to draw it takes longer than all the rest
of the command, so the common case is drawn here, to the byte what
:func:`maestro.render.fitted_table` printed by Rich writes: the same column
widths, the same cut (``…`` or cropped), the same rule under the header,
the same colour codes.  :func:`draw` says ``None`` (Rich draws it) as soon
as a table holds anything it is not sure to draw the same: a character
that is not printable ASCII (wide and combining characters change how many
cells a text takes), a style it does not know, a console so narrow that
Rich would have to give a column no room at all or crop the lines.

What both ways of drawing share comes from here, so that they cannot drift
apart: the cells of a sessions table (:func:`session_rows`), the width of
every column (:func:`column_widths`), the colours of the statuses, the
short ids and the relative times.  Nothing here imports Rich, Click or
:mod:`typing`.
"""

from __future__ import annotations

from maestro.gitctx import describe_branch
from maestro.models import SessionStatus, utcnow
from maestro.plain import one_line
from maestro.textsafe import visible

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from maestro.models import Session

__all__ = [
    "SHORT_ID",
    "STATUS_STYLE",
    "SessionRows",
    "column_widths",
    "draw",
    "relative_time",
    "session_rows",
    "sessions_text",
    "short_id",
]

STATUS_STYLE: dict[SessionStatus, str] = {
    SessionStatus.INITIALIZING: "cyan",
    SessionStatus.PLANNING: "blue",
    SessionStatus.GENERATING_TASKS: "blue",
    SessionStatus.IMPLEMENTING: "magenta",
    SessionStatus.VALIDATING: "yellow",
    SessionStatus.GENERATING_REPORT: "cyan",
    SessionStatus.COMPLETED: "green",
    SessionStatus.FAILED: "red",
    SessionStatus.PAUSED: "dim",
}

SHORT_ID = 8

#: The style of a header cell (Rich's ``table.header``).
HEADER_STYLE = "bold"


def short_id(session_id: str) -> str:
    """The first characters of an id: enough to tell sessions apart in a table."""
    return session_id[:SHORT_ID]


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``3 min ago``, ``2 h ago``, ``5 days ago``."""
    if moment is None:
        return "-"
    seconds = ((now or utcnow()) - moment).total_seconds()
    if seconds < -45:
        return "in future"
    if seconds < 45:
        return "just now"
    if seconds < 90 * 60:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


# ---------------------------------------------------------------- the cells


class SessionRows:
    """The cells of a sessions table, and how its columns fit.

    Each cell is its text (already through :func:`~maestro.textsafe.visible`)
    and the style it is drawn in (``""``: none).
    """

    __slots__ = ("caps", "flexible", "headers", "rows")

    def __init__(
        self,
        headers: tuple[str, ...],
        rows: list[tuple[tuple[str, str], ...]],
        flexible: int,
        caps: dict[int, int],
    ) -> None:
        self.headers = headers
        self.rows = rows
        #: The column cut to what the others leave (the request).
        self.flexible = flexible
        #: The most a column takes before the request is cut.
        self.caps = caps

    def widths(self, width: int) -> list[int]:
        """The columns' widths on a console ``width`` wide (:func:`column_widths`)."""
        return column_widths(
            self.headers,
            ([len(text) for text, _ in row] for row in self.rows),
            width=width,
            flexible=self.flexible,
            caps=self.caps,
        )


def session_rows(sessions: Sequence[Session], now: datetime) -> SessionRows:
    """One row per session: short id, status, phase, branch, age, request.

    A worktree column (``-`` for the main checkout) comes after the branch
    when the rows come from more than one worktree of the repository.
    """
    worktrees = {session.git_context.worktree_name for session in sessions}
    with_worktree = len(worktrees) > 1
    rows = []
    for session in sessions:
        git = session.git_context
        row = [
            (short_id(session.session_id), ""),
            (session.status.value, STATUS_STYLE.get(session.status, "")),
            (session.current_phase.value if session.current_phase else "-", ""),
            (visible(describe_branch(git)), ""),
        ]
        if with_worktree:
            row.append((visible(git.worktree_name or "-"), ""))
        row += [
            (relative_time(session.created_at, now), ""),
            (one_line(session.feature_request), ""),
        ]
        rows.append(tuple(row))
    headers = ("id", "status", "phase", "branch", *(("worktree",) if with_worktree else ()))
    return SessionRows(
        (*headers, "age", "request"),
        rows,
        len(headers) + 1,
        # 21: "(detached at 3f01b54)" whole.
        {3: 21, 4: 16} if with_worktree else {3: 21},
    )


# ---------------------------------------------------------------- the widths


def column_widths(
    headers: Sequence[str],
    lengths: Iterable[Sequence[int]],
    *,
    width: int,
    flexible: int,
    caps: dict[int, int] | None = None,
) -> list[int]:
    """How wide each column is drawn, to fit ``width`` with two spaces between columns.

    Every column is as wide as its longest cell or header (at most
    ``caps[column]``), the ``flexible`` one cut to what the others leave.
    On a narrow terminal the capped columns give way first, down to their
    headers, for the flexible one to keep ten columns.  ``lengths`` are the
    lengths of the cells, row by row.
    """
    natural = [len(header) for header in headers]
    for row in lengths:
        natural = [max(size, length) for size, length in zip(natural, row, strict=True)]
    for column, cap in (caps or {}).items():
        natural[column] = max(len(headers[column]), min(natural[column], cap))
    gaps = 2 * (len(headers) - 1)
    fixed = sum(size for column, size in enumerate(natural) if column != flexible)
    room = width - gaps - fixed
    for column in caps or {}:  # a narrow terminal: capped columns give way first
        if room >= 10:
            break
        give = min(natural[column] - len(headers[column]), 10 - room)
        natural[column] -= give
        room += give
    natural[flexible] = max(len(headers[flexible]), min(natural[flexible], room))
    return natural


def rich_widths(sizes: Sequence[int], width: int) -> list[int] | None:
    """The widths Rich draws columns of ``sizes`` at on a console ``width`` wide,
    or ``None`` where the table would not fit whole.

    Rich adds its padding (one space right of every column but the last) and
    a divider between columns; when that is wider than the console it takes
    the excess from every column alike, left to right, each share rounded
    half to even.  A column left with no room, or lines still too long (Rich
    would crop them), are not drawn here.
    """
    count = len(sizes)
    pads = [1] * (count - 1) + [0]
    room = width - (count - 1)  # the dividers
    if count == 0 or room < 1 or min(sizes) < 1:
        return None
    outer = [min(size + pad, room) for size, pad in zip(sizes, pads, strict=True)]
    excess = sum(outer) - room
    if excess > 0:
        shrunk = []
        left = count
        for size in outer:
            share = min(size, round(excess / left))
            shrunk.append(size - share)
            excess -= share
            left -= 1
        if excess > 0:
            return None
        outer = shrunk
    inner = [size - pad for size, pad in zip(outer, pads, strict=True)]
    return inner if min(inner) >= 1 else None


# ---------------------------------------------------------------- the drawing

#: The SGR parameters Rich writes for the styles a table uses.
_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
#: Those that are colours: ``NO_COLOR`` drops them, and keeps bold and dim.
_COLOURS = frozenset(("red", "green", "yellow", "blue", "magenta", "cyan"))


def _plain(text: str) -> bool:
    """Printable ASCII: one cell per character, as Rich counts them too."""
    return text.isascii() and text.isprintable()


def _fit(text: str, size: int, *, right: bool, ellipsis: bool) -> str:
    """``text`` cut or padded to ``size`` characters, as Rich justifies a cell."""
    if right:
        text = text.rstrip()  # Rich drops trailing spaces before it justifies right
    if len(text) > size:
        text = text[: size - 1] + "…" if ellipsis else text[:size]
    return text.rjust(size) if right else text.ljust(size)


def draw(
    headers: Sequence[str],
    rows: Sequence[Sequence[tuple[str, str]]],
    sizes: Sequence[int],
    *,
    width: int,
    right: Sequence[int] = (),
    ellipsis: bool = True,
    ascii_box: bool = False,
    colour: bool = True,
    no_color: bool = False,
) -> str | None:
    """The table Rich prints for these cells and column ``sizes``, or ``None``.

    The table is :func:`maestro.render.fitted_table`'s: no edge, a rule under
    the header, the cells of a column ``right`` justified right, the others
    left; ``ellipsis`` ends a cut cell with ``…``, else it is cropped.  The
    console is ``width`` wide; ``ascii_box`` (an encoding other than UTF)
    draws the rule with ``-`` and ``+`` and divides the columns with ``|``,
    as Rich does; without ``colour`` (no colour system) no style is written,
    and ``no_color`` drops the colours but keeps bold and dim.
    """
    inner = rich_widths(sizes, width)
    if inner is None:
        return None
    for text in headers:
        if not _plain(text):
            return None
    for row in rows:
        for text, style in row:
            if not _plain(text) or (style and style not in _SGR):
                return None

    def styled(text: str, style: str) -> str:
        if not style or not colour or (no_color and style in _COLOURS):
            return text
        return f"\x1b[{_SGR[style]}m{text}\x1b[0m"

    last = len(inner) - 1
    divider = "|" if ascii_box else " "
    justified = [column in right for column in range(len(inner))]
    lines = []
    line = []
    for column, (text, size) in enumerate(zip(headers, inner, strict=True)):
        line.append(
            styled(_fit(text, size, right=justified[column], ellipsis=ellipsis), HEADER_STYLE)
        )
        if column != last:  # the cell's padding is a header's too; the divider is not
            line += [styled(" ", HEADER_STYLE), divider]
    lines.append("".join(line))
    if ascii_box:
        lines.append("+".join("-" * (size + (column != last)) for column, size in enumerate(inner)))
    else:
        lines.append("─" * (sum(inner) + 2 * last))
    between = " " + divider
    for row in rows:
        lines.append(
            between.join(
                styled(_fit(text, size, right=justified[column], ellipsis=ellipsis), style)
                for column, ((text, style), size) in enumerate(zip(row, inner, strict=True))
            )
        )
    return "\n".join(lines) + "\n"


def sessions_text(
    sessions: Sequence[Session],
    now: datetime,
    *,
    width: int,
    ellipsis: bool = True,
    ascii_box: bool = False,
    colour: bool = True,
    no_color: bool = False,
) -> str | None:
    """:func:`maestro.render.sessions_table` as Rich prints it on a console ``width``
    wide (see :func:`draw`), or ``None`` for Rich to draw it."""
    table = session_rows(sessions, now)
    return draw(
        table.headers,
        table.rows,
        table.widths(width),
        width=width,
        ellipsis=ellipsis,
        ascii_box=ascii_box,
        colour=colour,
        no_color=no_color,
    )
