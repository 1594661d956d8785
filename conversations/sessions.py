"""A websocket lives only as long as the login session it was opened with.

Two halves, both decided here:
- `session_is_valid` is the rule a socket's frames are checked against (the consumer calls it
  before every state-changing frame): the session still exists and is unexpired, names the same
  user, that user is active, and the session's auth hash still matches the password (as
  django.contrib.auth.get_user checks for a page request).
- Receivers that push the end of a session to every process at once: logout publishes to the
  session's group, deactivation and a password change to the user's group. Each socket joins
  both groups at connect and closes with CLOSE_SESSION_ENDED when told. Publishing goes through
  the channel layer (in-memory in one process, Redis pub/sub across processes) after the
  transaction commits, so a rolled-back change closes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, partial
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.signals import user_logged_out
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Subquery
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from django.utils.crypto import constant_time_compare

# 4401 (4000-4999: application codes): "unauthorized", by analogy with HTTP 401. The chat stops
# reconnecting on it, unlike the transient codes.
CLOSE_SESSION_ENDED = 4401
# The group message a consumer handles with `session_revoked`.
REVOKED_MESSAGE = {"type": "session.revoked"}
# Fields whose change on a user ends every session of theirs.
_WATCHED_FIELDS = frozenset({"password", "is_active"})
# Set on a user instance between pre_save and post_save when its sessions must end.
_PENDING_ATTR = "_chatsite_revoke_sessions"


def user_group(user_id: Any) -> str:
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    # A digest, never the key itself: group names travel through Redis and may be logged, and
    # the key alone is a login. 32 hex digits (128 bits) cannot collide in practice.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SocketSession:
    """Who a socket was opened as: read from the handshake's scope once, at connect."""

    user_id: str
    session_key: str

    @property
    def groups(self) -> tuple[str, str]:
        return user_group(self.user_id), session_group(self.session_key)


def socket_session(scope: dict[str, Any]) -> SocketSession | None:
    """The handshake's user and session key, or None if it is not a logged-in session."""
    user = scope.get("user")
    session_key = getattr(scope.get("session"), "session_key", None)
    if user is None or not user.is_authenticated or not session_key:
        return None
    return SocketSession(user_id=str(user.pk), session_key=session_key)


def session_is_valid(session: SocketSession | None) -> bool:
    """True while `session` could still serve a page as the same, active user.

    The same checks as django.contrib.auth.get_user (session present and unexpired, a
    configured backend, the auth hash, SECRET_KEY_FALLBACKS included), plus is_active even for
    backends that would let an inactive user in. Read-only: unlike get_user it never flushes
    or cycles the session, which belongs to the browser's page requests.

    With database sessions and a backend that loads users by primary key (ModelBackend, the
    OIDC backend) the session row and the user come in one statement: every message.send and
    handshake runs this before its own work, so a round trip here is one more wait before a
    reply starts (tests/test_relay.py counts a reply's statements).
    """
    if session is None:
        return False
    loaded = _load_in_one_statement(session)
    if loaded is None:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
        data, user = store.load(), None  # {} for a missing or expired session
    else:
        data, user = loaded
    pk_field = get_user_model()._meta.pk
    try:
        if pk_field.to_python(data.get(SESSION_KEY)) != pk_field.to_python(session.user_id):
            return False
    except Exception:  # noqa: BLE001 - a malformed stored id is simply not this user
        return False
    backend_path = data.get(BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    if user is None or not _loads_by_pk(backend_path):
        # A backend without get_user (django-axes') can restore no user from a session.
        get_user = getattr(load_backend(backend_path), "get_user", None)
        user = get_user(data[SESSION_KEY]) if get_user else None
    if user is None or not getattr(user, "is_active", True):
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    stored = data.get(HASH_SESSION_KEY)
    if not stored:
        return False
    return constant_time_compare(stored, user.get_session_auth_hash()) or any(
        constant_time_compare(stored, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    )


_DB_SESSIONS = "django.contrib.sessions.backends.db"


@cache
def _loads_by_pk(backend_path: str) -> bool:
    """The backend's get_user is a primary-key lookup with nothing else to decide but is_active
    (checked by session_is_valid for every backend)."""
    from django.contrib.auth.backends import ModelBackend
    from mozilla_django_oidc.auth import OIDCAuthenticationBackend

    get_user = getattr(type(load_backend(backend_path)), "get_user", None)
    return get_user in (ModelBackend.get_user, OIDCAuthenticationBackend.get_user)


def _load_in_one_statement(session: SocketSession) -> tuple[dict[str, Any], Any] | None:
    """(session data, user) from one SELECT: the socket's user with its session's unexpired row
    as a subquery; ({}, None) when either is gone. None where sessions are not in the
    database (the caller then loads them the engine's way)."""
    if settings.SESSION_ENGINE != _DB_SESSIONS:
        return None
    from django.contrib.sessions.models import Session

    row = Session.objects.filter(session_key=session.session_key, expire_date__gt=timezone.now())
    try:
        user = (get_user_model()._default_manager
                .annotate(chatsite_session_data=Subquery(row.values("session_data")[:1]))
                .filter(pk=session.user_id).first())
    except (ValueError, ValidationError):  # a malformed id in the handshake: not a user
        return {}, None
    if user is None or user.chatsite_session_data is None:
        return {}, None
    store = import_module(_DB_SESSIONS).SessionStore(session.session_key)
    return store.decode(user.chatsite_session_data), user


# Publishing --------------------------------------------------------------------------------


def _publish(group: str) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, dict(REVOKED_MESSAGE))


def _publish_on_commit(group: str) -> None:
    # robust: a channel layer that is down must not fail the logout or the admin's save; the
    # socket's next frame is refused by session_is_valid regardless.
    transaction.on_commit(partial(_publish, group), robust=True)


def end_session_sockets(session_key: str) -> None:
    """Close every socket opened with this session, in every process."""
    _publish_on_commit(session_group(session_key))


def end_user_sockets(user_id: Any) -> None:
    """Close every socket of this user, in every process."""
    _publish_on_commit(user_group(user_id))


# Receivers (connected in ConversationsConfig.ready) ----------------------------------------


def on_user_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    # Sent by django.contrib.auth.logout before the session is flushed: its key is still here.
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        end_session_sockets(session_key)


def on_user_pre_save(sender: Any, instance: Any, raw: bool = False,
                     update_fields: Any = None, **kwargs: Any) -> None:
    """Compare the stored row with the one about to be saved: deactivated, or a new password
    hash (set_password, a rehash on login, the admin's form)?"""
    setattr(instance, _PENDING_ATTR, False)
    if raw or instance._state.adding or instance.pk is None:
        return
    fields = [f.attname for f in sender._meta.concrete_fields if f.attname in _WATCHED_FIELDS]
    if update_fields is not None:
        # e.g. the last_login update on every login: no extra query.
        fields = [f for f in fields if f in update_fields]
    if not fields:
        return
    old = sender._default_manager.filter(pk=instance.pk).values(*fields).first()
    if old is None:
        return
    deactivated = "is_active" in old and old["is_active"] and not instance.is_active
    new_password = "password" in old and old["password"] != instance.password
    setattr(instance, _PENDING_ATTR, bool(deactivated or new_password))


def on_user_post_save(sender: Any, instance: Any, created: bool = False, raw: bool = False,
                      **kwargs: Any) -> None:
    if getattr(instance, _PENDING_ATTR, False):
        setattr(instance, _PENDING_ATTR, False)
        end_user_sockets(instance.pk)


def connect_receivers() -> None:
    user_model = get_user_model()
    uid = "conversations.sessions"
    user_logged_out.connect(on_user_logged_out, dispatch_uid=f"{uid}.logged_out")
    pre_save.connect(on_user_pre_save, sender=user_model, dispatch_uid=f"{uid}.pre_save")
    post_save.connect(on_user_post_save, sender=user_model, dispatch_uid=f"{uid}.post_save")
