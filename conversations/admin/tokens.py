"""Personal API tokens in the admin: listed and revoked, never created or edited here, and never
shown beyond their prefix (the hash is not a field of any page)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy, ngettext

from conversations import services
from conversations.admin.common import ReadOnlyAdminMixin
from conversations.models import ApiToken

FIELDS = ["user", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at",
          "revoked_at"]


@admin.action(description=gettext_lazy("Revoke selected tokens"), permissions=["revoke"])
def revoke_tokens(modeladmin: admin.ModelAdmin, request: HttpRequest,
                  queryset: QuerySet[ApiToken]) -> None:
    n = sum(services.revoke_token(token, actor=request.user) for token in queryset)
    modeladmin.message_user(request, ngettext(
        "%(n)d token revoked.", "%(n)d tokens revoked.", n) % {"n": n}, messages.SUCCESS)


class StateFilter(admin.SimpleListFilter):
    title = gettext_lazy("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", gettext_lazy("Active")), ("revoked", gettext_lazy("Revoked"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        if self.value() == "active":
            return queryset.active()  # type: ignore[attr-defined, no-any-return]
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = FIELDS
    list_filter = [StateFilter]
    search_fields = ["name", "prefix", "user__username"]
    fields = FIELDS
    readonly_fields = FIELDS
    actions = [revoke_tokens]
    list_select_related = ["user"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.change_apitoken")
