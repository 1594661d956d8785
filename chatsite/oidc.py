"""Single sign-on through any OpenID Connect provider (docs/sso.md), on mozilla-django-oidc.

The library has no discovery: its endpoints are settings. Here they come from
`OIDC_ISSUER/.well-known/openid-configuration`, fetched when first needed and cached, with the
issuer in the document checked against the setting. The code flow always runs with state, nonce
and PKCE (S256), ID tokens must be RS256-signed by a key of the provider's JWKS, and carry our
client id in `aud` and the provider's issuer in `iss`. Who the user is and which roles their
groups give is decided in `conversations.services.identity`.

Everything here is off while OIDC_ISSUER is empty: the views answer 404, the backend declines,
the login page shows the password form only.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests
from django.conf import settings
from django.contrib import auth
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import AbstractBaseUser
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import (
    ImproperlyConfigured,
    MiddlewareNotUsed,
    SuspiciousOperation,
    ValidationError,
)
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

logger = logging.getLogger(__name__)

# Seconds to wait for the provider (discovery, token, userinfo, JWKS): a person is waiting on
# the other side of each call; 10 s is the vendors' connect timeout too (settings.py).
TIMEOUT = 10
# The discovery document is kept this long (1 hour): endpoints change only when the provider is
# reconfigured; keys are read from the JWKS at every login, so a key rotation needs no restart.
DISCOVERY_TTL = 3600
# A discovery document is a few kilobytes; 1 MB stops a wrong URL from filling memory.
MAX_DISCOVERY_BYTES = 1_000_000
# The session marks a login made through the provider, so logout also ends the provider's session.
SSO_SESSION_KEY = "sso_issuer"
REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be had or is not usable."""


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_ISSUER", ""))


def sso_only() -> bool:
    """SSO_ONLY counts only with a provider configured: without one it would lock everybody
    but the superusers out (check chatsite.W002 says so)."""
    return enabled() and bool(getattr(settings, "SSO_ONLY", False))


def provider_name() -> str:
    return getattr(settings, "OIDC_PROVIDER_NAME", "") or _("single sign-on")


@functools.lru_cache(maxsize=8)
def _parsed_map(text: str) -> Any:
    from conversations.services import identity

    return identity.parse_group_map(text)


def group_map() -> Any:
    return _parsed_map(getattr(settings, "OIDC_GROUP_MAP", ""))


# Discovery ------------------------------------------------------------------------------------

_lock = threading.Lock()
_cached: dict[str, Any] = {}


def forget_discovery() -> None:
    with _lock:
        _cached.clear()


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 2000:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def discovery() -> dict[str, Any]:
    """The provider's discovery document (cached DISCOVERY_TTL seconds; failures are not
    cached, so a provider that comes back is used at the next attempt)."""
    issuer = settings.OIDC_ISSUER
    with _lock:
        if _cached.get("issuer") == issuer and time.monotonic() - _cached["at"] < DISCOVERY_TTL:
            return dict(_cached["doc"])
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
        if response.status_code != 200:
            raise ProviderUnavailable(f"discovery answered HTTP {response.status_code}")
        if len(response.content) > MAX_DISCOVERY_BYTES:
            raise ProviderUnavailable("discovery document too large")
        doc = response.json()
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"discovery failed: {type(exc).__name__}") from None
    except ValueError:
        raise ProviderUnavailable("discovery document is not JSON") from None
    if not isinstance(doc, dict):
        raise ProviderUnavailable("discovery document is not a JSON object")
    if not isinstance(doc.get("issuer"), str) or doc["issuer"].rstrip("/") != issuer.rstrip("/"):
        # OpenID Connect Discovery 1.0 §4.3: the issuer must be the one asked for, or a
        # document served elsewhere could name another provider's endpoints.
        raise ProviderUnavailable("discovery document names another issuer")
    for key in REQUIRED_ENDPOINTS:
        if not _is_http_url(doc.get(key)):
            raise ProviderUnavailable(f"discovery document has no usable {key}")
    for key in ("userinfo_endpoint", "end_session_endpoint"):
        if key in doc and not _is_http_url(doc[key]):
            doc.pop(key)
    with _lock:
        _cached.update(issuer=issuer, at=time.monotonic(), doc=doc)
    return dict(doc)


_ENDPOINT_SETTINGS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def scopes() -> str:
    words = str(getattr(settings, "OIDC_SCOPES", "") or "openid email profile").split()
    return " ".join(words if "openid" in words else ["openid", *words])


def library_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, from chatsite's: fixed where security depends on them
    (PKCE, nonce, RS256, no tokens kept in the session), endpoints from discovery."""
    fixed: dict[str, Any] = {
        "OIDC_RP_CLIENT_ID": settings.OIDC_CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": settings.OIDC_CLIENT_SECRET,
        "OIDC_RP_SCOPES": scopes(),
        "OIDC_RP_SIGN_ALGO": "RS256",
        "OIDC_RP_IDP_SIGN_KEY": None,
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_ALLOW_UNSECURED_JWT": False,
        "OIDC_VERIFY_SSL": True,
        "OIDC_VERIFY_KID": True,
        "OIDC_TIMEOUT": TIMEOUT,
        "OIDC_PROXY": None,
        "OIDC_STORE_ACCESS_TOKEN": False,
        "OIDC_STORE_ID_TOKEN": False,
        "OIDC_TOKEN_USE_BASIC_AUTH": False,
        "OIDC_AUTH_REQUEST_EXTRA_PARAMS": {},
        "LOGIN_REDIRECT_URL": settings.LOGIN_REDIRECT_URL,
    }
    if attr in _ENDPOINT_SETTINGS:
        return discovery().get(_ENDPOINT_SETTINGS[attr])
    if attr in fixed:
        return fixed[attr]
    return import_from_settings(attr, *default)


# The backend ----------------------------------------------------------------------------------


class OIDCBackend(OIDCAuthenticationBackend):
    """Only the callback view's call (with `nonce` and `code_verifier`) reaches the provider;
    a password login passes straight through to the next backend."""

    get_settings = staticmethod(library_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads its endpoints here, for every authenticate() of every login; they
        # are resolved in authenticate() instead, only for a login through the provider.
        self.UserModel = auth.get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or not enabled() or not {"nonce", "code_verifier"} <= kwargs.keys():
            return None
        doc = discovery()
        self.issuer = doc["issuer"]
        self.OIDC_OP_TOKEN_ENDPOINT = doc["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = doc.get("userinfo_endpoint")
        self.OIDC_OP_JWKS_ENDPOINT = doc["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = "RS256"
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise SuspiciousOperation("the token response has no id_token")
        payload = super().verify_token(token, **kwargs)
        # The library checks the signature, the algorithm, the expiry and the nonce; the
        # issuer and the audience are checked here (OpenID Connect Core 1.0 §3.1.3.7).
        if payload.get("iss") != self.issuer:
            raise SuspiciousOperation("the ID token is from another issuer")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token is for another client")
        if "exp" not in payload:
            raise SuspiciousOperation("the ID token has no expiry")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]
                     ) -> dict[str, Any]:
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            info = super().get_userinfo(access_token, id_token, payload)
            # Core 1.0 §5.3.2: a userinfo answer for another subject must not be used.
            if not isinstance(info, dict) or info.get("sub") != payload.get("sub"):
                raise SuspiciousOperation("userinfo is about another subject")
            claims.update(info)
        return claims

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        subject = claims.get("sub")
        return isinstance(subject, str) and 0 < len(subject) <= 255

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]
                           ) -> Any:
        from conversations.services import identity

        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation("the provider sent no usable subject")
        user = identity.user_for_identity(self.issuer, claims["sub"], claims)
        if user.is_active:
            groups = identity.groups_from_claims(claims, settings.OIDC_GROUPS_CLAIM)
            changes = identity.apply_group_map(user, groups, group_map())
            if changes:
                logger.info("single sign-on: roles of %s changed: %s", user.username, changes)
        return user


# Views ----------------------------------------------------------------------------------------


def error_page(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "registration/sso_error.html",
                  {"message": message, "provider_name": provider_name()}, status=status)


def unreachable(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.warning("single sign-on: provider unavailable (%s)", exc)
    return error_page(request, _("%(name)s cannot be reached right now. Try again in a few "
                                 "minutes.") % {"name": provider_name()}, 502)


class AuthenticateView(OIDCAuthenticationRequestView):
    """Starts the code flow: state, nonce and PKCE verifier in the session, then the provider."""

    get_settings = staticmethod(library_setting)

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404
        try:
            self.OIDC_OP_AUTH_ENDPOINT = discovery()["authorization_endpoint"]
        except ProviderUnavailable as exc:
            return unreachable(request, exc)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        return super().get(request)


# Exceptions a provider's odd answer can raise inside the library: each ends as a clear page
# and one log line, never a traceback.
PROVIDER_ERRORS = (requests.RequestException, jwt.PyJWTError, ValueError, KeyError, TypeError)


class CallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back: the state must be one this browser's session started."""

    get_settings = staticmethod(library_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404
        try:
            return super().get(request)
        except ProviderUnavailable as exc:
            return unreachable(request, exc)
        except SuspiciousOperation as exc:
            logger.warning("single sign-on refused: %s", exc)
            return self.refused()
        except PROVIDER_ERRORS as exc:
            logger.warning("single sign-on failed: %s: %s", type(exc).__name__, str(exc)[:200])
            return error_page(request, _("%(name)s sent an answer that could not be used. "
                                         "Try again; if it keeps failing, tell your "
                                         "administrator.") % {"name": provider_name()}, 502)

    def refused(self) -> HttpResponse:
        return error_page(self.request, _("This sign-in could not be completed: it was not "
                                          "started here, was already used or has expired. "
                                          "Start again from the login page."), 400)

    def login_failure(self) -> HttpResponse:
        error = self.request.GET.get("error", "")
        if error:
            logger.warning("single sign-on: the provider answered %r", error[:64])
            return error_page(self.request, _("%(name)s did not sign you in.")
                              % {"name": provider_name()}, 403)
        user = getattr(self, "user", None)
        if user is not None and not user.is_active:
            return error_page(self.request, _("This account is disabled."), 403)
        return self.refused()

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        self.request.session[SSO_SESSION_KEY] = settings.OIDC_ISSUER
        return response


class LoginView(auth_views.LoginView):
    """Django's login page with the single sign-on button; with SSO_ONLY, the button only and
    password POSTs refused."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(sso_enabled=enabled(), sso_only=sso_only(), sso_name=provider_name())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if sso_only():
            self.object = None
            context = self.get_context_data(form=self.get_form_class()(request))
            context["sso_refused"] = True
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)


@method_decorator([require_POST, never_cache], name="dispatch")
class LogoutView(View):
    """Local logout, then, for a login made through the provider, RP-initiated logout at its
    end_session_endpoint when discovery names one (with client_id and the login page as
    post_logout_redirect_uri: no ID token is kept to send as a hint)."""

    def post(self, request: HttpRequest) -> HttpResponse:
        through_sso = bool(request.session.get(SSO_SESSION_KEY))
        auth.logout(request)
        target = resolve_url(settings.LOGOUT_REDIRECT_URL)
        if through_sso and enabled():
            try:
                end_session = discovery().get("end_session_endpoint")
            except ProviderUnavailable as exc:
                logger.warning("single sign-on: logout at the provider skipped (%s)", exc)
                end_session = None
            if end_session:
                query = urlencode({"client_id": settings.OIDC_CLIENT_ID,
                                   "post_logout_redirect_uri": request.build_absolute_uri(target)})
                return HttpResponseRedirect(
                    f"{end_session}{'&' if '?' in end_session else '?'}{query}")
        return HttpResponseRedirect(target)


class BreakGlassAdminLoginForm(AdminAuthenticationForm):
    """With SSO_ONLY the admin's password login is the break-glass door: superusers only.
    Anyone else gets the same answer as a wrong password."""

    def confirm_login_allowed(self, user: AbstractBaseUser) -> None:
        super().confirm_login_allowed(user)
        if sso_only() and not getattr(user, "is_superuser", False):
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login",
                                  params={"username": self.username_field.verbose_name})


# Start-up checks --------------------------------------------------------------------------------


@register()
def check_sso_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """chatsite.E002: the group map cannot be read; chatsite.E003: OIDC_ISSUER without a
    client id or not an http(s) URL; chatsite.W002: SSO_ONLY without a provider."""
    from conversations.services.identity import GroupMapError

    problems: list[CheckMessage] = []
    try:
        _parsed_map(getattr(settings, "OIDC_GROUP_MAP", ""))
    except GroupMapError as exc:
        problems.append(Error(str(exc), hint="Entries are GROUP=staff, GROUP=reviewer, "
                              "GROUP=team:SLUG or GROUP=team:SLUG:lead, separated by commas.",
                              id="chatsite.E002"))
    if enabled():
        if not _is_http_url(settings.OIDC_ISSUER):
            problems.append(Error("OIDC_ISSUER is not an http(s) URL.", id="chatsite.E003"))
        if not settings.OIDC_CLIENT_ID:
            problems.append(Error("OIDC_ISSUER is set but OIDC_CLIENT_ID is empty.",
                                  id="chatsite.E003"))
    elif getattr(settings, "SSO_ONLY", False):
        problems.append(Warning("SSO_ONLY is set without OIDC_ISSUER; it is ignored.",
                                id="chatsite.W002"))
    return problems


class SSOSettingsRequired:
    """Daphne runs no system checks: a server whose single sign-on settings are wrong refuses
    to start (as SecretKeyRequired does for the key) instead of failing at the first login."""

    def __init__(self, get_response: Callable[..., Any]) -> None:
        errors = [p for p in check_sso_settings() if p.is_serious()]
        if errors:
            raise ImproperlyConfigured("; ".join(f"{e.msg} ({e.id})" for e in errors))
        raise MiddlewareNotUsed
