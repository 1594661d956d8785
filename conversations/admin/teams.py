"""Staff manage teams (members and their roles, budgets) and every canned reply; leads manage
their own team's replies on their own page (docs/teams.md)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from conversations import services
from conversations.models import CannedReply, Team, TeamMembership


class MembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 1
    fields = ["user", "role", "is_default", "joined_at"]
    readonly_fields = ["joined_at"]
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "monthly_token_budget", "monthly_cost_budget"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


class CannedReplyForm(forms.ModelForm):
    """The rules the leads' and users' pages apply (services.canned): lengths, the shortcut's
    form, its uniqueness per owner / team / everyone; the model's clean() adds scope ↔ team /
    owner."""

    class Meta:
        model = CannedReply
        fields = ["title", "shortcut", "body", "language", "scope", "owner", "team"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:  # a field already refused (required, slug): its message is enough
            return data
        try:
            data.update(services.canned.clean_reply(data))
        except services.InvalidInput as exc:
            raise forms.ValidationError({exc.field if exc.field in self.fields else None:
                                         exc.message}) from None
        probe = CannedReply(pk=self.instance.pk, scope=data.get("scope"),
                            shortcut=data["shortcut"], owner=data.get("owner"),
                            team=data.get("team"))
        try:
            services.canned.check_unique(probe)
        except services.InvalidInput as exc:
            raise forms.ValidationError({"shortcut": exc.message}) from None
        return data


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    form = CannedReplyForm
    list_display = ["shortcut", "title", "scope", "team", "owner", "language"]
    list_filter = ["scope", "team", "language"]
    search_fields = ["shortcut", "title", "body"]
    autocomplete_fields = ["owner"]
