"""The library's logger, loaded with its first message.

Importing :mod:`logging` (and with it ``traceback``, ``string``, ``weakref``
and more) costs milliseconds that most calls never use: a session is read,
listed or written without a word logged.  The modules that may log hold a
:class:`LazyLogger` instead, which imports :mod:`logging` when a message is
first sent and then hands every call to ``logging.getLogger(name)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["LazyLogger"]


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
