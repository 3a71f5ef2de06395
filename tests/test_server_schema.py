"""``/openapi.json`` checked against the server by generated requests (schemathesis).

Every response must be no server error, carry a documented status and
content type, and match the documented schema.  The number of examples per
route is bounded (``MAESTRO_SCHEMA_EXAMPLES``, 25 by default) so it fits CI.
"""

from __future__ import annotations

import os
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from maestro import SessionManager
from maestro.server import create_app

EXAMPLES = int(os.environ.get("MAESTRO_SCHEMA_EXAMPLES", "25"))

_root = tempfile.TemporaryDirectory(prefix="maestro-schema-")
_manager = SessionManager(_root.name)
for _request in ("Add OAuth login", "Fix the cache", "Speed up the index"):
    _manager.create_session(_request)
# The in-process client of schemathesis names its host "testserver".
app = create_app(_manager, allowed_hosts=["testserver"])
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.exclude(path="/api/v1/events").parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_route_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
