"""Staff manage agents: the vendor, URL, token variable and options each one uses, and a "Test
connection" button (the change page) and action (the list) that probe the vendor."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from conversations import services
from conversations.admin.actions import report_connection, test_connection_action
from conversations.admin.conversations import REVIEW_MEDIA
from conversations.models import Agent


class AgentForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=())

    class Meta:
        model = Agent
        fields = [
            "slug", "name", "provider", "base_url", "token_env", "options", "is_active",
            "is_default", "teams",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [(k, k) for k in services.provider_kinds()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind, options = data.get("provider"), data.get("options")
        if kind and isinstance(options, dict):
            problems = services.agent_options_problems(kind, options)
            if problems:
                self.add_error("options", "; ".join(problems))
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["slug", "name", "provider", "base_url", "token_env", "is_active", "is_default"]
    list_filter = ["provider", "is_active", "teams"]
    search_fields = ["slug", "name"]
    actions = [test_connection_action]
    change_form_template = "admin/conversations/agent/change_form.html"

    @property
    def media(self) -> forms.Media:
        return super().media + REVIEW_MEDIA

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
