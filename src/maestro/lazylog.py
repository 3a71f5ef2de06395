"""The library's logger, loaded with its first message.

Importing :mod:`logging` (and with it ``traceback``, ``string``, ``weakref``
and more) costs milliseconds that most calls never use: a session is read,
listed or written without a word logged.  The modules that may log hold a
:class:`LazyLogger` instead, which imports :mod:`logging` when a message is
first sent and then hands every call to ``logging.getLogger(name)``.
"""

from __future__ import annotations

import sys

#: Set by type checkers only: this module loads nothing to start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

__all__ = ["LazyLogger", "when_loaded"]


class LazyLogger:
    """``logging.getLogger(name)``, looked up at the first message."""

    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def __repr__(self) -> str:
        return f"LazyLogger({self.name!r})"

    def logger(self) -> logging.Logger:
        if self._logger is None:
            import logging

            _loaded()
            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, message: str, *args: object) -> None:
        self.logger().debug(message, *args, stacklevel=2)

    def warning(self, message: str, *args: object, exc_info: bool = False) -> None:
        self.logger().warning(message, *args, exc_info=exc_info, stacklevel=2)

    def error(self, message: str, *args: object) -> None:
        self.logger().error(message, *args, stacklevel=2)

    def exception(self, message: str, *args: object) -> None:
        """An error with the traceback of the exception being handled."""
        self.logger().error(message, *args, exc_info=True, stacklevel=2)


#: What runs once :mod:`logging` is loaded by a first message (see :func:`when_loaded`).
_waiting: dict[str, Callable[[], None]] = {}


def when_loaded(key: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` now if :mod:`logging` is loaded, else when a first message loads it.

    A command line sets up its log handler this way: most commands log
    nothing and never pay for :mod:`logging`.  One callback per ``key``.
    """
    if "logging" in sys.modules:
        _waiting.pop(key, None)
        callback()
    else:
        _waiting[key] = callback


def _loaded() -> None:
    while _waiting:
        _waiting.popitem()[1]()
