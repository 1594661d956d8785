"""The review workspace in the admin: score configs (rubrics), review queues with their configs,
assignees and rules, queue items (read-only, filtered by queue and status), scores (read-only,
with their history), and the conversations list's "Send to a review queue" action. Claiming and
scoring happen on the reviewer page and the API (services.queues, services.scoring)."""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from conversations.admin.common import (
    ReadOnlyAdminMixin,
    conversation_link,
    intermediate_context,
)
from conversations.models import Conversation, QueueItem, ReviewQueue, Score, ScoreConfig
from conversations.services import queues


class ScoreConfigForm(forms.ModelForm):
    class Meta:
        model = ScoreConfig
        fields = ["name", "description", "kind", "min_value", "max_value", "options",
                  "is_active"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind, low, high = data.get("kind"), data.get("min_value"), data.get("max_value")
        options = data.get("options")
        if kind == ScoreConfig.Kind.NUMERIC:
            if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
                raise forms.ValidationError(_("A numeric config needs a minimum and a maximum."))
            if low >= high:
                raise forms.ValidationError(_("The minimum must be below the maximum."))
        if kind == ScoreConfig.Kind.CATEGORICAL:
            if (not isinstance(options, list) or len(options) < 2
                    or not all(isinstance(o, str) and o.strip() for o in options)
                    or len(set(options)) != len(options)):
                raise forms.ValidationError(_(
                    "A categorical config needs at least two different options, as a JSON "
                    "list of labels such as [\"good\", \"bad\"]."))
        elif options:
            raise forms.ValidationError(_("Only a categorical config has options."))
        return data


@admin.register(ScoreConfig)
class ScoreConfigAdmin(admin.ModelAdmin):
    form = ScoreConfigForm
    list_display = ["name", "kind", "range_column", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name", "description"]

    @admin.display(description=gettext_lazy("values"))
    def range_column(self, obj: ScoreConfig) -> str:
        if obj.kind == ScoreConfig.Kind.NUMERIC:
            return f"{obj.min_value:g} – {obj.max_value:g}" if (
                obj.min_value is not None and obj.max_value is not None) else "–"
        if obj.kind == ScoreConfig.Kind.CATEGORICAL:
            return " | ".join(map(str, obj.options or []))
        return _("yes / no")


class ReviewQueueForm(forms.ModelForm):
    class Meta:
        model = ReviewQueue
        fields = ["name", "description", "configs", "is_active", "assignees", "reviewer_group",
                  "on_thumbs_down", "on_failure", "failure_codes", "on_tool_error", "on_flagged",
                  "sample_percent", "double_review_percent"]
        widgets = {"configs": forms.CheckboxSelectMultiple}

    def _percent(self, name: str) -> float:
        value = self.cleaned_data.get(name) or 0
        if not math.isfinite(value) or not 0 <= value <= 100:
            raise forms.ValidationError(_("A percentage is between 0 and 100."))
        return value

    def clean_sample_percent(self) -> float:
        return self._percent("sample_percent")

    def clean_double_review_percent(self) -> float:
        return self._percent("double_review_percent")

    def clean_failure_codes(self) -> list[str]:
        codes = self.cleaned_data.get("failure_codes") or []
        if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
            raise forms.ValidationError(
                _("A JSON list of error codes such as [\"vendor_timeout\"], or [] for any."))
        return codes


@admin.register(ReviewQueue)
class ReviewQueueAdmin(admin.ModelAdmin):
    form = ReviewQueueForm
    list_display = ["name", "is_active", "rules_column", "pending_column", "done_column"]
    list_filter = ["is_active"]
    search_fields = ["name", "description"]
    filter_horizontal = ["assignees"]
    fieldsets = [
        (None, {"fields": ["name", "description", "configs", "is_active"]}),
        (gettext_lazy("Who reviews"), {"fields": ["assignees", "reviewer_group"]}),
        (gettext_lazy("Rules that fill the queue"), {"fields": [
            "on_thumbs_down", "on_failure", "failure_codes", "on_tool_error", "on_flagged",
            "sample_percent", "double_review_percent"]}),
    ]

    @admin.display(description=gettext_lazy("rules"))
    def rules_column(self, obj: ReviewQueue) -> str:
        names = [str(label) for label, on in (
            (gettext_lazy("thumbs-down"), obj.on_thumbs_down),
            (gettext_lazy("failure"), obj.on_failure),
            (gettext_lazy("tool error"), obj.on_tool_error),
            (gettext_lazy("flagged"), obj.on_flagged),
        ) if on]
        if obj.sample_percent:
            names.append(_("sample %(n)s %%") % {"n": f"{obj.sample_percent:g}"})
        return ", ".join(names) or "–"

    @admin.display(description=gettext_lazy("pending"))
    def pending_column(self, obj: ReviewQueue) -> int:
        return obj.items.filter(status=QueueItem.Status.PENDING).count()

    @admin.display(description=gettext_lazy("done"))
    def done_column(self, obj: ReviewQueue) -> int:
        return obj.items.filter(status=QueueItem.Status.DONE).count()


@admin.register(QueueItem)
class QueueItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "queue", "status", "reason", "review_round", "conversation_column",
                    "claimed_by", "claimed_at", "completed_by", "completed_at", "created_at"]
    list_filter = ["queue", "status", "reason", "review_round"]
    list_select_related = ["queue", "conversation", "claimed_by", "completed_by"]
    fields = ["queue", "conversation_column", "message", "reason", "review_round", "status",
              "claimed_by", "claimed_at", "completed_by", "completed_at", "created_at"]
    readonly_fields = fields

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_column(self, obj: QueueItem) -> str:
        anchor = f"msg-{obj.message_id}" if obj.message_id else ""
        return conversation_link(obj.conversation_id, str(obj.conversation), anchor)


@admin.register(Score)
class ScoreAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["updated_at", "config", "value_column", "author", "source",
                    "conversation_column", "comment_column"]
    list_filter = ["config", "source", ("author", admin.RelatedOnlyFieldListFilter),
                   "updated_at"]
    list_select_related = ["config", "author", "conversation"]
    search_fields = ["comment"]
    fields = ["config", "value_column", "comment", "author", "source", "conversation_column",
              "message", "history_column", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(description=gettext_lazy("value"))
    def value_column(self, obj: Score) -> str:
        return json.dumps(obj.value, ensure_ascii=False)

    @admin.display(description=gettext_lazy("comment"))
    def comment_column(self, obj: Score) -> str:
        return Truncator(obj.comment).chars(120) or "–"

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_column(self, obj: Score) -> str:
        anchor = f"msg-{obj.message_id}" if obj.message_id else ""
        return conversation_link(obj.conversation_id, str(obj.conversation), anchor)

    @admin.display(description=gettext_lazy("earlier values"))
    def history_column(self, obj: Score) -> str:
        if not obj.history:
            return "–"
        return format_html("<ol>{}</ol>", format_html_join(
            "", "<li><time>{}</time>: {} {}</li>",
            ((h.get("at", ""), json.dumps(h.get("value"), ensure_ascii=False),
              f"— {h['comment']}" if h.get("comment") else "") for h in obj.history)))


# The conversations list's action -------------------------------------------------------------


class SendToQueueForm(forms.Form):
    queue = forms.ModelChoiceField(queryset=ReviewQueue.objects.filter(is_active=True),
                                   label=gettext_lazy("Review queue"))


@admin.action(description=gettext_lazy("Send to a review queue"), permissions=["change"])
def send_to_queue(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse | None:
    """Each conversation's latest assistant reply (or the conversation, without one) goes to
    the chosen queue; those already there stay once."""
    form = SendToQueueForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        queue = form.cleaned_data["queue"]
        chosen = list(Conversation.objects.filter(pk__in=queryset.values("pk")))
        sent = sum(queues.send_to_queue(queue, c) is not None for c in chosen)
        total = len(chosen)
        modeladmin.message_user(request, ngettext(
            "%(n)d conversation sent to “%(queue)s”.",
            "%(n)d conversations sent to “%(queue)s”.", sent,
        ) % {"n": sent, "queue": queue.name} + (
            " " + _("%(n)d already there.") % {"n": total - sent} if total > sent else ""),
            messages.SUCCESS)
        return None
    context = intermediate_context(
        modeladmin, request, queryset, _("Send to a review queue"), form,
        has_queues=ReviewQueue.objects.filter(is_active=True).exists())
    return TemplateResponse(request, "admin/conversations/conversation/send_to_queue.html",
                            context)
