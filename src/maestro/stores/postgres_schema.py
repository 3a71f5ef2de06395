"""The PostgreSQL store's schema: numbered steps, applied once, under a lock.

Each step is a list of SQL statements run in one transaction together with
the row that records it in ``maestro_schema``, so a step is either wholly
applied or not at all.  Steps run under a session-level advisory lock: two
processes starting at once on an empty database take turns, and the second
finds the work done.  A database whose schema is newer than the steps this
code knows is refused (:class:`~maestro.errors.StoreUnavailableError`): an
older maestro must not write records or events it does not understand.

Every key and index of the session and event tables leads with ``project``,
so that distributing the tables by project (Citus) needs no schema change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maestro.errors import StoreUnavailableError

if TYPE_CHECKING:
    import psycopg

__all__ = ["LATEST", "MIGRATIONS", "current_version", "refuse_newer", "upgrade"]

#: An arbitrary, fixed key for ``pg_advisory_lock``: "maestro" in ASCII.
LOCK_KEY = 0x6D61657374726F

MIGRATIONS: list[list[str]] = [
    # 1: sessions, change events, the store's identity.
    [
        """
        CREATE TABLE maestro_meta (
            key text PRIMARY KEY,
            value text NOT NULL
        )
        """,
        # Names this database in change feed cursors (a cursor of another
        # database is recognised and answered with a reset).
        """
        INSERT INTO maestro_meta (key, value)
        VALUES ('store_id', substr(md5(random()::text || clock_timestamp()::text), 1, 8))
        """,
        """
        CREATE TABLE maestro_sessions (
            project text NOT NULL,
            session_id text COLLATE "C" NOT NULL,
            status text NOT NULL,
            phase text,
            branch text,
            worktree text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            active_at timestamptz NOT NULL,
            words text[] COLLATE "C" NOT NULL,
            create_request text,
            revision integer NOT NULL,
            record jsonb NOT NULL,
            PRIMARY KEY (project, session_id)
        )
        """,
        "CREATE INDEX maestro_sessions_id ON maestro_sessions (session_id)",
        """
        CREATE INDEX maestro_sessions_created
            ON maestro_sessions (project, created_at DESC, session_id DESC)
        """,
        """
        CREATE INDEX maestro_sessions_updated
            ON maestro_sessions (project, updated_at DESC, session_id DESC)
        """,
        """
        CREATE INDEX maestro_sessions_status
            ON maestro_sessions (project, status, created_at DESC, session_id DESC)
        """,
        """
        CREATE INDEX maestro_sessions_branch
            ON maestro_sessions (project, branch, created_at DESC, session_id DESC)
        """,
        "CREATE INDEX maestro_sessions_words ON maestro_sessions USING gin (words)",
        """
        CREATE UNIQUE INDEX maestro_sessions_create_request
            ON maestro_sessions (project, create_request) WHERE create_request IS NOT NULL
        """,
        # ``xid`` is the writing transaction's id: readers take only events of
        # transactions older than every one still in flight, in (xid, seq)
        # order, so a cursor never passes an event that commits later.
        """
        CREATE TABLE maestro_events (
            project text NOT NULL,
            xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
            seq bigint GENERATED ALWAYS AS IDENTITY,
            kind text NOT NULL,
            session_id text COLLATE "C",
            revision integer,
            from_status text,
            to_status text,
            at timestamptz NOT NULL,
            request_id text,
            PRIMARY KEY (project, xid, seq)
        )
        """,
        "CREATE INDEX maestro_events_order ON maestro_events (xid, seq)",
    ],
    # 2: the change feed's retention.  Events at or before a project's
    # horizon may have been removed: a reader whose cursor is older is told
    # so (a ``reset``) and goes on from the horizon.
    [
        """
        CREATE TABLE maestro_feed_horizon (
            project text PRIMARY KEY,
            xid bigint NOT NULL,
            seq bigint NOT NULL
        )
        """,
        # Records of a long history are compressed on every write: lz4 costs
        # the server a fraction of pglz's time.  Records written before keep
        # theirs; a server built without lz4 (or older than 14) keeps pglz.
        """
        DO $$
        BEGIN
            ALTER TABLE maestro_sessions ALTER COLUMN record SET COMPRESSION lz4;
        EXCEPTION WHEN feature_not_supported OR syntax_error THEN
            NULL;
        END
        $$
        """,
    ],
]

#: The schema version this code writes.
LATEST = len(MIGRATIONS)


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The version of the schema in the database; 0 when it holds none."""
    exists = conn.execute("SELECT to_regclass('maestro_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM maestro_schema").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def refuse_newer(version: int) -> None:
    if version > LATEST:
        raise StoreUnavailableError(
            f"the database schema is version {version}, newer than this maestro "
            f"understands ({LATEST}); upgrade maestro",
            reason="schema_too_new",
        )


def upgrade(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    """Apply the missing steps; the versions applied (none when up to date).

    ``conn`` must be in autocommit mode: each step is its own transaction.
    """
    version = current_version(conn)
    refuse_newer(version)
    if version == LATEST:
        return []
    applied: list[int] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS maestro_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        version = current_version(conn)  # another process may have done it meanwhile
        refuse_newer(version)
        for number in range(version + 1, LATEST + 1):
            with conn.transaction():
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO maestro_schema (version) VALUES (%s)", (number,))
            applied.append(number)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied
