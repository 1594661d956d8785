"""OpenTelemetry tracing (docs/observability.md#tracing), on only when OTEL_EXPORTER_OTLP_ENDPOINT
is set: Django's request spans, one span per websocket session, the vendor calls' httpx spans,
and one `chatsite.reply` span per reply, parent of its vendor call, whose trace id is stored on
the reply (`Message.trace_id`) for reviewers.

Off (the default), nothing of OpenTelemetry is imported here and the relay pays one function
call per reply (`reply_span` returns a shared no-op); nothing is ever done per delta. The SDK
reads the standard variables itself: OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_BSP_SCHEDULE_DELAY, OTEL_TRACES_SAMPLER...
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any, Protocol

from django.conf import settings

_enabled = False
_tracer: Any = None
_NO_SPAN = contextlib.nullcontext()
# Requests with no span unless OTEL_PYTHON_DJANGO_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS)
# says otherwise: the probes and /metrics are polled every few seconds by machines, and would
# outnumber the spans of people's requests.
DEFAULT_EXCLUDED_URLS = r"/(healthz|readyz|metrics)(\?|$)"
TRACE_ID = re.compile(r"[0-9a-f]{32}")


class ReplyLike(Protocol):
    """What the reply span reads of a relay run (conversations.relay.Run)."""

    conversation_id: str
    message_id: str
    request: Any
    status: str
    error_code: str
    deltas: int
    ttft_ms: int | None
    trace_id: str


def enabled() -> bool:
    return _enabled


def setup() -> bool:
    """Install the tracer provider and the Django, httpx instrumentations, once per process;
    False (and nothing imported) when OTEL_EXPORTER_OTLP_ENDPOINT is not set. Called before
    Django builds its middleware chain (chatsite/asgi.py): Django's instrumentation adds its
    middleware to settings.MIDDLEWARE."""
    global _enabled, _tracer
    if _enabled:
        return True
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "chatsite"})
    provider = TracerProvider(resource=resource)
    # Batched, exported from the SDK's own thread: a span costs the request or reply a queue
    # append, and a collector that is down costs it nothing (spans past the queue's 2,048 are
    # dropped, OTEL_BSP_MAX_QUEUE_SIZE).
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    excluded = (os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS")
                or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS)
    DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider,
                                         async_request_hook=_redact_url)
    _tracer = provider.get_tracer("chatsite")
    _enabled = True
    return True


async def _redact_url(span: Any, request: Any) -> None:
    # A vendor URL may carry a token (`?key=`): spans leave the process, so they get the log
    # redaction (agent tokens, credential echoes) too.
    from conversations.providers.redact import redact_log_text

    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full"):
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact_log_text(value))


def websocket(app: Any) -> Any:
    """The websocket app inside a span per socket session (its handshake's path and headers);
    unchanged when tracing is off. No span per frame: a reply's deltas are frames."""
    if not _enabled:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app, exclude_spans=["receive", "send"],
                                   default_span_details=_socket_span_details)


def _socket_span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    # The route, not the path: span names must stay few (the path holds a conversation id).
    return "WS ws/conversations/<uuid:conversation_id>/", {
        "http.route": "ws/conversations/<uuid:conversation_id>/"}


def reply_span(run: ReplyLike) -> contextlib.AbstractContextManager[Any]:
    """The reply's span, current for the run's task (so the provider's httpx span is its
    child); a shared no-op when tracing is off. Enter it in the reply's own task."""
    if not _enabled:
        return _NO_SPAN
    return _reply_span(run)


@contextlib.contextmanager
def _reply_span(run: ReplyLike) -> Iterator[Any]:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Status, StatusCode

    # Each reply is its own trace, linked to the socket's span: the session span lasts as long
    # as the socket (hours), and a reviewer's trace id should open this reply alone.
    socket_span = trace.get_current_span().get_span_context()
    agent = run.request.agent
    span = _tracer.start_span(
        "chatsite.reply",
        context=Context(),
        links=[Link(socket_span)] if socket_span.is_valid else None,
        attributes={
            "chatsite.agent": agent.slug,
            "chatsite.provider": agent.provider,
            "chatsite.conversation_id": run.conversation_id,
            "chatsite.message_id": run.message_id,
        },
    )
    context = span.get_span_context()
    if context.trace_flags.sampled:
        # A trace the sampler dropped is stored nowhere: its id would lead to nothing.
        run.trace_id = trace.format_trace_id(context.trace_id)
    try:
        with trace.use_span(span, end_on_exit=False):
            yield span
    finally:
        span.set_attribute("chatsite.status", str(run.status))
        span.set_attribute("chatsite.error_code", run.error_code)
        span.set_attribute("chatsite.deltas", run.deltas)
        if run.ttft_ms is not None:
            span.set_attribute("chatsite.ttft_ms", run.ttft_ms)
        if run.error_code:
            span.set_status(Status(StatusCode.ERROR, run.error_code))
        span.end()


def trace_url(trace_id: str) -> str:
    """Where a reviewer opens the trace (OTEL_TRACE_URL_TEMPLATE), or "" without a template or
    for a value that is not a trace id."""
    template = settings.OTEL_TRACE_URL_TEMPLATE
    if not template or not TRACE_ID.fullmatch(trace_id or ""):
        return ""
    return template.replace("{trace_id}", trace_id)
