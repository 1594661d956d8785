"""Admin: agents are editable by staff; conversations and messages are shown read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from conversations.models import Agent, Conversation, Message, ToolCall
from conversations.providers import provider_class, provider_kinds


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


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["slug", "name", "provider", "base_url", "token_env", "is_active", "is_default"]
    list_filter = ["provider", "is_active"]
    search_fields = ["slug", "name"]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["seq", "role", "status", "content", "error_code", "created_at", "ttft_ms"]
    readonly_fields = fields
    ordering = ["seq"]


class ToolCallInline(ReadOnlyInline):
    model = ToolCall
    fields = ["call_id", "name", "arguments", "result", "status"]
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "agent", "external_user_id", "updated_at", "archived"]
    list_filter = ["agent", "archived"]
    list_select_related = ["owner", "agent"]
    search_fields = ["title", "external_user_id", "messages__content"]
    readonly_fields = [
        "id", "owner", "agent", "title", "generated_titles", "external_user_id", "metadata",
        "vendor_conversation_id", "archived", "created_at", "updated_at",
    ]
    inlines = [MessageInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "status", "error_code", "created_at"]
    list_filter = ["role", "status"]
    list_select_related = ["conversation"]
    readonly_fields = [
        "id", "conversation", "seq", "role", "content", "status", "error_code",
        "error_message", "usage", "client_id", "extra", "created_at", "completed_at", "ttft_ms",
        "heartbeat_at",
    ]
    inlines = [ToolCallInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
