"""Filling an empty index from many session files on every core.

The first query on a large store without an index (one the prototype wrote,
or a copy from elsewhere) reads and checks every record.  Checking is
Python work, so one process uses one core; above
:data:`maestro.stores.files_freshness.PARALLEL_FROM` sessions the names are
split in chunks among worker processes, each of
which opens ``sessions/`` itself (refusing symlinks as the store does),
reads and checks its records and sends back the index columns; this process
writes them to SQLite as they come, in the order of the names.  A chunk in
flight is the only thing held, so memory stays flat whatever the store's
size.

A worker reports what the store's own reader would: a session to index, a
missing record, an unreadable one, or a read the disk refused, which makes
the whole query fall back to scanning, as a refused read does in one process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

from maestro.errors import SessionError
from maestro.reports import Progress
from maestro.stores.signatures import IndexUnavailable, Signature

if TYPE_CHECKING:
    from maestro.stores.files import FileSessionStore

__all__ = ["CHUNK", "fill_rows", "workers"]

#: Names per task given to a worker.
CHUNK = 500
#: At most this many workers, whatever the number of cores.
MAX_WORKERS = 4

#: One session's outcome: ``None`` (no record), ``("row", columns, signature)``,
#: ``("unreadable", signature, problem)``.
Outcome = tuple[object, ...] | None
#: The job of a worker: the store's place, the identity of ``sessions/``, names.
Job = tuple[str, str, bool, tuple[int, int], list[str], bool]


def workers() -> int:
    """How many worker processes a fill may use: the cores this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def _read_chunk(job: Job) -> tuple[str, int, list[tuple[str, Outcome]]]:
    """In a worker: read and check one chunk of sessions.

    Returns ``("", 0, outcomes)``, or ``(problem, errno, [])`` when the disk
    refused a read or ``sessions/`` is not the directory the caller listed.
    """
    from maestro.codec import expect_many
    from maestro.stores.files import FileSessionStore
    from maestro.stores.files_freshness import _Unreadable
    from maestro.stores.index import row_content

    expect_many()  # a chunk is many records: orjson reads and writes them

    sessions_dir, base, allow_links, identity, names, refused_is_unreadable = job
    store = FileSessionStore(sessions_dir, base=base, allow_symlinked_root=allow_links, index=False)
    try:
        root_fd = store._open_root(create=False)
    except SessionError as error:
        return (str(error), getattr(error, "errno", None) or 0, [])
    if root_fd is None:
        return (f"{sessions_dir} is gone", 0, [])
    try:
        here = os.fstat(root_fd)
        if (here.st_dev, here.st_ino) != identity:
            return (f"{sessions_dir} was replaced while it was indexed", 0, [])
        outcomes: list[tuple[str, Outcome]] = []
        for sid in names:
            try:
                outcome = store._read_for_index(
                    root_fd, sid, refused_is_unreadable=refused_is_unreadable
                )
            except IndexUnavailable as error:
                return (str(error.strerror or error), error.errno or 0, [])
            if outcome is None:
                outcomes.append((sid, None))
            elif isinstance(outcome, _Unreadable):
                outcomes.append((sid, ("unreadable", tuple(outcome.signature), outcome.problem)))
            else:
                session, signature = outcome
                outcomes.append((sid, ("row", row_content(session), tuple(signature))))
        return ("", 0, outcomes)
    finally:
        os.close(root_fd)


def _context() -> multiprocessing.context.BaseContext:
    """Fork when this process runs one thread (fast, nothing to re-import); else spawn.

    A fork copies a lock another thread held in that moment, never to be
    released in the child; with one thread there is none.
    """
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def fill_rows(
    store: FileSessionStore,
    root_fd: int,
    names: list[str],
    *,
    refused_is_unreadable: bool,
    missing: list[str],
    broken: list[tuple[str, Signature, str]],
    progress: Progress | None,
) -> Iterator[tuple[tuple[object, ...], Signature]]:
    """The index columns of ``names``, read by worker processes, in order.

    Sessions without a record go to ``missing``, unreadable ones to
    ``broken``, as the store's own fill does.  A read the disk refused raises
    :class:`IndexUnavailable`.
    """
    here = os.fstat(root_fd)
    count = workers()
    jobs: Iterator[Job] = (
        (
            str(store.sessions_dir),
            str(store.base),
            store.allow_symlinked_root,
            (here.st_dev, here.st_ino),
            names[start : start + CHUNK],
            refused_is_unreadable,
        )
        for start in range(0, len(names), CHUNK)
    )
    done = 0
    try:
        pool = ProcessPoolExecutor(max_workers=count, mp_context=_context())
    except (OSError, ValueError) as error:
        raise IndexUnavailable(f"no reader processes: {error}") from error
    try:
        waiting: deque[Future[tuple[str, int, list[tuple[str, Outcome]]]]] = deque()
        for job in jobs:
            waiting.append(pool.submit(_read_chunk, job))
            if len(waiting) >= 2 * count:
                break
        while waiting:
            problem, code, outcomes = waiting.popleft().result()
            if problem:
                raise IndexUnavailable(problem, code=code or None)
            following = next(jobs, None)
            if following is not None:
                waiting.append(pool.submit(_read_chunk, following))
            for sid, outcome in outcomes:
                if outcome is None:
                    missing.append(sid)
                elif outcome[0] == "unreadable":
                    _, signature, why = outcome
                    broken.append((sid, Signature(*signature), str(why)))  # type: ignore[misc]
                else:
                    _, columns, signature = outcome
                    yield columns, Signature(*signature)  # type: ignore[misc]
            done += len(outcomes)
            if progress is not None:
                progress(done, len(names))
    except (BrokenExecutor, OSError) as error:
        if isinstance(error, IndexUnavailable):
            raise
        # A reader process could not start or died: this query scans instead.
        raise IndexUnavailable(f"a reader process failed: {error}") from error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
