"""What export, import and doctor report: plain values, whatever store made them.

They live apart from any store so that faces (the CLI, the renderer) can
show them without importing the code that produced them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DoctorReport", "ExportResult", "ImportResult", "Progress"]

#: ``progress(done, total)`` after each session; ``total`` may be 0 when unknown.
Progress = Callable[[int, int], None]


@dataclass
class AdoptResult:
    """Session directories found in another file store and, when asked, moved in."""

    #: Every session directory found there, by id.
    found: list[str] = field(default_factory=list)
    #: Ids this store holds too: reported, never overwritten.
    duplicates: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    """An export written: how many sessions, files and bytes, and where."""

    sessions: int
    files: int
    bytes: int
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "files": self.files,
            "bytes": self.bytes,
            "path": str(self.path),
        }


@dataclass
class ImportResult:
    """The sessions an import created, replaced by a higher revision, or left as they were."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": list(self.created),
            "updated": list(self.updated),
            "unchanged": list(self.unchanged),
        }


@dataclass
class DoctorReport:
    """What a store's doctor found (and, with ``fix``, did)."""

    sessions: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)
    #: Records that could not be read (permissions, I/O errors): reported,
    #: never moved, and never "healthy"; they may be perfectly sound.
    unreadable: dict[str, str] = field(default_factory=dict)
    unsafe: dict[str, str] = field(default_factory=dict)
    without_metadata: list[str] = field(default_factory=list)
    #: Temp files whose writer is gone (its lock was free).
    temp_files: list[str] = field(default_factory=list)
    #: Store-internal names of the wrong kind inside a session (a ``.lock``
    #: directory or link, a directory named like a temp file).
    misplaced: list[str] = field(default_factory=list)
    #: Trash and staging directories whose writer is gone.
    leftovers: list[str] = field(default_factory=list)
    index: str = "ok"
    #: Sessions whose index row differs from their file, or that have none.
    stale_rows: list[str] = field(default_factory=list)
    #: Sessions stored under a linked worktree's own ``.flow`` (id -> the
    #: worktree): ``fix`` moves them here.
    in_worktrees: dict[str, str] = field(default_factory=dict)
    #: Of those, ids this store has too: reported, never overwritten.
    duplicates: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    #: The problems above that ``fix`` resolved (ids, temp file paths, leftover names).
    resolved: set[str] = field(default_factory=set)
    #: Facts about a database engine (schema version, pool, change feed), by name.
    engine: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """No problem left unresolved (sessions without metadata.json are normal)."""
        found = [
            *self.corrupt,
            *self.unsafe,
            *self.temp_files,
            *self.misplaced,
            *self.leftovers,
            *self.in_worktrees,
        ]
        return (
            not self.unreadable
            and all(item in self.resolved for item in found)
            and not self.duplicates
            and self.index in ("ok", "off", "rebuilt")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "sessions": self.sessions,
            "corrupt": self.corrupt,
            "unreadable": self.unreadable,
            "unsafe": self.unsafe,
            "without_metadata": self.without_metadata,
            "temp_files": self.temp_files,
            "misplaced": self.misplaced,
            "leftovers": self.leftovers,
            "index": self.index,
            "stale_rows": self.stale_rows,
            "in_worktrees": self.in_worktrees,
            "duplicates": self.duplicates,
            "fixed": self.fixed,
            "resolved": sorted(self.resolved),
            "engine": dict(self.engine),
        }
