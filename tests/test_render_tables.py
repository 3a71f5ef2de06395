"""The sessions table drawn without Rich is, to the byte, what Rich prints.

:mod:`maestro.tables` draws ``maestro list``'s table on a terminal without
loading Rich.  Here it is compared with Rich itself, through the code the
command used before (:func:`maestro.render.sessions_table` printed on a
console set up as :func:`maestro.cli.context._console` sets one up), on
generated lists of sessions: every status and phase, branches detached,
unborn and unknown, worktrees or none, requests of every length (cut or
not), consoles from 1 to 250 columns, Unicode and ASCII glyphs, UTF and
ASCII encodings, each colour system, with and without ``NO_COLOR``.
Whatever the fast drawing takes must come out the same; what it leaves to
Rich (``None``) is counted, and must be what it is meant to leave.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from maestro.models import GitContext, Session, SessionPhase, SessionStatus
from maestro.plain import one_line
from maestro.render import (
    ASCII_GLYPHS,
    UNICODE_GLYPHS,
    Glyphs,
    activity_table,
    fitted_table,
    sessions_table,
)
from maestro.tables import column_widths, draw, rich_widths, session_rows, sessions_text

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

#: Printable ASCII, the text the fast drawing takes.
ASCII = "".join(chr(code) for code in range(0x20, 0x7F))
#: Beyond it: accented, wide, combining, zero-width, and an escape ``visible`` shows.
ODD = "é中\u0301\u200b😀\x1b"


class Encoded(io.StringIO):
    """A text buffer with an encoding, as Rich reads it off a stream."""

    def __init__(self, encoding: str) -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding


def rich_prints(
    table: object,
    *,
    width: int,
    color_system: str | None,
    no_color: bool,
    encoding: str = "utf-8",
) -> str:
    """What a console made as ``_console`` makes it prints for ``table``."""
    buffer = Encoded(encoding)
    console = Console(
        file=buffer,
        force_terminal=True,
        width=width,
        height=25,  # with the width: the size is as given, whatever TERM says
        color_system=color_system,  # type: ignore[arg-type]
        no_color=no_color or None,
        highlight=False,
        emoji=False,
        soft_wrap=False,
        _environ={},
    )
    console.print(table)
    return buffer.getvalue()


# ---------------------------------------------------------------- generated sessions


def texts(*, min_size: int = 0, max_size: int = 40, odd: bool = True) -> st.SearchStrategy[str]:
    plain = st.text(alphabet=ASCII + " \n\t", min_size=min_size, max_size=max_size)
    if not odd:
        return plain
    return st.one_of(
        plain, plain, plain, st.text(alphabet=ASCII + ODD, min_size=min_size, max_size=max_size)
    )


hexes = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)


@st.composite
def git_contexts(draw_: st.DrawFn, odd: bool) -> GitContext:
    branch = draw_(
        st.one_of(
            st.just("main"),
            st.just("HEAD"),
            st.just("unknown"),
            texts(min_size=1, max_size=30, odd=odd).filter(str.strip),
        )
    )
    commit = draw_(st.one_of(hexes, st.just("unknown")))
    worktree = draw_(
        st.one_of(st.none(), texts(min_size=1, max_size=24, odd=odd).filter(str.strip))
    )
    return GitContext(branch, commit, "/repo", worktree is not None, worktree)


@st.composite
def sessions(draw_: st.DrawFn, odd: bool = True) -> Session:
    request = draw_(
        st.one_of(
            texts(min_size=1, max_size=12, odd=odd),
            texts(min_size=1, max_size=80, odd=odd),
            texts(min_size=1, max_size=300, odd=odd),
        ).filter(str.strip)
    )
    return Session(
        session_id=str(draw_(st.uuids())),
        feature_request=request,
        status=draw_(st.sampled_from(SessionStatus)),
        created_at=NOW - timedelta(seconds=draw_(st.integers(-10_000, 40 * 86_400))),
        git_context=draw_(git_contexts(odd)),
        current_phase=draw_(st.one_of(st.none(), st.sampled_from(SessionPhase))),
    )


def consoles(widths: st.SearchStrategy[int]) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(
        {
            "width": widths,
            "glyphs": st.sampled_from([UNICODE_GLYPHS, ASCII_GLYPHS]),
            "encoding": st.sampled_from(["utf-8", "ascii"]),
            "color_system": st.sampled_from([None, "standard", "256", "truecolor"]),
            "no_color": st.booleans(),
        }
    )


ANY_WIDTH = st.one_of(st.integers(1, 250), st.integers(40, 130))


def fast(sessions_: list[Session], console: dict[str, object]) -> str | None:
    glyphs = console["glyphs"]
    assert isinstance(glyphs, Glyphs)
    width = console["width"]
    assert isinstance(width, int)
    return sessions_text(
        sessions_,
        NOW,
        width=width,
        ellipsis=glyphs.cut == "ellipsis",
        ascii_box=not str(console["encoding"]).startswith("utf"),
        colour=console["color_system"] is not None,
        no_color=bool(console["no_color"]),
    )


def by_rich(sessions_: list[Session], console: dict[str, object]) -> str:
    width = console["width"]
    glyphs = console["glyphs"]
    assert isinstance(width, int) and isinstance(glyphs, Glyphs)
    return rich_prints(
        sessions_table(sessions_, NOW, width=width, glyphs=glyphs),
        width=width,
        color_system=console["color_system"],  # type: ignore[arg-type]
        no_color=bool(console["no_color"]),
        encoding=str(console["encoding"]),
    )


def plain_cells(sessions_: list[Session]) -> bool:
    table = session_rows(sessions_, NOW)
    return all(text.isascii() and text.isprintable() for row in table.rows for text, _ in row)


# ---------------------------------------------------------------- the comparison


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sessions(), min_size=1, max_size=8), consoles(ANY_WIDTH))
def test_the_fast_table_is_what_rich_prints(sessions_: list[Session], console: dict) -> None:
    drawn = fast(sessions_, console)
    if drawn is None:
        event("left to Rich")
        # Only for text it does not know, or a console too narrow for the table whole.
        assert not plain_cells(sessions_) or console["width"] < 110
        return
    event("drawn without Rich")
    assert drawn == by_rich(sessions_, console)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(sessions(odd=False), min_size=1, max_size=5),
    consoles(st.one_of(st.integers(20, 250), st.integers(45, 110))),
)
def test_plain_text_is_drawn_without_rich_wherever_the_table_fits(
    sessions_: list[Session], console: dict
) -> None:
    """The common case is taken: printable ASCII on a console the columns fit,
    squeezed or not, unless Rich would leave a column no room."""
    table = session_rows(sessions_, NOW)
    width = console["width"]
    sizes = table.widths(width)
    drawn = fast(sessions_, console)
    if rich_widths(sizes, width) is not None:
        assert drawn is not None
        assert drawn == by_rich(sessions_, console)
        event("squeezed" if sum(sizes) + 2 * (len(sizes) - 1) > width else "whole")
    else:
        assert drawn is None
        event("too narrow")


def session(request: str, **fields: object) -> Session:
    values: dict[str, object] = {
        "session_id": "0123456789abcdef0123456789abcdef",
        "feature_request": request,
        "status": SessionStatus.IMPLEMENTING,
        "created_at": NOW - timedelta(minutes=5),
        "git_context": GitContext("main", "0" * 40, "/repo"),
        "current_phase": SessionPhase.IMPLEMENT,
        **fields,
    }
    return Session(**values)  # type: ignore[arg-type]


EXAMPLES = [
    session("Add a login page with a very long request text that must be cut somewhere"),
    session(
        "x",
        session_id="fedcba98",
        status=SessionStatus.PAUSED,
        created_at=NOW - timedelta(days=3),
        git_context=GitContext("HEAD", "abcdef1234" + "0" * 30, "/repo", True, "wt"),
        current_phase=None,
    ),
    session("[bold]not markup[/] and [link=x]", status=SessionStatus.FAILED),
]


@pytest.mark.parametrize("width", [20, 45, 60, 61, 62, 63, 64, 70, 79, 80, 81, 120, 200])
@pytest.mark.parametrize("no_color", [False, True])
@pytest.mark.parametrize("unicode", [True, False])
def test_examples_at_the_widths_that_squeeze(width: int, no_color: bool, unicode: bool) -> None:
    console = {
        "width": width,
        "glyphs": UNICODE_GLYPHS if unicode else ASCII_GLYPHS,
        "encoding": "utf-8" if unicode else "ascii",
        "color_system": "standard",
        "no_color": no_color,
    }
    drawn = fast(EXAMPLES, console)
    expected = by_rich(EXAMPLES, console)
    if width >= 45:
        assert drawn == expected
    else:
        assert drawn is None  # a column would get no room at all


def test_what_the_example_looks_like() -> None:
    """The bytes themselves, for a reader: bold header, a rule, status colours."""
    drawn = sessions_text(EXAMPLES[:2], NOW, width=90)
    assert drawn == (
        "\x1b[1mid      \x1b[0m\x1b[1m \x1b[0m \x1b[1mstatus      \x1b[0m\x1b[1m \x1b[0m "
        "\x1b[1mphase    \x1b[0m\x1b[1m \x1b[0m \x1b[1mbranch               \x1b[0m\x1b[1m \x1b[0m "
        "\x1b[1mworktree\x1b[0m\x1b[1m \x1b[0m \x1b[1mage       \x1b[0m\x1b[1m \x1b[0m "
        "\x1b[1mrequest   \x1b[0m\n" + "─" * 90 + "\n"
        "01234567  \x1b[35mimplementing\x1b[0m  implement  main                   "
        "-         5 min ago   Add a log…\n"
        "fedcba98  \x1b[2mpaused      \x1b[0m  -          (detached at abcdef1)  "
        "wt        3 days ago  x         \n"
    )
    no_colour = sessions_text(EXAMPLES[:2], NOW, width=90, no_color=True)
    assert no_colour is not None and "\x1b[35m" not in no_colour and "\x1b[2m" in no_colour
    assert "\x1b" not in (sessions_text(EXAMPLES[:2], NOW, width=90, colour=False) or "\x1b")


@pytest.mark.parametrize(
    "request_",
    [
        "café au lait",  # one cell each, but not ASCII: Rich decides
        "wide 中文 characters",
        "e\u0301 combining",
        "emoji 😀",
    ],
)
def test_text_that_is_not_printable_ascii_is_left_to_rich(request_: str) -> None:
    assert sessions_text([session(request_)], NOW, width=120) is None
    # ... and a control character is shown by ``visible`` as an escape: printable.
    assert sessions_text([session("bell\x07")], NOW, width=120) is not None


def test_a_style_it_does_not_know_is_left_to_rich() -> None:
    assert draw(("a", "b"), [(("x", "bold red"), ("y", ""))], [1, 1], width=20) is None
    assert draw(("a", "b"), [(("x", "red"), ("y", ""))], [1, 1], width=20) is not None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(texts(max_size=20, odd=False), st.sampled_from(["", "dim", "green", "red"])),
        min_size=1,
        max_size=6,
    ),
    consoles(ANY_WIDTH),
)
def test_right_justified_columns_as_rich_justifies_them(
    cells: list[tuple[str, str]], console: dict
) -> None:
    """``activity_table``'s timeout column is justified right (trailing spaces go),
    and any column may be styled."""
    headers = ("status", "timeout", "request")
    rows = [
        ((one_line(text), style), (text.replace("\n", " ").replace("\t", " "), ""), ("r", ""))
        for text, style in cells
    ]
    width = console["width"]
    glyphs = console["glyphs"]
    sizes = column_widths(
        headers, ([len(t) for t, _ in row] for row in rows), width=width, flexible=2
    )
    drawn = draw(
        headers,
        rows,
        sizes,
        width=width,
        right=(1,),
        ellipsis=glyphs.cut == "ellipsis",
        ascii_box=console["encoding"] != "utf-8",
        colour=console["color_system"] is not None,
        no_color=console["no_color"],
    )
    if drawn is None:
        event("too narrow")
        return
    event("drawn")
    table = fitted_table(
        headers,
        [tuple(Text(t, style=s) for t, s in row) for row in rows],
        width=width,
        flexible=2,
        right=(1,),
        glyphs=glyphs,
    )
    assert drawn == rich_prints(
        table,
        width=width,
        color_system=console["color_system"],
        no_color=console["no_color"],
        encoding=console["encoding"],
    )


def test_activity_table_still_fits_its_columns() -> None:
    """``fitted_table`` takes its widths from :func:`column_widths` too."""
    drawn = rich_prints(
        activity_table(EXAMPLES[:1], NOW, width=60), width=60, color_system=None, no_color=False
    )
    lines = drawn.splitlines()
    assert lines[0].split() == ["id", "status", "last", "activity", "timeout", "request"]
    assert all(len(line) <= 60 for line in lines)


def test_the_fast_drawing_loads_nothing_heavy() -> None:
    """Neither Rich, Click nor :mod:`typing` (which Rich and Click bring)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import maestro.tables, maestro.cli.terminal, maestro.cli.reading\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(done.stdout))
    heavy = ("rich", "click", "typing", "dataclasses", "inspect", "maestro.render")
    assert sorted(m for m in loaded for h in heavy if m == h or m.startswith(h + ".")) == []
