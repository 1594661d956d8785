"""Admin actions, and the pages they lead to: the review actions on selected conversations (status,
label, export) and the agents' "Test connection". The review writes and the connection probe
are services (services/review.py, services/agents.py); these functions only report back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from conversations import services
from conversations.admin.common import intermediate_context
from conversations.models import Agent, Conversation, Label, Team
from conversations.review import export


class AddLabelForm(forms.Form):
    label = forms.ModelChoiceField(queryset=Label.objects.all(), label=gettext_lazy("Label"))


class HandoffForm(forms.Form):
    """Assign, unassign or transfer selected conversations (services.desk)."""

    team = forms.ModelChoiceField(
        queryset=Team.objects.all(), required=False, label=gettext_lazy("Transfer to team"),
        empty_label=gettext_lazy("— keep each conversation's team —"))
    note = forms.CharField(required=False, max_length=500, label=gettext_lazy("Note"))
    assignee = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False, label=gettext_lazy("Assign to"),
        empty_label=gettext_lazy("— nobody (unassign) —"))


# Conversations -------------------------------------------------------------------------------


def _set_status(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation],
    status: str, done: Callable[[int], str],
) -> None:
    n = services.set_review_status(queryset, status, request.user)
    modeladmin.message_user(request, done(n) % {"n": n}, messages.SUCCESS)


@admin.action(description=gettext_lazy("Mark selected conversations as reviewed"),
              permissions=["change"])
def mark_reviewed(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> None:
    status = Conversation.ReviewStatus.REVIEWED
    _set_status(modeladmin, request, queryset, status, lambda n: ngettext(
        "%(n)d conversation marked as reviewed.", "%(n)d conversations marked as reviewed.", n
    ))


@admin.action(description=gettext_lazy("Flag selected conversations"), permissions=["change"])
def mark_flagged(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> None:
    status = Conversation.ReviewStatus.FLAGGED
    _set_status(modeladmin, request, queryset, status, lambda n: ngettext(
        "%(n)d conversation flagged.", "%(n)d conversations flagged.", n
    ))


@admin.action(description=gettext_lazy("Add a label to selected conversations"),
              permissions=["change"])
def add_label(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse | None:
    form = AddLabelForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        label = form.cleaned_data["label"]
        n = services.add_label(queryset, label, request.user)
        modeladmin.message_user(request, ngettext(
            "Label “%(label)s” added to %(n)d conversation.",
            "Label “%(label)s” added to %(n)d conversations.", n,
        ) % {"label": label.name, "n": n}, messages.SUCCESS)
        return None
    context = intermediate_context(
        modeladmin, request, queryset, _("Add a label"), form,
        has_labels=Label.objects.exists(),
        can_add_label=request.user.has_perm("conversations.add_label"))
    return TemplateResponse(
        request, "admin/conversations/conversation/add_label.html", context
    )


@admin.action(description=gettext_lazy("Assign or transfer selected conversations"),
              permissions=["change"])
def handoff(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse | None:
    """Transfer (to a team, with a note) and/or assign: each change is an event in the
    transcript, as from the chat header and the API."""
    form = HandoffForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        ids = list(queryset.values_list("pk", flat=True))
        team, assignee = form.cleaned_data["team"], form.cleaned_data["assignee"]
        moved = services.transfer_many(ids, request.user, team, form.cleaned_data["note"]) \
            if team else 0
        assigned = services.assign_many(ids, request.user, assignee)
        modeladmin.message_user(request, _(
            "%(moved)d transferred, %(assigned)d (re)assigned; a conversation whose team the "
            "assignee is not in was left as it was.") % {"moved": moved, "assigned": assigned},
            messages.SUCCESS)
        return None
    context = intermediate_context(
        modeladmin, request, queryset, _("Assign or transfer"), form)
    return TemplateResponse(
        request, "admin/conversations/conversation/handoff.html", context
    )


def _export_scope(request: HttpRequest) -> dict[str, Any]:
    """An admin export's filters for the audit trail: the changelist's (its query string) and
    whether the whole result or picked rows were exported."""
    filters: dict[str, Any] = dict(request.GET.items())
    filters["select_across"] = request.POST.get("select_across") == "1"
    return {"source": "admin", "filters": filters}


@admin.action(description=gettext_lazy("Export selected conversations as CSV"),
              permissions=["export"])
def export_csv(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse:
    return export.export_response(request, queryset, "csv", **_export_scope(request))


@admin.action(description=gettext_lazy("Export selected conversations as JSONL"),
              permissions=["export"])
def export_jsonl(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse:
    return export.export_response(request, queryset, "jsonl", **_export_scope(request))


# Agents --------------------------------------------------------------------------------------


def report_connection(request: HttpRequest, agent: Agent) -> None:
    result = services.check_connection(agent)
    if result.ok:
        messages.success(request, _("%(agent)s: connection works (%(ms)s ms): %(detail)s.") % {
            "agent": agent.name, "ms": result.elapsed_ms, "detail": result.message,
        })
    else:
        messages.error(request, _("%(agent)s: connection failed [%(code)s]: %(detail)s") % {
            "agent": agent.name, "code": result.code, "detail": result.message,
        })


@admin.action(description=gettext_lazy("Test connection"), permissions=["change"])
def test_connection_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Agent]
) -> None:
    for agent in queryset:
        report_connection(request, agent)

