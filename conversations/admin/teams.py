"""Staff manage teams (members and their roles, budgets) and every canned reply; leads manage
their own team's replies on their own page (docs/teams.md)."""

from __future__ import annotations

from django.contrib import admin

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


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ["shortcut", "title", "scope", "team", "owner", "language"]
    list_filter = ["scope", "team", "language"]
    search_fields = ["shortcut", "title", "body"]
    autocomplete_fields = ["owner"]
