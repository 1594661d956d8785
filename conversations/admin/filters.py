"""The conversation list's own filters (the rest are field filters named in ConversationAdmin).

Each is an EXISTS subquery, so filtering never joins and duplicates rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations.models import Feedback, Message, ToolCall


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
