"""``maestro serve``: the HTTP API and the dashboard, over :class:`maestro.SessionManager`.

Needs the ``server`` extra (FastAPI, uvicorn).  :func:`create_app` builds the
ASGI application; ``maestro serve`` runs it with uvicorn.

    app.py        the application: routes mounted, errors mapped, OpenAPI document
    api.py        /api/v1: sessions, timeline, writes, stats, stale, events
    events.py     the change feed as server-sent events
    security.py   Host allow-list, token, Origin check, body limit, headers
    errors.py     maestro errors as HTTP statuses and one error body
    schemas.py    the answers' JSON Schemas (a session's is the record's own)
    static/       the dashboard: one HTML page, a stylesheet and a script
"""

from __future__ import annotations

from maestro.server.app import create_app, server

__all__ = ["create_app", "server"]
