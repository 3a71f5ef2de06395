"""How the file store's index answers: in step with the files, and never stale.

Before the index answers, :meth:`IndexedAnswers._refresh` brings it in step
with the files: a pending mark left by a writer that died is repaired under
the session's lock, a changed ``sessions/`` directory is reconciled with the
rows (sessions copied in, restored or removed by other programs), and
unreadable sessions are looked at again.  Every row an answer is built from
is then checked against its file's signature (one ``stat``) and re-read
when it differs (:meth:`IndexedAnswers._collect`), so a record edited in
place by hand is never answered from a stale row.  A stamped answer
(:meth:`IndexedAnswers.query_stamped`) can later be proved current cheaply.

These are methods of :class:`~maestro.stores.files.FileSessionStore`,
kept here by concern; they use its locks and reads.
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from maestro.codec import FEW_RECORDS, decode_record, expect_many, loads_for
from maestro.errors import LockTimeoutError, SessionError, SessionNotFoundError, StorageError
from maestro.ids import is_session_id
from maestro.lazylog import LazyLogger
from maestro.models import Session, session_from_owned_record
from maestro.progress import current as current_progress
from maestro.records import replace
from maestro.stores.files_layout import METADATA, _close
from maestro.stores.signatures import (
    RACY_NS,
    CurrentSignature,
    IndexRow,
    IndexUnavailable,
    Item,
    Signature,
)

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from maestro.reports import Progress
    from maestro.stores.base import SessionQuery
    from maestro.stores.files import FileSessionStore
    from maestro.stores.index import SessionIndex

__all__ = ["PARALLEL_FROM", "IndexedAnswers"]

log = LazyLogger("maestro")


def boot_id() -> str:
    """The running boot's id (:func:`maestro.stores.index.boot_id`)."""
    from maestro.stores import index

    return index.boot_id()


class IndexedAnswers:
    """The index side of :class:`~maestro.stores.files.FileSessionStore` (a mixin)."""

    if TYPE_CHECKING:  # what it uses of the store it is mixed into
        pending_wait: float
        _in_step: tuple[int, str] | None

        @property
        def index(self) -> SessionIndex | None: ...
        def query(self, query: SessionQuery) -> list[Session]: ...
        def count(self, query: SessionQuery) -> int: ...
        def _open_root(self, *, create: bool) -> int | None: ...
        def _open_session(self, root_fd: int, session_id: str) -> int: ...
        def _read(self, sess_fd: int, session_id: str) -> tuple[bytes, os.stat_result]: ...
        def _load_signed(self, sess_fd: int, session_id: str) -> tuple[Session, Signature]: ...
        def _locked(
            self, session_id: str, *, deadline: float | None = None
        ) -> contextlib.AbstractContextManager[tuple[int, int]]: ...
        def _stale(self) -> bool: ...
        def _stale_marker(self) -> Path: ...
        def _warn_fallback(self, error: Exception) -> None: ...

    def query_stamped(
        self, query: SessionQuery, *, count: bool = False
    ) -> tuple[list[Session], int | None, object | None]:
        """:meth:`query`, with :meth:`count` if asked, after one freshness check; and a stamp.

        The count is of every match, beyond the query's window and keyset
        bound (``after``): a page's total.
        The stamp (``None`` when it cannot be had) lets :meth:`is_current`
        tell later, cheaply, whether the same call would give the same
        answer.  It is given only when the index was in step with nothing to
        repair, nothing was committed to it while the answer was made, and
        the answer's sessions are the query's first rows as the index holds
        them, none of them too recent to trust its file's signature.
        """
        index = self.index
        every = replace(query, limit=None, offset=0, after=None)
        if index is not None and query.limit is not None and query.offset == 0:
            try:
                root_fd = self._open_root(create=False)
                if root_fd is None:
                    return [], 0 if count else None, None
                try:
                    quiet = self._refresh(index, root_fd)
                    with _collector_paused():
                        found = self._collect(index, root_fd, query)
                    total = index.count(every, every.text) if count else None
                    stamp = None
                    if quiet is not None and query.order_by != "rank":
                        stamp = self._stamp(index, query, found, quiet)
                    return found, total, stamp
                finally:
                    _close(root_fd)
            except IndexUnavailable as error:
                self._warn_fallback(error)
        return self.query(query), self.count(every) if count else None, None

    def _stamp(
        self,
        index: SessionIndex,
        query: SessionQuery,
        found: list[Session],
        quiet: tuple[int, str],
    ) -> _Stamp | None:
        rows = index.window_rows(query)
        if index.generation() != quiet[0]:
            return None  # something was committed meanwhile: the answer may mix two states
        if [sid for sid, _, _ in rows] != [session.session_id for session in found]:
            return None  # a row was re-read, skipped or moved: the rows alone do not tell
        if any(racy for _, _, racy in rows):
            return None
        return _Stamp(self, quiet[0], quiet[1], tuple((sid, sig) for sid, sig, _ in rows))

    def is_current(self, stamp: object) -> bool:
        """Whether the call that gave ``stamp`` (:meth:`query_stamped`) would answer the same now.

        True only when nothing was committed to the index since, the
        sessions directory and the stale marker are as they were, and every
        session of the answer has the very ``metadata.json`` it had (one
        ``stat`` each): then a query would skip its freshness repairs and
        build the same sessions from the same rows.
        """
        if not isinstance(stamp, _Stamp) or stamp.store is not self:
            return False
        index = self.index
        if index is None:
            return False
        try:
            root_fd = self._open_root(create=False)
            if root_fd is None:
                return False
            try:
                if _directory_key(os.fstat(root_fd)) != stamp.directory:
                    return False
                if self._in_step != (stamp.generation, stamp.directory):
                    return False
                if index.generation() != stamp.generation or self._stale():
                    return False
                tail = f"/{METADATA}"
                for sid, signature in stamp.rows:
                    try:
                        info = os.stat(sid + tail, dir_fd=root_fd, follow_symlinks=False)
                    except OSError:
                        return False
                    if (
                        info.st_mtime_ns != signature.mtime_ns
                        or info.st_ino != signature.ino
                        or info.st_size != signature.size
                    ):
                        return False
                return True
            finally:
                _close(root_fd)
        except (IndexUnavailable, StorageError):
            return False

    def _refresh(self, index: SessionIndex, root_fd: int) -> tuple[int, str] | None:
        """Bring the index in step with the files before it answers.

        Returns the index's generation and the directory's key when the index
        was found in step with nothing to repair and nothing to warn about
        (no pending mark, no unreadable session); else ``None``.  Once so
        found, the next refreshes are skipped while nothing is committed to
        the index (:meth:`SessionIndex.generation`), the sessions directory
        keeps its key and no stale marker appears: all they would do is read
        the same rows and decide the same.
        """
        here = os.fstat(root_fd)
        key = _directory_key(here)
        generation = index.generation()
        in_step = self._in_step
        if in_step == (generation, key) and not self._stale():
            return in_step
        index.claim(here)  # an index of another root or history is emptied
        stale = self._stale_marker().exists()
        booted = index.get_meta("boot")
        if stale or booted != boot_id():
            if stale or booted is not None:
                # Changes the index missed (stale), or commits a power cut may
                # have undone (a reboot; they are not fsynced): the feed's
                # history is broken, and its readers must be told.
                index.rotate_epoch()
            self._reconcile(index, root_fd, verify=True)
            index.set_meta(boot=boot_id())
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._stale_marker())
        # One bound for all the locks this query may wait for, not one each.
        deadline = time.monotonic() + self.pending_wait
        pending = index.pending()
        for session_id in pending:
            self._repair(index, session_id, deadline)
        seen = index.get_meta("directory")
        if seen != key:
            self._reconcile(index, root_fd)
        unreadable = self._recheck_unreadable(index, root_fd)
        quiet = not stale and booted == boot_id() and not pending and seen == key
        if quiet and not unreadable and index.generation() == generation:
            # Nothing was committed while this looked (no repair, no claim):
            # what it read holds for as long as the generation does.
            in_step = (generation, key)
            self._in_step = in_step
            return in_step
        return None

    def _repair(
        self,
        index: SessionIndex,
        session_id: str,
        deadline: float,
        *,
        quiet: bool = False,
    ) -> None:
        """A pending mark with no writer behind it: re-read the file under the lock.

        A writer still holding the lock at ``deadline`` may be alive and slow,
        or stopped: its session keeps its row (its last committed state) and
        the query says so (unless ``quiet``); the mark stays for the next query.
        """
        try:
            with self._locked(session_id, deadline=deadline) as (_, sess_fd):
                try:
                    session, signature = self._load_signed(sess_fd, session_id)
                except StorageError:
                    raise  # the disk failed, not the record: keep the mark, retry later
                except SessionNotFoundError:
                    index.remove([session_id])
                    return
                except SessionError:
                    index.remove([session_id])
                    return
                index.store([(session, signature)])
        except IndexUnavailable:
            raise  # the index failed, not the session: nothing to forget
        except StorageError as error:
            raise _not_now(error) from error
        except LockTimeoutError:
            if quiet:
                return
            log.warning(
                "session %s: a writer has held its lock for over %g s;"
                " answering from its last indexed state",
                session_id,
                self.pending_wait,
            )
        except SessionNotFoundError:
            index.remove([session_id])
        except SessionError:
            index.remove([session_id])

    def _current(self, root_fd: int) -> CurrentSignature:
        """The signature of a session's file as it is now, for :meth:`SessionIndex.store`."""

        def current(sid: str) -> Signature | None:
            try:
                return Signature.of(
                    os.stat(f"{sid}/{METADATA}", dir_fd=root_fd, follow_symlinks=False)
                )
            except OSError:
                return None

        return current

    def _reconcile(
        self,
        index: SessionIndex,
        root_fd: int,
        *,
        verify: bool = False,
        reread: bool = False,
        only: set[str] | None = None,
    ) -> int:
        """Index what is new, replaced or changed in ``sessions/``; drop what is gone.

        Every listed session whose file's signature is not the one indexed is
        re-read, and the file wins whatever its revision: a session directory
        restored from a backup (``rm -rf`` and ``cp -a`` of an older copy)
        holds a lower revision, and its new directory may even reuse the old
        one's inode number, but its ``metadata.json`` carries the backup's
        mtime.  That costs one ``stat`` per session, paid only when
        ``sessions/`` itself changed.  ``verify`` also re-reads the rows
        whose file's mtime was too recent to be trusted when they were made
        (after a reboot: a change within that tick may not show), ``reread``
        re-reads every file,
        ``only`` just these.  The directory's own signature is taken first,
        so a change made during the listing is seen by the next query.
        Returns how many rows were written.
        """
        here = os.fstat(root_fd)
        started_ns = time.time_ns()
        known = index.known()
        made: dict[str, int] = {}
        if not known and only is None:
            # An empty index is filled in the order the session directories
            # were made (their inode numbers, which the listing gives for
            # free), mostly the order of their creation, which is the
            # order listings walk: its rows are then read in the order they
            # lie.  (Any order gives the same rows.)
            with os.scandir(root_fd) as entries:
                made = {e.name: e.inode() for e in entries if is_session_id(e.name)}
            listed = set(made)
        else:
            listed = {name for name in os.listdir(root_fd) if is_session_id(name)}
        if only is None:
            index.remove(
                sid
                for sid, entry in known.items()
                if sid not in listed and entry.indexed_ns < started_ns
            )
        else:
            index.remove(sid for sid in only if sid not in listed)

        def wanted() -> Iterator[str]:
            names = sorted(made, key=made.__getitem__) if made else listed
            for sid in names if only is None else only & listed:
                entry = known.get(sid)
                if entry is None or reread or only is not None:
                    yield sid
                    continue
                try:
                    info = os.stat(f"{sid}/{METADATA}", dir_fd=root_fd, follow_symlinks=False)
                except OSError:
                    yield sid
                    continue
                if (verify and entry.racy) or Signature.of(info) != entry.signature:
                    yield sid

        missing: list[str] = []
        broken: list[tuple[str, Signature, str]] = []

        def fresh() -> Iterator[Item]:
            for count, sid in enumerate(wanted()):
                if count == FEW_RECORDS:
                    expect_many()  # more than a few: orjson reads and writes them
                outcome = self._read_for_index(
                    root_fd, sid, refused_is_unreadable=reread or only is not None
                )
                if outcome is None:
                    missing.append(sid)
                elif isinstance(outcome, _Unreadable):
                    broken.append((sid, outcome.signature, outcome.problem))
                else:
                    yield outcome

        filled = index.get_meta("filled") == "1"
        if filled:
            # Sessions new to a filled index came from outside the library:
            # reported as ``replaced``, like other outside changes.
            written = index.store(fresh(), current=self._current(root_fd), clear_pending=False)
        elif known:
            # A bulk load that stopped half-way (its process killed), or that
            # another process is still running, has dropped the indexes:
            # made first, so that each row below is found by its id.
            index.finish_load()
            # Still filling a new index: its first rows are no news (its
            # readers were told to start over), only changes to known rows.
            written = index.store(
                fresh(),
                current=self._current(root_fd),
                clear_pending=False,
                new_rows_are_changes=False,
            )
        elif only is None and len(listed) >= PARALLEL_FROM and _cores() > 1:
            from typing import cast

            from maestro.stores import files_fill  # processes only for a large store

            # An empty index of a large store: read and check on every core.
            written = index.load_fresh_rows(
                files_fill.fill_rows(
                    cast("FileSessionStore", self),
                    root_fd,
                    sorted(made, key=made.__getitem__),
                    refused_is_unreadable=reread,
                    missing=missing,
                    broken=broken,
                    progress=current_progress(),
                )
            )
        else:  # an empty index: the first query after it was made or deleted
            written = index.load_fresh(_counted(fresh(), len(listed), current_progress()))
        # What a scan would skip has no row: a directory without metadata.json
        # quietly, an unreadable record with a warning on every query.
        index.remove(sid for sid in missing if sid in known)
        for sid, signature, problem in broken:
            log.warning("skipping %s", problem)
            index.mark_unreadable(sid, signature, problem)
        if only is not None:
            return written
        now_ns = time.time_ns()
        key = _directory_key(here)
        # An mtime this recent may hide a change made in the same clock tick.
        racy = now_ns - here.st_mtime_ns < RACY_NS
        index.set_meta(directory="racy" if racy else key, filled="1")
        return written

    def _query_indexed(self, index: SessionIndex, query: SessionQuery) -> list[Session]:
        root_fd = self._open_root(create=False)
        if root_fd is None:
            return []
        try:
            self._refresh(index, root_fd)
            with _collector_paused():
                return self._collect(index, root_fd, query)
        finally:
            _close(root_fd)

    def _collect(self, index: SessionIndex, root_fd: int, query: SessionQuery) -> list[Session]:
        """Verified sessions of the index's candidates, in order, windowed.

        Every row is checked against its file's signature (one ``stat``);
        the common case, the file the row was made from, is inlined and
        builds the session straight from the row's copy of the record.
        """
        needed = None if query.limit is None else query.offset + query.limit
        found: list[Session] = []
        append = found.append
        reread = False
        stat = os.stat
        loads = loads_for(needed)
        build = session_from_owned_record
        tail = f"/{METADATA}"
        for row in index.select_plain(query, query.text):
            sid, ino, size, mtime_ns, racy, record, text = row
            try:
                info = stat(sid + tail, dir_fd=root_fd, follow_symlinks=False)
            except OSError:
                info = None
            if (
                info is not None
                and not racy
                and info.st_mtime_ns == mtime_ns
                and info.st_ino == ino
                and info.st_size == size
            ):
                fields = loads(record)
                fields["feature_request"] = text
                append(build(fields))
            else:
                reread = True
                candidate = IndexRow(sid, Signature(ino, size, mtime_ns), bool(racy), record, text)
                session = self._verified(index, root_fd, candidate, query)
                if session is None:
                    continue
                append(session)
            if needed is not None and len(found) >= needed:
                break
        if reread and query.order_by != "rank":
            # a row re-read on the way may have moved in the order
            found.sort(key=query.sort_key, reverse=query.descending)
        return query.window(found)

    def _read_for_index(
        self, root_fd: int, sid: str, *, refused_is_unreadable: bool = False
    ) -> Item | _Unreadable | None:
        """The session and its file's signature; ``None`` without metadata.json.

        A read the disk refused (EACCES, EIO, ...) makes a query scan instead
        (:func:`_not_now`).  An explicit rebuild cannot stand in for itself,
        so with ``refused_is_unreadable`` the session is recorded as
        unreadable under a signature no file has, which the next query
        retries.
        """
        try:
            sess_fd = self._open_session(root_fd, sid)
        except SessionNotFoundError:
            return None
        except StorageError as error:
            if refused_is_unreadable:
                return _Unreadable(_RETRY, str(error))
            raise _not_now(error) from error
        except SessionError as error:
            return _Unreadable(Signature(0, 0, 0), str(error))
        try:
            raw, info = self._read(sess_fd, sid)
            return decode_record(sid, raw, where=METADATA), Signature.of(info)
        except SessionNotFoundError:
            return None
        except StorageError as error:
            if refused_is_unreadable:
                return _Unreadable(_RETRY, str(error))
            raise _not_now(error) from error
        except SessionError as error:
            signature = Signature(0, 0, 0)
            with contextlib.suppress(OSError):
                signature = Signature.of(os.stat(METADATA, dir_fd=sess_fd, follow_symlinks=False))
            return _Unreadable(signature, str(error))
        finally:
            _close(sess_fd)

    def _probe(self, root_fd: int, sid: str) -> Signature | None:
        """A cheap look at an unreadable session: what ``_read_for_index`` would record.

        (0, 0, 0) for a directory entry that is not a plain directory (a
        symlink), ``None`` when something is missing, else the signature of
        ``metadata.json`` itself (not followed).
        """
        try:
            entry = os.stat(sid, dir_fd=root_fd, follow_symlinks=False)
            if not stat.S_ISDIR(entry.st_mode):
                return Signature(0, 0, 0)
            return Signature.of(os.stat(f"{sid}/{METADATA}", dir_fd=root_fd, follow_symlinks=False))
        except OSError:
            return None

    def _recheck_unreadable(self, index: SessionIndex, root_fd: int) -> bool:
        """Warn again about each unreadable session, or index it once it is readable.

        Returns whether there were any.
        """
        unreadable = index.unreadable()
        for sid, signature, problem in unreadable:
            if self._probe(root_fd, sid) == signature:
                log.warning("skipping %s", problem)
                continue
            outcome = self._read_for_index(root_fd, sid)
            if outcome is None:
                index.forget_unreadable([sid])
            elif isinstance(outcome, _Unreadable):
                log.warning("skipping %s", outcome.problem)
                index.mark_unreadable(sid, outcome.signature, outcome.problem)
            else:
                index.store([outcome], current=self._current(root_fd), clear_pending=False)
        return bool(unreadable)

    def _verified(
        self,
        index: SessionIndex,
        root_fd: int,
        row: IndexRow,
        query: SessionQuery,
    ) -> Session | None:
        """Re-read the file of a row that may be out of date, and filter it again."""
        sid = row.session_id
        outcome = self._read_for_index(root_fd, sid)
        if outcome is None or isinstance(outcome, _Unreadable):
            with contextlib.suppress(IndexUnavailable):
                if outcome is None:
                    index.remove([sid])
                else:
                    log.warning("skipping %s", outcome.problem)
                    index.mark_unreadable(sid, outcome.signature, outcome.problem)
            return None
        session, signature = outcome
        if signature != row.signature or not signature.racy(time.time_ns()):
            with contextlib.suppress(IndexUnavailable):
                # The file wins, also over a row of a higher revision (a
                # restored backup); ``current`` keeps a racing writer's row.
                index.store([outcome], current=self._current(root_fd), clear_pending=False)
        if not query.matches(session):
            if query.text is None or session.feature_request != row.feature_request:
                return None
            # The index's tokenizer matched this text; only the other filters count.
            if not replace(query, text=None).matches(session):
                return None
        return session


#: From this many sessions on, an empty index is filled by worker processes
#: (:mod:`maestro.stores.files_fill`), and the fill reports its progress.
PARALLEL_FROM = 4000


#: The signature of a session whose file the disk refused to read: no file has
#: a negative size, so the next query's check of unreadable sessions re-reads it.
_RETRY = Signature(0, -1, 0)


def _not_now(error: StorageError) -> IndexUnavailable:
    """A session file the disk failed to read (EIO, EMFILE, ...): the record may
    well be sound, so nothing about it is stored in the index; this query
    scans instead, and the next one tries again."""
    return IndexUnavailable(str(error), code=error.errno)


class _Stamp:
    """What an answer of :meth:`FileSessionStore.query_stamped` was made from.

    (Plain classes, these two: every command that reads a session imports
    this module, and making a dataclass costs more there than it saves.)
    """

    __slots__ = ("directory", "generation", "rows", "store")

    def __init__(
        self,
        store: IndexedAnswers,
        generation: int,
        directory: str,
        rows: tuple[tuple[str, Signature], ...],
    ) -> None:
        self.store = store
        self.generation = generation
        self.directory = directory
        self.rows = rows


class _Unreadable:
    """A session whose record cannot be read: its file's signature and why."""

    __slots__ = ("problem", "signature")

    def __init__(self, signature: Signature, problem: str) -> None:
        self.signature = signature
        self.problem = problem

    def __repr__(self) -> str:
        return f"_Unreadable({self.signature!r}, {self.problem!r})"


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large result is built.

    Tens of thousands of new objects set off collection after collection,
    each walking everything built so far, though none of it is garbage
    (records hold no cycles; reference counting frees what is dropped).
    Measured: a third of the time of a 75,000-session listing.

    Once collection resumes, the objects are still young, and the collector
    would walk them all at once (a quarter of the listing again), then again
    when they reach the middle generation.  So a large result is moved
    straight to the oldest generation, which full collections alone walk, at
    their usual pace: ``gc.freeze()`` then ``gc.unfreeze()`` move every
    young object there without visiting any (and reset the young count).
    It changes no outcome, only when a cycle made just before would be
    found; it is skipped when the program froze objects itself (the unfreeze
    would thaw them too).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] >= _PROMOTED_FROM and gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


#: How many new container objects make a result large enough to skip the
#: young generations (some 7 a session).
_PROMOTED_FROM = 20_000


def _cores() -> int:
    from maestro.stores import files_fill

    return files_fill.workers()


def _counted(items: Iterator[Item], total: int, report: Progress | None) -> Iterator[Item]:
    """``items``, telling ``report`` how many went by every 500 (on a large store only)."""
    if report is None or total < PARALLEL_FROM:
        yield from items
        return
    for done, item in enumerate(items, 1):
        yield item
        if done % 500 == 0:
            report(done, total)
    report(total, total)


def _directory_key(info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}"
