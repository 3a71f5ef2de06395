"""Terminal rendering of sessions (Rich): tables, timelines, charts, relative times.

Nothing here reads or writes sessions: every function turns library objects
into Rich renderables.  Text that comes from users (feature requests,
reasons, branch names) always goes in as :class:`rich.text.Text`, never as a
markup string, so brackets in it are printed as they are, and through
:func:`maestro.textsafe.visible`, so control characters and bidi overrides in
it are shown as escapes instead of reaching the terminal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from maestro.gitctx import DETACHED, UNKNOWN, describe_branch
from maestro.models import Session, SessionStatus, utcnow
from maestro.plain import one_line
from maestro.tables import (
    SHORT_ID,
    STATUS_STYLE,
    column_widths,
    relative_time,
    session_rows,
    short_id,
)
from maestro.textsafe import visible

if TYPE_CHECKING:  # the views that draw them load them
    from maestro.lifecycle import Segment
    from maestro.reports import DoctorReport
    from maestro.stats import SessionStats

__all__ = [
    "ASCII_GLYPHS",
    "SHORT_ID",
    "STATUS_STYLE",
    "UNICODE_GLYPHS",
    "Glyphs",
    "activity_table",
    "bar",
    "doctor_view",
    "fitted_table",
    "format_duration",
    "history_table",
    "relative_time",
    "session_details",
    "session_statistics",
    "sessions_table",
    "short_id",
    "show_view",
    "stats_view",
    "status_text",
    "timeline",
]

#: Width of the longest status name ("generating_report").
STATUS_WIDTH = max(len(s.value) for s in SessionStatus)


@dataclass(frozen=True)
class Glyphs:
    """The characters charts are drawn with."""

    full: str
    part: str
    paused: str
    end: str
    rule: str
    arrow: str
    #: How text cut to fit ends: with an ellipsis, or simply cropped.
    cut: Literal["ellipsis", "crop"]


UNICODE_GLYPHS = Glyphs(
    full="█", part="▌", paused="░", end="◆", rule="─", arrow="→", cut="ellipsis"
)
ASCII_GLYPHS = Glyphs(full="#", part="+", paused=".", end="*", rule="-", arrow="->", cut="crop")


def status_text(status: SessionStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE.get(status, ""))


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m 05s``, ``2h 07m``, ``3d 04h``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _ago(moment: datetime, now: datetime) -> str:
    return format_duration(max(0.0, (now - moment).total_seconds())) + " ago"


def _timestamp(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _when(moment: datetime | None, now: datetime | None) -> Text:
    text = Text(_timestamp(moment))
    if moment is not None and now is not None:
        text.append(f"  ({relative_time(moment, now)})", style="dim")
    return text


#: How many lines of a long request ``show`` prints unless asked for all.
REQUEST_LINES = 6
#: ... and how many characters, for a request that is one very long line.
REQUEST_CHARS = 600


def folded_request(text: str, *, full: bool = False) -> Text:
    """The request as ``show`` prints it: a long one folded to its first lines
    and how many more there are."""
    # Line by line: its line breaks print as such, every other control as an escape.
    lines = text.split("\n")
    if full or (len(lines) <= REQUEST_LINES and len(text) <= REQUEST_CHARS):
        return Text("\n".join(visible(line) for line in lines))
    kept = "\n".join(lines[:REQUEST_LINES])[:REQUEST_CHARS]
    more_lines = len(lines) - len(kept.split("\n"))
    folded = Text("\n".join(visible(line) for line in kept.split("\n")))
    if more_lines > 0:
        folded.append(f"\n… {more_lines} more line{'s' if more_lines != 1 else ''}", style="dim")
    else:
        folded.append(f"… {len(text) - len(kept)} more characters", style="dim")
    folded.append(" (--full shows all)", style="dim")
    return folded


def _duration(session: Session, now: datetime | None) -> str:
    """The stored duration of a finished session; a running one's working time so far.

    A running session's ``duration_seconds`` is only set when it ends, so
    printing it would say ``0.0s`` beside the time the timeline shows.
    """
    if session.is_terminal or now is None:
        return format_duration(session.statistics.duration_seconds)
    from maestro.timeline import SessionTimeline

    return format_duration(SessionTimeline.of(session, now).active_seconds) + " so far"


def session_details(
    session: Session,
    now: datetime | None = None,
    *,
    full_request: bool = True,
    reruns: Sequence[str] = (),
) -> Table:
    """A two-column key/value table of the record.

    With ``now``, timestamps also say how long ago they were, and the
    heartbeat and the configuration are listed.
    """
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    git = session.git_context
    if git.branch == DETACHED or (git.commit == UNKNOWN and git.branch != UNKNOWN):
        where = Text(visible(describe_branch(git)))  # the commit is in the words, or none
    else:
        where = Text(f"{visible(git.branch)} @ {visible(git.commit[:12])}")
    if git.is_worktree:
        where.append(f" (worktree {visible(str(git.worktree_name))})")
    status = status_text(session.status)
    if session.paused_from is not None:
        status.append(f"  (from {session.paused_from.value})", style="dim")
    stats = session.statistics
    rows: list[tuple[str, RenderableType]] = [
        ("id", session.session_id),
        ("request", folded_request(session.feature_request, full=full_request)),
        ("status", status),
        ("phase", session.current_phase.value if session.current_phase else "-"),
        ("git", where),
    ]
    if session.prd_reference is not None:
        rows.append(("prd", Text(visible(session.prd_reference.path))))
    if session.rerun_of is not None:
        rows.append(("rerun of", session.rerun_of))
    if reruns:
        rows.append(("reruns", "\n".join(reruns)))
    rows += [
        ("created", _when(session.created_at, now)),
        ("updated", _when(session.updated_at, now)),
        ("completed", _when(session.completed_at, now)),
    ]
    if now is not None and session.heartbeat_at is not None:
        rows.append(("heartbeat", _when(session.heartbeat_at, now)))
    rows += [
        (
            "tasks",
            f"{stats.completed_tasks}/{stats.total_tasks} done, {stats.failed_tasks} failed",
        ),
        ("duration", _duration(session, now)),
        ("revision", str(session.revision)),
    ]
    if now is not None:
        config = session.configuration
        rows.append(
            (
                "config",
                f"{config.max_iterations} iterations, {config.timeout_minutes} min timeout, "
                f"checkpoints {'on' if config.auto_checkpoint else 'off'}, "
                f"recovery {'on' if config.error_recovery_enabled else 'off'}",
            )
        )
    for key, value in rows:
        table.add_row(key, value)
    return table


def history_table(session: Session, now: datetime | None = None, *, compact: bool = False) -> Table:
    """One row per state change: when, from, to, how long it lasted, why.

    ``compact`` draws no frame (more room for the reasons) and dates the
    changes, for sessions that span days.
    """
    if compact:
        table = Table(
            title="history",
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_edge=False,
            collapse_padding=True,
        )
        table.add_column("at (UTC)", no_wrap=True)
    else:
        table = Table(title="history", title_justify="left", expand=False)
        table.add_column("at (UTC)", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("to", no_wrap=True)
    table.add_column("lasted", justify="right", no_wrap=True)
    table.add_column("reason", overflow="fold")
    entries = session.history
    for index, entry in enumerate(entries):
        following = (
            entries[index + 1].at if index + 1 < len(entries) else (session.completed_at or None)
        )
        lasted = "-"
        if following is not None:
            lasted = format_duration((following - entry.at).total_seconds())
        elif not session.is_terminal:
            lasted = format_duration(((now or utcnow()) - entry.at).total_seconds()) + "+"
        at = (
            entry.at.strftime("%m-%d %H:%M:%S")
            if compact
            else entry.at.strftime("%H:%M:%S.%f")[:-3]
        )
        table.add_row(
            at,
            status_text(entry.from_status),
            status_text(entry.to_status),
            lasted,
            Text(visible(entry.reason or "")),
        )
    return table


# ---------------------------------------------------------------- the timeline


def _axis_format(start: datetime, end: datetime) -> str:
    if start.date() != end.date():
        return "%m-%d %H:%M"
    if (end - start).total_seconds() < 60:
        return "%H:%M:%S"
    return "%H:%M"


def _track(pieces: Sequence[Segment], origin: datetime, total: float, width: int) -> list[float]:
    """Seconds of ``pieces`` falling into each of ``width`` cells of ``total`` seconds.

    A segment of no length still marks its cell with a token amount, so
    every stay in a state is visible.
    """
    cell = total / width
    filled = [0.0] * width
    for piece in pieces:
        begin = (piece.start - origin).total_seconds()
        finish = (piece.end - origin).total_seconds()
        if finish <= begin:
            index = min(width - 1, int(begin / cell))
            filled[index] = max(filled[index], 1e-12)
            continue
        first = min(width - 1, int(begin / cell))
        last = min(width - 1, max(first, math.ceil(finish / cell) - 1))
        for index in range(first, last + 1):
            overlap = min(finish, (index + 1) * cell) - max(begin, index * cell)
            if overlap > 0:
                filled[index] += overlap
            elif index == first:
                filled[index] = max(filled[index], 1e-12)
    return filled


def timeline(
    session: Session, now: datetime, *, width: int = 80, glyphs: Glyphs = UNICODE_GLYPHS
) -> Group:
    """The session's life as a chart: one row per state, time running left to right.

    Each row is a bar over the whole life of the session, filled where the
    session was in that state, so the rows read like a Gantt chart: the
    order of the phases, the loops between implementing and validating,
    and the time spent paused (drawn in its own pattern) are all visible.
    The right-hand columns give the time spent in each state and its share
    of the session's life.  The chart never exceeds ``width`` columns.
    """
    from maestro.timeline import SessionTimeline

    life_line = SessionTimeline.of(session, now)
    pieces = list(life_line.segments)
    origin = life_line.start
    finish = life_line.end
    life = life_line.life_seconds
    total = life if life > 0 else 1e-9
    spent = life_line.seconds_in_state
    paused = life_line.paused_seconds

    label_width = STATUS_WIDTH
    right = 2 + 8 + 1 + 4  # gap, duration, gap, percentage
    track_width = max(10, min(60, width - 2 - label_width - 2 - right))

    arrow = glyphs.arrow
    span = f"{origin.strftime('%Y-%m-%d %H:%M:%S')} {arrow} {finish.strftime('%H:%M:%S')} UTC"
    if finish.date() != origin.date():
        span = (
            f"{origin.strftime('%Y-%m-%d %H:%M')} {arrow} {finish.strftime('%Y-%m-%d %H:%M')} UTC"
        )
    summary = format_duration(life) + ("" if session.is_terminal else " so far")
    if paused:
        summary += f" ({format_duration(paused)} paused)"
    if not session.history:
        summary += " (no state changes recorded)"
    heading = Text("timeline", style="bold")
    if len(f"timeline  {span}, {summary}") <= width:
        heading.append(f"  {span}, {summary}")
    else:  # the axis below still shows when it started and ended
        heading.append(f"  {summary}")
    lines: list[RenderableType] = [heading]

    states = [s for s in SessionStatus if any(p.state is s for p in pieces)]
    for state in states:
        mine = [p for p in pieces if p.state is state]
        filled = _track(mine, origin, total, track_width)
        cell = total / track_width
        row = Text("  ")
        row.append(state.value.ljust(label_width), style=STATUS_STYLE[state])
        row.append("  ")
        chars = []
        for seconds in filled:
            if seconds <= 0:
                chars.append(" ")
            elif state is SessionStatus.PAUSED:
                chars.append(glyphs.paused)
            else:
                chars.append(glyphs.full if seconds >= cell / 2 else glyphs.part)
        row.append("".join(chars), style=STATUS_STYLE[state])
        seconds_in_state = spent.get(state, 0.0)
        share = seconds_in_state / life if life > 0 else 0.0
        row.append(f"  {format_duration(seconds_in_state):>8} {share:>4.0%}")
        lines.append(row)
    if session.is_terminal:
        row = Text("  ")
        row.append(session.status.value.ljust(label_width), style=STATUS_STYLE[session.status])
        row.append("  ")
        row.append(" " * (track_width - 1) + glyphs.end, style=STATUS_STYLE[session.status])
        row.append(f"  {'at ' + finish.strftime('%H:%M'):>8}")
        lines.append(row)

    axis_format = _axis_format(origin, finish)
    left = origin.strftime(axis_format)
    right_label = finish.strftime(axis_format)
    gap = track_width - len(left) - len(right_label)
    axis = Text(" " * (2 + label_width + 2), style="dim")
    if gap >= 2:
        axis.append(left + " " + glyphs.rule * (gap - 2) + " " + right_label, style="dim")
    else:
        axis.append(glyphs.rule * track_width, style="dim")
    lines.append(axis)
    return Group(*lines)


def session_statistics(session: Session, now: datetime) -> Table:
    """The counters of a session, and its working and paused time."""
    from maestro.timeline import SessionTimeline

    stats = session.statistics
    life_line = SessionTimeline.of(session, now)
    paused = life_line.paused_seconds
    working = life_line.active_seconds
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_row(
        "tasks total",
        str(stats.total_tasks),
        "decisions made",
        str(stats.decisions_made),
    )
    table.add_row(
        "completed",
        str(stats.completed_tasks),
        "checkpoints",
        str(stats.checkpoints_created),
    )
    table.add_row(
        "failed",
        str(stats.failed_tasks),
        "error recoveries",
        str(stats.error_recovery_count),
    )
    table.add_row("working", format_duration(working), "paused", format_duration(paused))
    return table


def show_view(
    session: Session,
    now: datetime,
    *,
    width: int = 80,
    glyphs: Glyphs = UNICODE_GLYPHS,
    full: bool = True,
    reruns: Sequence[str] = (),
) -> Group:
    """Everything ``maestro show`` prints: record, timeline, statistics, history.

    Unless ``full``, a long request is folded to its first lines; ``reruns``
    are the ids of the sessions that ran it again."""
    parts: list[RenderableType] = [
        session_details(session, now, full_request=full, reruns=reruns),
        Text(""),
        timeline(session, now, width=width, glyphs=glyphs),
        Text(""),
        Text("statistics", style="bold"),
        session_statistics(session, now),
    ]
    if session.history:
        parts += [Text(""), history_table(session, now, compact=True)]
    return Group(*parts)


# ---------------------------------------------------------------- lists of sessions


Cell = str | Text


def fitted_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    width: int,
    flexible: int,
    caps: dict[int, int] | None = None,
    right: Sequence[int] = (),
    glyphs: Glyphs = UNICODE_GLYPHS,
) -> Table:
    """A borderless table that fits ``width``: every column as wide as its contents
    (at most ``caps[column]``), the ``flexible`` one cut to what is left
    (:func:`maestro.tables.column_widths`, which the table drawn without Rich
    uses too)."""
    sizes = column_widths(
        headers,
        ([len(cell) for cell in row] for row in rows),
        width=width,
        flexible=flexible,
        caps=caps,
    )
    table = Table(
        box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1), collapse_padding=True
    )
    for column, (header, size) in enumerate(zip(headers, sizes, strict=True)):
        table.add_column(
            header,
            no_wrap=True,
            overflow=glyphs.cut,
            width=size,
            justify="right" if column in right else "left",
        )
    for row in rows:
        table.add_row(*row)
    return table


def _one_line(text: str) -> Text:
    # Whitespace (line breaks included) becomes single spaces; other controls escapes.
    return Text(one_line(text))


def sessions_table(
    sessions: Sequence[Session],
    now: datetime,
    *,
    width: int = 80,
    glyphs: Glyphs = UNICODE_GLYPHS,
) -> Table:
    """One row per session: short id, status, phase, branch, age, request cut to fit.

    A worktree column (``-`` for the main checkout) comes after the branch
    when the rows come from more than one worktree of the repository.  The
    cells are :func:`maestro.tables.session_rows`', which a terminal's table
    drawn without Rich (:func:`maestro.tables.sessions_text`) prints too.
    """
    table = session_rows(sessions, now)
    return fitted_table(
        table.headers,
        [tuple(Text(text, style=style) for text, style in row) for row in table.rows],
        width=width,
        flexible=table.flexible,
        caps=table.caps,
        glyphs=glyphs,
    )


def activity_table(
    sessions: Sequence[Session],
    now: datetime,
    *,
    width: int = 80,
    glyphs: Glyphs = UNICODE_GLYPHS,
    last_activity: Mapping[str, datetime] | None = None,
) -> Table:
    """One row per session: short id, status, last activity, timeout, request.

    The last activity is how long ago it was, to the second: these sessions
    were picked for being idle, so "just now" would contradict the table.
    ``last_activity`` replaces a session's own (the activity before reaping).
    """
    before = last_activity or {}
    rows = [
        (
            short_id(session.session_id),
            status_text(session.status),
            _ago(before.get(session.session_id, session.last_activity), now),
            f"{session.configuration.timeout_minutes} min",
            _one_line(session.feature_request),
        )
        for session in sessions
    ]
    return fitted_table(
        ("id", "status", "last activity", "timeout", "request"),
        rows,
        width=width,
        flexible=4,
        right=(3,),
        glyphs=glyphs,
    )


# ---------------------------------------------------------------- charts


def bar(value: float, maximum: float, width: int, glyphs: Glyphs = UNICODE_GLYPHS) -> str:
    """A horizontal bar of ``value`` against ``maximum``, at most ``width`` cells.

    Any non-zero value shows at least a sliver.
    """
    if maximum <= 0 or value <= 0:
        return ""
    cells = value / maximum * width
    whole = int(cells)
    text = glyphs.full * whole
    if cells - whole >= 0.5 or whole == 0:
        text += glyphs.part
    return text[:width]


def stats_view(stats: SessionStats, *, width: int = 80, glyphs: Glyphs = UNICODE_GLYPHS) -> Group:
    """Counts by status and branch as bar charts, and the time spent per state."""
    if stats.total == 0:
        return Group(Text("no sessions match"))
    finished = stats.by_status.get("completed", 0) + stats.by_status.get("failed", 0)
    summary = Text(f"{stats.total} session{'s' if stats.total != 1 else ''}", style="bold")
    if stats.success_rate is None:
        summary.append("  success rate -  (none finished yet)")
    else:
        summary.append(
            f"  success rate {stats.success_rate:.0%}  "
            f"({stats.by_status.get('completed', 0)} of {finished} finished)"
        )
    bar_width = max(10, min(40, width - STATUS_WIDTH - 2 - 2 - 2 - 6))
    parts: list[RenderableType] = [summary, Text("")]

    by_status = Table.grid(padding=(0, 2))
    by_status.add_column(no_wrap=True, min_width=STATUS_WIDTH)
    by_status.add_column(no_wrap=True, min_width=bar_width)
    by_status.add_column(justify="right", no_wrap=True)
    top = max(stats.by_status.values())
    for name, count in stats.by_status.items():
        status = SessionStatus(name)
        by_status.add_row(
            status_text(status),
            Text(bar(count, top, bar_width, glyphs), style=STATUS_STYLE[status]),
            str(count),
        )
    parts += [Text("by status", style="bold"), by_status, Text("")]

    if stats.durations:
        durations = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        durations.add_column("time in state", no_wrap=True, min_width=STATUS_WIDTH)
        durations.add_column("sessions", justify="right", no_wrap=True)
        durations.add_column("median", justify="right", no_wrap=True)
        durations.add_column("p90", justify="right", no_wrap=True)
        durations.add_column("total", justify="right", no_wrap=True)
        for name, summary_of_state in stats.durations.items():
            durations.add_row(
                status_text(SessionStatus(name)),
                str(summary_of_state.sessions),
                format_duration(summary_of_state.median_seconds),
                format_duration(summary_of_state.p90_seconds),
                format_duration(summary_of_state.total_seconds),
            )
        parts += [durations, Text("")]

    by_branch = Table.grid(padding=(0, 2))
    by_branch.add_column(no_wrap=True, overflow=glyphs.cut, max_width=STATUS_WIDTH + 7)
    by_branch.add_column(no_wrap=True)
    by_branch.add_column(justify="right", no_wrap=True)
    shown = list(stats.by_branch.items())[:10]
    top = max(count for _, count in shown)
    for name, count in shown:
        by_branch.add_row(Text(visible(name)), Text(bar(count, top, bar_width, glyphs)), str(count))
    parts += [Text("by branch", style="bold"), by_branch]
    hidden = len(stats.by_branch) - len(shown)
    if hidden > 0:
        parts.append(Text(f"... and {hidden} more branch{'es' if hidden != 1 else ''}"))
    return Group(*parts)


# ---------------------------------------------------------------- doctor


_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id_once(text: str) -> str:
    """``quarantined <id> to quarantine/<id>-<time>`` as ``quarantined to quarantine/<id>-<time>``.

    The path names the session already; the id twice would not fit a line.
    """
    found = _SESSION_ID.search(text)
    if found is None or text.count(found.group()) < 2:
        return text
    return text.replace(f"{found.group()} ", "", 1)


def _doctor_items(items: Sequence[str] | Mapping[str, str]) -> Table:
    """Findings indented, each wrapping under itself rather than at the margin.

    A finding about a session names it once, whole (the directory to look
    at), with the reason beneath: the reason no longer repeats "session <id>:".
    """
    table = Table.grid(padding=(0, 1))
    table.add_column(width=1, no_wrap=True)  # the indent
    table.add_column(overflow="fold")
    if isinstance(items, Mapping):
        for key, why in items.items():
            reason = Table.grid(padding=(0, 1))
            reason.add_column(width=1, no_wrap=True)
            reason.add_column(overflow="fold")
            reason.add_row("", Text(visible(why.removeprefix(f"session {key}: "))))
            table.add_row("", Text(visible(key)))
            table.add_row("", reason)
    else:
        for item in items:
            head, to, path = item.partition(" to ")
            if not to:
                table.add_row("", Text(visible(item)))
                continue
            # "quarantined to" above the path: the path is the long part.
            moved = Table.grid(padding=(0, 1))
            moved.add_column(width=1, no_wrap=True)
            moved.add_column(overflow="fold")
            moved.add_row("", Text(visible(path)))
            table.add_row("", Text(visible(head + to.rstrip())))
            table.add_row("", moved)
    return table


def doctor_view(report: DoctorReport, after: DoctorReport | None = None) -> Group:
    """What ``doctor`` found, what it fixed and, after a fix, what is left."""
    lines: list[RenderableType] = [
        Text(f"{report.sessions} readable session{'s' if report.sessions != 1 else ''}")
    ]

    def problem(kind: str, items: Sequence[str] | Mapping[str, str]) -> None:
        if items:
            lines.append(Text(f"{kind} ({len(items)}):", style="bold red"))
            lines.append(_doctor_items(items))

    problem("corrupt", report.corrupt)
    problem("unreadable (left in place)", report.unreadable)
    problem("unsafe", report.unsafe)
    problem("temp files of interrupted writes", report.temp_files)
    problem("store-internal names of the wrong kind", report.misplaced)
    problem("leftovers of interrupted deletes or imports", report.leftovers)
    problem(
        "in a linked worktree's own store (--fix moves them here)",
        [f"{sid}: {where}" for sid, where in report.in_worktrees.items()],
    )
    problem(
        "also stored here (never overwritten; keep one copy)",
        [f"{sid}: {where}" for sid, where in report.duplicates.items()],
    )
    if report.without_metadata:
        lines.append(
            Text(
                f"{len(report.without_metadata)} director"
                f"{'ies' if len(report.without_metadata) != 1 else 'y'} without metadata.json "
                "(files of other components; left alone)",
                style="dim",
            )
        )
    index_ok = report.index in ("ok", "off", "rebuilt")
    lines.append(Text(f"index: {report.index}", style="" if index_ok else "bold red"))
    for name, fact in report.engine.items():
        lines.append(Text(f"{name}: {fact}"))
    if report.fixed:
        lines.append(Text("fixed:", style="bold green"))
        lines.append(_doctor_items([_id_once(item) for item in report.fixed]))
    final = after if after is not None else report
    if final.healthy:
        lines.append(Text("healthy", style="bold green"))
    else:
        remaining = (
            len(final.corrupt)
            + len(final.unreadable)
            + len(final.unsafe)
            + len(final.temp_files)
            + len(final.misplaced)
            + len(final.leftovers)
            + len(final.in_worktrees)
        )
        summary = f"problems remain: {remaining} item(s)"
        if final.index not in ("ok", "off", "rebuilt"):
            summary += ", index " + final.index
        lines.append(Text(summary, style="bold red"))
    return Group(*lines)
