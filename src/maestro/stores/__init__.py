"""Session stores: the contract (``base``) and its backends, chosen by URL.

:func:`open_store` turns a store URL into a store:

* a plain path, or ``file:PATH`` (``file:///abs/path`` too): the file store
  of the root ``PATH``, the directory that holds ``.flow`` (the meaning of
  ``--root``).  ``?index=off`` turns the query index off and
  ``?durable=off`` the fsyncs, like the keyword arguments of the same names;
* ``memory:``: a new, empty in-memory store of this process;
  ``memory:NAME`` is the in-memory store of that name, made by its first
  use and shared by every later one in the process, for as long as the
  process lives;
* ``postgresql://...`` (or ``postgres://``): the PostgreSQL store of that
  database (:mod:`maestro.stores.postgres`, needs the ``postgres`` extra);
  its parameters ``project``, ``pool_max``, ``prepare_threshold`` and the
  others the store lists are maestro's, the rest go to libpq.

A path whose first component holds a colon must be written ``file:PATH``.
"""

from __future__ import annotations

import _thread
import os
import re
from collections.abc import Callable
from pathlib import Path

from maestro.errors import SessionValidationError

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from maestro.stores.base import SessionStore

__all__ = ["KNOWN_SCHEMES", "StoreLocation", "open_store", "parse_store_url", "select_store"]

#: The schemes :func:`open_store` understands, for messages.
KNOWN_SCHEMES = ("file:", "memory:", "postgresql://")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_FILE_OPTIONS = ("lock_timeout", "durable", "index", "allow_symlinked_root", "pending_wait")
_MEMORY_OPTIONS = ("lock_timeout", "retention")
_FILE_DEFAULTS: dict[str, Any] = {"durable": True, "index": True, "allow_symlinked_root": None}
_SWITCHES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}

_named_lock = _thread.allocate_lock()  # threading.Lock, without loading threading
_named: dict[str, SessionStore] = {}


class StoreLocation:
    """A parsed store URL: its ``scheme`` and, for files, the ``root`` and URL options."""

    def __init__(
        self, scheme: str, *, root: Path | None = None, name: str = "", options: dict[str, Any]
    ) -> None:
        self.scheme = scheme
        self.root = root
        self.name = name
        self.options = options
        #: The whole URL of a database store (it may hold a password: never print it).
        self.url = ""

    def __repr__(self) -> str:
        return f"StoreLocation({self.scheme!r}, root={self.root!r}, name={self.name!r})"


def _known() -> str:
    return ", ".join(["a path", *KNOWN_SCHEMES])


def parse_store_url(url: str | os.PathLike[str]) -> StoreLocation:
    """Read a store URL (see the module docstring); ``SessionValidationError`` if it is not one.

    Messages name the scheme only, never the rest of the URL (it may hold a
    password).
    """
    if isinstance(url, os.PathLike):
        return StoreLocation("file", root=Path(url).expanduser().absolute(), options={})
    if not isinstance(url, str) or not url.strip():
        raise SessionValidationError(f"a store URL must be a non-empty string ({_known()})")
    match = _SCHEME.match(url)
    first = url.split("/", 1)[0]
    if match is None or ":" not in first:
        return StoreLocation("file", root=Path(url).expanduser().absolute(), options={})
    scheme = match.group(1).lower()
    rest = url[match.end() :]
    if scheme == "file":
        path, _, query = rest.partition("?")
        if path.startswith("//"):
            host, slash, tail = path[2:].partition("/")
            if host not in ("", "localhost"):
                raise SessionValidationError("a file: store URL names no host (file:///path)")
            path = slash + tail
        from urllib.parse import unquote  # only for a file: URL, not for a plain path

        path = unquote(path)
        if not path:
            raise SessionValidationError("a file: store URL needs a path (file:PATH)")
        return StoreLocation(
            "file", root=Path(path).expanduser().absolute(), options=_file_query(query)
        )
    if scheme == "memory":
        if "?" in rest or "/" in rest:
            raise SessionValidationError("a memory: store URL is memory: or memory:NAME")
        return StoreLocation("memory", name=rest, options={})
    if scheme in ("postgresql", "postgres"):
        location = StoreLocation("postgresql", options={})
        location.url = url
        return location
    raise SessionValidationError(f"unknown store URL scheme {scheme[:20]!r}; known: {_known()}")


def _file_query(query: str) -> dict[str, Any]:
    from urllib.parse import parse_qsl

    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in ("index", "durable"):
            raise SessionValidationError(
                f"unknown file: store URL parameter {key[:20]!r}; known: index, durable"
            )
        switch = _SWITCHES.get(value.lower())
        if switch is None:
            raise SessionValidationError(f"the {key} parameter of a file: URL is on or off")
        options[key] = switch
    return options


def open_store(url: str | os.PathLike[str], **options: Any) -> SessionStore:
    """The store a URL names, opened with ``options``.

    ``lock_timeout`` applies to every store; ``durable``, ``index``,
    ``allow_symlinked_root`` and ``pending_wait`` belong to the file store and
    ``retention`` to the memory store: given to another store with a value
    other than their default, they are refused (``SessionValidationError``),
    never silently ignored.  A named memory store keeps the options of its
    first use.  A file
    URL's ``?index=off``/``?durable=off`` turn those off whatever the
    keyword says.
    """
    location = parse_store_url(url)
    if location.scheme == "postgresql":
        return _open_postgres(location, options)
    allowed = _FILE_OPTIONS if location.scheme == "file" else _MEMORY_OPTIONS
    if location.scheme != "file":
        # The file store's defaults ask nothing of another store.
        options = {k: v for k, v in options.items() if _FILE_DEFAULTS.get(k, ...) != v}
    refused = sorted(set(options) - set(allowed))
    if refused:
        raise SessionValidationError(
            f"{', '.join(refused)} cannot be used with a {location.scheme}: store "
            f"(it takes {', '.join(allowed)})"
        )
    if location.scheme == "memory":
        from maestro.stores.memory import MemoryStore

        if not location.name:
            return MemoryStore(**options)
        with _named_lock:
            store = _named.get(location.name)
            if store is None:
                store = _named[location.name] = MemoryStore(**options)
            return store
    from maestro.stores.files import FileSessionStore

    assert location.root is not None
    for key, value in location.options.items():
        options[key] = options.get(key, True) and value  # "off" wins
    return FileSessionStore(
        location.root / ".flow" / "maestro" / "sessions", base=location.root, **options
    )


_POSTGRES_OPTIONS = ("lock_timeout", "local_root", "project", "all_projects", "migrate")


def _open_postgres(location: StoreLocation, options: dict[str, Any]) -> SessionStore:
    """The PostgreSQL store; psycopg is imported only here, when one is opened."""
    options = {k: v for k, v in options.items() if _FILE_DEFAULTS.get(k, ...) != v}
    refused = sorted(set(options) - set(_POSTGRES_OPTIONS))
    if refused:
        raise SessionValidationError(
            f"{', '.join(refused)} cannot be used with a postgresql: store "
            f"(it takes {', '.join(_POSTGRES_OPTIONS)})"
        )
    try:
        from maestro.stores.postgres import PostgresStore
    except ImportError as error:
        raise SessionValidationError(
            "postgresql:// stores need psycopg and psycopg-pool: "
            "pip install 'maestro-sessions[postgres]'"
        ) from error
    return PostgresStore(location.url, **options)


def select_store(
    given: SessionStore | str | os.PathLike[str] | None,
    *,
    root: Callable[[], Path],
    explicit_root: Path | None,
    lock_timeout: float,
    options: dict[str, Any],
) -> tuple[SessionStore, Path]:
    """The store a manager uses, and its root (where local session directories live).

    ``given`` is a URL or path to open, a store object to use as it is, or
    ``None`` for the file store of ``root()``.  ``explicit_root`` is the
    root the caller named, if any: it must agree with a file URL's.  Options
    (``lock_timeout`` other than 10 s, ``options``) configure a store that is
    opened here; given with a store object, they are refused rather than
    ignored.
    """
    shared = isinstance(given, str) and parse_store_url(given).scheme == "postgresql"
    if not shared:
        # A store of one repository holds one project: all of them are these.
        options = {k: v for k, v in options.items() if k != "all_projects"}
    if given is None:
        base = explicit_root or root()
        return open_store(base, lock_timeout=lock_timeout, **options), base
    if isinstance(given, str | os.PathLike):
        location = parse_store_url(given)
        if location.root is not None:
            if explicit_root is not None and explicit_root != location.root:
                raise SessionValidationError(
                    "repo_root and the store URL name different roots; give one of them"
                )
            base = location.root
        else:
            base = explicit_root or root()
        if location.scheme == "postgresql":
            options = {**options, "local_root": base}
        return open_store(given, lock_timeout=lock_timeout, **options), base
    if options or lock_timeout != 10.0:
        raise SessionValidationError(
            "lock_timeout, durable, index and allow_symlinked_root configure the "
            "store a manager opens; pass them to the store given instead"
        )
    return given, explicit_root or root()
