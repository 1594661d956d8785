"""The review desk outside the admin: `GET /api/v1/conversations/export` and the statistics
page (`/stats/`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations.api import api_error, api_view
from conversations.review import export, stats
from conversations.services import InvalidInput

# Export API ----------------------------------------------------------------------------------


class ConversationExport:
    @staticmethod
    def get(request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("conversations.export_conversation"):
            return api_error(403, "forbidden", _("You are not allowed to export conversations."))
        export_format = request.GET.get("format", "")
        if export_format not in export.EXPORT_FORMATS:
            raise InvalidInput(
                "invalid", _("format must be csv or jsonl."), field="format", status=422
            )
        conversations = export.filter_conversations(request.GET)
        filters = {k: v for k, v in request.GET.items() if k != "format"}
        return export.export_response(request, conversations, export_format, filters=filters)


conversation_export = api_view("GET", review=True)(ConversationExport)  # type: ignore[arg-type]


# Statistics ----------------------------------------------------------------------------------

# A year of days keeps the charts readable and the reply scan bounded.
STATS_MAX_DAYS = 366
STATS_DEFAULT_DAYS = 30


class DateInput(forms.DateInput):
    input_type = "date"


class StatsRangeForm(forms.Form):
    start = forms.DateField(label=gettext_lazy("From"), widget=DateInput)
    end = forms.DateField(label=gettext_lazy("To"), widget=DateInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                raise forms.ValidationError(
                    _("The start date must be on or before the end date."), code="order"
                )
            if (end - start).days + 1 > STATS_MAX_DAYS:
                raise forms.ValidationError(
                    _("Choose at most %(days)s days.") % {"days": STATS_MAX_DAYS}, code="too_long"
                )
        return data


def default_range(today: date | None = None) -> tuple[date, date]:
    end = today or timezone.localdate()
    return end - timedelta(days=STATS_DEFAULT_DAYS - 1), end


@login_required
@permission_required("conversations.view_stats", raise_exception=True)
def stats_view(request: HttpRequest) -> HttpResponse:
    start, end = default_range()
    if "start" in request.GET or "end" in request.GET:
        form = StatsRangeForm(request.GET)
        if not form.is_valid():
            return render(request, "review/stats.html", {"form": form}, status=400)
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    else:
        form = StatsRangeForm(initial={"start": start, "end": end})
    result = stats.compute_stats(start, end)
    context = {
        "form": form,
        "stats": result,
        "charts": {
            "replies": stats.stacked_day_chart(result),
            "failures": stats.failure_rate_chart(result),
            "ttft": stats.latency_chart(result, "ttft"),
            "duration": stats.latency_chart(result, "duration"),
        },
        "review": stats.compute_review_stats(start, end),
    }
    return render(request, "review/stats.html", context)
