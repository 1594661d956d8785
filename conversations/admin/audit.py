"""The audit trail's pages (docs/audit.md): audit events and auditlog's row changes, searchable
and read-only for everyone, superusers included. Rows leave only through
`manage.py prune_audit`."""

from __future__ import annotations

from typing import Any

from auditlog.admin import LogEntryAdmin as AuditlogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy

from conversations.admin.common import ReadOnlyAdminMixin
from conversations.models import AuditEvent
from conversations.review.transcript import pretty_json

# A search is a few words of a name or an object: 200 characters and 6 words bound the query
# (each word is ORed over every search field) whatever is pasted into the box.
SEARCH_MAX_CHARS = 200
SEARCH_MAX_WORDS = 6


class BoundedSearchMixin:
    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        words = search_term[:SEARCH_MAX_CHARS].replace("\x00", "").split()[:SEARCH_MAX_WORDS]
        return super().get_search_results(  # type: ignore[misc]
            request, queryset, " ".join(words))


@admin.register(AuditEvent)
class AuditEventAdmin(BoundedSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "action", "actor_column", "object_type", "object_repr", "ip"]
    list_filter = ["action", "at"]
    search_fields = ["actor_name", "action", "object_repr", "object_id"]
    search_help_text = gettext_lazy("Searches the actor's name, the action and the object.")
    date_hierarchy = "at"
    list_select_related = ["actor"]
    list_per_page = 100
    show_full_result_count = False
    fields = ["at", "action", "actor", "actor_name", "object_type", "object_id", "object_repr",
              "details_block", "ip"]
    readonly_fields = fields

    @admin.display(description=gettext_lazy("actor"), ordering="actor_name")
    def actor_column(self, obj: AuditEvent) -> str:
        return obj.actor_name or "–"

    @admin.display(description=gettext_lazy("details"))
    def details_block(self, obj: AuditEvent) -> str:
        return format_html('<pre class="review-json">{}</pre>', pretty_json(obj.details))


admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class LogEntryAdmin(BoundedSearchMixin, ReadOnlyAdminMixin, AuditlogEntryAdmin):
    """auditlog's page, searchable by actor, model and object; auditlog lets a superuser
    delete entries through a cascade, this never does."""

    search_fields = [
        "object_repr", "object_pk", "content_type__model", "actor__username",
        "actor_email",
    ]
    search_help_text = gettext_lazy(
        "Searches the object, its model and the actor's username or e-mail.")
    show_full_result_count = False
