"""docs/openapi.yaml is kept true: it is served at /api/v1/openapi.json, it names exactly the
routes under /api/v1/ with exactly the methods they allow, and schemathesis, driving every
documented operation with generated requests (valid and invalid) through the real WSGI stack
with a logged-in session and CSRF token, finds no 5xx, no undocumented status, no answer off
its documented schema."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
import yaml
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conversations import api
from conversations.models import Agent, Conversation, Message

pytestmark = pytest.mark.django_db

SCHEMA_FILE = django_settings.BASE_DIR / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# Fixed ids, so generated requests reach real objects (and DELETE is undone between examples).
CONVERSATION_ID = uuid.UUID("5c1f2a7e-0000-4000-8000-00000000c0de")
REPLY_ID = uuid.UUID("5c1f2a7e-0000-4000-8000-0000000feeed")
# Examples per generation mode (valid, invalid) across all operations: the 600 take ~5 s on
# SQLite or PostgreSQL, well inside the minute the schema run may take.
SCHEMATHESIS_EXAMPLES = 300


def documented() -> dict[str, Any]:
    with open(SCHEMA_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def api_routes() -> list[str]:
    """Every URL pattern under api/v1/ as an OpenAPI path (`<uuid:x>` -> `{x}`)."""
    found: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("api/v1/"):
                found.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", str(uuid.uuid4()), path)


# The document and the URL configuration --------------------------------------------------------


def test_it_serves_the_yaml_document_as_json(client: Client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/json"
    assert r.json() == documented()
    assert r.json()["openapi"] == "3.1.0"
    r = client.post("/api/v1/openapi.json")
    assert r.status_code == 405
    assert r["Allow"] == "GET, HEAD"
    assert r.json()["error"]["code"] == "method_not_allowed"


def all_schemas(node: Any) -> list[Any]:
    """Every `schema` object in the document (parameters, bodies, responses, headers)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                found.append(value)
            else:
                found += all_schemas(value)
    elif isinstance(node, list):
        for value in node:
            found += all_schemas(value)
    return found


def test_it_is_a_valid_openapi_3_1_document():
    doc = documented()
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    schemas = list(doc["components"]["schemas"].values()) + all_schemas(doc)
    assert len(schemas) > 40
    for schema in schemas:
        jsonschema_rs.meta.validate(schema)  # each one valid JSON Schema 2020-12
    with pytest.raises(jsonschema_rs.ValidationError):
        jsonschema_rs.meta.validate({"type": "bogus"})


def test_it_documents_every_api_route_and_nothing_else():
    routes = api_routes()
    assert len(routes) == len(set(routes))
    assert set(routes) == set(documented()["paths"])
    assert "/api/v1/conversations/{conversation_id}" in routes


def test_it_documents_paths_that_resolve_to_real_views():
    for path in documented()["paths"]:
        match = resolve(concrete(path))
        assert match.func is not api.not_found, path
        assert match.url_name, path


def test_it_documents_exactly_the_methods_each_route_allows(alice_client: Client):
    """OPTIONS is allowed nowhere, so each route's 405 names its methods in `Allow`."""
    for path, item in documented()["paths"].items():
        r = alice_client.options(concrete(path))
        assert r.status_code == 405, path
        allowed = {m.strip().lower() for m in r["Allow"].split(",")} - {"head"}
        assert allowed == set(item) & METHODS, path


def test_it_documents_the_error_shape_on_every_error_status():
    doc = documented()
    responses = doc["components"]["responses"]
    for path, item in doc["paths"].items():
        for method in set(item) & METHODS:
            for status, response in item[method]["responses"].items():
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "details"]


def test_it_documents_every_error_status_the_readme_lists():
    doc = documented()
    statuses = {
        int(status)
        for item in doc["paths"].values()
        for method in set(item) & METHODS
        for status in item[method]["responses"]
    }
    assert {400, 401, 403, 404, 409, 413, 422, 429} <= statuses


# schemathesis ----------------------------------------------------------------------------------


@pytest.fixture
def reviewer_session(staff: Any, demo_agent: Agent) -> dict[str, str]:
    """The session and CSRF cookies of a superuser (so the export is reachable too)."""
    client = Client()
    client.force_login(staff)
    client.get("/")  # sets csrftoken
    return {
        "sessionid": client.cookies["sessionid"].value,
        "csrftoken": client.cookies["csrftoken"].value,
    }


@pytest.fixture
def wsgi_app() -> Any:
    """The real WSGI stack, minus the end-of-request close of the database connection (as
    Django's test Client does): with CONN_MAX_AGE=0 it would close the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def restore_objects(owner: Any, agent: Agent) -> None:
    """DELETE examples remove the fixed conversation; put it back before the next example."""
    conversation, _ = Conversation.objects.get_or_create(
        pk=CONVERSATION_ID, defaults={"owner": owner, "agent": agent, "title": "Fuzzed"}
    )
    Message.objects.get_or_create(
        pk=REPLY_ID,
        defaults={"conversation": conversation, "role": "assistant", "content": "Hello",
                  "seq": 1},
    )


def test_it_passes_schemathesis_against_the_wsgi_app(
    reviewer_session: dict[str, str], staff: Any, demo_agent: Agent, settings: Any,
    wsgi_app: Any,
):
    settings.RATE_LIMIT_WRITES_PER_MINUTE = 0
    app = wsgi_app
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    fixed = {"conversation_id": str(CONVERSATION_ID), "message_id": str(REPLY_ID)}
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
            if names:
                strategies.append(operation.as_strategy(
                    generation_mode=mode,
                    path_parameters={k: v for k, v in fixed.items() if k in names}))
    headers = {"X-CSRFToken": reviewer_session["csrftoken"]}
    seen: dict[str, set[int]] = {}

    @given(case=st.one_of(strategies))
    @hsettings(max_examples=SCHEMATHESIS_EXAMPLES * 2, deadline=None, derandomize=True,
               suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        restore_objects(staff, demo_agent)
        response = case.call(app=app, headers=headers, cookies=reviewer_session)
        seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                    response_headers_conformance, response_schema_conformance],
            headers=headers,
        )

    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    # Every operation was reached (but the document itself, which takes no input and which
    # from_wsgi fetched above), and not only by refusals.
    operations = {f"{m.upper()} {p}" for p, item in documented()["paths"].items()
                  for m in set(item) & METHODS}
    assert set(seen) == operations - {"GET /api/v1/openapi.json"}, seen
    assert any(s < 300 for s in seen["POST /api/v1/conversations"]), seen
    assert any(s < 300 for s in seen["GET /api/v1/conversations/{conversation_id}"]), seen
    assert any(s < 300 for s in seen["PUT /api/v1/messages/{message_id}/feedback"]), seen
    assert elapsed < 60, elapsed
