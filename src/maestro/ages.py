"""Ages as people write them (``30m``, ``2h``, ``2d``, ``1w``) and as the API takes them."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from maestro.errors import SessionValidationError

__all__ = ["as_age", "parse_age"]

_AGE = re.compile(r"(\d+)\s*(s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta | None:
    """``30m``, ``2h``, ``2d``, ``1w`` (also ``90s``, ``1d12h``) as a duration; else ``None``."""
    compact = text.strip().lower()
    if not compact or _AGE.sub("", compact).strip():
        return None
    seconds = sum(int(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _AGE.findall(compact))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return None


def as_age(value: object, name: str) -> timedelta:
    """A positive duration from a ``timedelta``, a number of seconds or an age string."""
    wanted = f"{name} must be a positive age such as 30m, 2h, 2d or 1w, or a number of seconds"
    age: timedelta | None
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise SessionValidationError(wanted)
        try:
            age = timedelta(seconds=value)
        except OverflowError:
            raise SessionValidationError(wanted) from None
    elif isinstance(value, str):
        age = parse_age(value)
    else:
        age = None
    if age is None or age <= timedelta(0):
        raise SessionValidationError(wanted)
    return age
