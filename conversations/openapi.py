"""`GET /api/v1/openapi.json`: the JSON API's OpenAPI 3.1 document. The source of truth is
`docs/openapi.yaml` (read by people and reviewed in diffs); it is parsed once per process and
served as JSON, which every OpenAPI tool reads. tests/test_openapi.py keeps it true to the URL
configuration and to what the views answer."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from conversations.api import api_error

SCHEMA_PATH = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"


@functools.cache
def schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.cache
def _schema_json() -> bytes:
    return json.dumps(schema(), ensure_ascii=False, separators=(",", ":")).encode()


def openapi_json(request: HttpRequest) -> HttpResponse:
    """Public, like any API documentation: it describes the API, it holds no data."""
    if request.method not in ("GET", "HEAD"):
        response = api_error(
            405, "method_not_allowed",
            _("%(method)s is not allowed here.") % {"method": request.method},
        )
        response["Allow"] = "GET, HEAD"
        return response
    response = HttpResponse(_schema_json(), content_type="application/json")
    # The document changes only with a deploy; an hour spares clients refetching it.
    response["Cache-Control"] = "public, max-age=3600"
    return response
