"""What the file store's index knows of a session file, without SQLite.

The signature of a ``metadata.json`` (inode, size, mtime), a candidate row
of a query and the error that sends a query to the files are used by the
file store on paths that never open the index: reading one session, for
one.  They live here so that those paths do not load :mod:`sqlite3`;
:mod:`maestro.stores.index` re-exports every name.
"""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from collections.abc import Callable

from maestro.errors import StorageError
from maestro.models import Session

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import NamedTuple

    class _Signature(NamedTuple):
        ino: int
        size: int
        mtime_ns: int

    class _Known(NamedTuple):
        signature: Signature
        racy: bool
        indexed_ns: int

    class _IndexRow(NamedTuple):
        session_id: str
        signature: Signature
        racy: bool
        record: bytes
        feature_request: str

else:
    # The same tuples, made without :mod:`typing` (whose NamedTuple makes these).
    _Signature = namedtuple("Signature", ("ino", "size", "mtime_ns"))
    _Known = namedtuple("Known", ("signature", "racy", "indexed_ns"))
    _IndexRow = namedtuple(
        "IndexRow", ("session_id", "signature", "racy", "record", "feature_request")
    )

__all__ = [
    "DEFAULT_RETENTION",
    "RACY_NS",
    "CurrentSignature",
    "IndexRow",
    "IndexUnavailable",
    "Item",
    "Known",
    "Signature",
]

#: How many of the newest change events the feed keeps by default.
DEFAULT_RETENTION = 100_000
#: A file mtime closer than this to the moment it was recorded is not trusted
#: to reveal a later change (filesystem timestamps can be seconds coarse).
RACY_NS = 2_000_000_000

#: SQLite's primary result codes that have an errno counterpart; any other
#: failure of the index is reported as EIO.
_ERRNO_OF_SQLITE = {
    3: errno.EACCES,  # SQLITE_PERM
    5: errno.EBUSY,  # SQLITE_BUSY
    6: errno.EBUSY,  # SQLITE_LOCKED
    8: errno.EROFS,  # SQLITE_READONLY
    13: errno.ENOSPC,  # SQLITE_FULL
    23: errno.EACCES,  # SQLITE_AUTH
}


class IndexUnavailable(StorageError):
    """SQLite cannot be used now (read-only, locked too long, broken, disk full).

    Inside the store it means "scan the files instead".  It is a
    :class:`StorageError` so that wherever it does reach a caller (rebuilding
    the index, for one) it is typed like every other storage failure, with an
    errno that tells why: ``ENOSPC`` when the disk is full.
    """

    def __init__(self, detail: str, *, code: int | None = None) -> None:
        OSError.__init__(self, errno.EIO if code is None else code, detail)
        self.session_id = None
        self.committed = False

    @classmethod
    def of(cls, error: sqlite3.Error | OSError) -> IndexUnavailable:
        """The SQLite (or file system) failure ``error``, keeping its errno."""
        if isinstance(error, OSError):
            return cls(str(error.strerror or error), code=error.errno)
        code = getattr(error, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        return cls(str(error), code=_ERRNO_OF_SQLITE.get(primary or 0, errno.EIO))


class Signature(_Signature):
    """What identifies one version of a ``metadata.json`` without reading it:
    ``(ino, size, mtime_ns)``."""

    __slots__ = ()

    @classmethod
    def of(cls, info: os.stat_result) -> Signature:
        return cls(info.st_ino, info.st_size, info.st_mtime_ns)

    def racy(self, now_ns: int) -> bool:
        """True while a later change could still go unnoticed by the mtime."""
        return now_ns - self.mtime_ns < RACY_NS


class Known(_Known):
    """What the index holds of one session, to decide whether to re-read its file:
    ``(signature, racy, indexed_ns)``."""

    __slots__ = ()


#: One session to index: the record and its file's signature.
Item = tuple[Session, Signature]
#: The signature of a session's file as it is now (``None``: gone).
CurrentSignature = Callable[[str], Signature | None]


class IndexRow(_IndexRow):
    """One candidate result: enough to verify it and to rebuild the session:
    ``(session_id, signature, racy, record, feature_request)``."""

    __slots__ = ()

    def session_record(self) -> dict[str, object]:
        import orjson  # the index wrote the row with it

        record: dict[str, object] = orjson.loads(self.record)
        record["feature_request"] = self.feature_request
        return record
