"""Who may reach a network face (``maestro serve``, ``maestro mcp --http``).

One rule for every server the package starts: bound to a loopback address it
answers anyone on this machine; bound to any other address it needs a bearer
token, from ``--token`` or ``MAESTRO_TOKEN``, and refuses to start without one.
The ``Host`` header of each request is checked against an allow-list so that
a page on another site cannot reach a loopback server through DNS rebinding.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from maestro.errors import SessionValidationError

__all__ = [
    "LOOPBACK_HOST_NAMES",
    "TOKEN_ENV",
    "allowed_host_names",
    "check_bind",
    "host_allowed",
    "is_loopback",
    "resolve_token",
    "token_matches",
]

#: Where the token is read from when ``--token`` is not given.
TOKEN_ENV = "MAESTRO_TOKEN"  # noqa: S105 - a variable name, not a secret

#: ``Host`` names every server accepts: the loopback names.
LOOPBACK_HOST_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    import ipaddress  # only servers ask: not loaded with every command

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None) -> str | None:
    """The token given, else ``MAESTRO_TOKEN``, else none; blank counts as none."""
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        return None
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if not is_loopback(host) and not token:
        raise SessionValidationError(
            f"binding {host} exposes the sessions beyond this machine: "
            f"give a token with --token or {TOKEN_ENV}"
        )


def allowed_host_names(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` names (without port) a server bound to ``host`` answers."""
    names = {name.lower() for name in LOOPBACK_HOST_NAMES}
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):  # noqa: S104 - a comparison
        names.add(host.strip("[]").lower())
    names.update(name.strip().lower() for name in extra if name.strip())
    return frozenset(names)


def _host_name(header: str) -> str:
    """``example.org:8765`` → ``example.org``; ``[::1]:8765`` → ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else header
    if header.count(":") == 1:
        return header.rsplit(":", 1)[0]
    return header


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` header names this server (``*`` allows any)."""
    if "*" in allowed:
        return True
    if not header:
        return False
    return _host_name(header) in allowed


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries the bearer ``token`` (constant time)."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    import hmac

    return hmac.compare_digest(given.strip().encode(), token.encode())
