"""Records made by :func:`maestro.records.record` behave as the dataclasses they stand for.

For every record class of the library, a twin is made from the same
source by :func:`dataclasses.dataclass` itself; instances of both must have
the same ``repr``, equality, hash, signature and field descriptions, and
the :mod:`dataclasses` functions must work on the record.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

import maestro
from maestro import GitContext, SessionManager, SessionStatus
from maestro.lifecycle import Segment
from maestro.models import (
    PRDReference,
    RequestRecord,
    Session,
    SessionConfiguration,
    SessionStatistics,
    StateChange,
)
from maestro.pages import SessionPage
from maestro.records import field, field_names, record, replace, required_names
from maestro.search import SearchTerms, parse_search
from maestro.stores.query import SessionQuery
from maestro.timeline import SessionTimeline

from .conftest import GIT, Clock

RECORDS = [
    GitContext,
    PRDReference,
    SessionStatistics,
    SessionConfiguration,
    StateChange,
    RequestRecord,
    Session,
    Segment,
    SessionTimeline,
    SessionQuery,
    SessionPage,
    SearchTerms,
]


def _twin(cls: type) -> type:
    """The class of the same source, made by dataclasses."""
    source = textwrap.dedent(inspect.getsource(cls))
    source = source.replace("@record(frozen=True)", "@dataclasses.dataclass(frozen=True)")
    source = source.replace("@record\n", "@dataclasses.dataclass\n")
    module = sys.modules[cls.__module__]
    namespace = {**vars(module), "dataclasses": dataclasses, "field": dataclasses.field}
    code = compile("from __future__ import annotations\n" + source, "<twin>", "exec")
    exec(code, namespace)  # noqa: S102 - the library's own class source
    twin = namespace[cls.__name__]
    assert isinstance(twin, type) and dataclasses.is_dataclass(twin)
    return twin


def _samples(tmp_path: Path) -> dict[type, object]:
    clock = Clock()
    manager = SessionManager(tmp_path, durable=False, clock=clock)
    sid = manager.create_session("sample", git_context=GIT, request_id="key-1").session_id
    clock.advance(30)
    manager.transition_state(sid, SessionStatus.PLANNING, reason="go")
    session = manager.get_session(sid)
    timeline = SessionTimeline.of(session, clock.now)
    query = SessionQuery.build(status=["planning"], text="sample", limit=5)
    return {
        GitContext: session.git_context,
        PRDReference: PRDReference("prd.md", "docs/prd.md"),
        SessionStatistics: session.statistics,
        SessionConfiguration: session.configuration,
        StateChange: session.history[0],
        RequestRecord: session.requests[0],
        Session: session,
        Segment: timeline.segments[0],
        SessionTimeline: timeline,
        SessionQuery: query,
        SessionPage: SessionPage([session], "cursor", 1, stamp="proof"),
        SearchTerms: parse_search("sample words*"),
    }


def _hash(value: object) -> object:
    try:
        return hash(value)
    except TypeError as error:  # a frozen record holding a list, as its twin
        return str(error)


def _same_instance(cls: type, twin: type, sample: object) -> object:
    values = {name: getattr(sample, name) for name in field_names(cls)}
    return twin(**values)


def test_the_table_holds_every_record_class_of_the_library() -> None:
    package = Path(maestro.__file__).parent
    found = set()
    for path in package.rglob("*.py"):
        if "@record" not in path.read_text(encoding="utf-8"):
            continue
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        module = __import__(name, fromlist=["_"])
        found |= {
            value
            for value in vars(module).values()
            if isinstance(value, type) and "__record_fields__" in value.__dict__
        }
    assert found == set(RECORDS)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_a_record_behaves_as_its_dataclass_twin(cls: type, tmp_path: Path) -> None:
    twin = _twin(cls)
    sample = _samples(tmp_path)[cls]
    other = _same_instance(cls, twin, sample)
    assert repr(sample).replace(cls.__qualname__, "X") == repr(other).replace(
        twin.__qualname__, "X"
    )
    assert str(inspect.signature(cls)) == str(inspect.signature(twin))
    assert cls.__match_args__ == twin.__match_args__  # type: ignore[attr-defined]
    assert (cls.__hash__ is None) == (twin.__hash__ is None)
    if cls.__hash__ is not None:
        assert _hash(sample) == _hash(other)
    # Equality: with a copy, with a changed copy, with another class.
    assert sample == copy.copy(sample) and sample != other and sample != object()
    first = field_names(cls)[0]
    changed = replace(sample, **{first: getattr(sample, first)})
    assert changed == sample and changed is not sample
    # What dataclasses says of it is what it says of the twin.
    ours = [
        (f.name, f.type, f.default, f.default_factory, f.repr, f.compare, f.init)
        for f in dataclasses.fields(cls)
    ]
    theirs = [
        (f.name, f.type, f.default, f.default_factory, f.repr, f.compare, f.init)
        for f in dataclasses.fields(twin)
    ]
    assert ours == theirs
    assert tuple(f.name for f in dataclasses.fields(sample)) == field_names(cls)
    assert required_names(cls) == tuple(
        f.name
        for f in dataclasses.fields(twin)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    params, twin_params = cls.__dataclass_params__, twin.__dataclass_params__  # type: ignore[attr-defined]
    assert (params.frozen, params.eq) == (twin_params.frozen, twin_params.eq)
    assert dataclasses.replace(sample) == sample  # type: ignore[type-var]
    assert dataclasses.asdict(sample) == dataclasses.asdict(other)  # type: ignore[call-overload]
    if params.frozen:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(sample, first, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(sample, first)
    assert pickle.loads(pickle.dumps(sample)) == sample


def test_a_session_round_trips_and_replaces_as_before(tmp_path: Path) -> None:
    session = _samples(tmp_path)[Session]
    assert isinstance(session, Session)
    assert Session.from_dict(session.to_dict()) == session
    moved = replace(session, feature_request="other")
    assert moved.feature_request == "other" and moved.history == session.history
    with pytest.raises(TypeError):
        replace(session, no_such_field=1)
    with pytest.raises(TypeError):
        Session()  # type: ignore[call-arg]
    fresh = Session("3f01b541-5cc9-47a7-9f8b-d884159c705f", "x", "planning", NOW, GIT)
    assert fresh.history == [] and fresh.history is not Session(*_ARGS).history


NOW = datetime(2026, 3, 1, tzinfo=UTC)
_ARGS = ("3f01b541-5cc9-47a7-9f8b-d884159c705f", "x", "planning", NOW, GIT)


def test_the_decorator_refuses_what_it_does_not_make() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @record
        class Bad:
            """A list default."""

            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="follows default"):

        @record
        class Order:
            """A required field after a default."""

            a: int = 0
            b: int  # type: ignore[misc]

    @record
    class Base:
        """A record."""

        a: int = 0

    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(Base):
            """Inheriting fields."""

            b: int = 1

    @record(frozen=True)
    class Point:
        """A frozen record with a factory and a hidden field."""

        x: int
        tags: tuple[str, ...] = field(default_factory=tuple)
        note: str = field(default="", repr=False, compare=False)

    assert repr(Point(1)).endswith("<locals>.Point(x=1, tags=())")
    assert Point(1, note="a") == Point(1, note="b") and hash(Point(1)) == hash(Point(1, (), "c"))
    assert not hasattr(Point, "tags") and Point.note == ""


def test_init_is_compiled_when_a_record_is_first_made() -> None:
    @record
    class Lazy:
        """A record not made yet."""

        a: int
        b: str = "x"

    placeholder = Lazy.__dict__["__init__"]
    assert hasattr(placeholder, "__record_init__")
    assert Lazy(1) == Lazy(1, "x")
    compiled = Lazy.__dict__["__init__"]
    assert compiled is not placeholder and not hasattr(compiled, "__record_init__")
    assert str(inspect.signature(Lazy)) == "(a: 'int', b: 'str' = 'x') -> None"
    with pytest.raises(TypeError):
        Lazy()  # type: ignore[call-arg]
