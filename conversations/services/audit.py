"""The audit trail (docs/audit.md): who changed what, and who read or exported what.

Two records, one owner:
- row changes are django-auditlog's `LogEntry` (old → new per field), written by its signals
  for the models `register_models` lists. auditlog sees `save()`, `delete()` and m2m changes,
  never `QuerySet.update()` or a `bulk_create` of m2m rows, so every such write on an audited
  model goes through `logged_update` / `log_m2m` here;
- reads, exports, logins and token changes are `AuditEvent` rows, written by `record`.

Message and streaming writes (the relay's hot path) are not audited.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from auditlog.context import set_extra_data
from auditlog.diff import model_instance_diff
from auditlog.middleware import AuditlogMiddleware
from auditlog.models import LogEntry
from auditlog.receivers import log_update
from auditlog.registry import auditlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models.signals import pre_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.module_loading import import_string

from conversations.models import (
    Agent,
    AuditEvent,
    CannedReply,
    Conversation,
    Label,
    ReviewQueue,
    ScoreConfig,
    Team,
    TeamMembership,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

# The stable action names (docs/audit.md); `record` refuses any other.
ACTIONS = frozenset({
    "transcript.viewed", "export.downloaded", "login.succeeded", "login.failed",
    "login.locked_out", "logout", "token.created", "token.revoked",
})
# An attempted username is kept to this many characters: Django's own username limit (150).
USERNAME_MAX_CHARS = 150
# A text value in `details` is cut here: a filter or a username, never a document.
DETAIL_TEXT_MAX_CHARS = 500
# Rows per step of a logged update: one SELECT before, one UPDATE, one SELECT after, well under
# SQLite's 32,766 bound variables.
UPDATE_BATCH = 500
MASK = "********"


# Which models and fields ------------------------------------------------------------------------


def mask_secret(value: str) -> str:
    """auditlog's default mask keeps half the value; a password hash keeps none."""
    return MASK


def register_models() -> None:
    """The audited models (idempotent: AppConfig.ready may run more than once in tests)."""
    user = get_user_model()
    # When a row was made or touched is the entry's own timestamp; the admin's form also
    # re-posts created_at without its microseconds, which would log a change on every save.
    stamps = ["created_at", "updated_at", "joined_at"]
    specs: list[tuple[type[models.Model], dict[str, Any]]] = [
        (Agent, {"exclude_fields": stamps, "m2m_fields": {"teams"}}),
        # Not last_login (every login would be a change) and the password masked whole: the
        # entry says it changed, never what to.
        (user, {"include_fields": ["username", "email", "first_name", "last_name", "is_staff",
                                   "is_superuser", "is_active", "password"],
                "mask_fields": ["password"],
                "mask_callable": "conversations.services.audit.mask_secret",
                "m2m_fields": {"groups", "user_permissions"}}),
        (Group, {"m2m_fields": {"permissions"}}),
        (Team, {"exclude_fields": stamps}),
        (TeamMembership, {"exclude_fields": stamps}),
        # The review and desk fields; never the text (title, metadata) or the relay's stamps.
        (Conversation, {"include_fields": ["owner", "agent", "team", "assignee", "archived",
                                           "review_status", "review_notes", "reviewed_by",
                                           "reviewed_at"],
                        "m2m_fields": {"labels"}}),
        (Label, {}),
        (CannedReply, {"exclude_fields": stamps}),
        (ScoreConfig, {"exclude_fields": stamps}),
        (ReviewQueue, {"exclude_fields": stamps, "m2m_fields": {"configs", "assignees"}}),
        # Where events go is audited; the secret is masked whole (a change says it changed).
        (WebhookEndpoint, {"exclude_fields": stamps, "mask_fields": ["secret_encrypted"],
                           "mask_callable": "conversations.services.audit.mask_secret"}),
    ]
    for model, options in specs:
        if auditlog.contains(model):
            continue
        auditlog.register(model, **options)
        # auditlog reads the old row before every save; a save whose update_fields name no
        # audited field (a conversation's active_leaf_id and updated_at on each message sent)
        # skips that query.
        pre_save.disconnect(sender=model, dispatch_uid=auditlog._dispatch_uid(pre_save, log_update))
        pre_save.connect(_log_update_if_audited, sender=model,
                         dispatch_uid=("chatsite-audit", model._meta.label))


def _audited(model: type[models.Model]) -> set[str]:
    """The concrete field names auditlog records for `model` (names and attnames)."""
    spec = auditlog.get_model_fields(model)
    names = set()
    for field in model._meta.concrete_fields:
        if spec["include_fields"] and field.name not in spec["include_fields"]:
            continue
        if field.name in spec["exclude_fields"]:
            continue
        names |= {field.name, field.attname}
    return names


def _log_update_if_audited(sender: Any, instance: Any, update_fields: Any = None,
                           **kwargs: Any) -> None:
    if update_fields is not None and not _audited(sender) & set(update_fields):
        return
    log_update(sender=sender, instance=instance, update_fields=update_fields, **kwargs)


# Writes auditlog does not see ---------------------------------------------------------------------


def _batches(pks: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(pks), UPDATE_BATCH):
        yield pks[start:start + UPDATE_BATCH]


def _actor_fields(actor: Any) -> dict[str, Any]:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return {}  # the request's user, filled in by auditlog's middleware context
    return {"actor": actor, "actor_email": getattr(actor, "email", None)}


def logged_update(queryset: models.QuerySet[Any], *, actor: Any = None, **values: Any) -> int:
    """`queryset.update(**values)`, plus auditlog's UPDATE entry for each row that changed
    (old → new of the updated fields, as a `save()` would log). Returns the rows updated."""
    model = queryset.model
    if not auditlog.contains(model):
        return queryset.update(**values)
    manager = model._base_manager
    fields = list(values)
    updated = 0
    with transaction.atomic(using=queryset.db):
        pks = list(manager.filter(pk__in=queryset.values("pk")).select_for_update()
                   .values_list("pk", flat=True))
        for batch in _batches(pks):
            before = {obj.pk: obj for obj in manager.filter(pk__in=batch)}
            updated += manager.filter(pk__in=batch).update(**values)
            for new in manager.filter(pk__in=batch):
                changes = model_instance_diff(before.get(new.pk), new, fields_to_check=fields)
                if changes:
                    LogEntry.objects.log_create(new, action=LogEntry.Action.UPDATE,
                                                changes=changes, **_actor_fields(actor))
    return updated


def log_m2m(instances: Iterable[models.Model], field_name: str, operation: str,
            objects: list[models.Model], *, actor: Any = None) -> None:
    """auditlog's m2m entry ("add" or "delete" of `objects` on `field_name`) for each of
    `instances`, for m2m rows written without the m2m_changed signal (bulk_create)."""
    for instance in instances:
        LogEntry.objects.log_m2m_changes(objects, instance, operation, field_name,
                                         **_actor_fields(actor))


# Events -------------------------------------------------------------------------------------------


def clean_text(value: Any, limit: int = DETAIL_TEXT_MAX_CHARS) -> str:
    """Text that every database stores: no NUL (PostgreSQL refuses it), no lone surrogate,
    cut to `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    text = text[:limit].encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\N{REPLACEMENT CHARACTER}")


def _clean_details(value: Any, depth: int = 0) -> Any:
    if depth > 4:
        return clean_text(json.dumps(value, cls=DjangoJSONEncoder, default=str))
    if isinstance(value, dict):
        return {clean_text(k, 100): _clean_details(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean_details(v, depth + 1) for v in list(value)[:100]]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return clean_text(value)


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address by the login throttle's rule (AXES_CLIENT_IP_CALLABLE:
    X-Forwarded-For only behind TRUSTED_PROXY_COUNT proxies); None when it is not an address."""
    if request is None:
        return None
    path = getattr(settings, "AXES_CLIENT_IP_CALLABLE", "")
    raw = import_string(path)(request) if path else request.META.get("REMOTE_ADDR")
    try:
        return str(ipaddress.ip_address(str(raw or "").strip()))
    except ValueError:
        return None


def _user(value: Any) -> Any:
    return value if getattr(value, "is_authenticated", False) and value.pk else None


def record(action: str, *, actor: Any = None, target: models.Model | None = None,
           details: dict[str, Any] | None = None, request: HttpRequest | None = None,
           actor_name: str = "") -> AuditEvent:
    """Append one AuditEvent. `actor` defaults to the request's user; `actor_name` names
    someone who is not a user (the username of a failed login)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    user = _user(actor) or _user(getattr(request, "user", None))
    name = user.get_username() if user is not None else actor_name
    return AuditEvent.objects.create(
        at=timezone.now(), actor=user, actor_name=clean_text(name, USERNAME_MAX_CHARS),
        action=action,
        object_type=target._meta.label if target is not None else "",
        object_id=clean_text(target.pk, 64) if target is not None else "",
        object_repr=clean_text(target, 200) if target is not None else "",
        details=_clean_details(details or {}), ip=client_ip(request),
    )


def record_transcript_view(request: HttpRequest, conversation: Conversation,
                           surface: str) -> None:
    """`transcript.viewed` when someone other than its owner opens a conversation."""
    if conversation.owner_id != getattr(request.user, "pk", None):
        record("transcript.viewed", target=conversation, request=request,
               details={"surface": surface})


# Logins -------------------------------------------------------------------------------------------


def _login_method(user: Any, request: HttpRequest | None) -> str:
    backend = getattr(user, "backend", "") or ""
    if not backend and request is not None and hasattr(request, "session"):
        from django.contrib.auth import BACKEND_SESSION_KEY

        backend = request.session.get(BACKEND_SESSION_KEY, "")
    return "oidc" if "oidc" in backend.lower() else "password"


def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record("login.succeeded", actor=user, target=user, request=request,
           details={"method": _login_method(user, request)})


def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record("logout", actor=user, target=user, request=request)


def _attempted(credentials: dict[str, Any]) -> str:
    field = get_user_model().USERNAME_FIELD
    return clean_text(credentials.get(field, credentials.get("username", "")) or "",
                      USERNAME_MAX_CHARS)


def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                  **kwargs: Any) -> None:
    # `credentials` is already cleansed of the password by Django; only the username is kept.
    username = _attempted(credentials)
    record("login.failed", request=request, actor_name=username,
           details={"username": username})


def _locked_out(sender: Any, request: HttpRequest | None = None, username: Any = None,
                ip_address: Any = None, **kwargs: Any) -> None:
    name = clean_text(username or "", USERNAME_MAX_CHARS)
    record("login.locked_out", request=request, actor_name=name, details={"username": name})


def _token_changed(action: str) -> Any:
    def receiver(sender: Any, token: Any, actor: Any = None, **kwargs: Any) -> None:
        # `actor` is None when `manage.py tokens` did it: the entry then names no actor, and the
        # token's owner is in the details either way.
        record(action, actor=actor, target=token, actor_name="manage.py tokens" if actor is None
               else "", details={"user": token.user.get_username(), "name": token.name,
                                 "prefix": token.prefix, "scopes": list(token.scopes),
                                 "expires_at": token.expires_at.isoformat()
                                 if token.expires_at else None})
    return receiver


_token_created = _token_changed("token.created")
_token_revoked = _token_changed("token.revoked")


def connect_receivers() -> None:
    from axes.signals import user_locked_out

    from conversations.services.tokens import token_created, token_revoked

    token_created.connect(_token_created, dispatch_uid="chatsite-audit-token-created")
    token_revoked.connect(_token_revoked, dispatch_uid="chatsite-audit-token-revoked")

    user_logged_in.connect(_logged_in, dispatch_uid="chatsite-audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="chatsite-audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="chatsite-audit-login-failed")
    user_locked_out.connect(_locked_out, dispatch_uid="chatsite-audit-locked-out")


class AuditContextMiddleware(AuditlogMiddleware):
    """auditlog's middleware (the request's user and address on every LogEntry), with the
    address taken by the login throttle's rule: auditlog's own trusts X-Forwarded-For, which any
    client can send."""

    def get_extra_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"remote_addr": client_ip(request), "remote_port": None,
                "actor": self._get_actor(request)}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with set_extra_data(context_data=self.get_extra_data(request)):
            return self.get_response(request)


# Retention ----------------------------------------------------------------------------------------


def prune(days: int, *, dry_run: bool = False, now: Any = None) -> dict[str, int]:
    """Delete audit events and auditlog entries older than `days` days (0: keep everything).
    Returns how many of each were (or, with dry_run, would be) deleted."""
    if days <= 0:
        return {"audit_events": 0, "log_entries": 0}
    cutoff = (now or timezone.now()) - timedelta(days=days)
    events = AuditEvent.objects.filter(at__lt=cutoff)
    entries = LogEntry.objects.filter(timestamp__lt=cutoff)
    counts = {"audit_events": events.count(), "log_entries": entries.count()}
    if not dry_run:
        with transaction.atomic():
            # QuerySet.delete, not AuditEvent.delete (which refuses): the one way out.
            events.delete()
            entries.delete()
    return counts
