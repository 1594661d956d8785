"""Signed outbound webhooks (docs/webhooks.md): emitting events, and delivering them.

Emission (`emit`, called by the services where things happen) is cheap and never does HTTP:
which events have an active endpoint is cached in the process for SUBSCRIBERS_TTL seconds, so
when nothing subscribes an event costs no query at all. When something does, one
`WebhookDelivery` row per subscribed endpoint is written on commit and a task is enqueued on
django-tasks' database backend; `manage.py db_worker` (the Procfile's worker) runs it.

Delivery (`deliver`, the task) sends one signed POST, records the attempt, and on failure
enqueues itself again after base * 2**(n-1) seconds until the delivery's retry window ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import httpx
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tasks import task

from conversations.models import (
    WEBHOOK_EVENTS,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    validate_webhook_events,
    validate_webhook_url,
)
from conversations.services.errors import InvalidInput

logger = logging.getLogger(__name__)

EVENTS = WEBHOOK_EVENTS
# 5 s, as the review-queue rules (services.queue_rules): an endpoint changed in the admin applies
# in this process at once and in the others within 5 s, while a busy relay reads the table at
# most once per 5 s, not once per reply.
SUBSCRIBERS_TTL = 5.0
# What an attempt keeps of the receiver's answer: 1,000 characters show an error page's gist;
# at most 4 KiB is read, so a huge body is neither downloaded nor stored.
RESPONSE_EXCERPT_CHARS = 1_000
RESPONSE_READ_BYTES = 4_096
# The error column's size (WebhookAttempt.error).
ERROR_CHARS = 500
# A secret of at least 16 characters: HMAC keys shorter than that are guessable offline.
SECRET_MIN_CHARS = 16
SECRET_MAX_CHARS = 256
USER_AGENT = "chatsite-webhooks/1"


# Secrets at rest ------------------------------------------------------------------------------


def _fernet() -> Fernet:
    """Fernet with a key derived from SECRET_KEY by HKDF-SHA256, for this purpose only (another
    use of SECRET_KEY never yields the same key). Rotating SECRET_KEY makes the stored secrets
    unreadable: each endpoint then needs its secret set again (docs/webhooks.md)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"chatsite",
               info=b"chatsite webhook endpoint secret v1").derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode("ascii")


def decrypt_secret(token: str) -> str:
    return _fernet().decrypt(token.encode("ascii")).decode()


def clean_secret(secret: Any) -> str:
    if not isinstance(secret, str) or not (
            SECRET_MIN_CHARS <= len(secret) <= SECRET_MAX_CHARS) or any(
            c.isspace() or not c.isprintable() for c in secret):
        raise InvalidInput("invalid", _(
            "The secret must be %(min)s to %(max)s printable characters without spaces.")
            % {"min": SECRET_MIN_CHARS, "max": SECRET_MAX_CHARS}, field="secret")
    return secret


def create_endpoint(url: Any, secret: Any, events: Any, *, description: str = "",
                    active: bool = True, created_by: Any = None) -> WebhookEndpoint:
    """A new endpoint (the `webhooks add` command; the admin's form does the same checks)."""
    if not isinstance(url, str):
        raise InvalidInput("invalid", _("Enter an http:// or https:// URL with a host."),
                           field="url")
    try:
        validate_webhook_url(url)
    except ValidationError as exc:
        raise InvalidInput("invalid", exc.messages[0], field="url") from None
    events = list(dict.fromkeys(events or []))
    try:
        validate_webhook_events(events)
    except ValidationError as exc:
        raise InvalidInput("invalid", exc.messages[0], field="events") from None
    endpoint = WebhookEndpoint(url=url, secret_encrypted=encrypt_secret(clean_secret(secret)),
                               events=events, active=active, description=description[:200],
                               created_by=created_by)
    endpoint.full_clean()
    endpoint.save()
    return endpoint


# Who listens ---------------------------------------------------------------------------------

_lock = threading.Lock()
_cache: tuple[float, frozenset[str]] | None = None


def subscribed_events() -> frozenset[str]:
    """The events at least one active endpoint subscribes to, cached for SUBSCRIBERS_TTL."""
    global _cache
    cached = _cache
    if cached is not None and time.monotonic() - cached[0] < SUBSCRIBERS_TTL:
        return cached[1]
    found: set[str] = set()
    for events in WebhookEndpoint.objects.filter(active=True).values_list("events", flat=True):
        if isinstance(events, list):
            found.update(e for e in events if isinstance(e, str))
    result = frozenset(found)
    with _lock:
        _cache = (time.monotonic(), result)
    return result


def forget_subscribers(**_kwargs: Any) -> None:
    global _cache
    with _lock:
        _cache = None


post_save.connect(forget_subscribers, sender=WebhookEndpoint, dispatch_uid="webhooks_save")
post_delete.connect(forget_subscribers, sender=WebhookEndpoint, dispatch_uid="webhooks_delete")


# Emission ------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def user_json(user: Any) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.pk, "username": user.get_username()}


def wants(event: str) -> bool:
    """Whether `event` has an active subscriber (so its payload is worth building). Never
    raises: webhooks never fail what triggered them."""
    try:
        return event in subscribed_events()
    except Exception as exc:  # noqa: BLE001 - e.g. the query failed: no webhook, the write stands
        logger.warning("webhooks skipped: %s: %s", type(exc).__name__, exc)
        return False


def emit(event: str, data: Any) -> None:
    """Queue `event` for every active endpoint subscribed to it, once the current transaction
    commits (at once outside one). `data` is the payload's `data` object, or a callable that
    builds it (called on commit, only when someone listens). No HTTP here, ever."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    if not wants(event):
        return
    transaction.on_commit(partial(_create_deliveries, event, data, timezone.now()))


def _create_deliveries(event: str, data: Any, at: datetime) -> list[WebhookDelivery]:
    try:
        endpoints = [e for e in WebhookEndpoint.objects.filter(active=True)
                     if isinstance(e.events, list) and event in e.events]
        if not endpoints:
            return []
        body = data() if callable(data) else data
        retry_until = at + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
        deliveries = []
        for endpoint in endpoints:
            delivery = WebhookDelivery(endpoint=endpoint, event=event, created_at=at,
                                       next_attempt_at=at, retry_until=retry_until, payload={})
            delivery.payload = {"id": str(delivery.id), "event": event,
                                "created_at": _iso(at), "data": body}
            deliveries.append(delivery)
        with transaction.atomic():
            WebhookDelivery.objects.bulk_create(deliveries)
            for delivery in deliveries:
                _enqueue(delivery, 1)
        return deliveries
    except Exception as exc:  # noqa: BLE001 - a webhook never fails what triggered it
        logger.warning("webhook event %s not queued: %s: %s", event, type(exc).__name__, exc)
        return []


def _enqueue(delivery: WebhookDelivery, n: int, run_after: datetime | None = None) -> None:
    task_ = deliver_task.using(run_after=run_after) if run_after else deliver_task
    task_.enqueue(str(delivery.id), delivery.run, n)


def redeliver(deliveries: Any) -> int:
    """Send these deliveries again, whatever their status: a new run of attempts (with its own
    retry window) that stops any retry still waiting from the previous run. Returns how many."""
    count = 0
    now = timezone.now()
    with transaction.atomic():
        for delivery in deliveries.select_for_update():
            delivery.run += 1
            delivery.status = WebhookDelivery.Status.PENDING
            delivery.next_attempt_at = now
            delivery.retry_until = now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
            delivery.save(update_fields=["run", "status", "next_attempt_at", "retry_until"])
            _enqueue(delivery, 1)
            count += 1
    return count


# Delivery ------------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Chatsite-Signature value: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _clean_text(text: str, limit: int) -> str:
    # NUL cannot be stored in a PostgreSQL text column.
    return text.replace("\x00", "\ufffd")[:limit]


class _Answer:
    def __init__(self) -> None:
        self.status: int | None = None
        self.excerpt = ""
        self.error = ""


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Answer:
    """One POST, redirects not followed, at most RESPONSE_READ_BYTES of the answer read, and
    abandoned `timeout` seconds after it started whatever the receiver does."""
    answer = _Answer()
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                          trust_env=False) as client, \
                client.stream("POST", url, content=body, headers=headers) as response:
            answer.status = response.status_code
            read = bytearray()
            for chunk in response.iter_raw():
                read += chunk
                if len(read) >= RESPONSE_READ_BYTES:
                    break
                if time.monotonic() > deadline:
                    answer.error = _("The response took longer than %(s)s s.") % {"s": timeout}
                    break
            answer.excerpt = _clean_text(
                bytes(read[:RESPONSE_READ_BYTES]).decode("utf-8", errors="replace"),
                RESPONSE_EXCERPT_CHARS)
    except httpx.TimeoutException:
        answer.error = _("No answer within %(s)s s.") % {"s": timeout}
    except (httpx.HTTPError, OSError, ValueError) as exc:
        answer.error = f"{type(exc).__name__}: {exc}"
    return answer


def _backoff(n: int) -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (n - 1))


def attempt(delivery_id: UUID | str, run: int, n: int) -> str:
    """Attempt `n` of run `run` of a delivery; returns the delivery's status after it, or
    "stale" when the delivery is gone, finished, or redelivered since (another run owns it)."""
    delivery = (WebhookDelivery.objects.select_related("endpoint")
                .filter(pk=delivery_id).first())
    if (delivery is None or delivery.run != run
            or delivery.status != WebhookDelivery.Status.PENDING):
        return "stale"
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    started = time.monotonic()
    try:
        secret = decrypt_secret(endpoint.secret_encrypted)
    except (InvalidToken, ValueError):
        answer = _Answer()
        answer.error = _("The endpoint's secret cannot be decrypted (SECRET_KEY changed?): "
                         "set it again.")
    else:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Chatsite-Event": delivery.event,
            "X-Chatsite-Delivery": str(delivery.id),
            "X-Chatsite-Signature": signature(secret, timestamp, body),
        }
        answer = _post(endpoint.url, body, headers, settings.WEBHOOK_TIMEOUT_SECONDS)
    duration_ms = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    ok = answer.status is not None and 200 <= answer.status < 300 and not answer.error
    if not ok and not answer.error:
        answer.error = _("HTTP %(status)s") % {"status": answer.status}
    with transaction.atomic():
        # Locked: a redelivery between the read above and now wins; this run's result is
        # recorded as an attempt but changes nothing more.
        current = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        WebhookAttempt.objects.create(
            delivery=current, at=now, duration_ms=duration_ms, http_status=answer.status,
            error=_clean_text(answer.error, ERROR_CHARS), response_excerpt=answer.excerpt)
        current.attempts += 1
        fields = ["attempts", "status", "next_attempt_at"]
        if current.run != run or current.status != WebhookDelivery.Status.PENDING:
            current.save(update_fields=["attempts"])
            return "stale"
        if ok:
            current.status, current.next_attempt_at = WebhookDelivery.Status.SUCCEEDED, None
        elif now + _backoff(n) > current.retry_until:
            current.status, current.next_attempt_at = WebhookDelivery.Status.FAILED, None
        else:
            current.next_attempt_at = now + _backoff(n)
            _enqueue(current, n + 1, current.next_attempt_at)
        current.save(update_fields=fields)
    if not ok:
        logger.warning("webhook delivery %s (%s) attempt %d to endpoint %s failed: %s%s",
                       delivery.id, delivery.event, current.attempts, endpoint.pk,
                       _clean_text(answer.error, ERROR_CHARS),
                       "" if current.status == WebhookDelivery.Status.PENDING
                       else "; no more retries")
    return current.status


@task()
def deliver_task(delivery_id: str, run: int, n: int) -> str:
    return attempt(delivery_id, run, n)


# Payloads (docs/webhooks.md lists every field) ---------------------------------------------------


def reply_data(message_id: Any, conversation_id: Any) -> dict[str, Any]:
    from conversations.models import Message

    m = (Message.objects.select_related("conversation__agent", "conversation__team")
         .get(pk=message_id, conversation_id=conversation_id))
    conversation = m.conversation
    return {
        "conversation_id": str(conversation.pk),
        "message_id": str(m.pk),
        "agent": conversation.agent.slug,
        "team": conversation.team.slug if conversation.team_id else None,
        "owner_id": conversation.owner_id,
        "status": m.status,
        "error_code": m.error_code or None,
        "usage": m.usage,
        "ttft_ms": m.ttft_ms,
        "completed_at": _iso(m.completed_at) if m.completed_at else None,
    }


def reply_finished(message_id: Any, conversation_id: Any, status: str) -> None:
    """services.runs.finish_run and the reaper: a reply ended."""
    from conversations.models import Message

    event = {Message.Status.COMPLETED: "reply.completed",
             Message.Status.FAILED: "reply.failed"}.get(status)
    if event:
        emit(event, partial(reply_data, message_id, conversation_id))
