"""Dataclasses made without importing :mod:`dataclasses`.

Importing :mod:`dataclasses` imports :mod:`inspect` (and with it ``ast``,
``dis`` and ``tokenize``): about as long as starting Python itself, which a
command that reads one session would pay before doing anything.  The
classes of the records a read builds (the models, the timeline, the query)
are made by :func:`record` instead.  They are still dataclasses to every
caller and tool: their ``__init__`` is the code :func:`dataclasses.dataclass`
would write for them (compiled when the class is first instantiated, or
when :mod:`inspect` asks for its signature), their ``__repr__``, ``__eq__``
and ``__hash__`` give what that code gives (``tests/test_records.py``
checks it class by class against a twin made by dataclasses), and their
``__dataclass_fields__`` and ``__dataclass_params__`` are made by
:mod:`dataclasses` itself the first time anything asks for them, so
:func:`dataclasses.fields`, :func:`dataclasses.replace`,
:func:`dataclasses.asdict` and :func:`dataclasses.is_dataclass` work on them
as on any dataclass.  Type checkers see :func:`dataclasses.dataclass` and
:func:`dataclasses.field` themselves.

Only what maestro's records use is supported: ``frozen``, and fields with a
default, a ``default_factory``, ``repr=False`` or ``compare=False``; a
class must not inherit fields.  The library's own code replaces a record
with :func:`replace` (which needs no :mod:`dataclasses`) and reads its
fields with :func:`field_names` and :func:`required_names`.
"""

from __future__ import annotations

import operator
import reprlib

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _T = TypeVar("_T")

__all__ = ["field", "field_names", "record", "replace", "required_names"]

#: Where a record's class keeps its fields: ``(name, default, factory, repr, compare)``.
_SPEC = "__record_fields__"


class _Missing:
    """No default: the field must be given."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


class _Factory:
    """The default of a field made by its factory (``<factory>`` in a signature)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


MISSING = _Missing()
_HAS_FACTORY = _Factory()


class _Field:
    """What :func:`field` says of a field, until :func:`record` reads it."""

    __slots__ = ("compare", "default", "default_factory", "repr")

    def __init__(self, default: object, default_factory: object, repr: bool, compare: bool) -> None:
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare


def _field(
    *,
    default: object = MISSING,
    default_factory: Callable[[], object] | _Missing = MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """:func:`dataclasses.field`, for a :func:`record` class."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr, compare)


class _Completed:
    """``__dataclass_fields__`` and ``__dataclass_params__`` of a record's class,
    made by :mod:`dataclasses` when first asked for."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> object:
        # The record class holding this descriptor: ``owner`` may be a subclass.
        cls = next(c for c in owner.__mro__ if c.__dict__.get(self.name) is self)
        _complete(cls)
        return cls.__dict__[self.name]


def _complete(cls: type) -> None:
    """Let :mod:`dataclasses` describe ``cls``: it makes a dataclass of the same
    fields and options, whose description ``cls`` takes as its own."""
    import dataclasses

    spec, frozen = getattr(cls, _SPEC)
    namespace: dict[str, object] = {
        "__annotations__": {name: cls.__annotations__[name] for name, *_ in spec},
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    for name, default, factory, shown, compared in spec:
        if factory is not MISSING or not shown or not compared:
            namespace[name] = dataclasses.field(
                default=dataclasses.MISSING if default is MISSING else default,
                default_factory=dataclasses.MISSING if factory is MISSING else factory,
                repr=shown,
                compare=compared,
            )
        elif default is not MISSING:
            namespace[name] = default
    twin: Any = dataclasses.dataclass(frozen=frozen)(type(cls.__name__, (), namespace))
    type.__setattr__(cls, "__dataclass_fields__", twin.__dataclass_fields__)
    type.__setattr__(cls, "__dataclass_params__", twin.__dataclass_params__)


def _record(cls: type[_T] | None = None, /, *, frozen: bool = False) -> Any:
    """:func:`dataclasses.dataclass` (``eq=True``, ``frozen`` as given) for a record."""

    def wrap(cls: type[_T]) -> type[_T]:
        return _make(cls, frozen)

    return wrap if cls is None else wrap(cls)


def _make(cls: type[_T], frozen: bool) -> type[_T]:
    for base in cls.__mro__[1:]:
        if _SPEC in base.__dict__ or "__dataclass_fields__" in base.__dict__:
            raise TypeError(f"{cls.__name__}: a record does not inherit fields")
    spec: list[tuple[str, object, object, bool, bool]] = []
    # The class's own annotations, as dataclasses reads them (not through
    # inspect.get_annotations: inspect is what this module does without).
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    for name in annotations:
        value = cls.__dict__.get(name, MISSING)
        if isinstance(value, _Field):
            spec.append((name, value.default, value.default_factory, value.repr, value.compare))
            if value.default is MISSING:
                delattr(cls, name)  # as dataclasses: no class attribute for a factory
            else:
                setattr(cls, name, value.default)
        else:
            annotation = annotations[name]
            if isinstance(annotation, str) and annotation.startswith(("ClassVar", "InitVar")):
                raise TypeError(f"{cls.__name__}.{name}: a record has plain fields only")
            if value is not MISSING and type(value).__hash__ is None:
                raise ValueError(
                    f"mutable default {type(value)} for field {name} is not allowed: "
                    "use default_factory"
                )
            spec.append((name, value, MISSING, True, True))
    names = [name for name, *_ in spec]
    defaults_seen = False
    for name, default, factory, *_ in spec:
        if default is MISSING and factory is MISSING:
            if defaults_seen:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        else:
            defaults_seen = True
    shown = tuple(name for name, _, _, is_shown, _ in spec if is_shown)
    fields_of = _tuple_of(tuple(name for name, *_, is_compared in spec if is_compared))
    made: dict[str, Any] = {
        "__init__": _first_init(cls, tuple(spec), frozen, annotations),
        "__repr__": reprlib.recursive_repr("...")(_repr(shown)),
        "__eq__": _eq(fields_of),
    }
    if frozen:
        made.update(_frozen(cls, frozenset(names), fields_of))
    # As dataclasses decides: a hash the class wrote itself stays; else frozen
    # records hash their fields and the others are unhashable.
    own_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (own_hash is MISSING or (own_hash is None and "__eq__" in cls.__dict__))
    for method, function in made.items():
        function.__qualname__ = f"{cls.__qualname__}.{function.__name__}"
        function.__module__ = cls.__module__
        if method in ("__setattr__", "__delattr__") and method in cls.__dict__:
            raise TypeError(f"Cannot overwrite attribute {method} in class {cls.__name__}")
        if method == "__hash__" and explicit_hash:
            continue
        if method in cls.__dict__ and method != "__hash__":
            continue  # the class's own, as dataclasses leaves it
        type.__setattr__(cls, method, function)
    if not frozen and not explicit_hash:
        type.__setattr__(cls, "__hash__", None)
    if "__match_args__" not in cls.__dict__:
        type.__setattr__(cls, "__match_args__", tuple(names))
    if not cls.__doc__:
        type.__setattr__(cls, "__doc__", f"{cls.__name__}({', '.join(names)})")
    type.__setattr__(cls, _SPEC, (tuple(spec), frozen))
    if "__signature__" not in cls.__dict__:
        type.__setattr__(cls, "__signature__", _InitSignature())
    type.__setattr__(cls, "__dataclass_fields__", _Completed("__dataclass_fields__"))
    type.__setattr__(cls, "__dataclass_params__", _Completed("__dataclass_params__"))
    return cls


# ---------------------------------------------------------------- the methods
#
# What dataclasses writes as code for each class is written here once, as
# closures over the fields: only __init__, whose speed matters, is compiled
# for each class, and only when the class is first instantiated (a command
# that reads sessions from the index builds them without calling it).


def _tuple_of(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    """A function giving the tuple ``(obj.a, obj.b, ...)`` of ``names``."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        get = operator.attrgetter(names[0])
        return lambda obj: (get(obj),)
    return lambda obj: ()


def _repr(shown: tuple[str, ...]) -> Callable[[object], str]:
    def __repr__(self: object) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    return __repr__


def _eq(fields_of: Callable[[object], tuple[object, ...]]) -> Callable[[object, object], object]:
    def __eq__(self: object, other: object) -> object:
        if other.__class__ is self.__class__:
            return fields_of(self) == fields_of(other)
        return NotImplemented

    return __eq__


def _frozen(
    cls: type, names: frozenset[str], fields_of: Callable[[object], tuple[object, ...]]
) -> dict[str, Callable[..., object]]:
    def __setattr__(self: object, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise _frozen_error(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)  # type: ignore[arg-type]

    def __delattr__(self: object, name: str) -> None:
        if type(self) is cls or name in names:
            raise _frozen_error(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)  # type: ignore[arg-type]

    def __hash__(self: object) -> int:
        return hash(fields_of(self))

    return {"__setattr__": __setattr__, "__delattr__": __delattr__, "__hash__": __hash__}


def _first_init(
    cls: type,
    spec: tuple[tuple[str, object, object, bool, bool], ...],
    frozen: bool,
    annotations: dict[str, object],
) -> Callable[..., None]:
    """An ``__init__`` that, on the first call, compiles the record's own and hands over."""

    def __init__(self: object, /, *args: object, **kwargs: object) -> None:
        _compiled_init(cls)(self, *args, **kwargs)

    __init__.__record_init__ = (spec, frozen, annotations)  # type: ignore[attr-defined]
    return __init__


def _compiled_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` dataclasses would write for ``cls``, compiled and installed."""
    current = cls.__dict__["__init__"]
    pending = getattr(current, "__record_init__", None)
    if pending is None:
        return current  # type: ignore[no-any-return]
    spec, frozen, annotations = pending
    scope: dict[str, object] = {"_HAS_FACTORY": _HAS_FACTORY, "_object_setattr": object.__setattr__}
    params = []
    body = []
    for name, default, factory, *_ in spec:
        if factory is not MISSING:
            scope[f"_factory_{name}"] = factory
            params.append(f"{name}=_HAS_FACTORY")
            value = f"_factory_{name}() if {name} is _HAS_FACTORY else {name}"
        elif default is not MISSING:
            scope[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
            value = name
        else:
            params.append(name)
            value = name
        if frozen:
            body.append(f"  _object_setattr(self, {name!r}, {value})")
        else:
            body.append(f"  self.{name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    source = "\n".join([f"def __init__(self, {', '.join(params)}):", *(body or ["  pass"])])
    made: dict[str, Any] = {}
    exec(source, scope, made)  # noqa: S102 - code made here from field names
    init = made["__init__"]
    # The signature dataclasses gives __init__: the fields' annotations as written.
    init.__annotations__ = {**{name: annotations[name] for name, *_ in spec}, "return": None}
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    type.__setattr__(cls, "__init__", init)
    return init  # type: ignore[no-any-return]


class _InitSignature:
    """``__signature__`` of a record's class: that of its compiled ``__init__``
    (``inspect.signature`` asks; this compiles it then)."""

    def __get__(self, instance: object, owner: type) -> object:
        import inspect

        cls = next(c for c in owner.__mro__ if "__record_fields__" in c.__dict__)
        init = _compiled_init(cls)
        signature = inspect.signature(init)
        return signature.replace(parameters=list(signature.parameters.values())[1:])


def _frozen_error(message: str) -> Exception:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(message)


def _replace(obj: _T, /, **changes: Any) -> _T:
    """:func:`dataclasses.replace` of a :func:`record` (or any dataclass)."""
    spec = getattr(type(obj), _SPEC, None)
    if spec is None:
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for name, *_ in spec[0]:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return type(obj)(**changes)


def field_names(cls: type) -> tuple[str, ...]:
    """The names of a record's fields, in order."""
    return tuple(name for name, *_ in getattr(cls, _SPEC)[0])


def required_names(cls: type) -> tuple[str, ...]:
    """The fields of a record with no default: every call must give them."""
    return tuple(
        name
        for name, default, factory, *_ in getattr(cls, _SPEC)[0]
        if default is MISSING and factory is MISSING
    )


if TYPE_CHECKING:
    from dataclasses import dataclass as record
    from dataclasses import field, replace
else:
    record, field, replace = _record, _field, _replace
