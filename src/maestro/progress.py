"""Who hears about long work done inside a call: a progress callback for the context.

Most calls are quick.  A few may not be, unannounced: the first query on a
large store that has no index yet reads every record.  A face that can show
progress (the CLI on a terminal) says so around the calls it makes::

    with reporting(update):          # update(done, total)
        manager.query_sessions(...)

and a store doing long work calls :func:`current` and reports to it.  A
context variable, so threads and tasks each have their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from maestro.reports import Progress

__all__ = ["current", "reporting"]

_LISTENER: ContextVar[Progress | None] = ContextVar("maestro_progress", default=None)


def current() -> Progress | None:
    """The callback long work reports to now, if any."""
    return _LISTENER.get()


@contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Report long work done inside the block to ``progress(done, total)``."""
    token = _LISTENER.set(progress)
    try:
        yield
    finally:
        _LISTENER.reset(token)
