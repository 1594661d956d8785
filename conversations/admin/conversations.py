"""Reviewers (the `reviewer` group) and staff review conversations here.

Reviewers read every conversation, set its review fields (status, labels, notes), manage labels,
and export; the transcript and the conversation's own fields are read-only for everyone. The
conversation list is annotated with subqueries (message, failure and feedback counts), so the
changelist runs the same number of queries whatever the page size. Messages and feedback are
shown, never changed.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations import services
from conversations.admin.actions import (
    add_label,
    export_csv,
    export_jsonl,
    handoff,
    mark_flagged,
    mark_reviewed,
)
from conversations.admin.common import ReadOnlyAdminMixin, conversation_link
from conversations.admin.filters import FeedbackFilter, HasFailuresFilter, HasToolCallsFilter
from conversations.admin.review_queues import send_to_queue
from conversations.models import Conversation, Feedback, Label, Message, ToolCall
from conversations.review.transcript import pretty_json, transcript_views

REVIEW_MEDIA = forms.Media(css={"all": ["review/review.css"]})


def _count(qs: QuerySet[Any], group: str) -> Coalesce:
    """A correlated COUNT subquery: one per row of the page, no join that multiplies rows."""
    return Coalesce(
        Subquery(
            qs.order_by().values(group).annotate(n=Count("pk")).values("n")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


class ReviewForm(forms.ModelForm):
    """Only the review fields: whatever else a POST carries is not part of the form, so it is
    ignored (the conversation and its transcript cannot change here)."""

    class Meta:
        model = Conversation
        fields = ["review_status", "labels", "review_notes"]
        widgets = {"labels": forms.CheckboxSelectMultiple}


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    form = ReviewForm
    change_form_template = "admin/conversations/conversation/change_form.html"
    list_display = [
        "title_column", "owner", "team", "agent_column", "external_user_id", "message_count",
        "last_activity", "failure_count", "feedback_column", "review_column", "label_column",
    ]
    list_filter = [
        "agent",
        "team",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "review_status",
        "labels",
        "created_at",
        FeedbackFilter,
        HasFailuresFilter,
        HasToolCallsFilter,
        "archived",
    ]
    list_select_related = ["owner", "agent", "team"]
    list_per_page = 50
    # Searching is done by get_search_results; one field here makes the admin show the box.
    search_fields = ["title"]
    search_help_text = gettext_lazy(
        "Searches titles, message text, external user ids and metadata values."
    )
    # The unfiltered total is a second COUNT over the whole table on every page view.
    show_full_result_count = False
    fieldsets = [
        (gettext_lazy("Review"), {
            "fields": ["review_status", "labels", "review_notes", "reviewed_by", "reviewed_at"],
        }),
        (gettext_lazy("Conversation"), {
            "fields": [
                "id", "owner", "agent", "title", "generated_titles", "external_user_id",
                "metadata_block", "vendor_conversation_id", "forked_from", "archived",
                "created_at", "updated_at",
            ],
        }),
    ]
    readonly_fields = [
        "reviewed_by", "reviewed_at", "id", "owner", "agent", "title", "generated_titles",
        "external_user_id", "metadata_block", "vendor_conversation_id", "forked_from",
        "archived", "created_at", "updated_at",
    ]
    actions = [mark_reviewed, mark_flagged, add_label, handoff, send_to_queue, export_csv,
               export_jsonl]

    @property
    def media(self) -> forms.Media:
        return super().media + REVIEW_MEDIA

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        feedback = Feedback.objects.filter(message__conversation=OuterRef("pk"))
        return (
            super().get_queryset(request)
            .annotate(
                n_messages=_count(Message.objects.filter(conversation=OuterRef("pk")),
                                  "conversation"),
                n_failed=_count(
                    Message.objects.filter(
                        conversation=OuterRef("pk"), status=Message.Status.FAILED
                    ),
                    "conversation",
                ),
                n_up=_count(feedback.filter(score=Feedback.Score.UP), "message__conversation"),
                n_down=_count(
                    feedback.filter(score=Feedback.Score.DOWN), "message__conversation"
                ),
            )
            .prefetch_related("labels")
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        # The search's subqueries never duplicate rows: no DISTINCT needed (False).
        return queryset.search(search_term, everywhere=True), False

    # Permissions: nobody adds conversations here; only the review fields are editable.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.export_conversation")

    # List columns

    @admin.display(description=gettext_lazy("title"), ordering="title")
    def title_column(self, obj: Conversation) -> str:
        return Truncator(obj.display_title()).chars(80)

    @admin.display(description=gettext_lazy("agent"), ordering="agent__name")
    def agent_column(self, obj: Conversation) -> str:
        return obj.agent.name

    @admin.display(description=gettext_lazy("last activity"), ordering="updated_at")
    def last_activity(self, obj: Conversation) -> str:
        # Compact and sortable at a glance; the change page has the full timestamps.
        return date_format(timezone.localtime(obj.updated_at), "Y-m-d H:i")

    @admin.display(description=gettext_lazy("messages"), ordering="n_messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.n_messages  # type: ignore[attr-defined]

    @admin.display(description=gettext_lazy("failed replies"), ordering="n_failed")
    def failure_count(self, obj: Conversation) -> str:
        n = obj.n_failed  # type: ignore[attr-defined]
        return format_html('<span class="review-failed">{}</span>', n) if n else "0"

    @admin.display(description=gettext_lazy("feedback"), ordering="n_down")
    def feedback_column(self, obj: Conversation) -> str:
        up, down = obj.n_up, obj.n_down  # type: ignore[attr-defined]
        if not (up or down):
            return "–"
        return format_html(
            '<span class="feedback-score" title="{}"><span class="feedback-up">+{}</span> '
            '<span class="feedback-down">−{}</span></span>',
            _("%(up)s thumbs up, %(down)s thumbs down") % {"up": up, "down": down}, up, down,
        )

    @admin.display(description=gettext_lazy("review status"), ordering="review_status")
    def review_column(self, obj: Conversation) -> str:
        return format_html(
            '<span class="review-badge review-{}">{}</span>',
            obj.review_status, obj.get_review_status_display(),
        )

    @admin.display(description=gettext_lazy("labels"))
    def label_column(self, obj: Conversation) -> str:
        return ", ".join(label.name for label in obj.labels.all()) or "–"

    @admin.display(description=gettext_lazy("metadata"))
    def metadata_block(self, obj: Conversation) -> str:
        if not obj.metadata:
            return "–"
        return format_html('<pre class="review-json">{}</pre>', pretty_json(obj.metadata))

    # Change page

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        conversation = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if conversation is not None:
            context["transcript"] = transcript_views(conversation, request.GET.get("branch"))
            if request.method == "GET" and self.has_view_permission(request, conversation):
                services.audit.record_transcript_view(request, conversation, "admin")
        return super().change_view(request, object_id, form_url, context)

    def save_model(
        self, request: HttpRequest, obj: Conversation, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            services.stamp_review(obj, request.user, form.changed_data)
        super().save_model(request, obj, form, change)


# Messages, labels, feedback ------------------------------------------------------------------




class ToolCallInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ToolCall
    extra = 0
    fields = ["call_id", "name", "arguments", "result", "status"]
    readonly_fields = fields


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "conversation_column", "role", "status", "error_code", "created_at"]
    list_filter = ["role", "status", "error_code"]
    list_select_related = ["conversation"]
    readonly_fields = [
        "id", "conversation", "seq", "role", "content", "status", "error_code",
        "error_message", "usage", "client_id", "extra", "created_at", "completed_at", "ttft_ms",
        "heartbeat_at",
    ]
    inlines = [ToolCallInline]

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_column(self, obj: Message) -> str:
        return conversation_link(obj.conversation_id, str(obj.conversation), f"msg-{obj.pk}")


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["name", "colour_column", "conversation_count"]
    search_fields = ["name"]
    fields = ["name", "color"]

    @property
    def media(self) -> forms.Media:
        return super().media + REVIEW_MEDIA

    def get_queryset(self, request: HttpRequest) -> QuerySet[Label]:
        return super().get_queryset(request).annotate(n_conversations=Count("conversations"))

    @admin.display(description=gettext_lazy("colour"))
    def colour_column(self, obj: Label) -> str:
        return format_html(
            # An SVG fill, not a style attribute: the CSP allows no inline styles (settings.py).
            '<span class="label-chip"><svg class="swatch" viewBox="0 0 1 1" aria-hidden="true">'
            '<rect width="1" height="1" fill="{}"/></svg>{}</span>', obj.color, obj.color
        )

    @admin.display(description=gettext_lazy("conversations"), ordering="n_conversations")
    def conversation_count(self, obj: Label) -> str:
        url = reverse("admin:conversations_conversation_changelist")
        return format_html(
            '<a href="{}?labels__id__exact={}">{}</a>', url, obj.pk,
            obj.n_conversations,  # type: ignore[attr-defined]
        )


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at", "score_column", "comment_column", "author", "agent_column",
        "conversation_column",
    ]
    list_filter = ["score", "message__conversation__agent", "created_at"]
    list_select_related = ["author", "message__conversation__agent"]
    search_fields = ["comment"]
    fields = [
        "score_column", "comment", "author", "conversation_column", "created_at", "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description=gettext_lazy("score"), ordering="score")
    def score_column(self, obj: Feedback) -> str:
        return f"{'+1' if obj.score > 0 else '−1'} {obj.get_score_display()}"

    @admin.display(description=gettext_lazy("comment"))
    def comment_column(self, obj: Feedback) -> str:
        return Truncator(obj.comment).chars(120) or "–"

    @admin.display(description=gettext_lazy("agent"))
    def agent_column(self, obj: Feedback) -> str:
        return obj.message.conversation.agent.name

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_column(self, obj: Feedback) -> str:
        conversation = obj.message.conversation
        return conversation_link(conversation.pk, conversation.display_title(),
                                 f"msg-{obj.message_id}")
