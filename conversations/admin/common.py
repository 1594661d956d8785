"""Pieces the admin modules share: read-only admins, a link to a conversation's transcript, and
the context of an action's intermediate page (choose a label, a queue, a team)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html


class ReadOnlyAdminMixin:
    """Shown, never changed: transcripts, feedback, scores are records of what happened."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def conversation_link(conversation_id: Any, text: str, anchor: str = "") -> str:
    url = reverse("admin:conversations_conversation_change", args=[conversation_id])
    return format_html('<a href="{}{}">{}</a>', url, f"#{anchor}" if anchor else "", text)


def intermediate_context(modeladmin: admin.ModelAdmin, request: HttpRequest,
                         queryset: QuerySet[Any], title: str, form: forms.Form,
                         **extra: Any) -> dict[str, Any]:
    """What an action's intermediate page needs to post the same selection back."""
    select_across = request.POST.get("select_across") == "1"
    return {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "form": form,
        "count": queryset.count(),
        "select_across": select_across,
        "selected": [] if select_across else request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        **extra,
    }
