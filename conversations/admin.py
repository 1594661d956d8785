"""The admin: staff manage agents; reviewers (the `reviewer` group) and staff review conversations.

Reviewers read every conversation, set its review fields (status, labels, notes), manage labels,
and export; the transcript and the conversation's own fields are read-only for everyone. The
conversation list is annotated with subqueries (message, failure and feedback counts), so the
changelist runs the same number of queries whatever the page size.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from conversations import events as ev
from conversations import export
from conversations.models import Agent, Conversation, Feedback, Label, Message, ToolCall
from conversations.providers import get_provider, provider_class, provider_kinds
from conversations.providers.base import RunRequest, Timeouts, error_for_exception
from conversations.review import pretty_json, transcript_views
from conversations.services import agent_config

REVIEW_FIELDS = frozenset({"review_status", "labels", "review_notes"})
REVIEW_MEDIA = forms.Media(css={"all": ["review/review.css"]})


# Agents --------------------------------------------------------------------------------------


class AgentForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=())

    class Meta:
        model = Agent
        fields = [
            "slug", "name", "provider", "base_url", "token_env", "options", "is_active",
            "is_default",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(k, k) for k in provider_kinds()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind, options = data.get("provider"), data.get("options")
        if kind and isinstance(options, dict):
            problems = provider_class(kind).validate_options(options)
            if problems:
                self.add_error("options", "; ".join(problems))
        return data


# 20 s: long enough for a cold vendor to send its first token, short enough that a person waits
# for the page.
CONNECTION_TEST_TIMEOUT = 20.0


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    code: str = ""
    elapsed_ms: int = 0


async def _probe(agent: Agent) -> ConnectionResult:
    config = agent_config(agent)
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    provider = get_provider(
        agent.provider,
        Timeouts(connect=min(10.0, CONNECTION_TEST_TIMEOUT), read=CONNECTION_TEST_TIMEOUT),
    )
    request = RunRequest(
        agent=config, conversation_id=f"connection-test-{uuid.uuid4()}", message="ping"
    )
    # aclosing: leaving at the first text delta must close the vendor's HTTP stream now.
    async with contextlib.aclosing(provider.run(request)) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, ev.TextDelta) and event.text:
                return ConnectionResult(
                    True, _("the vendor answered “%(text)s”")
                    % {"text": Truncator(event.text).chars(60)}, elapsed_ms=elapsed(),
                )
            if isinstance(event, ev.RunCompleted | ev.InterruptRequested):
                return ConnectionResult(True, _("the vendor completed the run"),
                                        elapsed_ms=elapsed())
            if isinstance(event, ev.RunFailed):
                return ConnectionResult(False, event.message, event.code, elapsed())
    return ConnectionResult(
        False, _("the vendor's stream ended without a reply"), ev.ErrorCode.VENDOR_TRUNCATED,
        elapsed(),
    )


def check_connection(agent: Agent) -> ConnectionResult:
    """Stream "ping" to the agent's vendor and stop at the first text (or terminal event).

    The result's message never contains the token: vendors sometimes echo the credential they
    refused, and `Provider.run` redacts whatever comes back.
    """

    async def run() -> ConnectionResult:
        try:
            return await asyncio.wait_for(_probe(agent), CONNECTION_TEST_TIMEOUT)
        except TimeoutError:
            return ConnectionResult(
                False, _("no answer within %(seconds)s seconds")
                % {"seconds": f"{CONNECTION_TEST_TIMEOUT:g}"}, ev.ErrorCode.VENDOR_TIMEOUT,
            )
        except LookupError as exc:
            return ConnectionResult(False, str(exc), ev.ErrorCode.AGENT_MISCONFIGURED)
        except Exception as exc:
            err = error_for_exception(exc, agent_config(agent))
            return ConnectionResult(False, err.message, err.code)

    # Vendor text in the result was redacted at the provider boundary (Provider.run).
    return async_to_sync(run)()


def report_connection(request: HttpRequest, agent: Agent) -> None:
    result = check_connection(agent)
    if result.ok:
        messages.success(request, _("%(agent)s: connection works (%(ms)s ms): %(detail)s.") % {
            "agent": agent.name, "ms": result.elapsed_ms, "detail": result.message,
        })
    else:
        messages.error(request, _("%(agent)s: connection failed [%(code)s]: %(detail)s") % {
            "agent": agent.name, "code": result.code, "detail": result.message,
        })


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["slug", "name", "provider", "base_url", "token_env", "is_active", "is_default"]
    list_filter = ["provider", "is_active"]
    search_fields = ["slug", "name"]
    actions = ["test_connection_action"]
    change_form_template = "admin/conversations/agent/change_form.html"

    @property
    def media(self) -> forms.Media:
        return super().media + REVIEW_MEDIA

    @admin.action(description=gettext_lazy("Test connection"), permissions=["change"])
    def test_connection_action(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            report_connection(request, agent)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="conversations_agent_test_connection",
            ),
            *super().get_urls(),
        ]

    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(self._test_connection_view)(request, object_id)

    def _test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        agent = get_object_or_404(Agent, pk=object_id)
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        report_connection(request, agent)
        return HttpResponseRedirect(reverse("admin:conversations_agent_change", args=[agent.pk]))


# Conversations -------------------------------------------------------------------------------


def _count(qs: QuerySet[Any], group: str) -> Coalesce:
    """A correlated COUNT subquery: one per row of the page, no join that multiplies rows."""
    return Coalesce(
        Subquery(
            qs.order_by().values(group).annotate(n=Count("pk")).values("n")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


class YesNoFilter(admin.SimpleListFilter):
    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def exists(self) -> Exists:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(self.exists())
        if self.value() == "no":
            return queryset.filter(~self.exists())
        return queryset


class HasFailuresFilter(YesNoFilter):
    title = gettext_lazy("has failed replies")
    parameter_name = "failures"

    def exists(self) -> Exists:
        return Exists(
            Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.FAILED)
        )


class HasToolCallsFilter(YesNoFilter):
    title = gettext_lazy("has tool calls")
    parameter_name = "tool_calls"

    def exists(self) -> Exists:
        return Exists(ToolCall.objects.filter(message__conversation=OuterRef("pk")))


class FeedbackFilter(admin.SimpleListFilter):
    title = gettext_lazy("feedback")
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("down", _("Has thumbs down")), ("up", _("Has thumbs up")), ("none", _("No feedback")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        given = Feedback.objects.filter(message__conversation=OuterRef("pk"))
        if self.value() == "down":
            return queryset.filter(Exists(given.filter(score=Feedback.Score.DOWN)))
        if self.value() == "up":
            return queryset.filter(Exists(given.filter(score=Feedback.Score.UP)))
        if self.value() == "none":
            return queryset.filter(~Exists(given))
        return queryset


class ReviewForm(forms.ModelForm):
    """Only the review fields: whatever else a POST carries is not part of the form, so it is
    ignored (the conversation and its transcript cannot change here)."""

    class Meta:
        model = Conversation
        fields = ["review_status", "labels", "review_notes"]
        widgets = {"labels": forms.CheckboxSelectMultiple}


class AddLabelForm(forms.Form):
    label = forms.ModelChoiceField(queryset=Label.objects.all(), label=gettext_lazy("Label"))


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    form = ReviewForm
    change_form_template = "admin/conversations/conversation/change_form.html"
    list_display = [
        "title_column", "owner", "agent_column", "external_user_id", "message_count",
        "last_activity", "failure_count", "feedback_column", "review_column", "label_column",
    ]
    list_filter = [
        "agent",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "review_status",
        "labels",
        "created_at",
        FeedbackFilter,
        HasFailuresFilter,
        HasToolCallsFilter,
        "archived",
    ]
    list_select_related = ["owner", "agent"]
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
                "metadata_block", "vendor_conversation_id", "archived", "created_at",
                "updated_at",
            ],
        }),
    ]
    readonly_fields = [
        "reviewed_by", "reviewed_at", "id", "owner", "agent", "title", "generated_titles",
        "external_user_id", "metadata_block", "vendor_conversation_id", "archived",
        "created_at", "updated_at",
    ]
    actions = [
        "mark_reviewed", "mark_flagged", "add_label", "export_csv", "export_jsonl",
    ]

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
        # Subqueries, not joins: no duplicate rows, so no DISTINCT over a 10,000-row table.
        return export.search_conversations(queryset, search_term), False

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
            context["transcript"] = transcript_views(conversation)
        return super().change_view(request, object_id, form_url, context)

    def save_model(
        self, request: HttpRequest, obj: Conversation, form: forms.ModelForm, change: bool
    ) -> None:
        if change and REVIEW_FIELDS & set(form.changed_data):
            obj.reviewed_by = request.user  # type: ignore[assignment]
            obj.reviewed_at = timezone.now()
        super().save_model(request, obj, form, change)

    # Actions

    def _set_status(
        self, request: HttpRequest, queryset: QuerySet[Conversation], status: str
    ) -> int:
        return Conversation.objects.filter(pk__in=queryset.values("pk")).update(
            review_status=status, reviewed_by=request.user, reviewed_at=timezone.now()
        )

    @admin.action(description=gettext_lazy("Mark selected conversations as reviewed"),
                  permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        n = self._set_status(request, queryset, Conversation.ReviewStatus.REVIEWED)
        self.message_user(request, ngettext(
            "%(n)d conversation marked as reviewed.", "%(n)d conversations marked as reviewed.", n
        ) % {"n": n}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Flag selected conversations"), permissions=["change"])
    def mark_flagged(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        n = self._set_status(request, queryset, Conversation.ReviewStatus.FLAGGED)
        self.message_user(request, ngettext(
            "%(n)d conversation flagged.", "%(n)d conversations flagged.", n
        ) % {"n": n}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Add a label to selected conversations"),
                  permissions=["change"])
    def add_label(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse | None:
        form = AddLabelForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            label = form.cleaned_data["label"]
            pks = list(queryset.values_list("pk", flat=True))
            through = Conversation.labels.through
            through.objects.bulk_create(
                [through(conversation_id=pk, label_id=label.pk) for pk in pks],
                ignore_conflicts=True,
            )
            Conversation.objects.filter(pk__in=pks).update(
                reviewed_by=request.user, reviewed_at=timezone.now()
            )
            self.message_user(request, ngettext(
                "Label “%(label)s” added to %(n)d conversation.",
                "Label “%(label)s” added to %(n)d conversations.", len(pks),
            ) % {"label": label.name, "n": len(pks)}, messages.SUCCESS)
            return None
        select_across = request.POST.get("select_across") == "1"
        context = {
            **self.admin_site.each_context(request),
            "title": _("Add a label"),
            "opts": self.model._meta,
            "form": form,
            "count": queryset.count(),
            "select_across": select_across,
            "selected": [] if select_across else request.POST.getlist(
                helpers.ACTION_CHECKBOX_NAME
            ),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "has_labels": Label.objects.exists(),
            "can_add_label": request.user.has_perm("conversations.add_label"),
        }
        return TemplateResponse(
            request, "admin/conversations/conversation/add_label.html", context
        )

    @admin.action(description=gettext_lazy("Export selected conversations as CSV"),
                  permissions=["export"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return export.export_response(request, queryset, "csv")

    @admin.action(description=gettext_lazy("Export selected conversations as JSONL"),
                  permissions=["export"])
    def export_jsonl(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> HttpResponse:
        return export.export_response(request, queryset, "jsonl")


# Messages, labels, feedback ------------------------------------------------------------------


class ReadOnlyAdminMixin:
    """Shown, never changed: transcripts and feedback are records of what happened."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def conversation_link(conversation_id: Any, text: str, anchor: str = "") -> str:
    url = reverse("admin:conversations_conversation_change", args=[conversation_id])
    return format_html('<a href="{}{}">{}</a>', url, f"#{anchor}" if anchor else "", text)


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
