"""The command line's output for scripts and for people: global options after the
command, ``--json`` fields and errors, plain rows when piped, pages of ``list``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result

from maestro import SessionManager
from maestro.cli import cli
from maestro.errors import SessionValidationError, UnsupportedOperationError

from .test_cli import PLAIN_ENV, as_json, new, ok, run, runner


@pytest.fixture
def lib(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path)


def bare(*args: str, **env: str | None) -> Result:
    """The command with no leading --root: the options go where the caller puts them."""
    return runner().invoke(cli, list(args), env={**PLAIN_ENV, "MAESTRO_ROOT": None, **env})


def json_error(result: Result, code: int) -> dict[str, object]:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    payload = json.loads(result.stderr)
    assert set(payload) == {"error"}
    error = payload["error"]
    assert isinstance(error, dict) and error["exit_code"] == code
    return error


# ---------------------------------------------------------------- global options anywhere


def test_global_options_work_after_the_command(tmp_path: Path) -> None:
    sid = new(tmp_path, "Add OAuth login")
    listed = json.loads(ok(bare("list", "--root", str(tmp_path), "--json")))
    assert [record["session_id"] for record in listed] == [sid]
    shown = json.loads(ok(bare("show", sid[:8], "--json", "--root", str(tmp_path))))
    assert shown["session"]["session_id"] == sid
    # --store names the store as well, after the command too.
    by_url = json.loads(ok(bare("list", "--store", f"file:{tmp_path}", "--json")))
    assert [record["session_id"] for record in by_url] == [sid]
    # The command's own --root wins over the environment's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert ok(bare("list", "--root", str(elsewhere), MAESTRO_ROOT=str(tmp_path))) == (
        "no sessions match\n"
    )
    assert "--root" in ok(bare("list", "--help")) and "--json" in ok(bare("show", "--help"))


# ---------------------------------------------------------------- --json fields and errors


def test_json_alone_prints_every_field_and_json_equals_selects(tmp_path: Path) -> None:
    sid = new(tmp_path, "Add OAuth login")
    whole = as_json(run(tmp_path, "list", "--json"))
    assert isinstance(whole, list) and {"history", "statistics", "configuration"} <= set(whole[0])
    picked = as_json(run(tmp_path, "list", "--json=id,status,branch"))
    assert picked == [
        {"id": sid, "status": "initializing", "branch": whole[0]["git_context"]["branch"]}
    ]
    # Before the command as well, and on show (whose timeline fields can be asked too).
    assert as_json(run(tmp_path, "--json=id", "list")) == [{"id": sid}]
    shown = as_json(run(tmp_path, "show", sid, "--json=session_id,phase,seconds_in_state"))
    assert isinstance(shown, dict) and list(shown) == ["session_id", "phase", "seconds_in_state"]
    assert shown["phase"] is None and "initializing" in shown["seconds_in_state"]


def test_json_without_equals_takes_no_value(tmp_path: Path) -> None:
    sid = new(tmp_path, "Add OAuth login")
    new(tmp_path, "Fix the flaky test")
    found = as_json(run(tmp_path, "search", "--json", "oauth"))
    assert isinstance(found, list) and [record["session_id"] for record in found] == [sid]


def test_unknown_json_fields_are_a_usage_error_listing_the_known_ones(tmp_path: Path) -> None:
    new(tmp_path, "Add OAuth login")
    for args in (("list", "--json=id,colour"), ("--json=colour", "list")):
        error = json_error(run(tmp_path, *args), 2)
        assert error["type"] == "UsageError"
        message = str(error["message"])
        assert "colour" in message and "known fields:" in message and "status" in message
    # An empty list knows the fields of a session as well.
    error = json_error(run(tmp_path, "list", "--branch", "nowhere", "--json=nope"), 2)
    assert "feature_request" in str(error["message"])
    error = json_error(run(tmp_path, "list", "--json=id,,status"), 2)
    assert "field names separated by commas" in str(error["message"])


def test_errors_under_json_are_a_json_object_on_stderr(tmp_path: Path) -> None:
    new(tmp_path, "Add OAuth login")
    missing = "3f01b541-5cc9-47a7-9f8b-d884159c705f"
    error = json_error(run(tmp_path, "show", missing, "--json"), 3)
    assert error["type"] == "SessionNotFoundError" and missing in str(error["message"])
    error = json_error(run(tmp_path, "--json", "list", "--status", "sleeping"), 2)
    assert error["type"] == "UsageError" and "--status" in str(error["message"])
    error = json_error(run(tmp_path, "--json", "frobnicate"), 2)
    assert "frobnicate" in str(error["message"])
    # Without --json an error stays one human line.
    plain = run(tmp_path, "show", missing)
    assert plain.exit_code == 3 and plain.stderr.startswith("error: ")


def test_json_after_a_double_dash_is_an_argument(tmp_path: Path, lib: SessionManager) -> None:
    sid = ok(run(tmp_path, "create", "--quiet", "--", "--json=id")).strip()
    assert lib.get_session(sid).feature_request == "--json=id"


# ---------------------------------------------------------------- tables in a pipe, --wide

LONG = "Migrate the billing service " + "and keep the old webhooks alive " * 4


def test_a_pipe_gets_plain_tab_separated_rows(tmp_path: Path, lib: SessionManager) -> None:
    first = new(tmp_path, LONG)
    second = new(tmp_path, "Fix the flaky\ttest")
    result = run(tmp_path, "list")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    # No header, no rule, no padding, nothing cut: whole ids and requests.
    assert [row[0] for row in rows] == [second, first]
    assert all(len(row) == 6 for row in rows)
    assert rows[1][1:4] == ["initializing", "-", lib.get_session(first).git_context.branch]
    assert rows[1][4] == lib.get_session(first).to_dict()["created_at"]
    assert rows[1][5] == " ".join(LONG.split()) and rows[0][5] == "Fix the flaky test"
    assert result.stderr == "2 sessions\n"  # the count is not a row
    stale = run(tmp_path, "stale", "--older-than", "1w")
    assert stale.stdout == "no stale sessions\n"


def test_wide_shows_whole_cells_on_a_terminal(tmp_path: Path) -> None:
    sid = new(tmp_path, LONG)
    cut = ok(run(tmp_path, "list", MAESTRO_FORCE_TTY="1"))
    assert "…" in cut and " ".join(LONG.split()) not in cut
    assert max(len(line) for line in cut.splitlines()) <= 80
    whole = ok(run(tmp_path, "list", "--wide", MAESTRO_FORCE_TTY="1"))
    assert " ".join(LONG.split()) in whole and "…" not in whole
    assert whole.splitlines()[0].split() == ["id", "status", "phase", "branch", "age", "request"]
    assert sid[:8] in whole
    # A number of columns narrows the table, as on a 60-column terminal.
    narrow = ok(run(tmp_path, "list", MAESTRO_FORCE_TTY="60"))
    assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 60


# ---------------------------------------------------------------- pages of list


def made(tmp_path: Path, count: int) -> list[str]:
    """``count`` sessions, newest first."""
    manager = SessionManager(tmp_path)
    return [manager.create_session(f"request {n}").session_id for n in range(count)][::-1]


def test_human_list_shows_thirty_and_says_how_to_see_more(tmp_path: Path) -> None:
    ids = made(tmp_path, 33)
    result = run(tmp_path, "list")
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ids[:30]
    footer = result.stderr.strip()
    assert footer.startswith("30 of 33 sessions; 3 more: --limit 33, or the next page: --cursor ")
    cursor = footer.rsplit(" ", 1)[1]
    rest = run(tmp_path, "list", "--cursor", cursor)
    assert [line.split("\t")[0] for line in rest.stdout.splitlines()] == ids[30:]
    assert rest.stderr == "3 sessions of 33\n"
    # On a terminal the footer is below the table, on stdout.
    shown = ok(run(tmp_path, "list", MAESTRO_FORCE_TTY="1"))
    assert shown.splitlines()[-1].startswith("30 of 33 sessions; 3 more:")
    # --json returns every match unless --limit is given.
    everything = as_json(run(tmp_path, "list", "--json=id"))
    assert [record["id"] for record in everything] == ids  # type: ignore[index,union-attr]
    assert len(as_json(run(tmp_path, "list", "--json", "--limit", "5"))) == 5  # type: ignore[arg-type]


def test_offset_cursor_and_sort(tmp_path: Path, lib: SessionManager) -> None:
    ids = made(tmp_path, 7)
    result = run(tmp_path, "list", "--limit", "2", "--offset", "3")
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ids[3:5]
    assert result.stderr == "sessions 4-5 of 7; 2 more: --offset 5, or --limit 4\n"
    # JSON pages by cursor: the first with '', then each next_cursor until null.
    seen: list[str] = []
    cursor = ""
    while cursor is not None:
        page = as_json(run(tmp_path, "--json", "list", "--limit", "3", "--cursor", cursor))
        assert isinstance(page, dict) and set(page) == {"sessions", "next_cursor"}
        seen += [record["session_id"] for record in page["sessions"]]
        cursor = page["next_cursor"]
    assert seen == ids
    page = as_json(run(tmp_path, "list", "--limit", "1", "--cursor", "", "--json=id"))
    assert isinstance(page, dict) and page["sessions"] == [{"id": ids[0]}]
    assert isinstance(page["next_cursor"], str)
    # --sort updated puts the session changed last first.
    lib.update_session(ids[-1], {"feature_request": "changed last"})
    by_update = as_json(run(tmp_path, "list", "--sort", "updated", "--json=id", "--limit", "1"))
    assert by_update == [{"id": ids[-1]}]
    assert as_json(run(tmp_path, "list", "--json=id", "--limit", "1")) == [{"id": ids[0]}]
    # A cursor of another order, or with --offset, is refused.
    first = as_json(run(tmp_path, "--json", "list", "--limit", "3", "--cursor", ""))
    assert isinstance(first, dict)
    other = run(tmp_path, "list", "--sort", "updated", "--cursor", str(first["next_cursor"]))
    assert other.exit_code == 2 and "another order" in other.stderr
    both = run(tmp_path, "list", "--offset", "1", "--cursor", "")
    assert both.exit_code == 2 and "cannot be combined" in both.stderr


# ---------------------------------------------------------------- long requests


def test_create_reads_the_request_from_stdin_or_a_file(tmp_path: Path, lib: SessionManager) -> None:
    text = "Add OAuth login\n\n- Google\n- GitHub\n"
    sid = ok(run(tmp_path, "create", "-q", "-", input=text)).strip()
    assert lib.get_session(sid).feature_request == text.rstrip("\n")
    request = tmp_path / "request.md"
    request.write_text("From a file\nwith two lines\n", encoding="utf-8")
    sid = ok(run(tmp_path, "create", "-q", "--file", str(request))).strip()
    assert lib.get_session(sid).feature_request == "From a file\nwith two lines"
    for args, expected in (
        ((), "give the request as REQUEST"),
        (("words", "--file", str(request)), "give the request as REQUEST"),
        (("--file", str(tmp_path / "missing.md")), "cannot be read"),
    ):
        refused = run(tmp_path, "create", *args)
        assert refused.exit_code == 2 and expected in refused.stderr, refused.stderr
    empty = run(tmp_path, "create", "-", input="\n\n")
    assert empty.exit_code == 2 and "the request is empty" in empty.stderr
    assert len(lib.query_sessions()) == 2


def test_show_folds_a_long_request(tmp_path: Path) -> None:
    lines = [f"step {n}: do the thing" for n in range(1, 41)]
    sid = ok(run(tmp_path, "create", "-q", "-", input="\n".join(lines))).strip()
    shown = ok(run(tmp_path, "show", sid))
    assert "step 6: do the thing" in shown and "step 7:" not in shown
    assert "… 34 more lines (--full shows all)" in shown
    whole = ok(run(tmp_path, "show", sid, "--full"))
    assert "step 40: do the thing" in whole and "more lines" not in whole
    # One very long line is cut as well, by characters.
    sid = new(tmp_path, "word " * 400)
    folded = ok(run(tmp_path, "show", sid))
    assert "… 1400 more characters" in folded and "--full" in folded
    short = new(tmp_path, "Short request")
    assert "--full" not in ok(run(tmp_path, "show", short))


# ---------------------------------------------------------------- path and rerun


def test_path_prints_the_session_directory(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "Add OAuth login")
    printed = Path(ok(run(tmp_path, "path", sid[:8])).strip())
    assert (printed / "metadata.json").is_file()
    assert json.loads((printed / "metadata.json").read_text())["session_id"] == sid
    assert as_json(run(tmp_path, "path", sid, "--json")) == {"path": str(printed)}
    missing = run(tmp_path, "path", "3f01b541-5cc9-47a7-9f8b-d884159c705f")
    assert missing.exit_code == 3
    # A store without session directories says so.
    memory = bare("--store", "memory:", "path", sid)
    assert memory.exit_code == 1 and "not supported by the memory store" in memory.stderr


def test_rerun_copies_a_finished_session_and_records_rerun_of(
    tmp_path: Path, lib: SessionManager
) -> None:
    sid = ok(
        run(tmp_path, "create", "-q", "--max-iterations", "7", "--prd", "docs/prd.md", "Ship it")
    ).strip()
    running = run(tmp_path, "rerun", sid)
    assert running.exit_code == 1 and "only a finished" in running.stderr
    ok(run(tmp_path, "fail", sid, "--reason", "the build broke"))
    before = (lib.sessions_dir / sid / "metadata.json").read_bytes()
    line = ok(run(tmp_path, "rerun", sid[:8]))
    assert line.startswith("created session ") and f"a rerun of {sid[:8]}" in line
    again = lib.get_session(line.split()[2].rstrip(","))
    assert again.rerun_of == sid and again.feature_request == "Ship it"
    assert again.status.value == "initializing" and again.configuration.max_iterations == 7
    assert again.prd_reference is not None and again.prd_reference.path == "docs/prd.md"
    assert (lib.sessions_dir / sid / "metadata.json").read_bytes() == before  # not written
    stored = json.loads((lib.sessions_dir / again.session_id / "metadata.json").read_text())
    assert stored["rerun_of"] == sid
    # A retry with the same request id creates nothing new.
    first = ok(run(tmp_path, "rerun", "-q", "--request-id", "r-1", sid)).strip()
    assert ok(run(tmp_path, "rerun", "-q", "--request-id", "r-1", sid)).strip() == first
    # show of the finished session lists its reruns; show of a rerun names its source.
    shown = ok(run(tmp_path, "show", sid))
    assert again.session_id in shown and first in shown and "reruns" in shown
    assert f"rerun of   {sid}" in ok(run(tmp_path, "show", first))
    data = as_json(run(tmp_path, "show", sid, "--json=reruns"))
    assert data == {"reruns": [again.session_id, first]}
    assert as_json(run(tmp_path, "show", first, "--json=rerun_of")) == {"rerun_of": sid}
    # rerun_of is the library's to keep.
    refused = run(tmp_path, "update", first, "--set", f"rerun_of={sid}")
    assert refused.exit_code == 1


def test_rerun_of_round_trips_and_older_records_have_none(lib: SessionManager) -> None:
    sid = lib.create_session("x").session_id
    lib.transition_state(sid, "failed", reason="r")
    again = lib.rerun_session(sid)
    assert lib.get_session(again.session_id).rerun_of == sid
    assert (
        lib.get_session(sid).rerun_of is None and "rerun_of" not in lib.get_session(sid).to_dict()
    )
    assert [s.session_id for s in lib.reruns_of(sid)] == [again.session_id]
    with pytest.raises(SessionValidationError):
        lib.create_session("y", rerun_of=again.session_id)  # not finished
    memory = SessionManager(store="memory:")
    done = memory.create_session("m").session_id
    memory.transition_state(done, "failed", reason="r")
    assert memory.rerun_session(done).rerun_of == done
    with pytest.raises(UnsupportedOperationError):
        memory.session_directory(done)


def test_an_unknown_field_is_refused_before_a_change_is_made(
    tmp_path: Path, lib: SessionManager
) -> None:
    sid = new(tmp_path, "Add OAuth login")
    for args in (("create", "x", "--json=nope"), ("--json=nope", "transition", sid, "planning")):
        error = json_error(run(tmp_path, *args), 2)
        assert "unknown --json field nope" in str(error["message"])
    assert [s.session_id for s in lib.query_sessions()] == [sid]
    assert lib.get_session(sid).revision == 1
    picked = as_json(run(tmp_path, "transition", sid, "planning", "--json=id,status,phase"))
    assert picked == {"id": sid, "status": "planning", "phase": "plan"}
